"""JSON schema -> GBNF grammars for llama.cpp's grammar sampler.

``json_schema_to_grammar`` turns a JSON schema (as sent in an OpenAI
``response_format: {"type": "json_schema", ...}`` or a tool's ``parameters``)
into a GBNF grammar string that the engine hands to
``llama_sampler_init_grammar``. ``JSON_OBJECT_GRAMMAR`` is the grammar for
``response_format: {"type": "json_object"}``.

Why not ``llama_cpp.llama_grammar.json_schema_to_gbnf``: the converter that
ships with llama-cpp-python 0.3.36 fails on ``$defs`` references (KeyError) and
writes invalid GBNF for enum strings containing quotes, so jan has its own.

Conventions of the generated grammar (they keep it unambiguous, which keeps
llama.cpp's grammar stacks small):

* every value rule swallows the whitespace that follows it (``ws``), and
  punctuation (``{ [ : ,``) is followed by ``ws``; nothing else allows blanks;
* ``ws`` is bounded (one space, or a newline plus up to 20 indentation
  characters) so a model cannot stall by emitting whitespace forever;
* numbers are bounded to 16 integer digits / 16 fraction digits, for the same
  reason.

Supported keywords: ``type`` (single or list), ``properties``, ``required``,
``additionalProperties`` (false/true/schema), ``items``, ``prefixItems``,
``minItems``, ``maxItems``, a map's ``minProperties``/``maxProperties``, ``enum``, ``const``, ``anyOf``, ``oneOf``,
``allOf`` (merged), ``$ref`` to ``#/...`` (``$defs``, ``definitions``, any
JSON pointer; recursion works), ``nullable``, ``minLength``, ``maxLength``,
``pattern`` (a practical regex subset, ECMA-262's meaning of ``\\s`` and ``.``; ``minLength``/``maxLength``
beside it where it is one anchored run of single characters), ``format`` (date, time, date-time,
uuid, duration, uri as an http(s) URL, ipv4, hostname), and for integers and numbers ``minimum``/``maximum``/``exclusiveMinimum``/
``exclusiveMaximum`` (numbers: see :mod:`jan.templates.number_range`). Other keywords are ignored, so the grammar may accept
more than the schema, never less. A keyword it reads whose value is of the wrong kind (``"required": 1``, a bound
that is no finite number) is a :class:`GrammarError` naming it (:func:`check_schema_keywords`); null is the keyword
left out; draft 3's per-property ``"required": true`` is read (:func:`required_names`).

Not enforced on purpose (as llama.cpp's converter): a ``format`` not listed above (an annotation in JSON Schema:
pydantic writes ``email``, ``password``, ``binary``) and a valid ``pattern`` the grammar cannot express (a
lookaround, a backreference, ``\\b``, an inner anchor), logged; the string is still held to the other keywords.

Every fault is a :class:`GrammarError` located in the schema: the converter knows the path of the node it converts
(``_visit``'s ``path``) and the innermost node raising sets it with the keyword at fault
(:meth:`GrammarError.located`); the caller names the request field once (:meth:`GrammarError.said_of`).

One keyword is jan's own: a string schema's ``x-jan-lark`` (a Lark grammar definition) holds the string's text to
that grammar (:mod:`jan.templates.lark_gbnf`). jan puts it in a Responses custom tool's schema for the call's
grammar only (:func:`with_text_grammars`); the model is never shown it.

An object schema that lists ``properties`` but says nothing about
``additionalProperties`` gets *no* extra keys: when generating, "only the keys
you described" is what callers mean (and what OpenAI's strict mode requires).
Properties are generated in the order the schema lists them.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import re
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import unquote

from ..errors import BadRequestError, BadRequestTypeError, JanError
from ..json_text import finite_number

__all__ = [
    "GrammarError",
    "GrammarTypeError",
    "schema_location",
    "check_schema_keywords",
    "required_names",
    "pattern_grammar_problem",
    "whole_match_pattern",
    "whole_match_problem",
    "gbnf_repeat",
    "GrammarBuilder",
    "JSON_OBJECT_GRAMMAR",
    "JSON_VALUE_GRAMMAR",
    "either_grammar",
    "json_strings_without",
    "raw_literal",
    "MarkerWatch",
    "gbnf_literal",
    "json_schema_to_grammar",
    "prefixed_rules",
    "with_text_grammars",
    "LARK_KEYWORD",
]

#: The string-schema keyword whose value is a Lark grammar the string's text must follow (module docstring).
LARK_KEYWORD = "x-jan-lark"

log = logging.getLogger(__name__)


class GrammarError(BadRequestError):
    """A JSON schema or grammar that cannot be used (bad ``$ref``, ``false``, over a bound, ...).

    A :class:`jan.BadRequestError` (a ``ValueError``), as any bad argument of the library is (``grammar=``,
    ``json_schema``, a tool's parameters), so the server answers it with HTTP 400; ``param`` names
    the request field when known, ``code`` says why (``invalid_grammar``,
    ``grammar_too_complex``, ``invalid_schema``, ``schema_too_complex``).

    A fault in a JSON schema says where in the schema it is, as the client wrote it: ``schema_path`` holds the
    keys and list indexes from the schema's root to the sub-schema or keyword at fault (``("properties", "items",
    "required", 2)``; ``()`` for the schema as a whole, ``None`` when the fault is no schema's), ``field`` the
    request field the schema came in (``tools[1].function.parameters``), and :attr:`path` both as one dotted path
    (``tools[1].function.parameters.properties.items.required[2]``), which the message starts with; without a
    field, a JSON pointer into the schema (``#/properties/items/required/2``). ``problem`` is the message without
    its place. Each entry point names its field once, with :meth:`said_of`.
    """

    param: str | None = None
    code: str | None = None
    field: str | None = None
    schema_path: tuple[str | int, ...] | None = None
    #: the GBNF rule a grammar's fault was found in (:func:`jan.templates.gbnf_check.check_gbnf`), None when none
    rule: str | None = None
    #: for a bound on a count of the whole grammar: which (``"rules"``, ``"alternatives"``), None for any other
    total_of: str | None = None
    #: whether the fault is a rule that can never end (no finite text: a model held to it writes until its limit)
    endless: bool = False

    def __init__(self, problem: str = "", *args: Any, code: str | None = None,
                 keyword: tuple[str | int, ...] = ()) -> None:
        # (Exception's own constructor, not BadRequestError's: extra positional args stay in ``args`` as they always
        # were, and ``param``/``code`` keep the class defaults until a caller names them)
        JanError.__init__(self, problem, *args)
        self.problem = problem
        if code is not None:
            self.code = code
        #: the keyword (and index in it) at fault, below the sub-schema being converted when it was raised
        self.keyword = tuple(keyword)

    @property
    def path(self) -> str | None:
        """The place of the fault in what the client sent (field and schema path), or None when unknown."""
        if self.schema_path is None:
            return self.field
        return schema_location(self.field, self.schema_path)

    def located(self, schema_path: tuple[str | int, ...]) -> "GrammarError":
        """Set where in the schema the fault is (once: the innermost place is the one kept); returns ``self``."""
        if self.schema_path is None:
            self.schema_path = tuple(schema_path)
            self._say()
        return self

    def said_of(self, field: str) -> "GrammarError":
        """This error said of request field ``field`` (the one shared way every entry point, and every dialect
        renaming OpenAI chat's field as its own, names it): a new :class:`GrammarError` with ``field`` and
        ``param`` set, the schema path kept, and the message ``"{path}: {problem}"``."""
        err = GrammarError(self.problem, code=self.code or "invalid_schema")
        err.field = err.param = field
        err.schema_path = self.schema_path
        err._say()
        return err

    def _say(self) -> None:
        where = self.path
        self.args = (f"{where}: {self.problem}" if where else self.problem,)


class GrammarTypeError(GrammarError, BadRequestTypeError):
    """A grammar given as anything but text (``grammar=5``, bytes): a :class:`GrammarError` (the server's 400, code
    ``invalid_grammar``, as before) and a ``TypeError``, as every wrong type given to the library is
    (:class:`jan.BadRequestTypeError`)."""


#: a key written after a dot in a path (any other in brackets, as JSON: ``properties["first name"]``)
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def schema_location(field: str | None, schema_path: Iterable[str | int]) -> str:
    """``schema_path`` (keys and list indexes) below request field ``field`` as one path: dotted, indexes and keys
    that are no plain name in brackets (``tools[0].function.parameters.properties["a b"]``); without a field, a JSON
    pointer into the schema (RFC 6901: ``#/properties/a b``)."""
    parts = list(schema_path)
    if field is None:
        return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    out = field
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENTIFIER.fullmatch(p):
            out += f".{p}"
        else:
            out += f"[{json.dumps(p, ensure_ascii=False)}]"
    return out


# Bounds on what a client's schema may cost. Every schema jan itself builds
# (tool parameters, response formats seen in practice) is far below them;
# past them the conversion recurses without end (a recursive allOf), stalls
# (a 100,000-value enum is seconds of Python and then of llama.cpp for every
# token) or writes a grammar llama.cpp cannot parse safely.
MAX_SCHEMA_DEPTH = 64          # nested sub-schemas being converted at once
MAX_SCHEMA_NODES = 20_000      # sub-schemas visited in all
MAX_ENUM_VALUES = 5_000        # values of one enum
MAX_PATTERN_LENGTH = 4_096     # characters of one "pattern"
MAX_PATTERN_DEPTH = 32         # nested groups in one "pattern"
# llama.cpp refuses a grammar whose repetition minimum ({m,}) is over 2,000 (its MAX_REPETITION_THRESHOLD):
# minItems/minLength past it is refused here, naming the schema, instead of as an unparsable grammar there.
# A maximum past it is no error: llama.cpp reads it as unbounded.
MAX_REPETITION = 2_000
# The most GBNF text a grammar may hold (jan.templates.gbnf_check.GrammarLimits.max_bytes: llama.cpp's bound). A
# schema's grammar is refused as it is built once its rules pass it: an object's optional properties cost their
# number squared (each position spells the rest of the list), so 5,000 of them in a 100 KB body were a 325 MB
# string, seconds of a worker holding the GIL (every other request stalled) and gigabytes, before a check of the
# finished text refused it.
MAX_GRAMMAR_BYTES = 1 << 20


def _too_complex(message: str, keyword: tuple[str | int, ...] = (), *, whole: bool = False) -> GrammarError:
    """A schema over one of the bounds above; ``whole``: a bound on the schema as a whole (its sub-schemas in all,
    its grammar's size), said of no one place in it."""
    err = GrammarError(message, code="schema_too_complex", keyword=keyword)
    return err.located(()) if whole else err


# --------------------------------------------------------------------------
# GBNF text helpers
# --------------------------------------------------------------------------

_LITERAL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def gbnf_literal(text: str) -> str:
    """``text`` as a quoted GBNF literal.

    Only the characters llama.cpp's parser needs escaped are escaped; other
    non-ASCII text stays as UTF-8, which the parser reads natively.
    """
    out = []
    for ch in text:
        esc = _LITERAL_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _class_char(ch: str) -> str:
    """One character inside ``[...]``.

    Older llama.cpp versions reject escapes such as ``\\-`` or ``\\^``, so
    anything with a meaning inside a class is written as a hex escape instead.
    """
    if ch in "\\]^-[\"" or ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\x{ord(ch):02X}" if ord(ch) < 0x100 else f"\\u{ord(ch):04X}"
    return ch


def _char_class(ranges: Iterable[tuple[str, str]], negate: bool = False) -> str:
    parts = []
    for lo, hi in ranges:
        parts.append(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}")
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _repeat(expr: str, lo: int, hi: int | None) -> str:
    """``expr`` repeated lo..hi times (hi None = unbounded), in GBNF syntax."""
    if hi is not None and hi < lo:
        raise GrammarError(f"invalid repetition bounds {lo}..{hi}")
    if lo > MAX_REPETITION:
        raise _too_complex(f"a minimum of {lo:,} repetitions (minItems/minLength) is too large a repetition count "
                           f"for the grammar; the limit is {MAX_REPETITION:,}")
    return gbnf_repeat(expr, lo, hi)


def _check_count(lo: int, keyword: str) -> None:
    """Refuse a schema's ``minItems``/``minProperties`` past the limit, said with the schema's own number: the
    grammar repeats the members after the first (``lo - 1``), which :func:`_repeat` would report one short."""
    if lo > MAX_REPETITION:
        raise _too_complex(f"a {keyword} of {lo:,} is too large a repetition count for the grammar; the limit is "
                           f"{MAX_REPETITION:,}", (keyword,))


def gbnf_repeat(expr: str, lo: int, hi: int | None) -> str:
    """``expr`` (a single term) repeated lo..hi times (hi None = unbounded), in GBNF syntax, bounds unchecked."""
    if hi == 0:
        return '""'
    if (lo, hi) == (0, None):
        return f"{expr}*"
    if (lo, hi) == (1, None):
        return f"{expr}+"
    if (lo, hi) == (0, 1):
        return f"{expr}?"
    if (lo, hi) == (1, 1):
        return expr
    if hi is None:
        return f"{expr}{{{lo},}}"
    if lo == hi:
        return f"{expr}{{{lo}}}"
    return f"{expr}{{{lo},{hi}}}"


def _group(expr: str) -> str:
    """Parenthesise ``expr`` unless it already is a single term (so a suffix binds to all of it)."""
    if re.fullmatch(r'[a-zA-Z0-9-]+|"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]', expr):
        return expr
    if expr.startswith("(") and _balanced_outer(expr):
        return expr
    return f"({expr})"


def _balanced_outer(expr: str) -> bool:
    """True when ``expr`` is one parenthesised group (its first ``(`` closes at the end)."""
    depth = 0
    in_lit = in_cls = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == "\\" and (in_lit or in_cls):
            i += 2
            continue
        if in_lit:
            in_lit = c != '"'
        elif in_cls:
            in_cls = c != "]"
        elif c == '"':
            in_lit = True
        elif c == "[":
            in_cls = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0 and i != len(expr) - 1:
                return False
        i += 1
    return depth == 0


# --------------------------------------------------------------------------
# Primitive rules
# --------------------------------------------------------------------------

# Bounded so that a model cannot loop on blanks; allows both compact
# ({"a": 1}) and pretty-printed (newline + indentation) JSON.
_WS = r'| " " | "\n" [ \t]{0,20}'
# A character inside a JSON string, as it appears in the JSON text.
_CHAR = r'[^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )'
_INT_DIGITS = r'( "0" | [1-9] [0-9]{0,15} )'

_PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (body, rules it uses)
    "ws": (_WS, ()),
    "char": (_CHAR, ()),
    "string": ('"\\"" char* "\\"" ws', ("char", "ws")),
    "number": (
        f'"-"? {_INT_DIGITS} ( "." [0-9]{{1,16}} )? ( [eE] [-+]? [0-9]{{1,3}} )? ws',
        ("ws",),
    ),
    "integer": (f'"-"? {_INT_DIGITS} ws', ("ws",)),
    "boolean": ('( "true" | "false" ) ws', ("ws",)),
    "null": ('"null" ws', ("ws",)),
    "value": ("object | array | string | number | boolean | null", ("object", "array", "string", "number", "boolean", "null")),
    "object": (
        '"{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws',
        ("ws", "string", "value"),
    ),
    "array": ('"[" ws ( value ( "," ws value )* )? "]" ws', ("ws", "value")),
    # string formats (JSON Schema "format"); the text between the quotes
    # a real calendar day: a month's own length, 29 February only in a leap year, no year 0000 (every date parser
    # the output meets refuses 2024-11-31, 2023-02-29 and 0000-01-01)
    "date-body": (
        '( date-year "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )'
        ' | ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" )'
        ' | "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) ) | date-leap-year "-02-29" )',
        ("date-year", "date-leap-year"),
    ),
    "date-year": ('( [1-9] [0-9]{3} | "0" ( [1-9] [0-9]{2} | "0" ( [1-9] [0-9] | "0" [1-9] ) ) )', ()),
    # divisible by 4 and not by 100, or by 400
    "date-leap-year": (
        '( [0-9] [0-9] ( "0" [48] | [2468] [048] | [13579] [26] ) | ( "0" [48] | [2468] [048] | [13579] [26] ) "00" )',
        (),
    ),
    "time-body": (
        '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
        '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',
        (),
    ),
    "date-time-body": ('date-body "T" time-body', ("date-body", "time-body")),
    # RFC 3339's durations (days or weeks, then hours, minutes, seconds in that order), what pydantic's timedelta
    # reads; without it a timedelta field got any string
    "duration-body": (
        '"P" ( [0-9]{1,6} "W" | [0-9]{1,6} "D" ( "T" duration-time )? | "T" duration-time )', ("duration-time",),
    ),
    "duration-time": (
        '( [0-9]{1,6} "H" ( [0-9]{1,6} "M" ( [0-9]{1,6} "S" )? )? | [0-9]{1,6} "M" ( [0-9]{1,6} "S" )? '
        '| [0-9]{1,6} "S" )',
        (),
    ),
    # an http(s) URL: every one is a URI, and pydantic's HttpUrl (whose schema says only "uri") takes no other scheme
    "uri-body": ('( "http" "s"? "://" hostname-body ( "/" [A-Za-z0-9._~!$&\'()*+,;=:@/-]{0,100} )? )', ("hostname-body",)),
    # labels of letters and digits joined by single hyphens: no "xn--" label, whose punycode a URL parser checks
    "hostname-body": ('( hostname-label ( "." hostname-label ){0,5} )', ("hostname-label",)),
    "hostname-label": ('[a-z0-9]{1,20} ( "-" [a-z0-9]{1,20} ){0,3}', ()),
    "ipv4-body": ('ipv4-octet "." ipv4-octet "." ipv4-octet "." ipv4-octet', ("ipv4-octet",)),
    "ipv4-octet": ('( "25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9] )', ()),
    "uuid-body": (
        '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}',
        (),
    ),
}

_FORMATS = {"date": "date-body", "time": "time-body", "date-time": "date-time-body", "uuid": "uuid-body",
            "duration": "duration-body", "uri": "uri-body", "ipv4": "ipv4-body", "hostname": "hostname-body"}

# Keywords that constrain a value; a schema with none of them accepts any JSON.
_CONSTRAINING = {
    "type", "properties", "additionalProperties", "required", "items", "prefixItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "pattern", "format",
    "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum",
}


# --------------------------------------------------------------------------
# Integer ranges
# --------------------------------------------------------------------------


def _alts(alts: list[str]) -> str:
    return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"


def _seq(head: str, rest: list[str]) -> str:
    return f"{head} {_alts(rest)}" if rest else head


#: Digit levels a range's grammar nests in one rule before the rest goes to a rule of its own: each digit of a bound
#: nests one ``( ... )`` group, and llama.cpp refuses a rule nested past 64 (:mod:`jan.templates.gbnf_check`), so an
#: integer bound of 65 digits or more (a uint256's 2**256-1, a float bound like 1e300) was refused. Bounds of up to
#: this many digits keep the one-rule grammar they always had.
_DIGIT_LEVELS_PER_RULE = 32

#: A callable that files a GBNF body as a rule of its own and returns the rule's name.
RuleMaker = Callable[[str], str]


def _digits_range_same_len(lo: str, hi: str, rule: RuleMaker | None = None) -> list[str]:
    """Alternatives matching every digit string of this length in [lo, hi].

    Leading zeros are allowed here: callers only use it for the tail digits of
    a number whose first digit is fixed. An empty list is the empty sequence.
    With ``rule``, every :data:`_DIGIT_LEVELS_PER_RULE`-th digit level is a rule of its own (made by ``rule``).
    """
    n = len(lo)
    if n == 0:
        return []
    if lo == "0" * n and hi == "9" * n:
        return [_repeat("[0-9]", n, n)]

    def rest(tail_lo: str, tail_hi: str) -> list[str]:
        alts = _digits_range_same_len(tail_lo, tail_hi, rule)
        if rule is not None and len(alts) > 0 and len(tail_lo) % _DIGIT_LEVELS_PER_RULE == 0:
            return [rule(_alts(alts))]
        return alts

    if lo[0] == hi[0]:
        return [_seq(f'"{lo[0]}"', rest(lo[1:], hi[1:]))]
    k = n - 1
    out: list[str] = []
    # lo's first digit followed by every tail >= lo's tail
    if lo[1:] == "0" * k:
        first_full = lo[0]
    else:
        out.append(_seq(f'"{lo[0]}"', rest(lo[1:], "9" * k)))
        first_full = chr(ord(lo[0]) + 1)
    # hi's first digit followed by every tail <= hi's tail
    tail = None
    if hi[1:] == "9" * k:
        last_full = hi[0]
    else:
        last_full = chr(ord(hi[0]) - 1)
        tail = _seq(f'"{hi[0]}"', rest("0" * k, hi[1:]))
    # first digits in between take any tail
    if first_full <= last_full:
        cls = _char_class([(first_full, last_full)])
        out.append(f"{cls} {_repeat('[0-9]', k, k)}" if k else cls)
    if tail is not None:
        out.append(tail)
    return out


def _nonneg_range(lo: int, hi: int | None, rule: RuleMaker | None = None) -> list[str]:
    """Alternatives for the decimal text of integers in [lo, hi] (lo >= 0), no leading zeros (``rule``: as
    :func:`_digits_range_same_len`'s)."""
    n_lo = len(str(lo))
    if hi is None:
        # [lo, largest n_lo-digit number], then every longer number
        longer = f"[1-9] {_repeat('[0-9]', n_lo, max(n_lo, 15))}"
        return _nonneg_range(lo, 10**n_lo - 1, rule) + [longer]
    out: list[str] = []
    if lo > hi:
        return out
    for n in range(n_lo, len(str(hi)) + 1):
        a = lo if n == n_lo else 10 ** (n - 1)
        b = min(hi, 10**n - 1)
        out += _digits_range_same_len(str(a), str(b), rule)
    return out


def _integer_range(lo: int | None, hi: int | None, rule: RuleMaker | None = None) -> str:
    """GBNF for the JSON text of integers in [lo, hi] (None = unbounded); ``rule`` files the digit levels of a long
    bound as rules of their own (without it a bound past about 60 digits nests deeper than llama.cpp takes)."""
    alts: list[str] = []
    if lo is None or lo <= -1:
        # negatives, as "-" and a magnitude in [m_lo, m_hi]
        m_lo = 1 if hi is None or hi >= -1 else -hi
        m_hi = None if lo is None else -lo
        if m_hi is None or m_lo <= m_hi:
            alts.append(f'"-" {_alts(_nonneg_range(m_lo, m_hi, rule))}')
    if hi is None or hi >= 0:
        alts += _nonneg_range(0 if lo is None else max(lo, 0), hi, rule)
    if not alts:
        raise GrammarError(f"integer range [{lo}, {hi}] is empty")
    return _alts(alts)


# --------------------------------------------------------------------------
# Regular expressions (JSON Schema "pattern")
# --------------------------------------------------------------------------


class _UnsupportedPattern(Exception):
    """A valid regex using what GBNF cannot express here (lookaround, backreferences, inner anchors): the string is
    still constrained to JSON, only the pattern goes unenforced (logged)."""


def whole_match_pattern(regex: str) -> str:
    """``regex``, which a whole text must match (a Responses custom tool's ``regex`` format), as the anchored
    pattern of a JSON string schema. Its own outer ``^`` and ``$``, which a whole match makes redundant (and which
    OpenAI's examples write), are taken off: inside the anchoring group they were anchors the grammar cannot
    translate, and the pattern went unenforced."""
    return f"^(?:{_unanchored(regex)})$"


def _unanchored(regex: str) -> str:
    body = regex[1:] if regex.startswith("^") else regex
    if body.endswith("$") and (len(body) - len(body[:-1].rstrip("\\")) - 1) % 2 == 0:  # (not an escaped "\$")
        body = body[:-1]
    return body


def whole_match_problem(regex: str) -> str | None:
    """:func:`pattern_grammar_problem` of a regex a whole text must match (:func:`whole_match_pattern`), read on its
    own (so that ``a)|(b`` is unbalanced, not a group of the anchoring)."""
    return pattern_grammar_problem(_unanchored(regex))


def pattern_grammar_problem(pattern: str) -> str | None:
    """Why the grammar cannot hold a string to ``pattern``: it is no regular expression, or one that uses what
    GBNF cannot express here (a lookaround, a backreference, a word boundary, an inner anchor) or is too large;
    None when it can. A JSON schema's ``pattern`` of that kind is only not enforced (logged), the schema's other
    keywords still are; a custom tool's regex is all its input's format, so there it is the request's 400."""
    try:
        _RegexToGbnf(pattern).translate()
    except GrammarError as exc:
        return str(exc)
    except _InvalidPattern as exc:
        return f"it is not a valid regular expression: {exc}"
    except (_UnsupportedPattern, IndexError, ValueError) as exc:
        return f"the grammar cannot express part of it ({re.sub(r' (is|are) not supported$', '', str(exc))})"
    return None


class _InvalidPattern(Exception):
    """A regex that is not one (an unbalanced parenthesis, nothing to repeat, an unterminated class, a reversed
    range): the client's schema is wrong, so the request is refused rather than answered without its constraint."""


# JSON Schema patterns are ECMA-262 regexes, whose \s is Unicode's spaces and line terminators, not only ASCII's: a
# \S or [^\s] that let U+00A0 or U+3000 through wrote strings the schema's own validators refuse
_ECMA_SPACE = [("\t", "\r"), (" ", " "), ("\u00a0", "\u00a0"), ("\u1680", "\u1680"), ("\u2000", "\u200a"),
               ("\u2028", "\u2029"), ("\u202f", "\u202f"), ("\u205f", "\u205f"), ("\u3000", "\u3000"),
               ("\ufeff", "\ufeff")]
_CLASS_ESCAPES = {
    "d": ([("0", "9")], False),
    "D": ([("0", "9")], True),
    "w": ([("a", "z"), ("A", "Z"), ("0", "9"), ("_", "_")], False),
    "W": ([("a", "z"), ("A", "Z"), ("0", "9"), ("_", "_")], True),
    "s": (_ECMA_SPACE, False),
    "S": (_ECMA_SPACE, True),
}
# ``.`` matches any character but these (ECMA-262's line terminators)
_ECMA_LINE_TERMINATORS = [("\n", "\n"), ("\r", "\r"), ("\u2028", "\u2029")]
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}


def _json_char_alts(ranges: list[tuple[str, str]], negate: bool) -> str:
    """GBNF for one *decoded* character from a class, as JSON-string text.

    Characters that JSON must escape (quote, backslash, controls) are written
    as their escape sequences; everything else appears as itself.
    """
    def special(c: str) -> bool:
        return c in '"\\' or ord(c) < 0x20

    def contains(c: str) -> bool:
        return any(lo <= c <= hi for lo, hi in ranges)

    alts: list[str] = []
    if negate:
        excluded = list(ranges) + [('"', '"'), ("\\", "\\"), ("\x00", "\x1f")]
        alts.append(_char_class(excluded, negate=True))
        # other control characters are rare enough to leave out
        for c in '"\\\n\t\r':
            if not contains(c):
                alts.append(gbnf_literal(json.dumps(c)[1:-1]))
    else:
        plain: list[tuple[str, str]] = []
        for lo, hi in ranges:
            # split out specials from the range so that they get escaped forms
            cur = lo
            while cur <= hi:
                if special(cur):
                    alts.append(gbnf_literal(json.dumps(cur)[1:-1]))
                    cur = chr(ord(cur) + 1)
                    continue
                end = cur
                while end < hi and not special(chr(ord(end) + 1)):
                    end = chr(ord(end) + 1)
                plain.append((cur, end))
                cur = chr(ord(end) + 1)
        if plain:
            alts.insert(0, _char_class(plain))
    if not alts:
        raise _UnsupportedPattern("empty character class")
    return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"


class _RegexToGbnf:
    """Translate a regex (the subset JSON schemas use) into GBNF over JSON string text.

    Supports literals, escapes (``\\d \\w \\s`` and friends), ``.``, classes,
    groups (capturing, ``(?:...)``, named), alternation and the quantifiers
    ``* + ? {m} {m,} {m,n}`` (lazy/possessive suffixes are ignored).
    Backreferences and lookaround raise :class:`_UnsupportedPattern`.
    """

    def __init__(self, pattern: str):
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise _too_complex(f"pattern is {len(pattern):,} characters long; the limit is {MAX_PATTERN_LENGTH:,}")
        self.pattern = self.p = pattern
        self.i = 0
        self.depth = 0
        # the top level's items as (one-character atom, min, max) while it is one sequence of such items, else None
        self.top: list[tuple[str, int, int | None]] | None = []
        self.lengths_applied = False

    def translate(self, length: tuple[int, int | None] | None = None) -> str:
        """The GBNF; with ``length`` (minLength, maxLength) the length bounds too where the pattern is anchored and
        one sequence of one-character atoms with at most one variable count (``^[a-z]+$``, ``^[A-Z][a-z0-9_]{2,}$``):
        then :attr:`lengths_applied` is set."""
        p = self.p
        anchored_start = p.startswith("^")
        anchored_end = p.endswith("$") and not p.endswith("\\$")
        body = p[1 if anchored_start else 0 : len(p) - 1 if anchored_end else len(p)]
        self.p, self.i = body, 0
        expr = self._alternation()
        if self.i != len(self.p):
            raise _InvalidPattern(f"unexpected {self.p[self.i]!r} at {self.i}")
        if length is not None and anchored_start and anchored_end and self.top:
            bounded = self._bounded(*length)
            if bounded is not None:
                expr, self.lengths_applied = bounded, True
        # JSON Schema patterns are searches, not full matches
        parts = ([] if anchored_start else ["char*"]) + [expr] + ([] if anchored_end else ["char*"])
        return " ".join(parts)

    def _bounded(self, min_len: int, max_len: int | None) -> str | None:
        """The top-level sequence with its one variable count narrowed to what the length bounds leave, or None when
        it has two variable counts (the bounds then are not enforced)."""
        items = self.top or []
        variable = [k for k, (_, lo, hi) in enumerate(items) if lo != hi]
        if len(variable) > 1:
            return None
        fixed = sum(lo for k, (_, lo, _) in enumerate(items) if k not in variable)
        out = []
        for k, (atom, lo, hi) in enumerate(items):
            if k in variable:
                lo = max(lo, min_len - fixed)
                hi = max_len - fixed if hi is None and max_len is not None else (
                    hi if max_len is None else min(hi, max_len - fixed))
                if hi is not None and hi < lo:
                    raise GrammarError(f"pattern {self.pattern!r} and minLength/maxLength admit no string together")
            out.append(_repeat(_group(atom), lo, hi))
        if not variable and not (min_len <= fixed and (max_len is None or fixed <= max_len)):
            raise GrammarError(f"pattern {self.pattern!r} and minLength/maxLength admit no string together")
        return " ".join(out) if out else '""'

    def _alternation(self) -> str:
        alts = [self._sequence()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            alts.append(self._sequence())
            if self.depth == 0:
                self.top = None
        return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"

    def _sequence(self) -> str:
        items: list[str] = []
        top = self.depth == 0
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            atom = self._atom()
            # a group is the only atom that may stand for more than one character (a class, an escape or "." can
            # read "(a | b)" too, but ends on its own last character, not a ")")
            char_atom = not (atom.startswith("(") and self.p[self.i - 1] == ")")
            start = self.i
            items.append(self._quantified(atom))
            if top and self.top is not None:
                if not char_atom:
                    self.top = None
                else:
                    self.top.append((atom, *self._counts(self.p[start:self.i])))
        return " ".join(items) if items else '""'

    @staticmethod
    def _counts(quantifier: str) -> tuple[int, int | None]:
        """(min, max) of a quantifier's text as :meth:`_quantified` read it ("" is once)."""
        q = quantifier.rstrip("?+") if len(quantifier) > 1 else quantifier
        if q in ("", "*", "+", "?"):
            return {"": (1, 1), "*": (0, None), "+": (1, None), "?": (0, 1)}[q]
        m = re.fullmatch(r"\{(\d*)(,?)(\d*)\}", q)
        if not m:
            return (1, 1)  # a literal brace: the atom once (the brace is an atom of its own)
        lo = int(m.group(1) or 0)
        return lo, (lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None))

    def _quantified(self, atom: str) -> str:
        p = self.p
        if self.i >= len(p):
            return atom
        c = p[self.i]
        lo: int
        hi: int | None
        if c in "*+?":
            self.i += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        elif c == "{":
            m = re.match(r"\{(\d*)(,?)(\d*)\}", p[self.i :])
            if not m or (not m.group(1) and not m.group(3)):
                # a literal brace, as in Python's re
                return atom
            self.i += m.end()
            lo = int(m.group(1) or 0)
            hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
        else:
            return atom
        if self.i < len(p) and p[self.i] in "?+":  # lazy / possessive: same language
            self.i += 1
        return _repeat(_group(atom), lo, hi)

    def _atom(self) -> str:
        p = self.p
        c = p[self.i]
        if c == "(":
            self.depth += 1
            if self.depth > MAX_PATTERN_DEPTH:
                raise _too_complex(f"pattern nests groups more than {MAX_PATTERN_DEPTH} deep")
            self.i += 1
            if p.startswith("?:", self.i):
                self.i += 2
            elif p.startswith("?P<", self.i) or (p.startswith("?<", self.i) and p[self.i + 2 : self.i + 3] not in "=!"):
                self.i = p.index(">", self.i) + 1
            elif p.startswith("?", self.i):
                raise _UnsupportedPattern("lookaround and inline flags are not supported")
            inner = self._alternation()
            if self.i >= len(p) or p[self.i] != ")":
                raise _InvalidPattern("unbalanced parenthesis")
            self.i += 1
            self.depth -= 1
            return f"({inner})"
        if c == "[":
            return self._class()
        if c == ".":
            self.i += 1
            return _json_char_alts(list(_ECMA_LINE_TERMINATORS), True)
        if c == "\\":
            return self._escape()
        if c in "*+?":
            raise _InvalidPattern(f"nothing to repeat at {self.i}")
        if c in "^$":
            raise _UnsupportedPattern("anchors are only supported at the ends")
        self.i += 1
        return gbnf_literal(json.dumps(c, ensure_ascii=False)[1:-1])

    def _escape(self) -> str:
        p = self.p
        if self.i + 1 >= len(p):
            raise _InvalidPattern("trailing backslash")
        e = p[self.i + 1]
        self.i += 2
        if e in _CLASS_ESCAPES:
            ranges, neg = _CLASS_ESCAPES[e]
            return _json_char_alts(list(ranges), neg)
        if e.isdigit() and e != "0" or e in "bBAzZkpP":
            raise _UnsupportedPattern(f"\\{e} is not supported")
        ch = self._escaped_char(e)
        return gbnf_literal(json.dumps(ch, ensure_ascii=False)[1:-1])

    def _escaped_char(self, e: str) -> str:
        p = self.p
        if e in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[e]
        if e in "xu":
            n = 2 if e == "x" else 4
            hexd = p[self.i : self.i + n]
            if len(hexd) != n or not all(h in "0123456789abcdefABCDEF" for h in hexd):
                raise _UnsupportedPattern(f"bad \\{e} escape")
            self.i += n
            return chr(int(hexd, 16))
        if e.isalnum():
            raise _UnsupportedPattern(f"\\{e} is not supported")
        return e

    def _class(self) -> str:
        p = self.p
        self.i += 1
        negate = p.startswith("^", self.i)
        if negate:
            self.i += 1
        ranges: list[tuple[str, str]] = []
        first = True
        while True:
            if self.i >= len(p):
                raise _InvalidPattern("unterminated character class")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\":
                e = p[self.i + 1 : self.i + 2]
                if not e:
                    raise _InvalidPattern("unterminated character class")
                self.i += 2
                if e in _CLASS_ESCAPES:
                    sub, sub_neg = _CLASS_ESCAPES[e]
                    if sub_neg:
                        raise _UnsupportedPattern(f"\\{e} inside a class is not supported")
                    ranges += sub
                    continue
                lo = self._escaped_char(e)
            else:
                lo = c
                self.i += 1
            if p.startswith("-", self.i) and self.i + 1 < len(p) and p[self.i + 1] != "]":
                self.i += 1
                c2 = p[self.i]
                if c2 == "\\":
                    e2 = p[self.i + 1 : self.i + 2]
                    if not e2:
                        raise _InvalidPattern("unterminated character class")
                    self.i += 2
                    hi = self._escaped_char(e2)
                else:
                    hi = c2
                    self.i += 1
                if hi < lo:
                    raise _InvalidPattern("bad character range")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        return _json_char_alts(ranges, negate)


# --------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "r"


def _number_bound(schema: Mapping[str, Any], key: str, excl_key: str, lower: bool) -> float | None:
    """The effective inclusive bound, handling both draft-4 (bool) and draft-6+ (number) exclusives."""
    bound = schema.get(key)
    excl = schema.get(excl_key)
    if isinstance(excl, bool):
        if excl and isinstance(bound, (int, float)):
            return math.floor(bound) + 1 if lower else math.ceil(bound) - 1
        excl = None
    candidates = []
    if isinstance(bound, (int, float)) and not isinstance(bound, bool):
        candidates.append(math.ceil(bound) if lower else math.floor(bound))
    if isinstance(excl, (int, float)):
        candidates.append(math.floor(excl) + 1 if lower else math.ceil(excl) - 1)
    if not candidates:
        return None
    return max(candidates) if lower else min(candidates)


_GBNF_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|#[^\n]*|\{[^}]*\}|[a-zA-Z0-9-]+|.', re.S)


def prefixed_rules(text: str, prefix: str) -> str:
    """GBNF ``text`` with every rule name (definitions and references) given ``prefix``, so it can share one
    grammar with another (``root`` becomes ``{prefix}root``). Literals, classes, comments and ``{m,n}`` stay."""
    return "".join(prefix + t if t[0].isalnum() or t[0] == "-" else t for t in _GBNF_TOKEN.findall(text))


class MarkerWatch:
    """Reading text for any of ``markers`` (non-empty strings), one character at a time: an Aho-Corasick automaton.

    State ``k`` stands for :attr:`prefixes` ``[k]``, the longest end of the text read so far that begins some
    marker (state 0: none, ``""``; prefixes are numbered shortest first, so for one marker state ``k`` is its first
    ``k`` characters). :meth:`step` is the state after one more character; :attr:`hit` says whether a state's
    text ends in a whole marker. Grammar rules walk it right-linearly (one rule per state, each alternative a
    character then the next state's rule), which llama.cpp's grammar stacks follow without growing.
    """

    def __init__(self, markers: Iterable[str]):
        markers = tuple(dict.fromkeys(markers))
        if not markers or not all(markers):
            raise ValueError("MarkerWatch needs at least one marker, none empty")
        self.markers = markers
        self.prefixes: list[str] = sorted({m[:i] for m in markers for i in range(len(m) + 1)}, key=lambda p: (len(p), p))
        index = {p: k for k, p in enumerate(self.prefixes)}
        #: the characters that move some state off 0 (all others lead back to state 0)
        self.chars: list[str] = sorted(set("".join(markers)))
        self._moves = [{ch: next(index[(p + ch)[i:]] for i in range(len(p) + 2) if (p + ch)[i:] in index)
                        for ch in self.chars} for p in self.prefixes]
        self.hit: list[bool] = [any(p.endswith(m) for m in markers) for p in self.prefixes]

    def step(self, state: int, ch: str) -> int:
        """The state after reading ``ch`` in ``state``."""
        return self._moves[state].get(ch, 0)

    def rules(self, name: str, other: Callable[[list[tuple[str, str]]], str], ends: str | None) -> str:
        """GBNF rules ``{name}-k``, one per state that is no hit: text that reaches a hit state ends there with the
        marker's last character when ``ends`` is None (the text runs up to and including the first marker), and
        is refused otherwise (the text holds no marker; ``ends`` is the GBNF expression that closes it, allowed
        in every state). ``other(chars)`` is the GBNF of one step back to state 0 by any character not in
        ``chars`` (the characters that move the state elsewhere); the caller adds the text's own exclusions."""
        out = []
        for state, text in enumerate(self.prefixes):
            if self.hit[state]:
                continue
            alts = [] if ends is None else [ends]
            away = []
            for ch in self.chars:
                nxt = self.step(state, ch)
                if not nxt:
                    continue
                away.append((ch, ch))
                if not self.hit[nxt]:
                    alts.append(f"{gbnf_literal(ch)} {name}-{nxt}")
                elif ends is None:
                    alts.append(gbnf_literal(ch))
            alts.append(f"{other(away)} {name}-0")
            out.append(f"{name}-{state} ::= " + " | ".join(alts))
        return "\n".join(out) + "\n"


# JSON's own string exclusions (the quote, the backslash, control characters) and one escape sequence
_JSON_RAW_EXCLUDED = [('"', '"'), ("\\", "\\"), ("\x00", "\x1f")]
_JSON_ESCAPE = '"\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )'
_RULE_LINE = re.compile(r"^([a-zA-Z0-9-]+) ::= (.*)$", re.M)
_STRING_BODY = re.compile(r'^"\\"" ([a-zA-Z0-9-]+)\* "\\"" ([a-zA-Z0-9-]+)$')


# Per format's markers, once: every request with a response format or a forced call builds its grammar, and the
# automaton of a family with many markers (Solar Open's, Kimi's) takes milliseconds on the worker threads
@functools.lru_cache(maxsize=64)
def _string_walk(markers: tuple[str, ...], name: str, close: str) -> str:
    """The rules of a JSON string's text after its opening quote, holding none of ``markers`` raw, closed by
    ``close`` (:func:`json_strings_without`)."""
    return MarkerWatch(markers).rules(
        name, lambda away: f"( {_char_class(_JSON_RAW_EXCLUDED + away, negate=True)} | {_JSON_ESCAPE} )", close)


def json_strings_without(grammar: str, markers: Iterable[str]) -> str:
    """``grammar`` (whole GBNF made by this module: a schema's, ``JSON_OBJECT_GRAMMAR``, a call grammar) with no
    ``markers`` written raw inside its JSON strings, everything else as it was.

    A chat format's output parser reads marker texts as structure wherever they stand (gpt-oss's ``<|end|>`` ends
    the final message), and llama.cpp's grammar matches a control token by its text, so a string the grammar
    held could end the answer for the parser half-way (or open a call, a thinking block). JSON escapes keep every
    string expressible (``\\u003c`` for ``<``), and the value decodes to the same text. A free string (the
    ``string`` rule) walks :class:`MarkerWatch` and refuses only a whole marker, so ``a < b | c`` and ``<|`` stay
    plain; a string counted character by character (``minLength``/``maxLength``, a pattern's free run: the
    ``char`` rule) cannot count through an automaton, so there a marker's first character must be escaped.
    The schema's own literals are written so too (:func:`_literals_escaped`): in an ``enum``/``const`` value, a
    property's name, a call's name, each marker that stands inside one of its JSON strings has its first character
    escaped (``"\\u003c|end|>"``; a literal holding no marker stays as it was), and in the text a ``pattern``, a
    string ``format`` or an ``x-jan-lark`` grammar writes between a string's quotes, every raw occurrence of a
    marker's first character (in a literal or a class) is written escaped instead. Markup outside the JSON strings
    (a call's ``<tool_call>``) is the format's own and stays. Markers holding a character a JSON string cannot
    hold raw (a quote, a backslash, a control) cannot be written inside one and are passed over."""
    markers = [m for m in dict.fromkeys(markers)
               if m and not any(lo <= ch <= hi for ch in m for lo, hi in _JSON_RAW_EXCLUDED)]
    if not markers:
        return grammar
    rules = _RULE_LINE.findall(grammar)
    escaped = _literals_escaped(grammar, rules, tuple(markers))
    if escaped is not grammar:
        grammar, rules = escaped, _RULE_LINE.findall(escaped)
    chars = {name for name, body in rules if body == _CHAR}
    if not chars:
        return grammar
    firsts = sorted({m[0] for m in markers})
    safe_char = _char_class(_JSON_RAW_EXCLUDED + [(c, c) for c in firsts], negate=True) + " | " + _JSON_ESCAPE
    taken = {name for name, _ in rules}
    extra: list[str] = []

    def rewrite(m: re.Match) -> str:
        name, body = m.group(1), m.group(2)
        if name in chars:
            return f"{name} ::= {safe_char}"
        s = _STRING_BODY.match(body)
        if s is None or s.group(1) not in chars:
            return m.group(0)
        walk = f"{name}-nomark"
        while any(t.startswith(walk + "-") for t in taken):
            walk += "x"
        close = f'"\\"" {s.group(2)}'
        extra.append(_string_walk(tuple(markers), walk, close))
        return f'{name} ::= "\\"" {walk}-0'

    out = _RULE_LINE.sub(rewrite, grammar)
    return out + ("" if out.endswith("\n") else "\n") + "".join(extra) if extra else out


# A rule of one JSON string: its opening quote, the string's text (group 1), its closing quote and the whitespace rule
# after it (as the converter writes every string: a free or counted one, a pattern's, a format's, a Lark grammar's)
_STRING_RULE = re.compile(r'^"\\"" (.+) "\\"" [a-zA-Z0-9-]+$')
# One escape inside a GBNF literal or class, as llama.cpp's parser reads it
_GBNF_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)', re.S)
_GBNF_SIMPLE = {"n": "\n", "r": "\r", "t": "\t"}


def _gbnf_char(m: re.Match) -> str:
    e = m.group(1)
    return chr(int(e[1:], 16)) if len(e) > 1 else _GBNF_SIMPLE.get(e, e)


def _unquoted(literal: str) -> str:
    """The text of GBNF literal ``literal`` (``"..."``, escapes read)."""
    return _GBNF_ESCAPE.sub(_gbnf_char, literal[1:-1])


def _class_read(token: str) -> tuple[bool, list[tuple[str, str]]]:
    """(negated, ranges) of GBNF class ``token`` (``[...]``), read as llama.cpp's parser reads it."""
    body = token[1:-1]
    negate = body.startswith("^")
    i = 1 if negate else 0
    ranges: list[tuple[str, str]] = []

    def one() -> str:
        nonlocal i
        m = _GBNF_ESCAPE.match(body, i) if body[i] == "\\" else None
        if m is None:
            i += 1
            return body[i - 1]
        i = m.end()
        return _gbnf_char(m)

    while i < len(body):
        lo = one()
        if i + 1 < len(body) and body[i] == "-":
            i += 1
            ranges.append((lo, one()))
        else:
            ranges.append((lo, lo))
    return negate, ranges


def _json_escape(ch: str) -> str:
    """``ch`` as a JSON string's ``\\uXXXX`` escape (a surrogate pair above U+FFFF)."""
    cp = ord(ch)
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def _text_escaped(expr: str, firsts: frozenset[str], reached: list[str]) -> str:
    """GBNF ``expr`` over a JSON string's text with every raw occurrence of a character of ``firsts`` written as its
    escape (a literal's character, a class's member, a negated class's non-member); rule names it uses are added to
    ``reached``. ``expr`` itself where nothing changes."""
    def swap(m: re.Match) -> str:
        t = m.group(0)
        if t[0] == '"':
            text = _unquoted(t)
            if not firsts.intersection(text):
                return t
            return gbnf_literal("".join(_json_escape(ch) if ch in firsts else ch for ch in text))
        if t[0] == "[":
            negate, ranges = _class_read(t)
            inside = {c for c in firsts if any(lo <= c <= hi for lo, hi in ranges)}
            raw = set(firsts) - inside if negate else inside
            if not raw:
                return t
            if negate:
                kept = ranges + [(c, c) for c in sorted(raw)]
            else:
                kept = _ranges_without(ranges, raw)
            alts = ([_char_class(kept, negate)] if kept or negate else []) + [
                gbnf_literal(_json_escape(c)) for c in sorted(raw)]
            return alts[0] if len(alts) == 1 else "( " + " | ".join(alts) + " )"
        if t[0].isalnum() or t[0] == "-":
            reached.append(t)
        return t

    return _GBNF_TOKEN.sub(swap, expr)


def _ranges_without(ranges: list[tuple[str, str]], chars: Iterable[str]) -> list[tuple[str, str]]:
    """Character ``ranges`` ((first, last) pairs) with each of ``chars`` cut out: a range split around it, a range
    of that one character dropped."""
    kept = []
    for lo, hi in ranges:
        for c in sorted(c for c in chars if lo <= c <= hi):
            if lo < c:
                kept.append((lo, chr(ord(c) - 1)))
            lo = chr(ord(c) + 1)
        if lo <= hi:
            kept.append((lo, hi))
    return kept


def raw_literal(text: str) -> str:
    """GBNF for ``text`` written raw, outside any JSON (a value between an XML-style call's tags): its literal, each
    double quote in a literal of its own, so that :func:`json_strings_without` never reads the text after a quote as
    a JSON string's and writes a JSON escape into it (the value would come back with ``\\u003c`` in it). Text
    without a double quote: :func:`gbnf_literal` itself."""
    if '"' not in text:
        return gbnf_literal(text)
    pieces = [gbnf_literal(p) for p in re.split(r'(")', text) if p]
    return pieces[0] if len(pieces) == 1 else "( " + " ".join(pieces) + " )"


def raw_text_without(body: str, stops: tuple[str, ...]) -> str:
    """GBNF ``body`` (a rule of raw text, as written between an XML-style call's tags: no escape there) narrowed so
    that no text it matches holds one of ``stops``: every class loses each stop's first character, so the only such
    characters left are a literal's own, and a literal where a stop could begin (it holds one, or its text from such
    a character on is the start of one and may run on into it) is refused: :class:`GrammarError` naming the literal.
    ``body`` itself where nothing changes."""
    firsts = frozenset(m[0] for m in stops)

    def swap(m: re.Match) -> str:
        t = m.group(0)
        if t[0] == '"':
            text = _unquoted(t)
            for i, ch in enumerate(text):
                tail = text[i:]
                hit = next((x for x in stops if ch in firsts and (tail.startswith(x) or x.startswith(tail))), None)
                if hit is not None:
                    raise GrammarError(f"the grammar's literal {json.dumps(text, ensure_ascii=False)} can write "
                                       f"`{hit}` raw in the value")
            return raw_literal(text) if '"' in text else t
        if t[0] == "[":
            negate, ranges = _class_read(t)
            inside = {c for c in firsts if any(lo <= c <= hi for lo, hi in ranges)}
            if negate:
                out = sorted(set(firsts) - inside)
                return _char_class(ranges + [(c, c) for c in out], True) if out else t
            if not inside:
                return t
            kept = _ranges_without(ranges, inside)
            if not kept:
                raise GrammarError(f"the grammar's class {t} matches only `{''.join(sorted(inside))}`, which can begin "
                                   "a tag raw in the value")
            return _char_class(kept)
        return t

    return _GBNF_TOKEN.sub(swap, body)


def _values_escaped(literal: str, markers: tuple[str, ...]) -> str:
    """GBNF literal ``literal``, whose text starts outside any JSON string (a whole JSON value, a property's name,
    a call's markup with its JSON), with the first character of each of ``markers`` that stands inside one of its
    JSON strings escaped; ``literal`` itself where none does."""
    text = _unquoted(literal)
    out: list[str] = []
    inside = changed = False
    i = 0
    while i < len(text):
        ch = text[i]
        if inside and ch == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        if ch == '"':
            inside = not inside
        elif inside and any(text.startswith(m, i) for m in markers):
            out.append(_json_escape(ch))
            changed = True
            i += 1
            continue
        out.append(ch)
        i += 1
    return gbnf_literal("".join(out)) if changed else literal


def _literals_escaped(grammar: str, rules: list[tuple[str, str]], markers: tuple[str, ...]) -> str:
    """``grammar`` (its ``rules``: (name, body) pairs) with the schema's own text written without ``markers`` raw
    in its JSON strings (:func:`json_strings_without`): each literal outside a string's text (:func:`_values_escaped`), and the text of
    every string rule but the free and counted ones (those the ``char`` rule holds) with the rules it uses
    (:func:`_text_escaped`). ``grammar`` itself (the same object) where nothing of it can spell a marker."""
    firsts = frozenset(m[0] for m in markers)
    # (a marker holds no quote or backslash: a literal that holds it has its text as it is in the grammar's)
    whole = any(m in grammar for m in markers)
    if not whole and not firsts.intersection(grammar):
        return grammar
    bodies = dict(rules)
    texts = {name: s.group(1) for name, body in bodies.items() if (s := _STRING_RULE.match(body)) is not None}
    reached: list[str] = []
    new: dict[str, str] = {}
    for name, text in texts.items():
        escaped = _text_escaped(text, firsts, reached)
        if escaped != text:
            new[name] = '"\\"" ' + escaped + bodies[name][len(text) + 5:]
    inner: set[str] = set()  # the rules a string's text uses: the text too (char, the free walk's: held apart)
    while reached:
        name = reached.pop()
        if name in inner or name not in bodies or name == "char" or bodies[name] == _CHAR:
            continue
        inner.add(name)
        escaped = _text_escaped(bodies[name], firsts, reached)
        if escaped != bodies[name]:
            new[name] = escaped
    if whole:
        for name, body in bodies.items():
            if name in inner:
                continue
            base = new.get(name, body)
            if name in texts:  # (its opening and closing quotes: only the text between is a string's)
                continue
            escaped = _GBNF_TOKEN.sub(lambda m: _values_escaped(m.group(0), markers) if m.group(0)[0] == '"'
                                      and any(x in m.group(0) for x in markers) else m.group(0), base)
            if escaped != base:
                new[name] = escaped
    if not new:
        return grammar
    return _RULE_LINE.sub(lambda m: f"{m.group(1)} ::= {new[m.group(1)]}" if m.group(1) in new else m.group(0),
                          grammar)


def either_grammar(first: str, second: str, *, head: str = "") -> str:
    """One GBNF grammar matching what ``first`` or ``second`` (whole grammars, root ``root``) matches, after
    ``head`` (a GBNF expression using rules defined in neither, appended by the caller; "" for none)."""
    root = f"root ::= {head + ' ' if head else ''}( a-root | b-root )\n"
    return root + prefixed_rules(first, "a-") + "\n" + prefixed_rules(second, "b-")


def tool_parameters_schema(fn: Mapping[str, Any]) -> Any:
    """The JSON schema a call of OpenAI function ``fn`` writes its arguments in. Omitted ``parameters`` are an
    empty parameter list (OpenAI's rule: "Omitting parameters defines a function with an empty parameter list"), so
    the arguments are ``{}``, not any object a random key could go in; a schema without a ``type`` that is no
    combination is an object's.

    A call's arguments are a JSON object in every dialect (OpenAI and Anthropic refuse other tool schemas), and the
    tool-call parsers read nothing else: a schema whose ``type`` (or ``enum``/``const``) leaves no object is a
    :class:`GrammarError` (code ``invalid_schema``) -- its grammar made the model write ``[2]`` or ``null`` as the
    arguments, a call no parser took back, so the raw call markup reached the client as text. A ``type`` list with
    ``"object"`` among others (``["object", "null"]``) is narrowed to the object."""
    params = fn.get("parameters")
    if params is None:
        return {"type": "object", "properties": {}}
    if not isinstance(params, Mapping):
        return params
    kind = params.get("type")
    if "type" not in params and not any(k in params for k in ("$ref", "anyOf", "oneOf", "allOf", "enum", "const")):
        return {**params, "type": "object"}
    if isinstance(kind, list) and "object" in kind and kind != ["object"]:
        return {**params, "type": "object"}
    values = params["enum"] if isinstance(params.get("enum"), list) else [params["const"]] if "const" in params else None
    if (isinstance(kind, str) and kind != "object") or (isinstance(kind, list) and "object" not in kind) or (
            values is not None and not any(isinstance(v, Mapping) for v in values)):
        why = f"type {json.dumps(kind)}" if kind is not None else "enum" if "enum" in params else "const"
        keyword = "type" if kind is not None else "enum" if "enum" in params else "const"
        raise GrammarError(f"a tool's parameters must be the JSON schema of an object (a call's arguments are a "
                           f"JSON object); this one's {why} allows no object", code="invalid_schema",
                           keyword=(keyword,)).located((keyword,))
    return params


def with_text_grammars(tools: Any, grammars: Mapping[str, Mapping[str, str]]) -> Any:
    """OpenAI tool dicts ``tools`` with each Lark grammar of ``grammars`` (tool name -> {string argument: Lark
    definition}) put in the argument's schema as :data:`LARK_KEYWORD`, for the call grammar (copies: the tools the
    template prints stay as they were)."""
    if not grammars or not tools:
        return tools
    out = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        wanted = grammars.get(fn.get("name")) if isinstance(fn, Mapping) else None
        params = fn.get("parameters") if wanted else None
        props = params.get("properties") if isinstance(params, Mapping) else None
        if not isinstance(props, Mapping):
            out.append(tool)
            continue
        props = {k: ({**v, LARK_KEYWORD: wanted[k]} if k in wanted and isinstance(v, Mapping) else v)
                 for k, v in props.items()}
        out.append({**tool, "function": {**fn, "parameters": {**params, "properties": props}}})
    return out


class GrammarBuilder:
    """Accumulates GBNF rules; converts JSON schemas into rules of one grammar.

    Use it directly to put several schemas in one grammar (as the tool-call
    grammar does)::

        b = GrammarBuilder()
        args = b.add_schema(params_schema, "get-weather-args")
        b.add_rule("root", '"<call>" ' + args)
        text = b.format()

    Rule bodies are deduplicated, so repeated sub-schemas cost one rule.
    """

    def __init__(self) -> None:
        self._rules: dict[str, str] = {}
        self._suffixes: dict[str, int] = {}  # (each rule name base's last suffix: _unique)
        self._by_body: dict[str, str] = {}
        self._refs: dict[tuple[int, str], str] = {}
        self._docs: list[Any] = []
        # the $refs being converted since the last object or array was entered: one met again among them leads
        # back to itself before the output has a character of its own (left recursion, no finite value)
        self._bare_refs: set[tuple[int, str]] = set()
        self._depth = 0
        self._nodes = 0
        self._texts: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._bytes = 0  # of the rules so far, as format() writes them (MAX_GRAMMAR_BYTES)
        # where each rule came from: the document and the path of the sub-schema being converted when it was added,
        # so that a bound of llama.cpp's that the finished grammar is over (found in one rule) is said of the place
        # in the client's schema (origin)
        self._at: tuple[int, tuple[str | int, ...]] | None = None
        self._origins: dict[str, tuple[int, tuple[str | int, ...]]] = {}
        self._made: dict[str, tuple[int, tuple[str | int, ...]]] = {}  # an expression -> the sub-schema it is of

    # -- rules ---------------------------------------------------------------

    def add_rule(self, name: str, body: str) -> str:
        """Add ``name ::= body`` (the name is made unique and GBNF-safe); return the name.

        When an identical body already exists under another name, that name
        is returned instead and nothing is added.
        """
        existing = self._by_body.get(body)
        if existing is not None:
            return existing
        name = self._unique(name)
        self._grow(name, body)
        self._rules[name] = body
        self._by_body[body] = name
        return name

    def _grow(self, name: str, body: str) -> None:
        """Count the rule ``name ::= body`` towards :data:`MAX_GRAMMAR_BYTES`; past it the grammar is refused now,
        while it is still small, not once it is whole (its size can grow as the square of the schema's)."""
        self._bytes += len(name) + len(body.encode("utf-8", "surrogatepass")) + 6  # (" ::= " and the newline)
        at = self._made.get(body, self._at)  # (a sub-schema's expression made a rule by its parent: the sub-schema's)
        if at is not None:
            self._origins[name] = at
        if self._bytes > MAX_GRAMMAR_BYTES:
            raise _too_complex(f"the grammar grows past the limit of {MAX_GRAMMAR_BYTES:,} bytes (long enums, many "
                               "tools, or an object's many optional properties, which cost their number squared)")

    def add_text_grammar(self, definition: str, encoding: str, hint: str, without: tuple[str, ...] = ()) -> str:
        """Add the rules of Lark grammar ``definition`` as GBNF (:func:`jan.templates.lark_gbnf.lark_to_gbnf`;
        ``encoding`` ``"json"``: the text inside a JSON string, ``"raw"``: the text itself); return the name of
        their root rule. ``without`` (raw text only): texts the text must never hold (:func:`raw_text_without`).
        Raises :class:`~jan.templates.lark_gbnf.LarkGrammarError` (a GrammarError), or GrammarError for a literal
        that could write one of ``without``."""
        from .lark_gbnf import lark_to_gbnf  # (it imports this module)

        key = (definition, encoding, without)
        if key not in self._texts:
            prefix = f"{_sanitize(hint)}-g{len(self._texts)}-"
            for line in prefixed_rules(lark_to_gbnf(definition, encoding), prefix).splitlines():
                name, _, body = line.partition(" ::= ")
                if without and name:
                    body = raw_text_without(body, without)
                self._grow(name, body)
                self._rules[name] = body
            self._texts[key] = prefix + "root"
        return self._texts[key]

    def primitive(self, name: str) -> str:
        """Ensure a built-in rule (``ws``, ``string``, ``value``, ``object``, ...) exists; return its name."""
        if name not in self._rules:
            body, deps = _PRIMITIVES[name]
            self._rules[name] = body
            self._by_body.setdefault(body, name)
            for d in deps:
                self.primitive(d)
        return name

    def _unique(self, hint: str) -> str:
        base = _sanitize(hint)
        if base in _PRIMITIVES:
            base += "-r"
        # the search for a free name starts where the last one for this base ended (rules are never removed, so
        # the names before it are all taken): from 1 each time, n alternatives of one schema (an anyOf of 9,000
        # consts) took n^2/2 tries, seconds of the server's time
        n = self._suffixes.get(base, 1)
        name = base if n == 1 else f"{base}-{n}"
        while name in self._rules:
            n += 1
            name = f"{base}-{n}"
        self._suffixes[base] = n
        return name

    def origin(self, rule: str | None) -> tuple[int, tuple[str | int, ...]] | None:
        """The document (the index of the :meth:`add_schema` call) and the path in it of the sub-schema that rule
        ``rule`` was made for; None for a rule of no schema (a primitive, one added by hand) or an unknown one."""
        return self._origins.get(rule) if rule is not None else None

    def format(self, root: str = "root") -> str:
        """The grammar text, with ``root`` first."""
        lines = []
        if root in self._rules:
            lines.append(f"{root} ::= {self._rules[root]}")
        for name, body in self._rules.items():
            if name != root:
                lines.append(f"{name} ::= {body}")
        return "\n".join(lines) + "\n"

    # -- schemas ----------------------------------------------------------------

    def add_schema(self, schema: Any, name: str = "root", *, root: Any = None,
                   path: tuple[str | int, ...] = ()) -> str:
        """Convert ``schema``; return a rule name matching it (and the whitespace after it).

        ``$ref`` pointers resolve against ``root`` (default: ``schema`` itself), of which ``schema`` is the
        sub-schema at ``path`` (keys and indexes; what a :class:`GrammarError`'s ``schema_path`` starts with).
        With ``name`` ``"root"`` (and no root yet) the result is the grammar's root rule.
        """
        self._docs.append(schema if root is None else root)
        expr = self._visit(schema, name, len(self._docs) - 1, tuple(path))
        if name == "root" and "root" not in self._rules:
            self._rules["root"] = expr
            return "root"
        return self._as_rule(expr, name)

    def _resolve(self, ref: str, doc: int) -> tuple[Any, str, tuple[str | int, ...]]:
        """The sub-schema ``ref`` points at, a rule name hint for it and its path from the schema's root."""
        if not isinstance(ref, str):
            raise GrammarError(f"$ref must be a string, not {json.dumps(ref, default=str)[:80]}", keyword=("$ref",))
        if not ref.startswith("#"):
            raise GrammarError(f"only local $ref ('#/...', into this schema) is supported, not {ref!r}",
                               keyword=("$ref",))
        target = self._docs[doc]
        pointer = unquote(ref[1:])
        path: list[str | int] = []
        if pointer:
            if not pointer.startswith("/"):
                raise GrammarError(f"$ref {ref!r} is no JSON pointer ('#/$defs/Name')", keyword=("$ref",))
            for part in pointer[1:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                try:
                    if isinstance(target, list):
                        target = target[int(part)]
                        path.append(int(part))
                    else:
                        target = target[part]
                        path.append(part)
                except (KeyError, IndexError, ValueError, TypeError):
                    raise GrammarError(f"$ref {ref!r} does not resolve: the schema has no "
                                       f"{schema_location(None, [*path, part])!r}", keyword=("$ref",)) from None
        hint = pointer.rsplit("/", 1)[-1] or "root-ref"
        return target, hint, tuple(path)

    def _deref(self, schema: Any, doc: int, at: tuple[str | int, ...]) -> Any:
        """Follow ``$ref`` chains (for merging in allOf / anyOf); not for recursion. ``at``: the path of
        ``schema``, which a fault in the chain is said of."""
        depth = 0
        while isinstance(schema, Mapping) and schema.get("$ref") is not None:
            if depth > 32:
                raise GrammarError("a $ref chain more than 32 long (a $ref that leads back to itself?)",
                                   keyword=("$ref",)).located(at + ("$ref",))
            try:
                schema, _, at = self._resolve(schema["$ref"], doc)
            except GrammarError as exc:
                raise exc.located(at + exc.keyword) from None
            depth += 1
        return schema

    def _visit(self, schema: Any, hint: str, doc: int, path: tuple[str | int, ...] = ()) -> str:
        """The GBNF expression for ``schema``, the sub-schema at ``path`` of document ``doc``; a
        :class:`GrammarError` raised within is located there (with its keyword), unless a deeper visit did."""
        self._nodes += 1
        if self._nodes > MAX_SCHEMA_NODES:
            raise _too_complex(f"the schema has more than {MAX_SCHEMA_NODES:,} sub-schemas", whole=True)
        self._depth += 1
        outer, self._at = self._at, (doc, path)
        try:
            if self._depth > MAX_SCHEMA_DEPTH:
                raise _too_complex(f"the schema nests more than {MAX_SCHEMA_DEPTH} levels deep here "
                                   "(a recursive allOf or $ref chain?)")
            expr = self._visit_node(schema, hint, doc, path)
            self._made.setdefault(expr, (doc, path))
            return expr
        except GrammarError as exc:
            raise exc.located(path + exc.keyword)
        finally:
            self._depth -= 1
            self._at = outer

    def _visit_node(self, schema: Any, hint: str, doc: int, path: tuple[str | int, ...]) -> str:
        if schema is True or schema == {}:
            return self.primitive("value")
        if schema is False:
            raise GrammarError("the schema is false, which matches nothing")
        if not isinstance(schema, Mapping):
            raise GrammarError(f"a schema must be a JSON object (or true or false), not "
                               f"{_json_kind(schema)} {_shown(schema)}")
        check_schema_keywords(schema)

        if schema.get("$ref") is not None:
            ref = schema["$ref"]
            key = (doc, ref)
            if key in self._bare_refs:
                raise GrammarError(f"$ref {ref!r} leads back to itself before any object or array is entered, so "
                                   "the schema has no finite value (left recursion)", keyword=("$ref",))
            if key not in self._refs:
                target, ref_hint, target_path = self._resolve(ref, doc)
                # reserve the name first so that recursive references resolve to it
                name = self._unique(ref_hint)
                self._refs[key] = name
                self._rules[name] = '""'
                self._bare_refs.add(key)
                try:
                    body = self._visit(target, ref_hint, doc, target_path)
                finally:
                    self._bare_refs.discard(key)
                self._rules[name] = body
                self._by_body.setdefault(body, name)
                # (the rule is the target's: a fault check_gbnf finds in it is said of the target's place)
                self._origins.setdefault(name, (doc, target_path))
            return self._refs[key]

        if "const" in schema:
            return self._literal_values([schema["const"]])
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise GrammarError("enum must be a non-empty list of values", keyword=("enum",))
            if len(values) > MAX_ENUM_VALUES:
                raise _too_complex(f"enum has {len(values):,} values; the limit is {MAX_ENUM_VALUES:,}", ("enum",))
            return self._literal_values(values)

        if schema.get("allOf") is not None:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for i, sub in enumerate(schema["allOf"]):
                at = path + ("allOf", i)
                merged = _merge(merged, self._deref(sub, doc, at), at)
            return self._visit(merged, hint, doc, path)

        for key in ("anyOf", "oneOf"):
            if key in schema:
                subs = schema[key]
                if not isinstance(subs, list) or not subs:
                    raise GrammarError(f"{key} must be a non-empty list of schemas", keyword=(key,))
                rest = {k: v for k, v in schema.items() if k != key}
                alts = []
                for i, sub in enumerate(subs):
                    at = path + (key, i)
                    if rest and isinstance(sub, Mapping) and _constrains(rest):
                        sub = _merge(dict(rest), self._deref(sub, doc, at), at)
                    alts.append(self._visit(sub, f"{hint}-{i}", doc, at))
                return self._alternatives(alts, hint)

        typ = schema.get("type")
        for i, name in enumerate(typ if isinstance(typ, list) else [typ] if typ is not None else []):
            if name not in _TYPES:
                near = difflib.get_close_matches(name, _TYPES, n=1)
                raise GrammarError(f"unknown type {name!r}" +
                                   (f" (did you mean {near[0]!r}?)" if near else "") +
                                   f"; JSON schema's types are {', '.join(_TYPES)}",
                                   keyword=("type", i) if isinstance(typ, list) else ("type",))
        if isinstance(typ, list):
            if not typ:
                raise GrammarError("type is an empty list, which no value matches", keyword=("type",))
            alts = [self._visit({**schema, "type": t}, f"{hint}-{t}", doc, path) for t in typ]
            return self._alternatives(alts, hint)
        if schema.get("nullable") is True and typ != "null":
            base = self._visit({k: v for k, v in schema.items() if k != "nullable"}, hint, doc, path)
            return self._alternatives([base, self.primitive("null")], hint)

        if typ is None:
            if any(k in schema for k in ("properties", "additionalProperties", "required")):
                typ = "object"
            elif any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
                typ = "array"
            elif any(k in schema for k in ("pattern", "format", "minLength", "maxLength")):
                typ = "string"
            else:
                return self.primitive("value")

        if typ in ("object", "array"):
            # (the object's or array's own "{" or "[" comes first: a $ref met again inside it is recursion the
            # grammar can hold)
            bare, self._bare_refs = self._bare_refs, set()
            try:
                return (self._object if typ == "object" else self._array)(schema, hint, doc, path)
            finally:
                self._bare_refs = bare
        if typ == "string":
            return self._string(schema, hint)
        if typ == "integer":
            return self._integer(schema, hint)
        if typ == "number":
            return self._number(schema, hint)
        if typ == "boolean":
            return self.primitive("boolean")
        return self.primitive("null")

    def _literal_values(self, values: list[Any]) -> str:
        lits = []
        for v in values:
            text = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            lits.append(gbnf_literal(text))
        lits = list(dict.fromkeys(lits))
        body = lits[0] if len(lits) == 1 else "(" + " | ".join(lits) + ")"
        return f"{body} {self.primitive('ws')}"

    def _alternatives(self, alts: list[str], hint: str) -> str:
        alts = list(dict.fromkeys(alts))
        if len(alts) == 1:
            return alts[0]
        return " | ".join(self._as_rule(a, f"{hint}-alt") for a in alts)

    def _as_rule(self, expr: str, hint: str) -> str:
        """A single-term reference to ``expr`` (a new rule when it is compound)."""
        if re.fullmatch(r"[a-zA-Z0-9-]+", expr):
            return expr
        return self.add_rule(hint, expr)

    def _object(self, schema: Mapping[str, Any], hint: str, doc: int, path: tuple[str | int, ...]) -> str:
        ws = self.primitive("ws")
        props = schema.get("properties") or {}
        listed = required_names(schema)
        required = set(listed)
        names = list(props.keys()) + [r for r in listed if r not in props]
        extra = schema.get("additionalProperties")
        if extra is None:
            # {"type": "object"} is any object; once properties are listed
            # (even none, as in a tool without parameters) only those appear
            extra = "properties" not in schema and not required
        if extra is False and not names:
            return self.add_rule(f"{hint}-obj", f'"{{" {ws} "}}" {ws}')

        # key-value rules, in schema order
        items: list[tuple[str, bool]] = []
        for name in names:
            sub = props.get(name, True)
            value = self._as_rule(self._visit(sub, f"{hint}-{name}", doc, path + ("properties", name)),
                                  f"{hint}-{name}")
            kv = self.add_rule(f"{hint}-{name}-kv", f"{gbnf_literal(json.dumps(name, ensure_ascii=False))} {ws} \":\" {ws} {value}")
            items.append((kv, name in required))
        extra_kv = None
        if extra is not False:
            extra_value = self.primitive("value") if extra is True else self._as_rule(
                self._visit(extra, f"{hint}-additional", doc, path + ("additionalProperties",)), f"{hint}-additional"
            )
            extra_kv = self.add_rule(f"{hint}-additional-kv", f'{self.primitive("string")} ":" {ws} {extra_value}')

        # A chain of rules so that commas are right whatever subset of the
        # optional properties is present: tail(i) follows at least one
        # emitted member, head(i) is used while nothing has been emitted yet.
        n = len(items)
        tail_extra = f'( "," {ws} {extra_kv} )*' if extra_kv else ""
        head_extra = f"( {extra_kv} {tail_extra} )?" if extra_kv else ""
        if extra_kv and not items:
            # a map (pydantic's dict field): its minProperties/maxProperties count its members (keys the grammar
            # cannot keep apart; a model repeating one is the only way past them)
            lo, hi = (_count(schema, key) for key in ("minProperties", "maxProperties"))
            lo = lo or 0
            if hi is not None and hi < lo:
                raise GrammarError(f"maxProperties ({hi}) is less than minProperties ({lo}), so no object fits",
                                   keyword=("maxProperties",))
            if hi == 0:
                return self.add_rule(f"{hint}-obj", f'"{{" {ws} "}}" {ws}')
            _check_count(lo, "minProperties")
            more = _repeat(_group(f'"," {ws} {extra_kv}'), max(lo - 1, 0), None if hi is None else hi - 1)
            members = f"{extra_kv} {more}" if more != '""' else extra_kv
            head_extra = members if lo else f"( {members} )?"

        def tail(i: int) -> str:
            parts = []
            for kv, req in items[i:]:
                parts.append(f'"," {ws} {kv}' if req else f'( "," {ws} {kv} )?')
            if tail_extra:
                parts.append(tail_extra)
            return " ".join(parts)

        # head(i): the members when nothing was emitted before position i.
        #   head(i) = kv_i tail(i+1)                 for a required i
        #   head(i) = kv_i tail(i+1) | head(i+1)     for an optional i
        # Only positions up to the first required property are ever needed.
        first_req = next((i for i, (_, req) in enumerate(items) if req), n)
        if first_req < n:
            members = f"{items[first_req][0]} {tail(first_req + 1)}".strip()
        else:
            members = head_extra
        for i in range(first_req - 1, -1, -1):
            this = f"{items[i][0]} {tail(i + 1)}".strip()
            if members:
                rest = self._as_rule(members, f"{hint}-from-{i + 1}")
                members = f"{this} | {rest}"
            else:
                members = f"( {this} )?"
            if i:
                members = self.add_rule(f"{hint}-from-{i}", members)
        if " | " in members and not members.startswith("("):
            members = f"( {members} )"
        body = " ".join(p for p in ('"{"', ws, members.strip(), '"}"', ws) if p)
        return self.add_rule(f"{hint}-obj", body)

    def _array(self, schema: Mapping[str, Any], hint: str, doc: int, path: tuple[str | int, ...]) -> str:
        ws = self.primitive("ws")
        lo = int(schema.get("minItems") or 0)
        hi = schema.get("maxItems")
        hi = int(hi) if isinstance(hi, (int, float)) and not isinstance(hi, bool) else None
        if hi is not None and hi < lo:
            raise GrammarError(f"maxItems ({hi}) is less than minItems ({lo}), so no array fits",
                               keyword=("maxItems",))
        prefix = schema.get("prefixItems")
        prefix_key, items_key = "prefixItems", "items"
        items = schema.get("items", True)
        if isinstance(items, list):  # draft-4 tuple form
            prefix, items = items, schema.get("additionalItems", False)
            prefix_key, items_key = "items", "additionalItems"
        if prefix:
            elems = [self._as_rule(self._visit(s, f"{hint}-{i}", doc, path + (prefix_key, i)), f"{hint}-{i}")
                     for i, s in enumerate(prefix)]
            seq = " ".join([elems[0]] + [f'"," {ws} {e}' for e in elems[1:]])
            if items is not False and items is not None and "items" in schema and not isinstance(schema["items"], list):
                item = self._as_rule(self._visit(items, f"{hint}-item", doc, path + (items_key,)), f"{hint}-item")
                seq += f' ( "," {ws} {item} )*'
            return self.add_rule(f"{hint}-arr", f'"[" {ws} {seq} "]" {ws}')
        if items is False and lo > 0:
            raise GrammarError(f"items is false, so no array of minItems {lo} fits", keyword=("items",))
        if items is False:  # (only the empty array)
            return self.add_rule(f"{hint}-arr", f'"[" {ws} "]" {ws}')
        item = self._as_rule(self._visit(items if items is not None else True, f"{hint}-item", doc,
                                         path + (items_key,)), f"{hint}-item")
        if hi == 0:
            return self.add_rule(f"{hint}-arr", f'"[" {ws} "]" {ws}')
        _check_count(lo, "minItems")
        more = _repeat(f'( "," {ws} {item} )', max(lo - 1, 0), None if hi is None else hi - 1)
        elems = f"{item} {more}"
        if lo == 0:
            elems = f"( {elems} )?"
        return self.add_rule(f"{hint}-arr", f'"[" {ws} {elems} "]" {ws}')

    def _string(self, schema: Mapping[str, Any], hint: str) -> str:
        ws = self.primitive("ws")
        lark = schema.get(LARK_KEYWORD)
        if isinstance(lark, str):
            return self.add_rule(f"{hint}-text", f'"\\"" {self.add_text_grammar(lark, "json", hint)} "\\"" {ws}')
        fmt = schema.get("format")
        if fmt in _FORMATS:
            body = self.primitive(_FORMATS[fmt])
            return self.add_rule(f"{hint}-{fmt}", f'"\\"" {body} "\\"" {ws}')
        lo = int(schema.get("minLength") or 0)
        hi = schema.get("maxLength")
        hi = int(hi) if isinstance(hi, (int, float)) and not isinstance(hi, bool) else None
        if hi is not None and hi < lo:
            raise GrammarError(f"maxLength ({hi}) is less than minLength ({lo}), so no string fits",
                               keyword=("maxLength",))
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            self.primitive("char")
            try:
                regex = _RegexToGbnf(pattern)
                body = regex.translate((lo, hi) if lo or hi is not None else None)
            except GrammarError as exc:
                exc.keyword = ("pattern",)
                raise
            except _InvalidPattern as exc:
                raise GrammarError(f"pattern {pattern!r} is not a valid regular expression: {exc}",
                                   code="invalid_schema", keyword=("pattern",)) from None
            except (_UnsupportedPattern, IndexError, ValueError) as exc:
                # still produce valid JSON; the pattern just isn't enforced
                log.warning("pattern %r is not enforced by the grammar: %s", pattern, exc)
            else:
                if (lo or hi is not None) and not regex.lengths_applied:
                    log.warning("minLength/maxLength beside pattern %r are not enforced by the grammar", pattern)
                return self.add_rule(f"{hint}-pattern", f'"\\"" {body} "\\"" {ws}')
        if lo == 0 and hi is None:
            return self.primitive("string")
        _check_count(lo, "minLength")
        char = self.primitive("char")
        return self.add_rule(f"{hint}-string", f'"\\"" {_repeat(char, lo, hi)} "\\"" {ws}')

    def _number(self, schema: Mapping[str, Any], hint: str) -> str:
        # imported here: number_range builds on this module's integer-range helpers
        from .number_range import decimal_bound, number_range

        lo = decimal_bound(schema, "minimum", "exclusiveMinimum", lower=True)
        hi = decimal_bound(schema, "maximum", "exclusiveMaximum", lower=False)
        if lo is None and hi is None:
            return self.primitive("number")
        if lo is not None and hi is not None and lo > hi:
            raise GrammarError(f"its bounds leave an empty range of numbers [{lo}, {hi}] "
                               "(minimum/exclusiveMinimum, maximum/exclusiveMaximum)", keyword=_upper_bound(schema))
        return self.add_rule(f"{hint}-number", f"{number_range(lo, hi)} {self.primitive('ws')}")

    def _integer(self, schema: Mapping[str, Any], hint: str) -> str:
        lo = _number_bound(schema, "minimum", "exclusiveMinimum", lower=True)
        hi = _number_bound(schema, "maximum", "exclusiveMaximum", lower=False)
        if lo is None and hi is None:
            return self.primitive("integer")
        if lo is not None and hi is not None and lo > hi:
            raise GrammarError(f"its bounds leave an empty range of integers [{lo}, {hi}] "
                               "(minimum/exclusiveMinimum, maximum/exclusiveMaximum)", keyword=_upper_bound(schema))
        body = _integer_range(None if lo is None else int(lo), None if hi is None else int(hi),
                              lambda digits: self.add_rule(f"{hint}-int-digits", digits))
        return self.add_rule(f"{hint}-int", f"{body} {self.primitive('ws')}")


def _upper_bound(schema: Mapping[str, Any]) -> tuple[str]:
    """The keyword an empty range is said of: the schema's upper bound (``maximum`` or ``exclusiveMaximum``)."""
    return ("exclusiveMaximum",) if _is_finite_number(schema.get("exclusiveMaximum")) and "maximum" not in schema \
        else ("maximum",)


#: JSON Schema's types: a ``type`` naming another is refused (with the nearest, for a typo).
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def _json_kind(value: Any) -> str:
    """What JSON calls ``value``'s kind (a list is an array, a dict an object, an int a number)."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, bool) or value is None:
        return "a literal"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


def _shown(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _count(schema: Mapping[str, Any], key: str) -> int | None:
    """A non-negative integer keyword (``minProperties``, ...), or None when absent or not a number."""
    value = schema.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def _is_finite_number(value: Any) -> bool:
    return finite_number(value)  # (an integer past a double's range is none: float() of it overflows)


def _is_count(value: Any) -> bool:
    return _is_finite_number(value) and value >= 0 and value == int(value)


def _is_schema(value: Any) -> bool:
    return isinstance(value, (bool, Mapping))


# The keywords the converter reads, each with the test its value must pass and what it must be (JSON Schema's own
# rule for it). A client's schema with one of another kind (``"required": 1``, ``"format": []``, a ``"$ref"`` that is
# no string, a bound of 1e999, which JSON's parsers read as infinity) was Python's TypeError or OverflowError deep
# in the conversion, answered as a 500 in every dialect that takes a schema; now it is the request's 400 naming the
# keyword and where it is.
_KEYWORD_KINDS: dict[str, tuple[Any, str]] = {
    "$ref": (lambda v: isinstance(v, str), "a string"),
    "type": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v)),
             "a type name or a list of them"),
    "properties": (lambda v: isinstance(v, Mapping), "an object of schemas"),
    # (or, as in draft 3, a property's own true or false: read by its object, :func:`required_names`)
    "required": (lambda v: isinstance(v, bool) or (isinstance(v, list) and all(isinstance(r, str) for r in v)),
                 "a list of property names"),
    "allOf": (lambda v: isinstance(v, list), "a list of schemas"),
    "prefixItems": (lambda v: isinstance(v, list), "a list of schemas"),
    "items": (lambda v: _is_schema(v) or isinstance(v, list), "a schema or a list of schemas"),
    "additionalItems": (_is_schema, "a schema"),
    "additionalProperties": (_is_schema, "a schema"),
    "format": (lambda v: isinstance(v, str), "a string"),
    "pattern": (lambda v: isinstance(v, str), "a string"),
    **{key: (_is_count, "a non-negative integer")
       for key in ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")},
    **{key: (_is_finite_number, "a number") for key in ("minimum", "maximum")},
    # (draft 4's exclusive bounds are booleans beside minimum/maximum; later drafts' are numbers)
    **{key: (lambda v: isinstance(v, bool) or _is_finite_number(v), "a number (or, as in draft 4, a boolean)")
       for key in ("exclusiveMinimum", "exclusiveMaximum")},
}


def required_names(schema: Mapping[str, Any]) -> list[str]:
    """The names an object schema requires: its ``required`` list, and (draft 3's way) each property whose own
    ``required`` is true."""
    listed = schema.get("required")
    names = list(listed) if isinstance(listed, list) else []
    props = schema.get("properties")
    if isinstance(props, Mapping):
        names += [k for k, sub in props.items() if isinstance(sub, Mapping) and sub.get("required") is True
                  and k not in names]
    return names


def check_schema_keywords(schema: Mapping[str, Any], at: tuple[str | int, ...] | None = None) -> None:
    """:class:`GrammarError` (``invalid_schema``) for the first keyword the converter reads whose value is of the
    wrong kind (:data:`_KEYWORD_KINDS`); ``const`` and ``enum`` values must be JSON (no NaN or infinity: a
    grammar cannot spell them as JSON). The error's ``keyword`` is the keyword (and the index of the item at
    fault in a list); with ``at`` (the schema's own path) it is located there, else by the visit it is met in."""
    for key, (fits, wanted) in _KEYWORD_KINDS.items():
        # (null is the keyword left out, as the converter has always read it: Go's JSON writes a nil list or map as
        # null, and MCP servers written in Go send "required": null, "properties": null)
        value = schema.get(key)
        if value is not None and not fits(value):
            keyword: tuple[str | int, ...] = (key,)
            if isinstance(value, list) and key in ("required", "type"):  # (the item at fault, where it is one)
                bad = next((i for i, v in enumerate(value) if not isinstance(v, str)), None)
                if bad is not None:
                    keyword, value = (key, bad), value[bad]
                    wanted = "a property name (a string)" if key == "required" else "a type name (a string)"
            what = f"{key!r}" if len(keyword) == 1 else f"each item of {key!r}"
            if isinstance(value, int) and not isinstance(value, bool) and not finite_number(value):  # (past its range)
                wanted += " within a double's range (about 1.8e308)"
            err = GrammarError(f"{what} must be {wanted}, not {_shown(value)}", code="invalid_schema",
                               keyword=keyword)
            raise err.located(at + keyword) if at is not None else err
    for key in ("const", "enum"):
        if key in schema:
            try:
                json.dumps(schema[key], allow_nan=False)
            except ValueError:
                err = GrammarError(f"{key!r} holds a number JSON cannot spell (NaN or infinity)",
                                   code="invalid_schema", keyword=(key,))
                raise (err.located(at + (key,)) if at is not None else err) from None


def _constrains(schema: Mapping[str, Any]) -> bool:
    return any(k in _CONSTRAINING for k in schema)


def _merge(a: dict[str, Any], b: Any, at: tuple[str | int, ...]) -> dict[str, Any]:
    """Shallow allOf-style merge: properties are united, required lists joined. ``at``: ``b``'s path (its faults
    are said of it)."""
    if b is True or b is None:
        return a
    if b is False:
        raise GrammarError("the schema is false, which matches nothing (and allOf needs every entry)").located(at)
    if not isinstance(b, Mapping):
        raise GrammarError(f"a schema must be a JSON object (or true or false), not {_json_kind(b)} "
                           f"{_shown(b)}").located(at)
    check_schema_keywords(b, at)  # (its properties and required are joined here, before any visit checks them)
    out = dict(a)
    for k, v in b.items():
        if (v is None or isinstance(v, bool)) and k in ("properties", "required"):
            continue  # (left out, as above; a draft-3 required flag is its property's, read by its object)
        if k == "properties" and isinstance(out.get(k), Mapping):
            out[k] = {**out[k], **v}
        elif k == "required" and isinstance(out.get(k), list):
            out[k] = list(dict.fromkeys([*out[k], *v]))
        else:
            out[k] = v
    return out


def json_schema_to_grammar(schema: Mapping[str, Any] | bool | str, *, param: str | None = None) -> str:
    """GBNF grammar (root rule ``root``) that accepts JSON text valid for ``schema``.

    ``schema`` may also be given as JSON text. Raises :class:`GrammarError` for
    schemas that cannot be converted (``false``, unresolvable ``$ref``,
    unknown ``type``, no finite value: a required property or a non-empty
    array leading back to its own schema) or that exceed the bounds above (``MAX_SCHEMA_DEPTH``,
    ``MAX_ENUM_VALUES``, ...) or llama.cpp's bounds on the grammar made of it
    (:func:`jan.templates.gbnf_check.check_gbnf`: its number of alternatives, rules, nesting...), located in the
    schema (:attr:`GrammarError.schema_path`; a bound on the grammar at the sub-schema whose rule crossed it); with
    ``param`` the error's message starts with it and its ``param`` attribute names it. Keywords the converter does
    not enforce are ignored; see the module docstring for the list of enforced ones.
    """
    try:
        if isinstance(schema, (str, bytes)):
            try:
                schema = json.loads(schema)
            except ValueError as exc:
                raise GrammarError(f"schema is not valid JSON: {exc}").located(()) from None
        b = GrammarBuilder()
        b.add_schema(schema, "root")
        text = b.format()
        # held to llama.cpp's bounds now (its number of alternatives, its rules...), so that a schema over one is
        # said of its field and the place in it: past here the grammar is checked as ``grammar``, a field the client
        # did not send, and nothing knows which part of the schema made the rule at fault
        from .gbnf_check import check_gbnf  # (it imports this module)

        try:
            check_gbnf(text, param="schema")
        except GrammarError as exc:
            if exc.endless:  # (said of the schema, whose place the rule came from: the client wrote no rule)
                problem, code = ("the schema has no finite value: every value of it holds another of its own kind "
                                 "(through required properties or non-empty arrays), so a model held to it could "
                                 "never finish"), "invalid_schema"
            else:
                problem, code = exc.problem.removeprefix("schema: "), exc.code or "schema_too_complex"
            raise GrammarError(problem, code=code).located(_grammar_fault_place(b, text, exc)) from None
    except RecursionError:
        err = _too_complex("the schema nests too deeply to convert", whole=True)
    except GrammarError as exc:
        err = exc
    else:
        return text
    if param:
        err = err.said_of(param)
    raise err


def _grammar_fault_place(b: GrammarBuilder, text: str, exc: GrammarError) -> tuple[str | int, ...]:
    """The place in the schema (its only document) of a fault :func:`~jan.templates.gbnf_check.check_gbnf` found in
    the grammar ``b`` made of it: a bound on a count of the whole grammar at the deepest sub-schema that holds at
    least half of it (an anyOf of 10,000 consts, not its last const; the schema as a whole where no part holds
    most), any other at the sub-schema whose rule it was found in; ``()`` where no sub-schema made the rule."""
    if exc.total_of is not None:
        from .gbnf_check import rule_shares  # (it imports this module)

        shares = rule_shares(text, exc.total_of)
        total = sum(shares.values())
        by_place: dict[tuple[str | int, ...], int] = {}
        for rule, share in shares.items():
            origin = b.origin(rule)
            path = origin[1] if origin is not None else ()
            for k in range(len(path) + 1):
                by_place[path[:k]] = by_place.get(path[:k], 0) + share
        most = [place for place, share in by_place.items() if 2 * share >= total]
        return max(most, key=len, default=())
    origin = b.origin(exc.rule)
    return origin[1] if origin is not None else ()


def _any_json_grammar(root_rule: str) -> str:
    b = GrammarBuilder()
    b.primitive(root_rule)
    b.add_rule("root", root_rule)
    return b.format()


#: Any JSON object (``response_format: {"type": "json_object"}``).
JSON_OBJECT_GRAMMAR: str = _any_json_grammar("object")
#: Any JSON value.
JSON_VALUE_GRAMMAR: str = _any_json_grammar("value")
