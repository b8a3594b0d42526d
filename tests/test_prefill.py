"""A conversation that ends in an assistant message is continued, not answered (a prefill), on every chat
dialect: Anthropic's documented behaviour, llama-server's "prefill assistant" on /v1/chat/completions and
Ollama's /api/chat. And an assistant message without content is empty text to the chat template: never the
template's internal TypeError in an error body."""

from __future__ import annotations

import json

import pytest
from api_helpers import parse_sse
from conftest import require_model
from dialect_helpers import WEATHER_SCHEMA, anthropic_prompt_tokens, has_reasoning_parser, reasoning_model
from extension_helpers import call
from jan.core import LocalModel
from jan.engine.model import Model
from jan.services.local import chat_plan, chat_prompt
from jan.services.output import output_parser
from jan.services.types import ChatMessage, ChatRequest, ReasoningOptions, ends_in_prefill
from jan.templates import ChatTemplate, gbnf_literal
from jan.templates.chat import TemplateError
from jan.templates.formats import detect_format
from jan.testing.gguf_models import templates_dir
from server_helpers import start_server

HI = {"role": "user", "content": "hi"}
PREFILL = "Once upon a"
GREEDY = {"model": "stories260K", "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("prefill")
    srv = start_server(tmp, [stories_path, reasoning_model(tmp)])
    yield srv
    srv.stop()


def ok(server, path: str, body: dict) -> dict:
    status, out = call(server, "POST", path, body)
    assert status == 200, (path, body, out)
    return out


def completion_of(server, prompt: str, max_tokens: int = 5) -> str:
    """What the model writes after ``prompt`` itself (a raw text completion)."""
    return ok(server, "/v1/completions", {**GREEDY, "prompt": prompt, "max_tokens": max_tokens})["choices"][0]["text"]


# -- a final assistant message is continued ------------------------------------------------------
def test_the_prompt_ends_inside_a_final_assistant_message(server):
    prompt = ok(server, "/apply-template", {"model": "stories260K", "messages": [HI, {"role": "assistant",
                                                                                     "content": PREFILL}]})["prompt"]
    assert prompt == f"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n{PREFILL}"


def test_anthropic_continues_the_prefill(server):
    body = {**GREEDY, "max_tokens": 5, "messages": [HI, {"role": "assistant", "content": PREFILL}]}
    expected = completion_of(server, f"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n{PREFILL}")
    message = ok(server, "/v1/messages", body)
    assert [b["type"] for b in message["content"]] == ["text"]
    assert message["content"][0]["text"] == expected  # the continuation only, the prefill not repeated
    assert anthropic_prompt_tokens(message["usage"]) == ok(server, "/v1/messages/count_tokens",
                                                  {"model": "stories260K", "messages": body["messages"]})["input_tokens"]
    # blocks, as Anthropic clients send them, are the same prefill
    blocks = ok(server, "/v1/messages", {**body, "messages": [HI, {"role": "assistant", "content": [
        {"type": "text", "text": PREFILL}]}]})
    assert blocks["content"] == message["content"]


def test_openai_and_ollama_continue_a_final_assistant_message(server):
    messages = [HI, {"role": "assistant", "content": PREFILL}]
    expected = completion_of(server, f"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n{PREFILL}")
    chat = ok(server, "/v1/chat/completions", {**GREEDY, "max_tokens": 5, "messages": messages})
    assert chat["choices"][0]["message"]["content"] == expected
    # Ollama continues a final assistant message where its template leaves the last turn open; stories260K has no
    # template, and Ollama's default ({{ .Prompt }}) writes no replies: the model answers the user turn as it is
    ollama = ok(server, "/api/chat", {"model": "stories260K", "stream": False, "messages": messages,
                                      "options": {"num_predict": 5, "temperature": 0}})
    assert ollama["message"]["content"] == completion_of(server, "hi")
    qwq = {"model": "qwq-tiny", "stream": False, "messages": messages, "think": False,
           "options": {"num_predict": 5, "temperature": 0}}
    prompt = ok(server, "/apply-template", {"model": "qwq-tiny", "messages": messages})["prompt"]
    assert prompt.endswith(f"<|im_start|>assistant\n{PREFILL}")  # the turn left open, the reply continues it
    assert ok(server, "/api/chat", qwq)["message"]["content"] == ok(server, "/v1/chat/completions", {
        "model": "qwq-tiny", "temperature": 0, "max_tokens": 5, "messages": messages,
        "reasoning_effort": "none"})["choices"][0]["message"]["content"]


def test_an_assistant_turn_before_the_last_user_turn_is_closed(server):
    messages = [HI, {"role": "assistant", "content": PREFILL}, {"role": "user", "content": "more"}]
    prompt = ok(server, "/apply-template", {"model": "stories260K", "messages": messages})["prompt"]
    assert prompt.endswith(f"{PREFILL}<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_a_prefill_on_a_reasoning_template_continues_the_answer(server):
    """QwQ's generation prompt opens ``<think>`` when thinking is on: the output is reasoning until ``</think>``.
    A prefilled answer ends the prompt inside the answer instead, so what follows is answer text."""
    forced = {"model": "qwq-tiny", "temperature": 0, "max_tokens": 8, "reasoning_effort": "high",
              "grammar": "root ::= " + gbnf_literal(" time there was")}
    fresh = ok(server, "/v1/chat/completions", {**forced, "messages": [HI]})["choices"][0]["message"]
    assert fresh.get("reasoning_content") == "time there was" and not fresh.get("content")
    messages = [HI, {"role": "assistant", "content": PREFILL}]
    prompt = ok(server, "/apply-template", {**forced, "messages": messages})["prompt"]
    assert prompt.endswith(f"<|im_start|>assistant\n{PREFILL}")
    message = ok(server, "/v1/chat/completions", {**forced, "messages": messages})["choices"][0]["message"]
    assert message.get("content") == " time there was" and not message.get("reasoning_content")


# -- a prefill that ends inside a thinking block --------------------------------------------------
# What the model writes after an open thought: the rest of it, the end marker, the answer. The reply holds
# only this continuation (the prefill is the client's own text, as Anthropic and OpenAI return it).
THOUGHT_GOES_ON = " more.</think>\n\nFour."
OPEN_THOUGHT = "<think>\nLet me see"
CLOSED_THOUGHT = "<think>x</think>The answer is"
ANSWER_GOES_ON = " four."


@pytest.fixture
def forced_output(monkeypatch):
    """``force(text)``: every generation in this process (the test server runs in it) writes ``text``. A
    grammar does it, put in where the engine is called: /v1/messages and /api/chat take no grammar."""
    original = Model.stream

    def force(text: str) -> None:
        def stream(self, prompt, **kw):
            return original(self, prompt, **{**kw, "grammar": "root ::= " + gbnf_literal(text)})

        monkeypatch.setattr(Model, "stream", stream)

    return force


def _dialect_body(path: str, messages: list, stream: bool) -> dict:
    if path == "/api/chat":
        return {"model": "qwq-tiny", "stream": stream, "messages": messages,
                "options": {"num_predict": 32, "temperature": 0}}
    return {"model": "qwq-tiny", "temperature": 0, "max_tokens": 32, "stream": stream, "messages": messages}


def _thinking_and_text(server, path: str, body: dict) -> tuple[str, str]:
    """``(thinking, text)`` of one reply in the dialect's own fields, folded from its stream or read whole."""
    status, out = call(server, "POST", path, body)
    assert status == 200, out
    thinking, text = [], []
    if path == "/api/chat":
        # NDJSON when streamed (several objects: not JSON as a whole), one object otherwise
        for obj in ([json.loads(line) for line in out.splitlines() if line] if body["stream"] else [out]):
            thinking.append(obj["message"].get("thinking") or "")
            text.append(obj["message"].get("content") or "")
    elif not body["stream"] and path == "/v1/messages":
        for block in out["content"]:
            thinking.append(block.get("thinking") or "")
            text.append(block.get("text") or "")
    elif not body["stream"]:
        message = out["choices"][0]["message"]
        thinking.append(message.get("reasoning_content") or "")
        text.append(message.get("content") or "")
    else:
        for name, data in parse_sse(out):
            if path == "/v1/messages" and name == "content_block_delta":
                thinking.append(data["delta"].get("thinking") or "")
                text.append(data["delta"].get("text") or "")
            elif path == "/v1/chat/completions" and isinstance(data, dict) and data.get("choices"):
                delta = data["choices"][0]["delta"]
                thinking.append(delta.get("reasoning_content") or "")
                text.append(delta.get("content") or "")
    return "".join(thinking), "".join(text)


DIALECTS = [pytest.param(path, stream, id=f"{path}{'-stream' if stream else ''}")
            for path in ("/v1/chat/completions", "/v1/messages", "/api/chat") for stream in (False, True)]


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
@pytest.mark.parametrize("path, stream", DIALECTS)
def test_a_prefill_inside_an_open_thought_continues_the_thought(server, forced_output, path, stream):
    """The prompt ends inside the prefill's ``<think>``: the model goes on thinking, so what it writes up to
    ``</think>`` is the reply's reasoning (thinking), the rest its answer, on every dialect, streamed or not."""
    forced_output(THOUGHT_GOES_ON)
    messages = [HI, {"role": "assistant", "content": OPEN_THOUGHT}]
    prompt = ok(server, "/apply-template", {"model": "qwq-tiny", "messages": messages})["prompt"]
    assert prompt.endswith(f"<|im_start|>assistant\n{OPEN_THOUGHT}")
    # the whitespace the model wrote after the prefill's thought joins the two where the thinking is one text; an
    # Anthropic thinking block of its own starts at its first word (tests/test_thought_prefill.py, the same rule)
    seam = "" if path == "/v1/messages" else " "
    assert _thinking_and_text(server, path, _dialect_body(path, messages, stream)) == (f"{seam}more.", "Four.")


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
@pytest.mark.parametrize("path, stream", DIALECTS)
def test_a_prefill_that_closed_its_thought_continues_the_answer(server, forced_output, path, stream):
    """The prefill closed its block: what follows is answer, even on QwQ, whose generation prompt opens one."""
    forced_output(ANSWER_GOES_ON)
    messages = [HI, {"role": "assistant", "content": CLOSED_THOUGHT}]
    assert _thinking_and_text(server, path, _dialect_body(path, messages, stream)) == ("", ANSWER_GOES_ON)


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
@pytest.mark.parametrize("path, stream", DIALECTS)
@pytest.mark.parametrize("prefill, output", [
    ("<think>\nLet me see.</thi", "nk>\n\nFour."),     # stopped part-way through the end marker
    ("<think>\nLet me see.<", "/think>\n\nFour."),
    ("<think>\nLet me see.</think>", "\n\nFour."),     # right after it: the whitespace is the marker's
    ("<think>\nLet me see.</thi", "s and more.</think>Four."),  # (not a marker after all: thinking text)
])
def test_a_prefill_stopped_in_or_at_the_end_marker_splits_as_the_whole_text(server, forced_output, path, stream,
                                                                           prefill, output):
    """The reply to a prefill that stops inside ``</think>`` is what the same text written whole splits into, less
    the prefill: the marker the output finishes ends the thought (no ``nk>`` as thinking, no answer as thinking)."""
    forced_output(output)
    messages = [HI, {"role": "assistant", "content": prefill}]
    thinking, text = _thinking_and_text(server, path, _dialect_body(path, messages, stream))
    if output.startswith("s and"):
        assert (thinking, text) == ("s and more.", "Four.")
    else:
        assert (thinking, text) == ("", "Four.")


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_the_engine_reads_the_marker_a_prefill_stopped_in_through_the_grammar_and_the_budget(server):
    """A forced call after a prefill stopped inside ``</think>``: the grammar reads the marker's start first (the
    engine takes it: no 400), the thinking budget ends the thought, and the call follows; the prefill's part of the
    marker is never told as thinking."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    body = {"model": "qwq-tiny", "temperature": 0, "max_tokens": 60, "tools": tools, "tool_choice": "required",
            "reasoning_budget": 5, "messages": [HI, {"role": "assistant", "content": "<think>\nHmm.</thi"}]}
    message = ok(server, "/v1/chat/completions", body)["choices"][0]["message"]
    assert [c["function"]["name"] for c in message["tool_calls"]][:1] == ["get_weather"], message
    assert "</thi" not in (message.get("reasoning_content") or "") and not message.get("content"), message


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_prefill_after_a_thinking_block_continues_the_answer(server, forced_output, stream):
    forced_output(ANSWER_GOES_ON)
    messages = [HI, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": ""},
                                                      {"type": "text", "text": "The answer is"}]}]
    body = _dialect_body("/v1/messages", messages, stream)
    assert _thinking_and_text(server, "/v1/messages", body) == ("", ANSWER_GOES_ON)


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_raw_reasoning_after_an_open_prefill_is_the_continuation_verbatim(server, forced_output):
    """reasoning_format none keeps thinking in the content as written; after a fresh generation prompt that
    means the swallowed ``<think>`` first, but a prefill's ``<think>`` is in the client's text already."""
    forced_output(THOUGHT_GOES_ON)
    body = {**_dialect_body("/v1/chat/completions", [HI, {"role": "assistant", "content": OPEN_THOUGHT}], False),
            "reasoning_format": "none"}
    assert _thinking_and_text(server, "/v1/chat/completions", body) == ("", THOUGHT_GOES_ON)


def _reply(local: LocalModel, messages: list[ChatMessage], output: str) -> tuple[str, str]:
    """``(reasoning, content)`` the chat path (plan, prompt, output parser) makes of ``output`` written after
    ``messages``; a final assistant message is continued, as every dialect asks."""
    request = ChatRequest(model=None, messages=tuple(messages), continue_final_message=ends_in_prefill(messages),
                          reasoning=ReasoningOptions(enabled=True))
    plan = chat_plan(local, request)
    prompt, _ = chat_prompt(local, request, plan)
    parser = output_parser(request, plan, prompt)
    deltas = parser.feed(output) + parser.finish("stop")
    return "".join(d.reasoning or "" for d in deltas), "".join(d.content or "" for d in deltas)


@pytest.mark.skipif(not has_reasoning_parser(), reason="this build has no reasoning parser")
def test_every_shared_thinking_template_starts_a_continued_reply_where_its_prefill_left_off(stories):
    """The kind, on every real template that marks thinking (whatever its markers, whether its generation
    prompt opens a block, whether it rewrites the prefill): an open thought in the prefill is continued as
    reasoning, a closed one as answer; and a marker elsewhere in the conversation (a user quoting it, an
    earlier reply cut off mid-thought) leaves the reply as a fresh prompt would."""
    folder = templates_dir()
    if not folder.is_dir():
        require_model("..", "templates")
    user = ChatMessage.of_text("user", "hi")
    checked = 0
    for path in sorted(folder.glob("*.jinja")):
        source = path.read_text(encoding="utf-8")
        fmt = detect_format(source)
        if fmt.reasoning is None or fmt.whole_output is not None:
            continue
        start, end = fmt.reasoning.start, fmt.reasoning.end
        local = LocalModel(stories, ChatTemplate(source, "<s>", "</s>"))
        thought = THOUGHT_GOES_ON.replace("</think>", end)
        try:
            opened = _reply(local, [user, ChatMessage.of_text("assistant", f"{start}\nLet me see")], thought)
            closed = _reply(local, [user, ChatMessage.of_text("assistant", f"{start}x{end}The answer is")],
                            ANSWER_GOES_ON)
        except TemplateError:
            continue  # the template's own refusal of a final assistant message
        assert opened == (" more.", "Four."), path.name  # (the seam to "Let me see" kept)
        assert closed == ("", ANSWER_GOES_ON), path.name
        fresh = _reply(local, [user], thought)
        assert _reply(local, [ChatMessage.of_text("user", f"What does {start} mean?")], thought) == fresh, path.name
        cut_off = [user, ChatMessage.of_text("assistant", f"{start}\nhmm"), ChatMessage.of_text("user", "go on")]
        assert _reply(local, cut_off, thought) == fresh, path.name
        if fresh[0]:
            # the generation prompt opens the block: text continued after it (where a template rewrote the
            # prefill and jan wrote it after a fresh generation prompt) stays inside until it closes it
            request = ChatRequest(model=None, messages=(user,), reasoning=ReasoningOptions(enabled=True))
            prompt, _ = chat_prompt(local, request, chat_plan(local, request))
            assert fmt.starts_in_reasoning(prompt + "Let me see", "Let me see"), path.name
            assert not fmt.starts_in_reasoning(prompt + f"x{end}The answer is", f"x{end}The answer is"), path.name
        checked += 1
    assert checked >= 10  # the shared set has a few dozen thinking templates


# -- an assistant message without content --------------------------------------------------------
@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": []}]}),
    ("/v1/messages", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": []}, HI]}),
    ("/v1/chat/completions", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": None}]}),
    ("/v1/chat/completions", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant"}]}),
    ("/v1/chat/completions", {**GREEDY, "max_tokens": 3, "messages": [HI, {"role": "assistant", "content": None},
                                                                      HI]}),
    ("/v1/responses", {**GREEDY, "max_output_tokens": 3, "store": False,
                       "input": [HI, {"role": "assistant", "content": []}, HI]}),
    ("/v1/responses", {**GREEDY, "max_output_tokens": 3, "store": False,
                       "input": [HI, {"type": "message", "role": "assistant", "content": []}]}),
    ("/api/chat", {"model": "stories260K", "stream": False, "options": {"num_predict": 3, "temperature": 0},
                   "messages": [HI, {"role": "assistant", "content": None}]}),
    ("/api/chat", {"model": "stories260K", "stream": False, "options": {"num_predict": 3, "temperature": 0},
                   "messages": [HI, {"role": "assistant"}, HI]}),
])
def test_an_assistant_message_without_content_is_empty_text(server, path, body):
    status, out = call(server, "POST", path, body)
    assert status == 200, out
    assert "TypeError" not in json.dumps(out)


def test_an_empty_final_assistant_message_prefills_nothing(server):
    plain = ok(server, "/apply-template", {"model": "stories260K", "messages": [HI]})["prompt"]
    for empty in ({"role": "assistant", "content": None}, {"role": "assistant", "content": ""},
                  {"role": "assistant"}):
        assert ok(server, "/apply-template", {"model": "stories260K", "messages": [HI, empty]})["prompt"] == plain
    # mid-conversation it is an empty turn
    prompt = ok(server, "/apply-template", {"model": "stories260K",
                                            "messages": [HI, {"role": "assistant", "content": None}, HI]})["prompt"]
    assert "<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\nhi" in prompt
    chat = ok(server, "/v1/chat/completions", {**GREEDY, "max_tokens": 5, "messages": [HI]})
    anthropic = ok(server, "/v1/messages", {**GREEDY, "max_tokens": 5,
                                            "messages": [HI, {"role": "assistant", "content": []}]})
    assert anthropic["content"][0]["text"] == chat["choices"][0]["message"]["content"]


def test_every_shared_template_takes_an_assistant_turn_without_content():
    """The kind, on real templates: an assistant message without content (and without tool calls) is empty
    text, which templates that concatenate ``content`` take; only a template's own refusal may fail it."""
    folder = templates_dir()
    if not folder.is_dir():
        require_model("..", "templates")
    user = {"role": "user", "content": "hi"}
    for path in sorted(folder.glob("*.jinja")):
        template = ChatTemplate(path.read_text(encoding="utf-8"), "<s>", "</s>")
        for messages in ([user, {"role": "assistant", "content": None}, user], [user, {"role": "assistant"}]):
            try:
                prompt = template.render(messages)
            except TemplateError as exc:
                assert "TypeError" not in str(exc), (path.name, exc)
                continue
            assert "None" not in prompt, path.name
