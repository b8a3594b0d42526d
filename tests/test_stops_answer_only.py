"""A client's stop strings match the answer's text only, in every dialect.

When the output is parsed (tools the model may call, or a format that thinks), the stop strings (OpenAI ``stop``,
Anthropic ``stop_sequences``, Ollama ``options.stop``) are matched on the content as the parser tells it, never
inside the thinking or a tool call's markup and arguments (``"\\n\\n"``, ``"}"`` or ``"Observation:"`` would
otherwise cut a call, or end a reply before it answered): content that may begin one is held back, a match ends
the content just before it and cancels that choice's engine request at once. Plain output keeps the engine's
matching.

Parser level: every family's scripted outputs (``chat_format_cases``) through the parser and
:class:`~jan.services.output.AnswerStops`, in any split. End to end: real servers with stories260K (real weights:
its greedy reply is deterministic English; with tools its reply is parsed) and a tiny thinking model whose output a
grammar forces.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from cut_off_helpers import post
from chat_format_cases import CASES, TOOLS, Output, call_ids as _ids, case_id, template_format as _fmt
from dialect_helpers import anthropic_client, folded_chat_stream, openai_client, reasoning_model
from jan.engine.model import Model
from jan.services.output import AnswerStops, FormatOutput
from jan.services.types import (
    ChatDelta,
    ChatMessage,
    ChatRequest,
    SamplingOptions,
    ToolCallDelta,
    ToolSpec,
)
from jan.templates import gbnf_literal
from jan.templates.formats import OutputParser
from server_helpers import start_server

STORIES = "stories260K"
THINKER = "qwq-tiny"
ASK = [{"role": "user", "content": "Once upon a time"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
ANTH_TOOLS = [{"name": "get_weather", "input_schema": WEATHER}]
# stories260K with a tool it never calls: its greedy English reply, parsed (the Hermes parser of jan's polyfill)
LONG = 1500  # a reply the stop string cuts long before it ends
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


# -- parser level: every family's thinking and calls -------------------------------------------------------
def _run(fmt, out: Output, text: str, stops: list[str], pieces: list[str]) -> tuple[dict, AnswerStops]:
    """``pieces`` of ``text`` through the family's parser and the answer's stop strings: what the client sees."""
    open_at_start = out.reasoning is not None and fmt.reasoning is not None and not text.startswith(fmt.reasoning.start)
    parser = FormatOutput(OutputParser(fmt, TOOLS, open_at_start=open_at_start, id_factory=_ids()))
    stop = AnswerStops(stops)
    told: list[ChatDelta] = []
    for piece in pieces:
        told += stop.feed(parser.feed(piece))
        if stop.matched:
            break
    else:
        told += stop.feed(parser.finish("stop"))
        told += stop.finish()
    seen = {"reasoning": "".join(d.reasoning for d in told), "content": "".join(d.content for d in told), "calls": {}}
    for d in told:
        for c in d.tool_calls:
            call = seen["calls"].setdefault(c.index, ["", ""])
            call[0] += c.name or ""
            call[1] += c.arguments
    seen["calls"] = [(name, json.loads(args)) for _, (name, args) in sorted(seen["calls"].items())]
    return seen, stop


def _splits(text: str, rng: random.Random) -> list[list[str]]:
    """``text`` whole, one character at a time, and in random pieces."""
    out = [[text], list(text)]
    for _ in range(10):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 12))))
        out.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])])
    return out


OUTPUTS = [(case, out) for case in CASES for out in (case.thinking, case.plain) if out is not None]
ANSWERS = [(case, out) for case, out in OUTPUTS if out.content and len(out.content) > 3]


def _named(pairs):
    return [f"{case_id(case)}-{'thinking' if out is case.thinking else 'plain'}" for case, out in pairs]


@pytest.mark.parametrize(("case", "out"), OUTPUTS, ids=_named(OUTPUTS))
def test_a_stop_string_in_thinking_or_a_call_never_matches(case, out):
    fmt = _fmt(case.template)
    content = out.content or ""
    # pieces of the thinking and of the calls' markup and JSON (none of them in the answer's text)
    candidates = ["}", "{", "\n\n", "\n", '"', ":", ",", "get_weather", "</think>", "<tool_call>", "</tool_call>"]
    candidates += [w for w in (out.reasoning or "").split() if len(w) > 2]
    candidates += [str(v) for _, args in out.calls for v in args.values()]
    stops = [s for s in candidates if s not in content and s in out.text]
    expected = {"reasoning": out.reasoning or "", "content": content, "calls": [(n, a) for n, a in out.calls]}
    for pieces in _splits(out.text, random.Random(3)):
        seen, stop = _run(fmt, out, out.text, stops, pieces)
        assert stop.matched is None and seen == expected, (pieces, stops, seen)


@pytest.mark.parametrize(("case", "out"), ANSWERS, ids=_named(ANSWERS))
def test_a_stop_string_in_the_answer_ends_it_in_any_split(case, out):
    fmt = _fmt(case.template)
    stop_string = out.content[1:4]  # inside the answer (also in the thinking, maybe: no matter)
    expected = {"reasoning": out.reasoning or "", "content": out.content[:1], "calls": []}  # calls come after
    for pieces in _splits(out.text, random.Random(5)):
        seen, stop = _run(fmt, out, out.text, [stop_string, "never seen"], pieces)
        assert stop.matched == stop_string and seen == expected, (pieces, seen)


def test_held_back_content_is_released_before_a_call_and_at_the_end():
    stop = AnswerStops(["\n\n"])
    assert stop.feed([ChatDelta(content="Look.\n")]) == [ChatDelta(content="Look.")]  # "\n" may begin "\n\n"
    call = ToolCallDelta(0, "call_0", "get_weather", '{"city": "Paris"}')
    # a call ends the answer's run of text: the held "\n" was content, told before the call
    assert stop.feed([ChatDelta(tool_calls=(call,))]) == [ChatDelta(content="\n", tool_calls=(call,))]
    assert stop.feed([ChatDelta(content="Done.\n")]) == [ChatDelta(content="Done.")]
    assert stop.finish() == [ChatDelta(content="\n")] and stop.matched is None


def test_a_stop_after_a_call_keeps_the_call():
    stop = AnswerStops(["Observation:"])
    call = ToolCallDelta(0, "call_0", "get_weather", '{"city": "Paris"}')
    assert stop.feed([ChatDelta(tool_calls=(call,))]) == [ChatDelta(tool_calls=(call,))]
    told = stop.feed([ChatDelta(content="\nObserv"), ChatDelta(content="ation: sunny"),
                      ChatDelta(tool_calls=(ToolCallDelta(1, "call_1", "get_weather", "{}"),))])
    assert told == [ChatDelta(content="\n")]  # the text before it; nothing after it (the second call) is told
    assert stop.matched == "Observation:" and stop.made_tool_calls and stop.finish() == []


def test_the_earliest_stop_string_wins():
    stop = AnswerStops(["two", "one t"])
    assert stop.feed([ChatDelta(reasoning="one two", content="x one two")]) == \
        [ChatDelta(reasoning="one two", content="x ")]
    assert stop.matched == "one t" and stop.dropped == "one two"


# -- end to end ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("answer-stops")
    srv = start_server(tmp, [stories_path, reasoning_model(tmp)], n_ctx=2048)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai_client(server, timeout=300)


@pytest.fixture
def engine_requests(monkeypatch):
    """Every engine request made in this process (the server runs in it), to see how each ended."""
    made = []
    original = Model.stream

    def stream(self, prompt, **kw):
        request = original(self, prompt, **kw)
        made.append(request)
        return request

    monkeypatch.setattr(Model, "stream", stream)
    return made


class _Late:
    """An engine request whose reader is late: it reads nothing until the engine has finished generating (as a
    loop busy with other work would read a fast model's tokens), so a cancel sent at a stop string's match comes
    after every token was made."""

    def __init__(self, request):
        self._request, self._chunks = request, None

    def __getattr__(self, name):
        return getattr(self._request, name)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._chunks is None:
            self._chunks = iter(await asyncio.to_thread(list, self._request))  # (the sync reader waits for the end)
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


@pytest.fixture
def late_reader(monkeypatch):
    original = Model.stream
    monkeypatch.setattr(Model, "stream", lambda self, prompt, **kw: _Late(original(self, prompt, **kw)))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_stopped_reply_counts_its_tokens_through_the_stop_however_late_the_cancel(oai, story, late_reader, stream):
    stop = _straddling(story)
    kwargs = dict(model=STORIES, messages=ASK, tools=CHAT_TOOLS, temperature=0, max_tokens=200, stop=[stop])
    if stream:
        used = _streamed_chat(oai, **kwargs)["usage"]
    else:
        used = oai.chat.completions.create(**kwargs).usage.completion_tokens
    assert used == _tokens_through(story, stop) < 200  # not the 200 the engine made before it saw the cancel


@pytest.fixture(scope="module")
def story(oai):
    """stories260K's greedy reply with a tool (its first 80 tokens, no stop strings) and its tokens' text."""
    reply = oai.chat.completions.create(model=STORIES, messages=ASK, tools=CHAT_TOOLS, temperature=0, max_tokens=80,
                                        logprobs=True)
    choice = reply.choices[0]
    assert not choice.message.tool_calls
    return choice.message.content, [t.token for t in choice.logprobs.content]


def _straddling(story) -> str:
    """A stop string in the story that spans several tokens (the engine tells it over several chunks)."""
    text, tokens = story
    ends = {sum(len(t) for t in tokens[:i]) for i in range(len(tokens) + 1)}
    for word in (" little girl", 'said, "Yes', " named "):
        at = text.find(word)
        if at > 0 and any(at < e < at + len(word) for e in ends):
            return word
    pytest.fail(f"no stop string spanning tokens in {text!r}")


def _tokens_through(story, stop: str) -> int:
    """How many of the story's tokens it takes to write it up to the end of ``stop``: a stopped choice's usage, the
    same however late the cancel reached the engine (the tokens made meanwhile are not the reply's)."""
    text, tokens = story
    end, written = text.index(stop) + len(stop), 0
    for n, token in enumerate(tokens):
        if written >= end:
            return n
        written += len(token)
    return len(tokens)


def _streamed_chat(oai, **kwargs) -> dict:
    out: dict = {}
    for chunk in oai.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            out["usage"] = chunk.usage.completion_tokens
        for choice in chunk.choices:
            state = out.setdefault(choice.index, {"content": [], "calls": [], "finish": None})
            if choice.delta.content:
                state["content"].append(choice.delta.content)
            state["calls"] += choice.delta.tool_calls or []
            state["finish"] = choice.finish_reason or state["finish"]
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_a_stop_in_the_answer_ends_it_and_the_generation(oai, story, engine_requests, stream):
    stop = _straddling(story)
    before = story[0][:story[0].index(stop)]
    kwargs = dict(model=STORIES, messages=ASK, tools=CHAT_TOOLS, temperature=0, max_tokens=LONG, stop=[stop])
    if stream:
        out = _streamed_chat(oai, **kwargs)
        content, finish, used = "".join(out[0]["content"]), out[0]["finish"], out["usage"]
        assert stop not in "".join(out[0]["content"][-1:])
    else:
        reply = oai.chat.completions.create(**kwargs)
        content, finish, used = reply.choices[0].message.content, reply.choices[0].finish_reason, \
            reply.usage.completion_tokens
    assert (content, finish) == (before, "stop")
    # the engine request was cancelled at the match: it did not go on to its token limit, and the reply counts the
    # tokens through the stop string, streamed or not
    [request] = engine_requests
    assert request.final.finish_reason == "cancelled" and used == _tokens_through(story, stop)


def test_openai_each_of_n_choices_stops_on_its_own(oai, story, engine_requests):
    stop = _straddling(story)
    reply = oai.chat.completions.create(model=STORIES, messages=ASK, tools=CHAT_TOOLS, temperature=0, max_tokens=LONG,
                                        stop=[stop], n=2)
    before = story[0][:story[0].index(stop)]
    assert [(c.message.content, c.finish_reason) for c in reply.choices] == [(before, "stop")] * 2
    assert len(engine_requests) == 2 and all(r.final.finish_reason == "cancelled" for r in engine_requests)
    assert reply.usage.completion_tokens == 2 * _tokens_through(story, stop)


def test_plain_output_keeps_the_engines_matching(oai, story, engine_requests):
    stop = _straddling(story)
    # no tools: the engine matches the stop string itself, on the raw text, and ends the generation there
    reply = oai.chat.completions.create(model=STORIES, messages=ASK, temperature=0, max_tokens=LONG, stop=[stop])
    assert reply.choices[0].finish_reason == "stop" and stop not in reply.choices[0].message.content
    [request] = engine_requests
    assert request.final.finish_reason == "stop" and request.final.stop == stop


def _thinking(oai, text: str, stops: list[str], stream: bool, **extra) -> dict:
    kwargs = dict(model=THINKER, messages=[{"role": "user", "content": "Weather?"}], temperature=0,
                  reasoning_effort="high", stop=stops, extra_body={"grammar": "root ::= " + gbnf_literal(text)}, **extra)
    if stream:
        out = folded_chat_stream(oai, **kwargs)
        return {"reasoning": out["reasoning"], "content": out["content"], "calls": out["calls"],
                "finish": out["finish_reason"]}
    choice = oai.chat.completions.create(**kwargs).choices[0]
    return {"reasoning": choice.message.model_extra.get("reasoning_content") or "",
            "content": choice.message.content or "",
            "calls": [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or ()],
            "finish": choice.finish_reason}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_stops_inside_thinking_and_call_arguments_change_nothing(oai, stream):
    text = "Need weather.\n\n}\n</think>\n\n" + CALL
    stops = ["}", "\n\n", "Paris", "weather", "<tool_call>", "</tool_call>", "</think>", '"city"']
    out = _thinking(oai, text, stops, stream, tools=CHAT_TOOLS)
    assert out == {"reasoning": "Need weather.\n\n}", "content": "", "finish": "tool_calls",
                   "calls": [("get_weather", '{"city": "Paris"}')]}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_a_stop_in_a_thinking_models_answer_ends_it(oai, stream):
    text = "Two and two, four.\n</think>\n\nFour, and more."
    out = _thinking(oai, text, [", "], stream)  # in the thinking too: only the answer's ends it
    assert out == {"reasoning": "Two and two, four.", "content": "Four", "calls": [], "finish": "stop"}
    # before a call it ends the answer there: the call after it is never made
    out = _thinking(oai, "Need weather.\n</think>\n\nLook: " + CALL, [":"], stream, tools=CHAT_TOOLS)
    assert out == {"reasoning": "Need weather.", "content": "Look", "calls": [], "finish": "stop"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_anthropic_stop_sequence(server, story, stream):
    client = anthropic_client(server, timeout=300)
    stop = _straddling(story)
    kwargs = dict(model=STORIES, max_tokens=LONG, messages=ASK, tools=ANTH_TOOLS, stop_sequences=[stop, "never seen"],
                  extra_body={"temperature": 0})
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    text = "".join(b.text for b in message.content if b.type == "text")
    assert (text, message.stop_reason, message.stop_sequence) == (story[0][:story[0].index(stop)], "stop_sequence", stop)
    assert message.usage.output_tokens < LONG


def _ollama_chat(server, think: bool, stream: bool, **options) -> tuple[str, str, dict]:
    """The tiny thinking model's greedy reply on ``/api/chat`` with a tool (its output random text, parsed): the
    content, the thinking, and the last line."""
    import urllib.request

    body = {"model": THINKER, "messages": ASK, "tools": CHAT_TOOLS, "stream": stream, "think": think,
            "options": {"temperature": 0, **options}}
    request = urllib.request.Request(server.base_url + "/api/chat", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        lines = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
    return ("".join(line["message"]["content"] for line in lines),
            "".join(line["message"].get("thinking") or "" for line in lines), lines[-1])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_ollama_done_reason(server, stream):
    reference, _, _ = _ollama_chat(server, False, False, num_predict=40)
    stop = reference[10:16]
    content, _, last = _ollama_chat(server, False, stream, num_predict=LONG, stop=[stop])
    assert (content, last["done"], last["done_reason"]) == (reference[:reference.index(stop)], True, "stop")
    assert last["eval_count"] < LONG
    # in the thinking, the same kind of stop string ends nothing: the reply runs to its token limit
    _, thought, _ = _ollama_chat(server, True, False, num_predict=40)
    words = [w for w in thought.split() if len(w) > 3]
    _, thinking, last = _ollama_chat(server, True, stream, num_predict=40, stop=words[:3])
    assert (thinking, last["done_reason"]) == (thought, "length")


# -- the service: token ids stay those of the text told ---------------------------------------------------------
def test_token_ids_leave_out_the_stop_string_and_what_follows(tmp_path, stories_path):
    from jan.services import open_services
    from jan.store import DataFolder

    DataFolder(tmp_path / "data").models.import_gguf(stories_path, model_id="stories", mode="reference",
                                                     settings={"ctx_len": 2048})
    tools = (ToolSpec("get_weather", parameters=WEATHER),)

    async def ask(stop: tuple[str, ...] | None, max_tokens: int):
        async with open_services(tmp_path / "data") as services:
            request = ChatRequest(model="stories", messages=(ChatMessage.of_text("user", ASK[0]["content"]),),
                                  tools=tools, token_ids=True,
                                  sampling=SamplingOptions(temperature=0, max_tokens=max_tokens, stop=stop))
            return await services.chat.complete(request)

    whole = asyncio.run(ask(None, 80)).choices[0]
    stop_strings = [s for s in (" little girl", 'said, "Yes', " named ") if s in whole.message.text]
    assert stop_strings, whole.message.text
    for stop_string in stop_strings:
        cut = asyncio.run(ask((stop_string,), LONG)).choices[0]
        before = whole.message.text[:whole.message.text.index(stop_string)]
        assert (cut.message.text, cut.finish_reason) == (before, "stop")
        # the ids told are the reply's tokens up to the stop string: a beginning of the whole reply's (the one the cut
        # falls inside spelled again with its kept text), never beyond it
        probe = Model(str(stories_path), vocab_only=True)
        assert probe.detokenize(list(cut.token_ids)) == before
        shared = 0
        while shared < len(cut.token_ids) and cut.token_ids[shared] == whole.token_ids[shared]:
            shared += 1
        assert shared >= len(cut.token_ids) - 2, (cut.token_ids, whole.token_ids)


def test_an_empty_stop_string_is_a_400_in_every_dialect_parsed_or_not(server):
    """An empty stop string would end every answer before it began. The engine refuses one it is given; a parsed
    reply's stop strings never reach it, so each dialect refuses one itself, naming its own field."""
    tools = {"tools": CHAT_TOOLS}
    for extra in ({}, tools):  # plain (the engine's matching) and parsed (the answer's)
        status, err = post(server, "/v1/chat/completions", {"model": STORIES, "messages": ASK, "stop": ["a", ""],
                                                            "max_tokens": 4, **extra})
        assert status == 400 and err["error"]["param"] == "stop", err
        status, err = post(server, "/v1/messages", {"model": STORIES, "max_tokens": 4, "stop_sequences": [""],
                                                    "messages": ASK, **({"tools": ANTH_TOOLS} if extra else {})})
        assert status == 400 and "stop_sequences.0" in err["error"]["message"], err
        status, err = post(server, "/api/chat", {"model": STORIES, "messages": ASK, "stream": False, **extra,
                                                 "options": {"stop": ["x", ""], "num_predict": 4}})
        assert status == 400 and "options.stop[1]" in err["error"], err
    # and the typed path's own sampling options (the Python services API, stored parameters)
    with pytest.raises(ValueError, match="stop strings must not be empty"):
        SamplingOptions(stop=("x", ""))


def test_a_stop_after_bytes_that_are_no_utf8_counts_their_tokens_as_made(stories):
    """A lone byte token (stories260K's <0xB5>) shows as U+FFFD, three bytes for the token's one: the tokens through
    a stop string the service matched were counted from the text's UTF-8, three for each such token (a reasoning
    model's reply, whose stop strings the service matches, can hold them; a call's grammar never lets them through)."""
    from jan.services.chat import _tokens_through

    after = stories.tokenize(" a", add_special=False)[-1:]
    ids = [184, 184, *after, *after]
    output = "\ufffd\ufffd a a"
    assert _tokens_through(stories, False, ids, output, 2) == 2  # through "\ufffd\ufffd" (6 bytes of text)
    assert _tokens_through(stories, False, ids, output, 4) == 3
