"""GBNF for the JSON text of numbers within a JSON Schema's ``minimum``/``maximum`` (and their exclusive forms).

Without it a ``"type": "number"`` bound was not enforced at all, so a structured output such as pydantic's
``confidence: float = Field(ge=0, le=1)`` came back as ``80.5`` and failed the client's own validation.

The grammar is exact for plain decimals (``-``? integer part, optional fraction): a text is accepted only when its
value lies within the bounds, compared digit by digit against the bounds' decimal expansions. Bounded numbers take
no exponent (every value in a finite range has a plain spelling), and as in the unbounded number rule the integer
and fraction parts are at most 16 digits (a model must not spin digits forever); a bound beyond 16 integer digits
is as good as none. An exclusive bound is made inclusive by one unit in the 16th fraction digit, the last a text may
have: exact for a bound of at most 16 fraction digits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from .grammar import GrammarError, _alts, _char_class, _nonneg_range, _repeat

FRACTION_DIGITS = 16
_EPSILON = Decimal(1).scaleb(-FRACTION_DIGITS)
_INTEGER_CAP = Decimal(10) ** 16


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def decimal_bound(schema: Mapping[str, Any], key: str, excl_key: str, *, lower: bool) -> Decimal | None:
    """The inclusive bound the schema sets on that side, or None: draft-4 (boolean ``exclusive*``) and draft-6+
    (numeric ``exclusive*``) alike; the tighter one when both are given. ``str()`` of a float is its shortest
    exact spelling, so the bound compares as the validator's float does."""
    step = _EPSILON if lower else -_EPSILON
    candidates = []
    bound, excl = schema.get(key), schema.get(excl_key)
    if _is_number(bound):
        candidates.append(Decimal(str(bound)) + (step if excl is True else 0))
    if _is_number(excl):
        candidates.append(Decimal(str(excl)) + step)
    if not candidates:
        return None
    return max(candidates) if lower else min(candidates)


def _split(value: Decimal) -> tuple[int, str]:
    """Integer part and fraction digits (no trailing zeros) of a value >= 0."""
    whole, _, fraction = format(value, "f").partition(".")
    return int(whole), fraction.rstrip("0")


def _fraction(low: str, high: str | None, room: int) -> list[str]:
    """Alternatives for fraction digit strings F (1..room digits) with 0.low <= 0.F <= 0.high; ``high`` None: no
    upper bound (any F), ``""``: F all zeros. ``low`` and ``high`` have no trailing zeros."""
    if room <= 0:
        return []
    first_low = int(low[0]) if low else 0
    first_high = 9 if high is None else (int(high[0]) if high else 0)
    out: list[str] = []
    # digits strictly inside the bounds' first digits are free after them
    free_from = first_low + 1 if low else first_low
    free_to = first_high - 1 if high is not None else first_high
    if first_low == first_high and low and high is not None:
        free_from, free_to = 1, 0  # one digit, bound on both sides: handled below
    if free_from <= free_to:
        digit = _char_class([(str(free_from), str(free_to))])
        out.append(f"{digit} {_repeat('[0-9]', 0, room - 1)}" if room > 1 else digit)
    ends = []
    if low:
        ends.append(first_low)
    if high is not None and first_high not in ends:
        ends.append(first_high)
    for d in ends:
        rest_low = low[1:] if low and d == first_low else ""
        rest_high = (high[1:] if high else "") if high is not None and d == first_high else None
        tail = _optional_fraction(rest_low, rest_high, room - 1)
        if tail is not None:
            out.append(f'"{d}" {tail}' if tail else f'"{d}"')
    return out


def _optional_fraction(low: str, high: str | None, room: int) -> str | None:
    """GBNF for a possibly empty digit string within the bounds (empty only when ``low`` is), ``""`` for the empty
    string alone, None when nothing fits."""
    alts = _fraction(low, high, room)
    if not alts:
        return None if low else ""
    body = _alts(alts)
    return body if low else f"{body}?" if body.startswith("(") else f"( {body} )?"


def _fraction_part(low: str, high: str | None) -> str | None:
    """``"." digits`` within the bounds, optional when the value without a fraction is within them."""
    alts = _fraction(low, high, FRACTION_DIGITS)
    if not alts:
        return None if low else ""
    dotted = f'"." {_alts(alts)}'
    return dotted if low else f"( {dotted} )?"


def _magnitude(low: Decimal, high: Decimal | None) -> list[str]:
    """Alternatives for the unsigned decimal text of values in [low, high] (low >= 0; high None: unbounded)."""
    if high is not None and high >= _INTEGER_CAP:
        high = None
    low_int, low_frac = _split(low)
    high_int, high_frac = _split(high) if high is not None else (None, None)
    out: list[str] = []

    def add(integer: str, fraction: str | None) -> None:
        if fraction is not None:
            out.append(f"{integer} {fraction}" if fraction else integer)

    if high_int is not None and low_int == high_int:
        add(f'"{low_int}"', _fraction_part(low_frac, high_frac))
        return out
    add(f'"{low_int}"', _fraction_part(low_frac, None))
    middle_hi = None if high_int is None else high_int - 1
    if middle_hi is None or low_int + 1 <= middle_hi:
        add(_alts(_nonneg_range(low_int + 1, middle_hi)), _fraction_part("", None))
    if high_int is not None:
        add(f'"{high_int}"', _fraction_part("", high_frac))
    return out


def number_range(low: Decimal | None, high: Decimal | None) -> str:
    """GBNF (no trailing whitespace) for the JSON text of numbers in [low, high]; None: unbounded on that side."""
    if low is not None and low <= -_INTEGER_CAP:
        low = None
    if low is not None and high is not None and low > high:
        raise GrammarError(f"number range [{low}, {high}] is empty")
    alts: list[str] = []
    if low is None or low < 0:
        # negatives as "-" and a magnitude; "-0" is zero, so the magnitude starts at 0 when zero is in range
        magnitudes = _magnitude(max(-high, Decimal(0)) if high is not None else Decimal(0),
                                None if low is None else -low)
        if magnitudes:
            alts.append(f'"-" {_alts(magnitudes)}')
    if high is None or high >= 0:
        alts += _magnitude(max(low, Decimal(0)) if low is not None else Decimal(0), high)
    if not alts:
        raise GrammarError(f"number range [{low}, {high}] has no value with at most {FRACTION_DIGITS} "
                           "fraction digits")
    return _alts(alts)
