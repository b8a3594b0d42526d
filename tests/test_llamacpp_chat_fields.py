"""llama-server 0.3.36's fields on its OpenAI chat route, as its clients read and send them (checked against its
binary on stories260K): each logprobs item's token ``id`` beside OpenAI's fields, and the documented request fields
it takes there (``return_tokens``, ``response_fields``, ``generation_prompt``, ``parse_tool_calls``, ``n_cmpl``),
which jan refused as unknown (400)."""

from __future__ import annotations

import pytest

from jan.engine.results import TokenLogprob, TopLogprob
from jan.server.openai_wire import _chat_logprobs
from server_helpers import ok, post, start_server

CHAT = {"model": "stories260K", "temperature": 0, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("chatfields"), [stories_path], n_parallel=2)
    yield srv
    srv.stop()


def test_chat_logprobs_tell_each_tokens_id(server):
    content = ok(server, "/v1/chat/completions", CHAT | {"logprobs": True, "top_logprobs": 2})[
        "choices"][0]["logprobs"]["content"]
    assert len(content) == 3, content
    for item in content:
        # OpenAI's fields stay; llama-server's id is the token's, its alternatives' theirs (greedy: the pick first)
        assert {"token", "logprob", "bytes", "top_logprobs", "id"} <= set(item), item
        assert item["top_logprobs"][0]["id"] == item["id"], item
        assert ok(server, "/detokenize", {"tokens": [item["id"]]})["content"] == item["token"], item
        assert all(isinstance(t["id"], int) for t in item["top_logprobs"]), item


def test_chat_logprobs_stream_the_ids_too(server):
    import httpx
    import json

    response = httpx.post(server.base_url + "/v1/chat/completions", timeout=120,
                          json=CHAT | {"logprobs": True, "top_logprobs": 1, "stream": True})
    items = [item for line in response.text.split("\n") if line.startswith("data: {")
             for choice in json.loads(line[6:])["choices"] for item in (choice.get("logprobs") or {}).get("content") or ()]
    assert len(items) == 3 and all(isinstance(i["id"], int) for i in items), items


def test_a_token_without_a_known_id_has_none():
    # (a remote engine's tokens: -1, no id to tell)
    items = _chat_logprobs([TokenLogprob(-1, "a", [97], -0.5, [TopLogprob(-1, "a", [97], -0.5)]),
                            TokenLogprob(7, "b", [98], -0.1, [TopLogprob(7, "b", [98], -0.1)])], 1)
    assert "id" not in items[0] and "id" not in items[0]["top_logprobs"][0], items
    assert items[1]["id"] == 7 and items[1]["top_logprobs"][0]["id"] == 7, items


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT),
                                       ("/v1/completions", {k: v for k, v in CHAT.items() if k != "messages"}
                                        | {"prompt": "Once upon a time"})])
@pytest.mark.parametrize("extra", [{"return_tokens": True}, {"response_fields": ["content"]},
                                   {"generation_prompt": ""}, {"parse_tool_calls": True},
                                   {"parse_tool_calls": False}])
def test_llama_servers_fields_its_openai_answers_have_no_use_for_are_taken(server, path, body, extra):
    plain = ok(server, path, body)
    answer = ok(server, path, body | extra)
    # (greedy: the same answer as without them, in OpenAI's shape)
    assert answer["choices"][0].get("message", answer["choices"][0].get("text")) == \
        plain["choices"][0].get("message", plain["choices"][0].get("text")), answer
    assert "tokens" not in answer["choices"][0], answer


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT),
                                       ("/v1/completions", {k: v for k, v in CHAT.items() if k != "messages"}
                                        | {"prompt": "Once upon a time"})])
def test_n_cmpl_is_n(server, path, body):
    # llama-server's name for the number of completions, which it reads on its OpenAI routes (n: its alias)
    assert len(ok(server, path, body | {"n_cmpl": 2})["choices"]) == 2
    assert len(ok(server, path, body | {"n_cmpl": 2, "n": 1})["choices"]) == 2  # (read first, as llama-server does)
    response = post(server, path, body | {"n_cmpl": 0})
    assert response.status_code == 400 and "n" in response.json()["error"]["message"], response.text


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT),
                                       ("/v1/completions", {k: v for k, v in CHAT.items() if k != "messages"}
                                        | {"prompt": "Once upon a time"})])
def test_logit_bias_as_llama_servers_pairs(server, path, body):
    def first_id(answer: dict) -> int:
        return answer["choices"][0]["logprobs"]["content"][0]["id"]

    asked = body | ({"logprobs": True} if "messages" in body else {})
    greedy = ok(server, path, asked)
    # [[id, false]] bans the token, [[id, bias]] (an id as text too) biases it: as OpenAI's {"id": bias}
    if "messages" in body:
        banned = first_id(greedy)
    else:  # (a text completion's logprobs have no ids: the same prompt's first token, as /completion returns it)
        banned = ok(server, "/completion", {"model": "stories260K", "prompt": body["prompt"], "n_predict": 1,
                                            "temperature": 0, "return_tokens": True})["tokens"][0]
    for bias in ([[banned, False]], [[str(banned), -100]]):
        answer = ok(server, path, asked | {"logit_bias": bias})
        if "messages" in body:
            assert first_id(answer) != banned, bias
        else:
            assert answer["choices"][0]["text"] != greedy["choices"][0]["text"], bias
    assert ok(server, path, asked | {"logit_bias": []})["choices"]
    for bad, named in (([["Hello", 1]], "token ids"), ([[1]], "logit_bias[0]"), ([[1, "x"]], "bias"),
                       ([[[1, 2], 1]], "neither a token id"), ([[1.5, 1]], "neither a token id")):
        response = post(server, path, body | {"logit_bias": bad})
        assert response.status_code == 400, response.text
        assert named in response.json()["error"]["message"], response.text


@pytest.mark.parametrize("token", [[383, 286], 1.5, True, None])
def test_a_logit_bias_token_that_is_neither_id_nor_text_is_said_so(server, token):
    """/completion tokenizes a text token; a token that is no id and no text (a list, a fraction, true) was refused
    as "no token id, and this model's engine cannot tokenize text": a tokenizer was not what it lacked."""
    response = post(server, "/completion", {"model": "stories260K", "prompt": "Once", "n_predict": 1,
                                            "logit_bias": [[token, 1]]})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "neither a token id (a whole number) nor text to tokenize (a string)" in message, message
    assert "cannot tokenize" not in message, message


def test_text_completion_logprobs_carry_llama_servers_content_too(server):
    # llama-server 0.3.36's /v1/completions tells logprobs as {"content": [{id, token, bytes, logprob,
    # top_logprobs}]}; OpenAI's lists stay beside it for OpenAI's clients
    body = {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 3, "temperature": 0, "logprobs": 2}
    logprobs = ok(server, "/v1/completions", body)["choices"][0]["logprobs"]
    content = logprobs["content"]
    assert [t["logprob"] for t in content] == logprobs["token_logprobs"] and len(content) == 3, logprobs
    for item in content:
        assert len(item["top_logprobs"]) == 2 and item["top_logprobs"][0]["id"] == item["id"], item
        assert ok(server, "/detokenize", {"tokens": [item["id"]]})["content"] == item["token"], item
    import httpx
    import json

    response = httpx.post(server.base_url + "/v1/completions", json=body | {"stream": True}, timeout=120)
    streamed = [t for line in response.text.split("\n") if line.startswith("data: {")
                for choice in json.loads(line[6:])["choices"] for t in (choice["logprobs"] or {}).get("content", ())]
    assert [t["id"] for t in streamed] == [t["id"] for t in content], streamed


def test_a_remote_llama_servers_text_completion_logprobs_are_read():
    # (a remote engine over llama-server: its /v1/completions tells only the content list; jan read none)
    from jan.extensions.remote.wire import completion_deltas

    chunk = {"choices": [{"index": 0, "text": "b", "finish_reason": None, "logprobs": {"content": [
        {"id": 430, "token": "b", "bytes": [98], "logprob": -1.25,
         "top_logprobs": [{"id": 430, "token": "b", "bytes": [98], "logprob": -1.25}]}]}}]}
    (delta,) = completion_deltas(chunk)
    assert [(t.token, t.logprob, [a.token for a in t.top]) for t in delta.logprobs] == [("b", -1.25, ["b"])]


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT),
                                       ("/v1/completions", {k: v for k, v in CHAT.items() if k != "messages"}
                                        | {"prompt": "Once upon a time"})])
@pytest.mark.parametrize("name,off,on", [("n_indent", 0, 4), ("t_max_predict_ms", 0, 500)])
def test_completions_output_rules_are_taken(server, path, body, name, off, on):
    # llama-server's clients send them on every route (0: off), and llama-server applies them there: taken, off or
    # on (they were refused on, a 400); what they do is tests/test_line_rules.py's
    assert ok(server, path, body | {name: off})["choices"]
    assert ok(server, path, body | {name: on})["choices"]


def test_a_text_completions_size_estimate_counts_the_content_list(server):
    # (the estimate decides whether a big answer is encoded off the event loop: it must grow with what is sent)
    from jan.server.jsonio import json_values
    from jan.server.routes.openai import _completion_values

    answer = ok(server, "/v1/completions", {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 8,
                                            "temperature": 0, "logprobs": 5, "echo": True})
    sent = json_values(answer["choices"])
    assert sent / 2 <= _completion_values(answer) <= sent * 2, (sent, _completion_values(answer))


def _stream(server, path, body):
    import httpx
    import json

    response = httpx.post(server.base_url + path, json=body | {"stream": True}, timeout=120)
    assert response.status_code == 200, response.text
    lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", lines
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("timings_per_token", [False, True])
def test_a_text_completion_streams_last_chunk_tells_its_usage_as_llama_servers_does(server, timings_per_token):
    # llama-server's /v1/completions writes each result's usage on its last chunk whether or not include_usage asks
    # (scripts read it there); jan wrote only the timings, and the usage only in include_usage's chunk
    body = {"model": "stories260K", "temperature": 0, "max_tokens": 3, "prompt": ["Once upon a time", "Tom"],
            "timings_per_token": timings_per_token}
    chunks = _stream(server, "/v1/completions", body)
    whole = ok(server, "/v1/completions", body)
    for index in (0, 1):
        last = [c for c in chunks if c["choices"][0]["index"] == index][-1]
        assert last["choices"][0]["finish_reason"] == "length", chunks
        usage = last["usage"]
        assert usage["completion_tokens"] == 3 and usage["prompt_tokens"] > 0, last
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], last
        assert set(last["timings"]) >= {"prompt_n", "predicted_n"}, last
    assert sum(c["usage"]["completion_tokens"] for c in chunks if "usage" in c) == \
        whole["usage"]["completion_tokens"], chunks
    assert all("usage" not in c for c in chunks if c["choices"][0]["finish_reason"] is None), chunks
    # include_usage: OpenAI's own chunk with the request's usage, the choices' last chunks without one
    chunks = _stream(server, "/v1/completions", body | {"stream_options": {"include_usage": True}})
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6, chunks[-1]
    assert all("usage" not in c for c in chunks[:-1]), chunks


def test_llama_servers_reasoning_budget_tokens_is_taken_on_chat(server):
    # llama-server's chat reads reasoning_budget_tokens (then thinking_budget_tokens, which jan took); jan refused
    # it as unknown. (stories260K's template has no thinking: taken, changing nothing here.)
    for budget in (0, 10, -1):
        ok(server, "/v1/chat/completions", CHAT | {"reasoning_budget_tokens": budget})
    response = post(server, "/v1/chat/completions", CHAT | {"reasoning_budget_tokens": -2})
    assert response.status_code == 400 and response.json()["error"]["param"] == "reasoning_budget_tokens", response.text


@pytest.mark.parametrize("path,body", [
    ("/completion", {"prompt": "Once upon a time", "n_predict": 3}),
    ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 3}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}),
])
def test_a_token_id_written_as_a_whole_float_is_that_id(server, path, body):
    # llama-server's JSON reading takes 383.0 as id 383 (a Python or NumPy float, json.dumps'd); jan refused it as
    # "neither a token id (a whole number) nor text"
    base = {"model": "stories260K", "temperature": 0} | body
    as_int = ok(server, path, base | {"logit_bias": [[383, False]]})
    as_float = ok(server, path, base | {"logit_bias": [[383.0, False]]})
    text = (lambda r: r["content"] if "content" in r else r["choices"][0].get("text", r["choices"][0].get("message")))
    assert text(as_float) == text(as_int), (as_float, as_int)
    assert ok(server, "/detokenize", {"tokens": [383.0, 286.0]}) == ok(server, "/detokenize", {"tokens": [383, 286]})
    response = post(server, "/detokenize", {"tokens": [383.5]})
    assert response.status_code == 400, response.text
