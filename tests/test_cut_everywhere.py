"""Every tool-call format jan parses, its outputs cut off at every character (and every token boundary of the
family's own vocabulary), parsed whole and streamed in pieces of every size: one outcome, the cut-call policy's,
with no cut point behaving differently from its neighbours.

The policy (``OutputParser.finish(truncated=True)``, finish_reason ``length``): what was streamed stays, held-back
text (a possible marker, trailing whitespace) stays unsaid, unfinished markup never shows as content, and a call
whose name is written whole (the character that ends it: its closing quote, ``>``, ``[``, ``(``, ``:``, a newline
or space, or the marker after it) is a call, with its arguments as far as they can be shown. So, cut after cut, the
content, the reasoning and each call's arguments only grow, calls are only added, each exactly where its name
becomes whole. An output that ends normally there (its end of turn) gives the same parse whole and streamed, never
a call with no arguments text at all, and JSON arguments as written (as ``json_arguments`` says), in every family.

The families come from the code: every family jan detects for a template of ../shared/templates must have a case
here that makes calls, and every call marker of the generic parser (``templates/tool_calls.py``) one too."""

from __future__ import annotations

import json
from functools import cache

import pytest
from chat_format_cases import CASES, Output, answer_begun, parsed_in_pieces, template_format
from jan.templates.formats.text import closed_json
from jan.templates.tool_calls import _MARKERS

NAME = "get_weather"
WS = " \t\r\n"
CHUNKS = (1, 2, 3, 5, 8)


def _call(city: str, days: int) -> tuple[str, dict]:
    return (NAME, {"city": city, "days": days})


# Shapes of the generic parser that the family cases do not write (each in the family that writes it)
EXTRA = [
    ("meta-llama-Llama-3.1-8B-Instruct", Output('[get_weather(city="Austin", days=1)]', None, None, (_call("Austin", 1),))),
    ("meta-llama-Llama-3.3-70B-Instruct",
     Output('<|python_tag|>get_weather.call(city="Dallas", days=2)', None, None, (_call("Dallas", 2),))),
    ("meta-llama-Llama-3.3-70B-Instruct",
     Output('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Waco", "days": 1}}; '
            '{"name": "get_weather", "parameters": {"city": "Reno", "days": 2}}', None, None,
            (_call("Waco", 1), _call("Reno", 2)))),
    ("Qwen-Qwen2.5-7B-Instruct",
     Output('```json\n{"name": "get_weather", "arguments": {"city": "Pisa", "days": 3}}\n```', None, None,
            (_call("Pisa", 3),))),
    ("Qwen-Qwen2.5-7B-Instruct",
     Output('<tool_call>\n{"arguments": {"city": "Bari", "days": 1}, "name": "get_weather"}\n</tool_call>', None, None,
            (_call("Bari", 1),))),
    ("Qwen-Qwen2.5-7B-Instruct",
     Output('<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Ulm\\", \\"days\\": 2}"}\n</tool_call>',
            None, None, (_call("Ulm", 2),))),
    ("Qwen-Qwen2.5-7B-Instruct",
     Output('Looking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Graz", "days": 1}}\n</tool_call>\nDone.',
            None, "Looking.\nDone.", (_call("Graz", 1),))),
    ("unsloth-mistral-Devstral-Small-2507",
     Output('[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Nancy", "days": 2}', None, None,
            (_call("Nancy", 2),))),
    ("meetkai-functionary-medium-v3.1",
     Output('Sure. <function=get_weather>{"city": "Baku", "days": 1}</function>', None, "Sure.", (_call("Baku", 1),))),
]


def _outputs():
    """(id, template, output, thinking) of every output that makes calls."""
    for case in CASES:
        for out in filter(None, (case.thinking, case.plain)):
            if out.calls:
                yield f"{case.template}-{'thinking' if out is case.thinking else 'plain'}", case.template, out, out is case.thinking
    for k, (template, out) in enumerate(EXTRA):
        yield f"{template}-extra{k}", template, out, False


OUTPUTS = list(_outputs())
VOCAB = {case.template: case.vocab for case in CASES}


def test_every_family_and_marker_has_a_case():
    """From the code, not from a list: the families jan detects for the templates at hand, and the generic parser's
    markers (and its bare starts: a JSON object, a list of Python-style calls, a code fence)."""
    from chat_format_cases import TEMPLATES
    from jan.templates.formats import detect_format

    if not TEMPLATES.is_dir():
        pytest.skip("no templates")
    families = {detect_format(p.read_text()).name for p in TEMPLATES.glob("*.jinja")}
    covered = {template_format(t).name for _, t, _, _ in OUTPUTS}
    # "generic" formats read calls with the same parser as "hermes"
    assert families - {"generic"} <= covered, families - covered
    texts = [out.text for _, _, out, _ in OUTPUTS]
    for marker in _MARKERS:
        assert any(marker in t for t in texts), marker
    for start in ("{", "[", "```"):
        assert any(t.startswith(start) for t in texts), start


@cache
def _vocab_model(vocab: str):
    import jan
    from jan.testing.gguf_models import vocab_path

    path = vocab_path(vocab)
    if not path.is_file():
        return None
    return jan.Model(str(path), vocab_only=True)


def _token_pieces(template: str, text: str) -> list[str] | None:
    """``text`` as the family's vocabulary splits it into tokens (markers as its special tokens where they are);
    None where a piece is not whole characters (the engine hands out text only at character boundaries)."""
    vocab = VOCAB.get(template)
    model = _vocab_model(vocab) if vocab else None
    if model is None:
        return None
    ids = model.tokenize(text, add_special=False, parse_special=True)
    # the engine hands out text at character boundaries: a token that ends inside a character waits for the next
    pieces, held = [], b""
    for i in ids:
        held += model.token_to_bytes(i, special=True)
        try:
            pieces.append(held.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        held = b""
    if pieces and "".join(pieces) == " " + text:
        pieces[0] = pieces[0][1:]  # (SentencePiece's leading space, which the output never has)
    return pieces if not held and "".join(pieces) == text else None


def _chunkings(text: str, tokens: list[str] | None):
    for size in CHUNKS:
        yield [text[i:i + size] for i in range(0, len(text), size)]
    if tokens is not None:
        yield tokens


def _parse(fmt, pieces, opened: bool, truncated: bool, reasoning_format: str = "auto", forced: str | None = None):
    """The result of an output fed in ``pieces`` (checked: the streamed deltas add up to it)."""
    result = parsed_in_pieces(fmt, pieces, opened, truncated=truncated, reasoning_format=reasoning_format,
                              forced=forced)
    return (result.content or "", result.reasoning or "", [(c.name, c.arguments) for c in result.tool_calls])


def _name_whole(text: str) -> list[int]:
    """Where each call's name is written whole in ``text``: after the character that ends it (``.call`` aside), or
    after the marker that does (one that starts with ``<``)."""
    out, at = [], 0
    while (i := text.find(NAME, at)) >= 0:
        end = i + len(NAME)
        if text.startswith(".call", end):
            end += len(".call")
        out.append(text.index(">", end) + 1 if text.startswith("<", end) else end + 1)
        at = end
    return out


def _bare_start(text: str) -> bool:
    """The output opens with a call that has no marker (Llama 3's JSON, a list, a fence): until its name is whole
    it may still have been an answer that happens to be JSON, and a cut there shows it as text."""
    return text.lstrip(WS)[:1] in ("{", "[", "`")


def _opened(fmt, out: Output, thinking: bool) -> bool:
    return thinking and fmt.reasoning is not None and not out.text.startswith(fmt.reasoning.start)


def _same_call_args(args: str, want: dict) -> bool:
    try:
        return json.loads(args) == want
    except ValueError:
        return False


@pytest.mark.parametrize("template,out,thinking", [o[1:] for o in OUTPUTS], ids=[o[0] for o in OUTPUTS])
def test_a_cut_call_is_the_same_at_every_cut_and_in_every_stream(template: str, out: Output, thinking: bool):
    fmt = template_format(template)
    opened = _opened(fmt, out, thinking)
    text = out.text
    named_at = _name_whole(text)
    assert len(named_at) == len(out.calls)
    full = _parse(fmt, [text], opened, False)
    assert [name for name, _ in full[2]] == [name for name, _ in out.calls]
    assert all(_same_call_args(a, want) for (_, a), (_, want) in zip(full[2], out.calls)), full
    assert (full[0] or None) == out.content
    tokens = _token_pieces(template, text)
    prev = None
    for cut in range(len(text) + 1):
        piece = text[:cut]
        cut_tokens = None
        if tokens is not None:
            joined, cut_tokens = "", []
            for t in tokens:
                if len(joined) + len(t) > cut:
                    break
                joined += t
                cut_tokens.append(t)
            cut_tokens = cut_tokens + [piece[len(joined):]] if joined != piece else cut_tokens
        got = _parse(fmt, [piece], opened, True)
        for pieces in _chunkings(piece, cut_tokens):
            assert _parse(fmt, pieces, opened, True) == got, (piece, pieces)
        content, reasoning, calls = got
        where = (template, piece, got)
        # each call exactly from where its name is whole
        assert len(calls) == sum(1 for k in named_at if k <= cut), where
        assert all(name == NAME for name, _ in calls), where
        for (_, args), (_, full_args) in zip(calls, full[2]):
            # the arguments as far as they can be shown: what the whole call's begin with, always closable JSON
            assert full_args.startswith(args) or _same_call_args(args + _closer(args), json.loads(full_args)), where
            assert isinstance(json.loads(closed_json(args)), dict), where
        # the markup of a call never shows as text (a bare start aside, until its name is whole)
        if not (_bare_start(text) and not calls):
            assert NAME not in content, where
        if prev is not None:
            p_content, p_reasoning, p_calls = prev
            if not (_bare_start(text) and not p_calls):
                assert content.startswith(p_content), (where, prev)
            assert reasoning.startswith(p_reasoning), (where, prev)
            for (p_name, p_args), (name, args) in zip(p_calls, calls):
                assert p_name == name and args.startswith(p_args), (where, prev)
        prev = got
        if thinking and fmt.thinks:
            # thinking shown raw (or raw and split off too) changes where the thinking goes, never the calls
            for reasoning_format in ("none", "deepseek-legacy"):
                raw = _parse(fmt, [piece], opened, True, reasoning_format)
                assert raw[2] == calls, (where, reasoning_format, raw)
                for pieces in _chunkings(piece, None):
                    assert _parse(fmt, pieces, opened, True, reasoning_format) == raw, (piece, pieces)
        if not out.content:
            # the call a grammar forces (the output is its markup): the call from the answer's first character on,
            # the same call (its arguments as far as they got) once its name is whole
            forced = _parse(fmt, [piece], opened, True, forced=NAME)
            assert _parse(fmt, list(piece), opened, True, forced=NAME) == forced, where
            assert not forced[0], (where, forced)
            if calls:
                assert forced[2] == calls, (where, forced)
            else:
                assert forced[2] == ([(NAME, "")] if answer_begun(fmt, piece, opened) else []), (where, forced)
    # cut after the last character: the calls the whole output makes
    assert [n for n, _ in prev[2]] == [n for n, _ in out.calls], prev
    assert all(_same_call_args(a, want) for (_, a), (_, want) in zip(prev[2], out.calls)), prev


def _closer(args: str) -> str:
    from jan.templates.formats.text import scan_json

    return scan_json(args)[3]


@pytest.mark.parametrize("template,out,thinking", [o[1:] for o in OUTPUTS], ids=[o[0] for o in OUTPUTS])
def test_an_output_that_ends_inside_a_call_parses_the_same_whole_and_streamed(template: str, out: Output, thinking: bool):
    """A normal end (the model's own end of turn) anywhere: the same parse whole and in pieces of every size, no
    call with no arguments text, none taken back by the character after, and no call's markup both a call and text."""
    fmt = template_format(template)
    opened = _opened(fmt, out, thinking)
    text = out.text
    tokens = _token_pieces(template, text)
    full = _parse(fmt, [text], opened, False)[2]
    prev_calls = 0
    for cut in range(len(text) + 1):
        piece = text[:cut]
        got = _parse(fmt, [piece], opened, False)
        for pieces in _chunkings(piece, None):
            assert _parse(fmt, pieces, opened, False) == got, (piece, pieces)
        content, _, calls = got
        where = (template, piece, got)
        assert all(args.strip(WS) for _, args in calls), where
        # JSON arguments the output ended in are shown as written (as a cut shows them); arguments a parser builds
        # (XML parameters) are whole JSON
        for (_, args), (_, full_args) in zip(calls, full):
            if full_args in text:  # JSON the model wrote
                assert full_args.startswith(args) or args == "{}", where
            else:
                assert isinstance(json.loads(args), dict), where
        assert len(calls) >= prev_calls, where
        # no call's markup both a call and text (the unfinished rest of a list that made calls, or a Harmony header,
        # is markup: dropped)
        assert content.count(NAME) + len(calls) <= piece.count(NAME), where
        prev_calls = len(calls)
    if tokens is not None:
        assert _parse(fmt, tokens, opened, False) == _parse(fmt, [text], opened, False)


@pytest.mark.parametrize("template,text", [
    ("mistralai-Mistral-Nemo-Instruct-2407", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Metz"}}, {"name": "get_w'),
    ("ibm-granite-granite-3.3-2B-Instruct", '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Metz"}}, {"na'),
    ("meta-llama-Llama-3.3-70B-Instruct", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Metz"}}; {"name": "get_w'),
    ("meta-llama-Llama-3.1-8B-Instruct", '[{"name": "get_weather", "parameters": {"city": "Metz"}}, {"name": "get_w'),
    ("fireworks-ai-llama-3-firefunction-v2", ' functools[{"name": "get_weather", "arguments": {"city": "Metz"}}, {"name": "get_w'),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use",
     '<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Metz"}}, {"tool_name": "get_w'),
    ("Apertus-8B-Instruct", '<|tools_prefix|>[{"get_weather": {"city": "Metz"}}, {"get_w'),
])
def test_a_list_of_calls_that_ends_inside_its_next_call_is_its_calls(template: str, text: str):
    """A list that made calls and ends (the model's end of turn) inside its next object: the calls, and the
    unfinished rest is the list's markup, in every family that writes lists (never a fragment such as
    ``, {"name": "get_w`` as the reply's text, which the generic parser gave)."""
    fmt = template_format(template)
    for pieces in ([text], list(text)):
        content, _, calls = _parse(fmt, pieces, False, False)
        assert (content, calls) == ("", [(NAME, '{"city": "Metz"}')]), (pieces, content, calls)


@pytest.mark.parametrize("template,out,thinking", [o[1:] for o in OUTPUTS], ids=[o[0] for o in OUTPUTS])
def test_an_output_that_ends_in_the_markup_after_its_calls_adds_no_text(template: str, out: Output, thinking: bool):
    """Once every call is whole, an output the model ends anywhere in the markup that follows (a closing tag, a
    section's end, a next call's marker begun) has those calls and the text the whole output has, as far as it got:
    never a fragment of markup (``</tool_c``) as the reply's text, in every family."""
    fmt = template_format(template)
    opened = _opened(fmt, out, thinking)
    text = out.text
    full = _parse(fmt, [text], opened, False)
    # (Apriel's answer wrapper is the answer's framing, not a call's markup: its closing marker begun is text)
    wrapper = fmt.reasoning.strip[-1] if fmt.reasoning is not None and fmt.reasoning.strip else None
    for cut in range(len(text) + 1):
        piece = text[:cut]
        cut_calls = _parse(fmt, [piece], opened, True)[2]
        if [n for n, _ in cut_calls] != [n for n, _ in out.calls] or \
                not all(_same_call_args(a, want) for (_, a), (_, want) in zip(cut_calls, out.calls)):
            continue  # not every call whole yet
        got = _parse(fmt, [piece], opened, False)
        assert got[2] == full[2], (template, piece, got)
        extra = got[0].removeprefix(full[0].rstrip(WS))
        if not full[0].startswith(got[0]) and not (wrapper and wrapper.startswith(extra.strip(WS))):
            raise AssertionError((template, piece, got[0], full[0]))
