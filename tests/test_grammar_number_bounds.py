"""``"type": "number"`` with ``minimum``/``maximum`` (and the exclusive forms) is enforced by the grammar, checked with
llama.cpp's own grammar engine: a structured output or a forced tool call never carries a number out of its bounds
(pydantic's ``Field(ge=0, le=1)`` on a float used to come back as ``80.5`` and fail the client's validation), and
every plain decimal inside the bounds stays writable."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from jan.templates.grammar import GrammarError, json_schema_to_grammar

# texts that probe each bound's digits: around 0, the bounds' neighbourhoods, long fractions, signs, exponents
PROBES = [
    "0", "-0", "0.0", "1", "-1", "0.5", "0.49", "0.51", "0.500000001", "0.4999999999999999", "1.0", "1.00001", "0.999",
    "2.5", "2.50", "2.5000000000000001", "2.49", "2.51", "3", "-0.5", "-0.001", "-0.0011", "0.001", "0.0011", "0.0009",
    "-0.0009", "10", "99.99", "100", "100.000", "100.01", "-100", "-7", "-7.5", "-120", "-120.0", "-120.5", "-6.9",
    "1e0", "5E-1", "0.1", "0.25", "0.3", "1.5", "12", "7", "-3.25", "-3.26", "-3.24", "-10", "-2", "1234.5678",
]

CASES = [
    {"minimum": 0, "maximum": 1},
    {"minimum": 0.5, "maximum": 2.5},
    {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
    {"minimum": -0.001, "maximum": 0.001},
    {"minimum": -120, "maximum": -7},
    {"minimum": -3.25, "maximum": 100},
    {"minimum": 0.25},
    {"maximum": -3.25},
    {"minimum": 2.5, "exclusiveMinimum": True},       # draft 4
    {"maximum": 1, "exclusiveMaximum": True},
    {"minimum": 0.001, "maximum": 0.001},
]


def _inside(text: str, bounds: dict) -> bool:
    value = Decimal(text)
    lo, hi = bounds.get("minimum"), bounds.get("maximum")
    excl_lo, excl_hi = bounds.get("exclusiveMinimum"), bounds.get("exclusiveMaximum")
    ok = True
    if lo is not None:
        ok &= value > Decimal(str(lo)) if excl_lo is True else value >= Decimal(str(lo))
    if hi is not None:
        ok &= value < Decimal(str(hi)) if excl_hi is True else value <= Decimal(str(hi))
    if isinstance(excl_lo, (int, float)) and excl_lo is not True:
        ok &= value > Decimal(str(excl_lo))
    if isinstance(excl_hi, (int, float)) and excl_hi is not True:
        ok &= value < Decimal(str(excl_hi))
    return ok


def _plain(text: str) -> bool:
    """Spelled without an exponent, at most 16 digits after the point, not a negative zero: what a bounded number's
    grammar must let a model write (``-0`` it may, where negatives are in range)."""
    negative_zero = text.startswith("-") and Decimal(text) == 0
    return "e" not in text.lower() and len(text.partition(".")[2]) <= 16 and not negative_zero


@pytest.mark.parametrize("bounds", CASES, ids=lambda b: ",".join(f"{k}={v}" for k, v in b.items()))
def test_bounded_numbers_accept_exactly_the_values_inside(llama, bounds):
    grammar = json_schema_to_grammar({"type": "number", **bounds})
    assert llama.parses(grammar), grammar
    for text in PROBES:
        accepted = llama.accepts(grammar, text)
        if accepted:
            assert _inside(text, bounds) and "e" not in text.lower(), f"{text} accepted for {bounds}\n{grammar}"
        elif _inside(text, bounds) and _plain(text):
            assert False, f"{text} is inside {bounds} but refused\n{grammar}"


def test_random_decimals_against_random_bounds(llama):
    rng = random.Random(7)
    for _ in range(12):
        a, b = sorted(round(rng.uniform(-50, 50), rng.randint(0, 3)) for _ in range(2))
        bounds = {"minimum": a, "maximum": b}
        grammar = json_schema_to_grammar({"type": "number", **bounds})
        for _ in range(12):
            text = f"{rng.uniform(a - 5, b + 5):.{rng.randint(0, 4)}f}"
            if _plain(text):
                assert llama.accepts(grammar, text) == _inside(text, bounds), (text, bounds, grammar)


def test_a_bound_inside_an_object_and_the_unbounded_number_unchanged(llama):
    schema = {"type": "object", "properties": {"confidence": {"type": "number", "minimum": 0, "maximum": 1}},
              "required": ["confidence"]}
    grammar = json_schema_to_grammar(schema)
    assert llama.accepts(grammar, '{"confidence": 0.87}')
    assert not llama.accepts(grammar, '{"confidence": 80.5}')
    assert not llama.accepts(grammar, '{"confidence": -0.1}')
    assert not llama.accepts(grammar, '{"confidence": 1e5}')
    free = json_schema_to_grammar({"type": "number"})
    assert llama.accepts(free, "-3.5e10") and llama.accepts(free, "80.5")


def test_an_empty_range_is_a_grammar_error():
    with pytest.raises(GrammarError):
        json_schema_to_grammar({"type": "number", "minimum": 2, "maximum": 1})
    with pytest.raises(GrammarError):
        json_schema_to_grammar({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1})


def test_extreme_bounds_stay_small_and_sound(llama):
    """A bound past 16 integer digits is as good as none; one finer than 16 fraction digits is kept soundly."""
    wide = json_schema_to_grammar({"type": "number", "minimum": -1.7976931348623157e308,
                                   "maximum": 1.7976931348623157e308})
    assert len(wide) < 2000 and llama.accepts(wide, "-12.5") and llama.accepts(wide, "3")
    tiny = json_schema_to_grammar({"type": "number", "minimum": 1e-300})
    assert llama.accepts(tiny, "0.5") and llama.accepts(tiny, "7")
    assert not llama.accepts(tiny, "0") and not llama.accepts(tiny, "0.0000") and not llama.accepts(tiny, "-1")


@pytest.mark.parametrize("lo, hi", [(0, 2**256 - 1), (-2**255, 2**255 - 1), (None, int(1e300)), (-int(1e300), 5)],
                         ids=["uint256", "int256", "max-1e300", "min-minus-1e300"])
def test_an_integer_bound_of_many_digits_is_kept_and_taken(llama, lo, hi):
    """An integer bound of 65 digits or more (a uint256's 2**256-1, a float bound like 1e300) nested one group per
    digit in one rule, past llama.cpp's 64: every dialect refused the tool or format as "the grammar's nesting depth
    ... exceeds the limit of 64". Its deep digit levels are rules of their own now, and the bound still holds."""
    bounds = {k: v for k, v in (("minimum", lo), ("maximum", hi)) if v is not None}
    grammar = json_schema_to_grammar({"type": "integer", **bounds}, param="tools[0].parameters")
    assert llama.parses(grammar)
    inside = ["0", "5", str(hi)] + ([str(lo)] if lo is not None else ["-7"])
    outside = [str(hi + 1)] + ([str(lo - 1)] if lo is not None else [])
    for text in inside:
        assert llama.accepts(grammar, text), text
    for text in outside:
        assert not llama.accepts(grammar, text), text
