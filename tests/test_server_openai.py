"""The OpenAI-compatible API, driven by the official openai client against a real server."""

from __future__ import annotations

import json

import openai
import pytest

import jan
from jan.testing.gguf_models import write_tool_template_model
from server_helpers import http_post, raw_request, sse_events, start_server

STORY = "Once upon a time"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    tmp = tmp_path_factory.mktemp("server")
    tool_model = write_tool_template_model(tmp / "tool-model.gguf")
    srv = start_server(tmp, [stories_path, minilm_path, tool_model])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models(client):
    ids = {m.id for m in client.models.list()}
    assert {"stories260K", "all-MiniLM-L6-v2-f32", "tool-model"} <= ids
    model = client.models.retrieve("stories260K")
    assert model.id == "stories260K" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_completion_is_greedy_exact(client, stories_path):
    result = client.completions.create(model="stories260K", prompt=STORY, max_tokens=30, temperature=0)
    with jan.Model(stories_path, n_ctx=512, n_threads=1) as m:
        expected = m.generate(STORY, max_tokens=30, temperature=0).text
    assert result.choices[0].text == expected
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 30 and result.usage.prompt_tokens == 5


def test_completion_echo_and_logprobs(client):
    result = client.completions.create(model="stories260K", prompt=STORY, max_tokens=5, temperature=0, echo=True,
                                       logprobs=3)
    choice = result.choices[0]
    assert choice.text.startswith(STORY)
    # as OpenAI's: the echoed prompt's tokens (5, BOS included) are scored too, the first one with null
    assert len(choice.logprobs.tokens) == 5 + 5
    assert choice.logprobs.token_logprobs[0] is None and choice.logprobs.top_logprobs[0] is None
    assert all(len(top) == 3 for top in choice.logprobs.top_logprobs[1:])


def test_completion_with_prompt_list_and_tokens(client):
    result = client.completions.create(model="stories260K", prompt=[STORY, "The little dog"], max_tokens=5,
                                       temperature=0)
    assert sorted(c.index for c in result.choices) == [0, 1]
    tokens = client.completions.create(model="stories260K", prompt=[1, 403, 407, 261, 429], max_tokens=5,
                                       temperature=0)
    assert tokens.choices[0].text


def test_completion_stream(client):
    stream = client.completions.create(model="stories260K", prompt=STORY, max_tokens=20, temperature=0, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    plain = client.completions.create(model="stories260K", prompt=STORY, max_tokens=20, temperature=0)
    assert text == plain.choices[0].text


def test_chat_plain(client):
    result = client.chat.completions.create(model="stories260K", temperature=0, max_tokens=20,
                                            messages=[{"role": "system", "content": "You tell stories."},
                                                      {"role": "user", "content": "Tell me a story"}])
    msg = result.choices[0].message
    assert msg.role == "assistant" and msg.content
    assert result.usage.completion_tokens <= 20
    assert result.id.startswith("chatcmpl-")


def test_chat_stream_matches_plain_and_reports_usage(client):
    kwargs = dict(model="stories260K", temperature=0, max_tokens=25, messages=[{"role": "user", "content": "Hello"}])
    plain = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 25
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_chat_n2_with_seed(client):
    result = client.chat.completions.create(model="stories260K", n=2, seed=7, temperature=1.0, max_tokens=20,
                                            messages=[{"role": "user", "content": "Hello"}])
    assert [c.index for c in result.choices] == [0, 1]
    assert result.choices[0].message.content != result.choices[1].message.content
    again = client.chat.completions.create(model="stories260K", n=2, seed=7, temperature=1.0, max_tokens=20,
                                           messages=[{"role": "user", "content": "Hello"}])
    assert [c.message.content for c in again.choices] == [c.message.content for c in result.choices]


def test_chat_logprobs(client):
    result = client.chat.completions.create(model="stories260K", temperature=0, max_tokens=5, logprobs=True,
                                            top_logprobs=3, messages=[{"role": "user", "content": "Hello"}])
    content = result.choices[0].logprobs.content
    assert len(content) == 5
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)
    assert "".join(t.token for t in content) == result.choices[0].message.content


def test_chat_stop(client):
    full = client.chat.completions.create(model="stories260K", temperature=0, max_tokens=40,
                                          messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content
    word = full.split()[3]
    cut = client.chat.completions.create(model="stories260K", temperature=0, max_tokens=40, stop=[word],
                                         messages=[{"role": "user", "content": "Hello"}]).choices[0]
    assert cut.message.content == full[: full.index(word)]
    assert cut.finish_reason == "stop"


def test_chat_json_schema_output_validates(client):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer", "minimum": 1, "maximum": 120},
                                               "pets": {"type": "array", "items": {"enum": ["cat", "dog"]},
                                                        "maxItems": 3}},
              "required": ["name", "age", "pets"], "additionalProperties": False}
    for seed in range(3):
        result = client.chat.completions.create(
            model="stories260K", seed=seed, temperature=0.7, max_tokens=120,
            messages=[{"role": "user", "content": "Describe a person"}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
        data = json.loads(result.choices[0].message.content)
        assert set(data) == {"name", "age", "pets"}
        assert isinstance(data["age"], int) and 1 <= data["age"] <= 120
        assert all(p in ("cat", "dog") for p in data["pets"])


def test_chat_json_object(client):
    # Any object is allowed, and a story model happily writes member after member: banning the
    # tokens holding a comma makes it close the object after one.
    ban = {str(t): -100 for t in _comma_tokens(client)}
    finished = []
    for seed in range(4):
        result = client.chat.completions.create(model="stories260K", seed=seed, max_tokens=300, temperature=1.0,
                                                messages=[{"role": "user", "content": "json please"}],
                                                response_format={"type": "json_object"}, logit_bias=ban)
        if result.choices[0].finish_reason == "stop":
            finished.append(json.loads(result.choices[0].message.content))
    assert finished and all(isinstance(obj, dict) for obj in finished)


@pytest.mark.parametrize("fmt", [{"type": "json_object"},
                                 {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}}])
@pytest.mark.parametrize("stream", [False, True])
def test_a_grammar_with_a_json_response_format_is_refused(client, fmt, stream):
    # the schema's grammar was used and the client's GBNF dropped without a word; llama-server refuses both too
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="stories260K", max_tokens=2, stream=stream, response_format=fmt,
                                       messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"grammar": 'root ::= "yes"'})
    assert caught.value.body["param"] == "grammar" and fmt["type"] in caught.value.body["message"]
    answer = client.chat.completions.create(model="stories260K", max_tokens=8, response_format={"type": "text"},
                                            messages=[{"role": "user", "content": "hi"}],
                                            extra_body={"grammar": 'root ::= "yes"'})
    assert answer.choices[0].message.content == "yes"  # a text format constrains nothing: the grammar is the one


def _comma_tokens(client) -> list[int]:
    import jan
    from jan.testing.gguf_models import models_dir

    with jan.Model(models_dir() / "stories260K.gguf", vocab_only=True) as m:
        return [t for t in range(m.info.n_vocab) if "," in m.token_to_piece(t)]


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}


def test_tools_required_produces_a_parsed_tool_call(client):
    result = client.chat.completions.create(
        model="tool-model", tools=[WEATHER], tool_choice="required", max_tokens=120, temperature=0,
        parallel_tool_calls=False,  # one call, then the grammar ends the output (more would run into max_tokens)
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    assert call.id.startswith("call_")


def test_tools_named_choice_streams_tool_call_deltas(client):
    chunks = list(client.chat.completions.create(
        model="tool-model", tools=[WEATHER], stream=True, max_tokens=120, temperature=0,
        parallel_tool_calls=False,  # one call, then the grammar ends the output (more would run into max_tokens)
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Weather in Paris?"}]))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].index == 0 and deltas[0].function.name == "get_weather" and deltas[0].id
    for index in {d.index for d in deltas}:  # parallel calls stream under their own index
        arguments = "".join(d.function.arguments or "" for d in deltas if d.index == index)
        assert "city" in json.loads(arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_results_round_trip_through_the_template(client):
    result = client.chat.completions.create(
        model="tool-model", tools=[WEATHER], max_tokens=5, temperature=0,
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "call_1", "type": "function",
                       "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
    assert result.choices[0].finish_reason in ("stop", "length")


def test_tool_choice_none_ignores_tools(client):
    result = client.chat.completions.create(model="tool-model", tools=[WEATHER], tool_choice="none", max_tokens=5,
                                            temperature=0, messages=[{"role": "user", "content": "hi"}])
    assert not result.choices[0].message.tool_calls


def test_embeddings(client):
    result = client.embeddings.create(model="all-MiniLM-L6-v2-f32", input=["This is an example sentence", "hi"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert result.data[0].embedding[:4] == pytest.approx([0.0677, 0.0635, 0.0487, 0.0793], abs=2e-3)
    assert result.usage.prompt_tokens > 0
    b64 = client.embeddings.create(model="all-MiniLM-L6-v2-f32", input="This is an example sentence",
                                   encoding_format="base64")
    import base64

    import numpy as np

    decoded = np.frombuffer(base64.b64decode(b64.data[0].embedding), dtype="<f4")
    assert decoded.shape == (384,)
    assert decoded[:4] == pytest.approx(result.data[0].embedding[:4], abs=1e-6)


def test_embeddings_from_tokens(client):
    result = client.embeddings.create(model="all-MiniLM-L6-v2-f32", input=[[101, 7592, 102]])
    assert len(result.data[0].embedding) == 384


def test_exact_sse_bytes(server):
    body = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
            "temperature": 0, "stream": True}
    response = raw_request(server.base_url, http_post("/v1/chat/completions", body))
    head, _, payload = response.partition(b"\r\n\r\n")
    assert b"HTTP/1.1 200" in head
    assert b"content-type: text/event-stream" in head.lower()
    # chunked transfer framing aside, every event is `data: <json>\n\n` and the stream ends with [DONE]
    decoded = b"".join(part for i, part in enumerate(payload.split(b"\r\n")) if i % 2 == 1)
    assert decoded.endswith(b"data: [DONE]\n\n")
    events = decoded.split(b"\n\n")[:-1]
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
    data = sse_events(decoded)
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert len({c["id"] for c in chunks}) == 1


def test_tokenize_detokenize(server):
    import urllib.request

    def post(path, body):
        req = urllib.request.Request(server.base_url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req).read())

    tokens = post("/v1/tokenize", {"model": "stories260K", "content": STORY, "add_special": True})["tokens"]
    assert tokens[0] == 1 and len(tokens) == 5
    # spelled as llama-server spells them: the first piece's leading space kept (llama-server 0.3.36: " Once upon a
    # time" for these ids)
    assert post("/v1/detokenize", {"model": "stories260K", "tokens": tokens[1:]})["content"] == " " + STORY
    pieces = post("/v1/tokenize", {"model": "stories260K", "content": STORY, "with_pieces": True})["tokens"]
    assert "".join(p["piece"] for p in pieces).strip() == STORY


def test_openapi_and_docs(server):
    import urllib.request

    spec = json.loads(urllib.request.urlopen(server.base_url + "/openapi.json").read())
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics",
                 "/v1/tokenize", "/v1/detokenize"):
        assert path in spec["paths"], path
    assert "ChatCompletionRequest" in spec["components"]["schemas"]
    page = urllib.request.urlopen(server.base_url + "/docs").read().decode()
    assert "/v1/chat/completions" in page and "<html" in page


def test_metrics_are_prometheus_text(server, client):
    import urllib.request

    client.completions.create(model="stories260K", prompt=STORY, max_tokens=3)
    text = urllib.request.urlopen(server.base_url + "/metrics").read().decode()
    assert '# TYPE jan_generated_tokens_total counter' in text
    line = next(l for l in text.splitlines() if l.startswith('jan_generated_tokens_total{engine="local",model="stories260K"}'))
    assert float(line.split()[-1]) >= 3


def test_a_tool_call_cut_off_by_max_tokens_ends_with_length_and_no_markup(server, client):
    """Issue 10 item 17: the token limit wins, and a partial call's markup is never content."""
    request = dict(model="tool-model", tools=[WEATHER], tool_choice="required", max_tokens=8, temperature=0,
                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    result = client.chat.completions.create(**request)
    choice = result.choices[0]
    assert choice.finish_reason == "length"
    assert "<tool_call>" not in (choice.message.content or "") and "{" not in (choice.message.content or "")
    chunks = list(client.chat.completions.create(**request, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "<tool_call>" not in content and "{" not in content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_allowed_tools_tool_choice(server, client):
    """OpenAI's ``{"type": "allowed_tools", "allowed_tools": {"mode", "tools"}}``: the model is shown only the
    tools named (with the mode as the choice), as on the Responses API; a name not in ``tools`` is a 400."""
    other = {"type": "function", "function": {"name": "get_time", "description": "The time in a city",
                                              "parameters": {"type": "object", "properties": {}}}}
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}
    body = {"model": "tool-model", "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [WEATHER, other], "tool_choice": choice}
    prompt = json.loads(raw_request(server.base_url, http_post("/v1/apply-template", body)).split(b"\r\n\r\n", 1)[1])
    assert "get_weather" in prompt["prompt"] and "get_time" not in prompt["prompt"]
    result = client.chat.completions.create(model="tool-model", messages=body["messages"], tools=body["tools"],
                                            tool_choice=choice, max_tokens=120, temperature=0)
    calls = result.choices[0].message.tool_calls
    assert calls and {c.function.name for c in calls} == {"get_weather"}  # "required": a call, of the one allowed
    bad = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "get_news"}}]}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tool-model", messages=body["messages"], tools=body["tools"],
                                       tool_choice=bad, max_tokens=4)
    assert err.value.body["param"] == "tool_choice.allowed_tools.tools[0].function.name"
