"""llama-server's output rules for code completion, ``n_indent`` and ``t_max_predict_ms``, on every route that
takes them as llama-server 0.3.36 does (it reads them in its one completion schema, for /completion, /infill,
/v1/completions and /v1/chat/completions alike): jan applied them on /completion and /infill only and refused them
(400) on the OpenAI routes. Now the completion and chat services apply them (jan.services.line_rules), so each
route ends a choice where llama-server does: ``finish_reason: "length"`` on the OpenAI routes, ``stop_type:
"limit"`` on its own.

The output is steered with a grammar that forces its lines (stories260K), so which line ends it is known."""

from __future__ import annotations

import pytest

from jan.engine.results import Chunk, Usage
from jan.services.errors import RequestError
from jan.services.line_rules import LineCut
from jan.services.types import CompletionRequest, LineRules
from server_helpers import ok, post, start_server

MODEL = "stories260K"
# three lines, the third less indented than two spaces, then free letters: n_indent 2 ends it before "c"
LINES = 'root ::= "a\\n" "  b\\n" "c\\n" [a-z]{3,8}'
# a long first line before any newline (many tokens: the 1 ms of t_max_predict_ms has passed by its newline on any
# machine), then short lines
LONG_FIRST = 'root ::= [a-z]{100} "\\n" ([a-z]{4} "\\n"){6}'


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("linerules"), [stories_path], n_parallel=2)
    yield srv
    srv.stop()


def _chat(extra):
    return {"model": MODEL, "temperature": 0, "max_tokens": 400, "messages": [{"role": "user", "content": "hi"}]} \
        | extra


def _text(extra):
    return {"model": MODEL, "temperature": 0, "max_tokens": 400, "prompt": "Once upon a time"} | extra


def _content(path, answer):
    if path == "/completion":
        return answer["content"]
    choice = answer["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


def _end(path, answer):
    return answer["stop_type"] if path == "/completion" else answer["choices"][0]["finish_reason"]


ROUTES = [("/v1/chat/completions", _chat), ("/v1/completions", _text), ("/completion", _text)]


@pytest.mark.parametrize("path,body", ROUTES)
def test_n_indent_ends_at_a_line_less_indented(server, path, body):
    whole = ok(server, path, body({"grammar": LINES}))
    assert _content(path, whole).startswith("a\n  b\nc\n"), whole
    cut = ok(server, path, body({"grammar": LINES, "n_indent": 2}))
    # (the first line is never held to it; the third is cut before its first character)
    assert _content(path, cut) == "a\n  b\n", cut
    assert _end(path, cut) == ("limit" if path == "/completion" else "length"), cut
    # 0 is off (what llama-server's clients send by default)
    assert _content(path, ok(server, path, body({"grammar": LINES, "n_indent": 0}))) == _content(path, whole)


@pytest.mark.parametrize("path,body", ROUTES)
def test_n_indent_streamed_shows_what_the_whole_answer_shows(server, path, body):
    import json

    import httpx

    response = httpx.post(server.base_url + path, json=body({"grammar": LINES, "n_indent": 2, "stream": True}),
                          timeout=120)
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.split("\n") if line.startswith("data: {")]
    if path == "/completion":
        text = "".join(e["content"] for e in events)
        assert events[-1]["stop_type"] == "limit"
    else:
        choices = [c for e in events for c in e["choices"]]
        text = "".join((c.get("delta") or {}).get("content") or c.get("text") or "" for c in choices)
        assert [c["finish_reason"] for c in choices if c.get("finish_reason")] == ["length"], choices
    assert text == "a\n  b\n", events


@pytest.mark.parametrize("path,body", ROUTES)
def test_t_max_predict_ms_ends_at_the_first_newline_past_the_time(server, path, body):
    whole = ok(server, path, body({"grammar": LONG_FIRST}))
    assert _content(path, whole).count("\n") == 7, whole
    cut = ok(server, path, body({"grammar": LONG_FIRST, "t_max_predict_ms": 1}))
    text = _content(path, cut)
    # the piece with the first newline is shown, and nothing after it is generated
    assert text.count("\n") == 1 and _content(path, whole).startswith(text), cut
    assert _end(path, cut) == ("limit" if path == "/completion" else "length"), cut
    timings = cut["timings"]  # (llama-server tells them on every route)
    assert 0 < timings["predicted_n"] < whole["timings"]["predicted_n"], (cut, whole)


@pytest.mark.parametrize("path,body,name,value", [
    ("/v1/chat/completions", _chat, "n_indent", -1), ("/v1/completions", _text, "n_indent", "4"),
    ("/v1/chat/completions", _chat, "t_max_predict_ms", -2), ("/completion", _text, "n_indent", -3)])
def test_bad_values_are_400s_naming_the_field(server, path, body, name, value):
    response = post(server, path, body({name: value}))
    assert response.status_code == 400, response.text
    assert name in response.text, response.text


def test_the_typed_rules_refuse_what_is_out_of_range():
    with pytest.raises(RequestError, match="n_indent"):
        LineRules(n_indent=-1)
    with pytest.raises(RequestError, match="t_max_predict_ms"):
        LineRules(t_max_predict_ms=-5)
    assert LineRules(n_indent=2) and LineRules(t_max_predict_ms=5) and not LineRules(t_max_predict_ms=0)
    with pytest.raises(RequestError, match="line_rules"):
        CompletionRequest(model=None, prompts=("x",), line_rules={"n_indent": 2})


# -- the rule itself, piece by piece ----------------------------------------------------------------------------
def test_a_line_less_indented_is_cut_before_its_first_character():
    cut = LineCut(LineRules(n_indent=4))
    shown = [cut.feed(t) for t in ("x = 1", "\n    y", " = 2\n  ", "  z\n", "w = 3\n", "more")]
    assert shown == ["x = 1", "\n    y", " = 2\n  ", "  z\n", "", ""] and cut.cut
    # its indentation is shown, the line's first other character (an empty line's newline too) is not
    cut = LineCut(LineRules(n_indent=2))
    assert cut.feed("a\n ") == "a\n " and cut.feed("b") == "" and cut.cut
    cut = LineCut(LineRules(n_indent=1))
    assert cut.feed("a\n b\n\nc") == "a\n b\n" and cut.cut
    # tabs count as one each; the first line is never held to it
    cut = LineCut(LineRules(n_indent=2))
    assert cut.feed("x\n\t\ty\n") == "x\n\t\ty\n" and not cut.cut


def test_past_the_time_the_next_newline_ends_it():
    now = [0.0]
    cut = LineCut(LineRules(t_max_predict_ms=100), clock=lambda: now[0])
    assert cut.feed("a") == "a"
    now[0] = 0.05
    assert cut.feed("b\n") == "b\n" and not cut.cut  # (a newline within the time: on)
    now[0] = 0.2
    assert cut.feed("c") == "c" and not cut.cut  # (past the time, no newline: on)
    assert cut.feed("d\ne") == "d\ne" and cut.cut  # (the piece with the newline shown whole)
    assert cut.feed("more") == ""
    # the engine's own end in that piece is no cut of the rule's
    last = LineCut(LineRules(t_max_predict_ms=100), clock=lambda: now[0])
    last.feed("a")
    now[0] = 1.0
    assert last.feed("b\n", last=True) == "b\n" and not last.cut


def test_the_time_is_the_engines_and_merged_tokens_end_at_their_first_newline_past_it():
    """A busy loop reads the engine's tokens late and several at once: the time is the engine's own (the chunk's
    progress, from the first token), not when the reader got the first text, and a piece of several tokens ends at
    its first newline past the time (the flake it was: the first line and the next arrived in one piece, read 0 ms
    after the first text, and the cut came a line late)."""
    never = lambda: 0.0  # (a reader's clock that has not moved: the engine's time decides)
    merged = LineCut(LineRules(t_max_predict_ms=1), clock=never)
    progress = Usage(prompt_tokens=3, completion_tokens=40, generation_ms=12.5)
    assert merged.chunk(Chunk("abc\nde\nf", list(range(40)), progress=progress), lambda: None).text == "abc\n"
    assert merged.cut
    # within the time by the engine's clock: on, however late the reader
    late = LineCut(LineRules(t_max_predict_ms=100), clock=iter([0.0, 9.0]).__next__)
    early = Usage(prompt_tokens=3, completion_tokens=2, generation_ms=0.5)
    assert late.chunk(Chunk("a\nb", [1, 2], progress=early), lambda: None).text == "a\nb" and not late.cut
    # one token with the newline in it is shown whole, as llama-server shows it
    one = LineCut(LineRules(t_max_predict_ms=1), clock=never)
    assert one.chunk(Chunk(".\nThe", [7], progress=progress), lambda: None).text == ".\nThe" and one.cut


def test_a_cut_chunk_cancels_the_request_and_its_end_comes_as_length():
    cancelled = []
    cut = LineCut(LineRules(n_indent=2))
    assert cut.chunk(Chunk("a\n", [1]), lambda: cancelled.append(1)).text == "a\n" and not cancelled
    shown = cut.chunk(Chunk("  b\nc", [2, 3]), lambda: cancelled.append(2))
    assert shown.text == "  b\n" and shown.finish_reason is None and cancelled == [2]
    assert cut.chunk(Chunk("dd", [4]), lambda: cancelled.append(3)) is None  # (made before the cancel reached it)
    usage = Usage(prompt_tokens=3, completion_tokens=4)
    end = cut.chunk(Chunk("x", [5], finish_reason="cancelled", usage=usage), lambda: cancelled.append(4))
    assert (end.text, end.token_ids, end.finish_reason, end.usage) == ("", [], "length", usage)
    assert cancelled == [2]
    # cut in the engine's last chunk: that chunk ends as length, its text cut
    cut = LineCut(LineRules(n_indent=2))
    end = cut.chunk(Chunk("a\nb", [1, 2], finish_reason="stop", usage=usage, stop="zz"), lambda: None)
    assert (end.text, end.finish_reason, end.stop) == ("a\n", "length", None)
