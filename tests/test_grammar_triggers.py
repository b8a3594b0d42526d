"""Lazy grammars (``grammar_triggers``): jan watches the output for its triggers itself (cpp/grammar_trigger.h)
instead of llama.cpp's lazy grammar, which searched all the output with every pattern at every token (quadratic in
the output's length). The trigger must fire at the same token and the grammar read the same text from the same
byte as llama.cpp's: its sampler stays in the engine as the reference (``SamplingParams.lazy_grammar_reference``)."""

from __future__ import annotations

import random

import pytest

from jan import _engine
from jan.engine import model as engine_model

#: Patterns of every shape: jan's tool-call triggers (a format's marker; after the end of thinking), a user's
#: unanchored one, whole-output ones (^...$), words, alternatives, groups, assertions, and shapes searched whole.
PATTERNS = [
    r"(<tool_call>)",
    r"</think>[\s\S]*?(<tool_call>)",
    r"</think>[\s\S]*?(<tool_call>|<function=)",
    r"[\s\S]*?(<tool_call>)",
    r"^[\s\S]*?(<tool_call>)[\s\S]*$",
    r"^\s*(\{)[\s\S]*$",
    r"^ab$",
    r"^(?:<think>[\s\S]*?</think>\s*)?(<tool_call>)",
    r"<\|channel\|>commentary to=",
    r" ?functools\[",
    r"<seed:tool_call>|<function=",
    r"call",
    r"\bcall\b",
    r"(x?)(call)",
    r"ca(l+)",
    r"a{2,3}b",
    r"[a-c]+d",
    r"call$",
    r"(?=call)c",
    r"(c)all\1",
    r"ll.*",
    r"\d+|x",
    r"</think>[\s\S]*?(<tool_call>)|^(<tool_call>)",
    r"ab|c(d)?$",
]

TEXTS = [
    "Sure, <tool_call>{\"name\": \"f\"}</tool_call>",
    "<think>a <tool_call> b</think> then <tool_call> x",
    "<think>hm</think><function=f>",
    "  {\"a\": 1}",
    "ab",
    "abc",
    "<|channel|>analysis<|channel|>commentary to=functions.f",
    "say functools[ or  functools[",
    "recall: a call, calls, call",
    "xcalll caaab aab abcd 12",
    "no trigger here at all\n\n",
    "",
]


def _random_split(text: bytes, rng: random.Random) -> list[bytes]:
    pieces, at = [], 0
    while at < len(text):
        n = rng.choice([0, 1, 1, 2, 3, 5, 8])  # (0: a token with no text, as control tokens may be)
        pieces.append(text[at:at + n])
        at += n
    return pieces or [b""]


def test_the_bounded_search_fires_where_searching_everything_does():
    """Each token searches the new piece and a bounded tail, not the whole output; it must find the first match
    at the same piece, with the same start, as a search of all the text at every piece (llama.cpp's)."""
    rng = random.Random(7)
    for pattern in PATTERNS:
        for text in TEXTS:
            data = text.encode()
            splits = [[data], [bytes([b]) for b in data] or [b""]] + [_random_split(data, rng) for _ in range(6)]
            for pieces in splits:
                ours = _engine.trigger_scan([pattern], pieces)
                reference = _engine.trigger_scan([pattern], pieces, everywhere=True)
                assert ours == reference, (pattern, pieces)
    for pieces in ([b"a", b"<tool_call>", b"call"], [b"cal", b"l <tool_", b"call>"]):  # several patterns: in order
        assert _engine.trigger_scan(PATTERNS, pieces) == _engine.trigger_scan(PATTERNS, pieces, everywhere=True)


@pytest.mark.parametrize("patterns, pieces, fired", [
    # a word split over three tokens fires at the one that completes it; the grammar starts at its group
    (["(<tool_call>)"], [b"Sure <tool", b"_ca", b"ll> {"], (2, 5)),
    # jan's after-thinking shape: a call inside the thinking does not count, the first one after it does
    ([r"</think>[\s\S]*?(<tool_call>)"], [b"<think><tool_call>", b"</think> ok ", b"<tool_call>"], (2, 30)),
    # no capture group: the match's own start; an empty first group: the next one that matched text
    (["a ti"], [b" upon a", b" time"], (1, 6)),
    ([r"(x?)(call)"], [b"a call"], (0, 2)),
    # ^...$: the whole output, at the token where all of it matches, and never once it has grown past
    ([r"^ab$"], [b"a", b"b", b"c"], (1, 0)),
    ([r"^ab$"], [b"abc"], None),
    ([r"^\s*(\{)[\s\S]*$"], [b" ", b" {", b"\"a\""], (1, 2)),
    # the patterns in their order: the first that matches fires, wherever another would have begun
    (["(b)", "(a)"], [b"ab"], (0, 1)),
    (["(<tool_call>)"], [b"never ", b"here"], None),
])
def test_a_trigger_fires_at_its_token_and_start(patterns, pieces, fired):
    assert _engine.trigger_scan(patterns, pieces) == fired
    assert _engine.trigger_scan(patterns, pieces, everywhere=True) == fired


@pytest.mark.parametrize("pattern, tail, longest", [
    (r"(<tool_call>)", r"(<tool_call>)", 11),
    (r"</think>[\s\S]*?(<tool_call>)", r"(<tool_call>)", 11),
    (r"</think>[\s\S]*?(<tool_call>|<function=)", r"(<tool_call>|<function=)", 11),
    (r"[\s\S]*?(<tool_call>)", r"(<tool_call>)", 11),
    (r"^[\s\S]*?(<tool_call>)[\s\S]*$", r"(<tool_call>)", 11),
    (r"^\s*(\{)[\s\S]*$", r"(\{)", 1),
    (r"<seed:tool_call>|<function=", r"(?:<seed:tool_call>)|(?:<function=)", 16),
    (r"</think>[\s\S]*?(<tool_call>)|^(<tool_call>)", r"(?:(<tool_call>))|(?:^(<tool_call>))", 11),
    (r"<\|channel\|>commentary to=", r"<\|channel\|>commentary to=", 25),
    ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁begin｜>", len("<｜tool▁calls▁begin｜>".encode())),
    (r" ?functools\[", r" ?functools\[", 11),
    (r"a{2,3}b", r"a{2,3}b", 4),
    (r"call$", r"call$", 4),
    # searched whole every token, as llama.cpp does: lookahead and back-references reach past the bound, an
    # unbounded end (in any alternative) has none
    (r"(?=call)c", None, None),
    (r"(c)all\1", None, None),
    (r"ll.*", None, None),
    (r"\d+|x", None, None),
])
def test_the_part_of_a_pattern_that_bounds_the_search(pattern, tail, longest):
    """jan's own trigger shapes are searched in a bounded window (their per-token cost does not grow with the
    output); the rest fall back to llama.cpp's search of the whole output."""
    shape = _engine.trigger_shape(pattern)
    assert shape == (None if tail is None else (tail.encode(), longest))


@pytest.fixture
def reference(monkeypatch):
    """Requests made inside ``with reference():`` use llama.cpp's own lazy grammar."""
    import contextlib

    real = engine_model.sampling_params

    @contextlib.contextmanager
    def use():
        def params(**options):
            p = real(**options)
            p.lazy_grammar_reference = True
            return p

        monkeypatch.setattr(engine_model, "sampling_params", params)
        try:
            yield
        finally:
            monkeypatch.setattr(engine_model, "sampling_params", real)

    return use


def _both(model, reference, **options):
    def one():
        try:
            out = model.generate("Once", **options)
            return out.text, out.token_ids, out.finish_reason
        except Exception as e:  # (compared: the same refusal from both)
            return type(e).__name__
    ours = one()
    with reference():
        theirs = one()
    return ours, theirs


# stories260K writes " upon a time, there was a little girl named Lily. She loved to play ..." greedily.
@pytest.mark.parametrize("triggers, grammar", [
    ([r"(time)"], r'root ::= "time" [^.]* "."'),                        # a word
    ([r"upon a (time)"], r'root ::= "time" [^.]* "."'),                 # its group, after text before it
    ([r"a ti"], r'root ::= "a ti" [a-z ,]* "."'),                       # split across tokens, starting inside one
    ([r"(Lily)"], r'root ::= "Lily" [^.]* "."'),                        # one token's text
    ([r"^ upon a (time)[\s\S]*$"], r'root ::= "time" [^.]* "."'),      # the whole output (^...$)
    ([r"[\s\S]*?(little)"], r'root ::= "little" [a-z ]* "."'),          # unanchored, as a user writes it
    ([r"(<tool_call>)"], r'root ::= "<tool_call>"'),                    # never fires
    ([r"</think>[\s\S]*?(<tool_call>)"], r'root ::= "<tool_call>"'),    # never fires
    ([r"(<tool_call>)", r"(girl)", r"(time)"], r'root ::= ("girl" | "time") [a-z ]* "."'),  # the first to match
])
def test_generation_under_triggers_is_llama_cpps(stories, reference, triggers, grammar):
    """Greedy and sampled outputs token for token as under llama.cpp's lazy grammar, triggered or not."""
    options = dict(grammar=grammar, grammar_triggers=triggers, max_tokens=48)
    ours, theirs = _both(stories, reference, temperature=0, **options)
    assert ours == theirs
    plain = stories.generate("Once", temperature=0, max_tokens=48)
    fires = "<tool_call>" not in triggers[0] or len(triggers) > 1
    assert (ours[0] != plain.text) == fires  # (the triggered ones change the output: the grammar is at work)
    for seed in range(2):
        ours, theirs = _both(stories, reference, temperature=1.0, seed=seed, **options)
        assert ours == theirs


def test_a_trigger_the_grammar_refuses_fails_as_llama_cpps_does(stories, reference):
    """The text from the trigger on is not what the grammar allows: the request fails either way, not a crash."""
    ours, theirs = _both(stories, reference, temperature=0, max_tokens=32, grammar=r'root ::= "x"',
                         grammar_triggers=[r"(time)"])
    assert ours == theirs


def test_a_trigger_inside_a_token_the_grammar_refuses_fails_as_llama_cpps_does(stories, reference):
    ours, theirs = _both(stories, reference, temperature=0, max_tokens=32, grammar=r'root ::= "a tx"',
                         grammar_triggers=[r"a ti"])
    assert ours == theirs
