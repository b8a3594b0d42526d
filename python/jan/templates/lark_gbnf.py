"""Lark grammars -> GBNF, so llama.cpp's grammar sampler can hold a text to a Lark grammar.

OpenAI's custom (freeform) tools give their input's format as a Lark grammar (Codex CLI's ``apply_patch``); jan's
engine takes GBNF. No library converts one to the other, so this module does, in three steps:

1. the `lark` library parses and compiles the definition (the grammar syntax, ``?rule``, templates, EBNF operators,
   ``%import common.X``, ``%ignore``, string flags, aliases): what comes out is plain BNF rules over terminals, each
   terminal one Python regex (a string literal is a regex of itself);
2. left recursion, which Lark's own ``+``/``*`` helper rules and grammars such as ``sum: sum "+" product`` have and
   llama.cpp's grammars must not, is removed (Paull's substitution, only where a rule reaches itself leftmost;
   immediate recursion ``a: a x | y`` becomes ``a ::= y x*``);
3. each terminal's regex, read by Python's own regex parser (``re._parser``, ``sre_parse`` before 3.11: Lark's terminals are Python regexes,
   and Lark reads them with the same parser), is written as GBNF: literals, classes, ``.``, groups, alternation,
   every greedy quantifier (``{m,n}`` too), and a lazy ``*?`` of one class before literal text (``/\\*(.|\\n)*?\\*/``:
   it stops at the text's first occurrence). What GBNF cannot say (lookaround, backreferences, conditionals,
   anchors, atomic groups, possessive and other lazy quantifiers) is refused: :class:`LarkGrammarError`, never a
   grammar that holds the text to less than the Lark grammar says.

The GBNF holds a text to the grammar's language as a context-free grammar over characters: each terminal matches
what its regex matches whole (Earley's ``dynamic_complete`` lexer reads it so; a greedy lexer may split some texts
otherwise). Where it must choose, it allows *less* than the Lark grammar, never more: ``\\d`` and ``\\w`` outside a
negated class are their ASCII members, ``\\W`` is ASCII, and C0 control characters other than tab, LF and CR are
left out of every class that has other members, so whatever a model writes under it parses.

``%ignore``: the ignored terminals may stand before the first token and after every token, as Lark skips them
there, but whitespace is bounded the way llama.cpp's JSON-schema grammars (and jan's, ``grammar.py``'s ``ws``) bound
it, so a model cannot fill its output with blanks: where the Lark grammar ignores any run of whitespace, the GBNF
allows up to :data:`MAX_INDENT` spaces and tabs, then up to :data:`MAX_LINE_BREAKS` line breaks each followed by
up to that much indentation (only characters the ignored terminals skip one by one, and ``\\r\\n`` where they skip
it). Other ignored terminals (comments) keep their own text, any number of them, each with such whitespace after it.

``encoding``: ``"raw"`` is a grammar of the text itself; ``"json"`` one of the text as it is written inside a JSON
string (a tool call's arguments): a quote, a backslash and control characters as their escapes, in the one
spelling ``json.dumps`` gives them.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass
from typing import Literal

# Python's own regex parser and its opcodes (the terminals are Python regexes): re._parser from 3.11, sre_parse before
if sys.version_info >= (3, 11):
    import re._constants as sre
    import re._parser as sre_parse
else:  # pragma: no cover
    import sre_constants as sre
    import sre_parse

from .gbnf_check import check_gbnf
from .grammar import GrammarError, gbnf_literal, gbnf_repeat

__all__ = ["MAX_DEFINITION_CHARS", "LarkGrammarError", "lark_to_gbnf"]

#: The longest Lark definition converted (Codex's apply_patch grammar is under 1,000 characters).
MAX_DEFINITION_CHARS = 65_536
#: Productions left-recursion removal may write in all before the grammar is refused as too complex.
MAX_PRODUCTIONS = 5_000
#: The largest ``{m,n}`` bound of a terminal's regex (llama.cpp reads a maximum past 2,000 as no maximum).
MAX_REPEAT = 1_000
#: Ignored whitespace between two tokens: at most this many spaces/tabs in a row (llama.cpp's JSON ``ws``: 20)...
MAX_INDENT = 20
#: ... and this many line breaks (a blank line between two tokens; llama.cpp's JSON ``ws`` allows ``"\n"{1,2}``)
MAX_LINE_BREAKS = 2

Encoding = Literal["raw", "json"]
# the module of each %import line (``%import common.WS``, ``%import common (WS, LF)``, ``%import .x``)
_IMPORT = re.compile(r"^[ \t]*%import[ \t]+([.\w]+)", re.MULTILINE)
_MAX_CHAR = 0x10FFFF


class LarkGrammarError(GrammarError):
    """A Lark definition that cannot constrain a text: it does not parse, or it uses what GBNF cannot express (the
    message names the construct and the terminal). A :class:`GrammarError`, so an HTTP 400; ``code`` is
    ``invalid_grammar`` or ``grammar_too_complex``."""

    def __init__(self, message: str, code: str = "invalid_grammar"):
        super().__init__(message)
        self.code = code


# -- character sets ------------------------------------------------------------------------------------------------

Ranges = tuple[tuple[int, int], ...]


def _norm(ranges: list[tuple[int, int]]) -> Ranges:
    """Sorted, merged, non-empty ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(ranges: Ranges) -> Ranges:
    out, cur = [], 0
    for lo, hi in ranges:
        if lo > cur:
            out.append((cur, lo - 1))
        cur = hi + 1
    if cur <= _MAX_CHAR:
        out.append((cur, _MAX_CHAR))
    return tuple(out)


def _minus(a: Ranges, b: Ranges) -> Ranges:
    drop = _complement(_norm(list(b)))
    return _norm([(max(lo, dlo), min(hi, dhi)) for lo, hi in a for dlo, dhi in drop])


@functools.cache
def _unicode(category: str) -> Ranges:
    """The exact members of ``\\d``, ``\\w`` or ``\\s`` in a Unicode (str) pattern, as Python's ``re`` has them
    (read once, off every request's path after the first that asks)."""
    match = re.compile(category).match
    out: list[tuple[int, int]] = []
    start = None
    for cp in range(_MAX_CHAR + 2):
        inside = cp <= _MAX_CHAR and not 0xD800 <= cp <= 0xDFFF and match(chr(cp)) is not None
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return tuple(out)


_ASCII_DIGIT: Ranges = ((0x30, 0x39),)
_ASCII_WORD: Ranges = _norm([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
_ASCII_SPACE: Ranges = _norm([(0x09, 0x0D), (0x20, 0x20)])
_ASCII: Ranges = ((0, 0x7F),)


def _category(cat: object, *, wide: bool, ascii_only: bool) -> Ranges:
    """A ``\\d \\w \\s`` (or negation) class: ``wide`` a superset of Python's (inside a negated class, so what is
    left is a subset), else a subset of it."""
    name = str(cat)
    negated = "_NOT_" in name
    base = "digit" if "DIGIT" in name else "word" if "WORD" in name else "space"
    exact_ascii = {"digit": _ASCII_DIGIT, "word": _ASCII_WORD, "space": _ASCII_SPACE}[base]
    if ascii_only:
        return _minus(_ASCII, exact_ascii) if negated else exact_ascii
    pattern = {"digit": r"\d", "word": r"\w", "space": r"\s"}[base]
    if base == "space":
        exact = _unicode(pattern)  # (a few dozen characters: exact either way)
        return _complement(exact) if negated else exact
    if negated:  # Python's \D, \W: not any Unicode digit / word character
        return _complement(exact_ascii) if wide else (_complement(_unicode(pattern)) if base == "digit"
                                                      else _minus(_ASCII, exact_ascii))
    return _unicode(pattern) if wide else exact_ascii


def _case_variants(ranges: Ranges) -> Ranges:
    """``ranges`` with the other case of each letter (a case-insensitive class); big non-ASCII ranges keep theirs."""
    extra: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if hi - lo > 4096:
            continue
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            for other in {ch.lower(), ch.upper(), ch.swapcase()}:
                if len(other) == 1:
                    extra.append((ord(other), ord(other)))
    return _norm(list(ranges) + extra)


_CONTROLS_KEPT = {0x09, 0x0A, 0x0D}


def _generated(ranges: Ranges) -> Ranges:
    """The members a model may write: C0 controls but tab, LF and CR (and NUL, which no GBNF holds) dropped from a
    class with other members; surrogates never."""
    kept = _minus(ranges, ((0xD800, 0xDFFF), (0, 0)))
    rare = _norm([(c, c) for c in range(1, 0x20) if c not in _CONTROLS_KEPT] + [(0x7F, 0x7F)])
    narrowed = _minus(kept, rare)
    return narrowed or kept


def _class_char(cp: int) -> str:
    ch = chr(cp)
    if ch in '\\]^-["' or cp < 0x20 or cp == 0x7F:
        return f"\\x{cp:02X}"
    if cp > 0x7F and not ch.isprintable():  # (C1 controls, unassigned and private code points: readable escapes)
        return f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"
    return ch


def _class(ranges: Ranges) -> str:
    return "[" + "".join(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}"
                         for lo, hi in ranges) + "]"


# -- the converter -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sym:
    name: str
    terminal: bool


class _Names:
    """GBNF names for Lark's rules (``r-...``) and terminals (``t-...``): Lark's ``_`` and ``__`` are GBNF's ``-``,
    so two Lark names could meet; the later one is numbered."""

    def __init__(self) -> None:
        self._of: dict[tuple[bool, str], str] = {}
        self._taken: set[str] = set()

    def __call__(self, name: str, terminal: bool) -> str:
        key = (terminal, name)
        if key not in self._of:
            base = ("t-" if terminal else "r-") + (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "x")
            out, n = base, 1
            while out in self._taken:
                n += 1
                out = f"{base}-{n}"
            self._taken.add(out)
            self._of[key] = out
        return self._of[key]

    def lark_name(self, gbnf: str | None) -> str | None:
        """The Lark rule a GBNF rule name was given for (None for a terminal's, a helper rule's or no name)."""
        return next((name for (terminal, name), out in self._of.items() if out == gbnf and not terminal), None)


# Lark's common.lark terminals that use what GBNF cannot say, as regexes of the same strings a lexer reads: an
# ESCAPED_STRING's end is the first quote not escaped (common.lark finds it with a lookbehind).
_COMMON_REWRITES = {"ESCAPED_STRING": r'"(?:[^"\\\n]|\\.)*"'}


@functools.cache
def _common_pattern(name: str) -> str:
    import lark

    loaded = lark.Lark(f"start: {name}\n%import common.{name}\n", parser="earley", lexer="dynamic")
    return next(t.pattern.value for t in loaded.terminals if t.name == name)


class _Writer:
    """One conversion: the GBNF rules written so far."""

    def __init__(self, encoding: Encoding):
        self.encoding = encoding
        self.rules: dict[str, str] = {}
        self._sets: dict[Ranges, str] = {}
        self.where = ""  # the terminal being written, for errors

    # -- text ---------------------------------------------------------------------------------------------------
    def literal(self, text: str) -> str:
        if self.encoding == "json":
            text = json.dumps(text, ensure_ascii=False)[1:-1]
        return gbnf_literal(text)

    def chars(self, ranges: Ranges) -> str:
        """One character of ``ranges``, as the encoding writes it."""
        ranges = _generated(ranges)
        if not ranges:
            raise self.refuse("a character class that matches nothing")
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return self.literal(chr(ranges[0][0]))
        if self.encoding == "raw":
            return _class(ranges)
        name = self._sets.get(ranges)
        if name is None:
            special = ((0, 0x1F), (0x22, 0x22), (0x5C, 0x5C))
            plain = _minus(ranges, special)
            alts = [_class(plain)] if plain else []
            escaped = _minus(ranges, _complement(special))
            alts += [self.literal(chr(cp)) for lo, hi in escaped for cp in range(lo, hi + 1)]
            name = f"c{len(self._sets)}"
            self._sets[ranges] = name
            self.rules[name] = " | ".join(alts)
        return name

    def refuse(self, what: str, code: str = "invalid_grammar") -> LarkGrammarError:
        return LarkGrammarError(f"terminal {self.where}: {what}, which a grammar of the engine cannot express", code)

    # -- regexes --------------------------------------------------------------------------------------------------
    def regex(self, pattern: str, flags: frozenset[str]) -> str:
        bits = 0
        for letter, bit in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL), ("x", re.VERBOSE), ("u", re.UNICODE)):
            if letter in flags:
                bits |= bit
        try:
            parsed = sre_parse.parse(pattern, bits)
        except re.error as exc:
            raise LarkGrammarError(f"terminal {self.where}: /{pattern}/ is not a regular expression: {exc}") from None
        return self._seq(list(parsed), parsed.state.flags)

    def _seq(self, items: list, flags: int) -> str:
        parts: list[str] = []
        text: list[str] = []  # a run of plain literal characters, written as one literal
        i = 0
        while i < len(items):
            op, av = items[i]
            i += 1
            if op is sre.LITERAL and not (flags & re.IGNORECASE and chr(av).lower() != chr(av).upper()):
                text.append(chr(av))
                continue
            if text:
                parts.append(self.literal("".join(text)))
                text = []
            if op is sre.MIN_REPEAT:
                until = self._plain_text(items[i:], flags)
                i += len(until)
                parts.append(self._lazy(av, "".join(until), flags))
                continue
            parts.append(self._item(op, av, flags))
        if text:
            parts.append(self.literal("".join(text)))
        return " ".join(parts) if parts else '""'

    def _item(self, op, av, flags: int) -> str:
        ascii_only = bool(flags & re.ASCII)
        if op is sre.LITERAL:
            return self.chars(self._cased(_norm([(av, av)]), flags))
        if op is sre.NOT_LITERAL:
            return self.chars(_complement(self._cased(_norm([(av, av)]), flags)))
        if op is sre.ANY:
            return self.chars(((0, _MAX_CHAR),) if flags & re.DOTALL else _complement(((0x0A, 0x0A),)))
        if op is sre.IN:
            return self.chars(self._set(av, flags, ascii_only))
        if op is sre.BRANCH:
            return "(" + " | ".join(self._seq(list(sub), flags) for sub in av[1]) + ")"
        if op is sre.SUBPATTERN:
            _group, add, remove, sub = av
            return "(" + self._seq(list(sub), (flags | add) & ~remove) + ")"
        if op is sre.MAX_REPEAT:
            lo, hi, sub = av
            hi = None if hi is sre.MAXREPEAT else hi
            if lo > MAX_REPEAT or (hi is not None and hi > MAX_REPEAT):
                raise self.refuse(f"a repetition bound over {MAX_REPEAT:,}", "grammar_too_complex")
            return gbnf_repeat(f"({self._seq(list(sub), flags)})", lo, hi)
        what = {
            sre.ASSERT: "a lookahead or lookbehind", sre.ASSERT_NOT: "a negative lookahead or lookbehind",
            sre.GROUPREF: "a backreference", sre.GROUPREF_EXISTS: "a conditional group (?(...)...)",
            sre.AT: "an anchor or word boundary (^ $ \\b \\B \\A \\Z)",
            getattr(sre, "ATOMIC_GROUP", None): "an atomic group (?>...)",
            getattr(sre, "POSSESSIVE_REPEAT", None): "a possessive quantifier",
        }.get(op, f"the regex construct {op}")
        raise self.refuse(what)

    @staticmethod
    def _plain_text(items: list, flags: int) -> list[str]:
        """The literal characters ``items`` start with (case-sensitive ones)."""
        out = []
        for op, av in items:
            if op is not sre.LITERAL or (flags & re.IGNORECASE and chr(av).lower() != chr(av).upper()):
                break
            out.append(chr(av))
        return out

    def _lazy(self, av: tuple, until: str, flags: int) -> str:
        """A lazy ``x*?`` of one character class and the literal text ``until`` after it: the regex stops at the
        first ``until`` (a lexer's match), so the text is characters of the class in which ``until`` first
        appears at its end. Written as the states of a search for ``until`` (one rule each, Knuth-Morris-Pratt):
        every other character of the class goes on, the next character of ``until`` advances."""
        lo, hi, sub = av
        ranges = self._single_char(list(sub), flags)
        if lo != 0 or hi is not sre.MAXREPEAT or ranges is None or not until:
            raise self.refuse("a lazy quantifier (*? +? ??) other than a class's *? followed by literal text")
        if any(not any(a <= ord(c) <= b for a, b in ranges) for c in until):
            raise self.refuse("a lazy *? whose class does not hold the text that ends it")
        k = len(until)
        fail = [0] * (k + 1)  # KMP failure function of `until`
        for j in range(1, k):
            f = fail[j]
            while f and until[f] != until[j]:
                f = fail[f]
            fail[j + 1] = f + 1 if until[f] == until[j] else 0

        def step(state: int, ch: str) -> int:
            while state and until[state] != ch:
                state = fail[state]
            return state + 1 if until[state] == ch else 0

        base = f"lazy{len(self.rules)}"
        names = [f"{base}-{j}" for j in range(k)]
        marks = sorted(set(until))
        for j in range(k):
            alts = [self.literal(until[j]) + (f" {names[j + 1]}" if j + 1 < k else "")]
            others = _minus(ranges, _norm([(ord(c), ord(c)) for c in marks]))
            if others:
                alts.append(f"{self.chars(others)} {names[0]}")
            for c in marks:
                if c != until[j]:
                    alts.append(f"{self.literal(c)} {names[step(j, c)]}")
            self.rules[names[j]] = " | ".join(alts)
        return names[0]

    def _single_char(self, items: list, flags: int) -> Ranges | None:
        """The characters a one-character regex matches (``.``, a class, ``(.|\\n)``); None for anything else."""
        if len(items) != 1:
            return None
        op, av = items[0]
        if op is sre.LITERAL:
            return self._cased(_norm([(av, av)]), flags)
        if op is sre.NOT_LITERAL:
            return _complement(self._cased(_norm([(av, av)]), flags))
        if op is sre.ANY:
            return ((0, _MAX_CHAR),) if flags & re.DOTALL else _complement(((0x0A, 0x0A),))
        if op is sre.IN:
            return self._set(av, flags, bool(flags & re.ASCII))
        if op is sre.SUBPATTERN:
            return self._single_char(list(av[3]), (flags | av[1]) & ~av[2])
        if op is sre.BRANCH:
            subs = [self._single_char(list(sub), flags) for sub in av[1]]
            return None if any(r is None for r in subs) else _norm([r for sub in subs for r in sub])
        return None

    def _cased(self, ranges: Ranges, flags: int) -> Ranges:
        return _case_variants(ranges) if flags & re.IGNORECASE else ranges

    def _set(self, items: list, flags: int, ascii_only: bool) -> Ranges:
        negate = bool(items) and items[0][0] is sre.NEGATE
        members: list[tuple[int, int]] = []
        for op, av in items[1:] if negate else items:
            if op is sre.LITERAL:
                members.append((av, av))
            elif op is sre.RANGE:
                members.append(av)
            elif op is sre.CATEGORY:
                members += _category(av, wide=negate, ascii_only=ascii_only)
            else:
                raise self.refuse(f"the class member {op}")
        ranges = self._cased(_norm(members), flags)
        return _complement(ranges) if negate else ranges


# -- left recursion --------------------------------------------------------------------------------------------------

Production = tuple[_Sym, ...]


def _left_reach(rules: dict[str, list[Production]], start: str) -> set[str]:
    """The rules ``start`` reaches through the leftmost symbols of its productions (itself only through a cycle)."""
    seen: set[str] = set()
    todo = [p[0].name for p in rules[start] if p and not p[0].terminal]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [p[0].name for p in rules.get(name, ()) if p and not p[0].terminal]
    return seen


def _hidden_left_recursion(rules: dict[str, list[Production]], suffixes: dict[str, list[Production]],
                           empty_terminals: set[str]) -> tuple[str, str | None] | None:
    """A rule that still reaches itself leftmost once the symbols that can match nothing are looked through (``a: b
    a`` where ``b`` can be empty), and that empty symbol; None when there is none. llama.cpp refuses such a grammar
    and Paull's substitution, which looks at first symbols only, leaves it."""
    nullable = set(empty_terminals)
    changed = True
    while changed:
        changed = False
        for name, prods in rules.items():
            if name not in nullable and any(all(s.name in nullable for s in p) for p in prods):
                nullable.add(name)
                changed = True

    def leftmost(name: str) -> list[tuple[str, str | None]]:
        prods = list(rules.get(name, ()))
        if name in nullable:
            prods += suffixes.get(name, [])
        out = []
        for prod in prods:
            behind = None
            for sym in prod:
                if not sym.terminal:
                    out.append((sym.name, behind))
                if sym.name not in nullable:
                    break
                behind = behind or sym.name
        return out

    for start in rules:
        seen: set[str] = set()
        todo = leftmost(start)
        while todo:
            name, behind = todo.pop()
            if name == start:
                return start, behind
            if name in seen:
                continue
            seen.add(name)
            todo += [(n, behind or b) for n, b in leftmost(name)]
    return None


def _without_left_recursion(rules: dict[str, list[Production]], order: list[str],
                            empty_terminals: set[str] = frozenset()) -> dict[str, str]:
    """GBNF bodies (over the symbols' names) of ``rules`` with their left recursion removed (Paull's algorithm:
    a rule's productions that start with an earlier rule reaching back to it are substituted by that rule's, then
    its immediate recursion ``a: a x | y`` becomes ``y x*``). Raises :class:`LarkGrammarError` for a rule whose
    every production starts with itself (it never ends) or a grammar that grows past :data:`MAX_PRODUCTIONS`."""
    rules = {name: list(prods) for name, prods in rules.items()}
    suffixes: dict[str, list[Production]] = {}
    for i, name in enumerate(order):
        reach_back = {earlier for earlier in order[:i] if name in _left_reach(rules, earlier)}
        changed = True
        while changed:
            changed = False
            out: list[Production] = []
            for prod in rules[name]:
                if prod and not prod[0].terminal and prod[0].name in reach_back:
                    out += [sub + prod[1:] for sub in rules[prod[0].name]]
                    changed = True
                else:
                    out.append(prod)
            rules[name] = out
            if sum(len(p) for p in rules.values()) > MAX_PRODUCTIONS:
                raise LarkGrammarError("removing the grammar's left recursion makes it too large",
                                       "grammar_too_complex")
        recursive = [p[1:] for p in rules[name] if p and not p[0].terminal and p[0].name == name]
        if recursive:
            rest = [p for p in rules[name] if not (p and not p[0].terminal and p[0].name == name)]
            if not rest:
                raise LarkGrammarError(f"rule {name!r} only ever starts with itself: no text ends it")
            rules[name] = rest
            suffixes[name] = [p for p in recursive if p]
    hidden = _hidden_left_recursion({n: rules[n] for n in order}, suffixes, set(empty_terminals))
    if hidden is not None:
        rule, behind = hidden
        why = f" behind {behind[2:]!r}, which can match nothing" if behind else ""
        raise LarkGrammarError(f"rule {rule[2:]!r} is left-recursive{why}: a grammar of the engine cannot be")
    return {name: _body(rules[name], suffixes.get(name)) for name in order}


def _body(prods: list[Production], suffixes: list[Production] | None) -> str:
    def seq(prod: Production) -> str:
        return " ".join(s.name for s in prod) if prod else '""'

    body = " | ".join(seq(p) for p in prods)
    if suffixes:
        body = f"( {body} ) ( {' | '.join(seq(p) for p in suffixes)} )*"
    return body


def _matches_empty(regex: str) -> bool:
    try:
        return re.fullmatch(regex, "") is not None
    except re.error:
        return False  # (said of the terminal when it is written)


# -- ignored whitespace ------------------------------------------------------------------------------------------------

def _whitespace(regex: str) -> bool:
    """Whether an ignored terminal's regex only ever matches whitespace (``\\s``): its text is blanks, which the
    GBNF bounds (else it is a comment or the like, kept whole)."""
    try:
        chars = _regex_chars(list(sre_parse.parse(regex)))
    except re.error:
        return False
    return chars is not None and bool(chars) and not _minus(chars, _unicode(r"\s"))


def _regex_chars(items: list) -> Ranges | None:
    """The characters a parsed regex can match (None: any, or what this does not follow)."""
    out: list[tuple[int, int]] = []
    for op, av in items:
        if op is sre.LITERAL:
            out.append((av, av))
        elif op is sre.IN:
            for iop, iav in av:
                if iop is sre.LITERAL:
                    out.append((iav, iav))
                elif iop is sre.RANGE:
                    out.append(iav)
                elif iop is sre.CATEGORY and "SPACE" in str(iav) and "_NOT_" not in str(iav):
                    out += _unicode(r"\s")
                else:  # a negated class or another category: not only whitespace
                    return None
        elif op is sre.SUBPATTERN:
            inner = _regex_chars(list(av[-1]))
            if inner is None:
                return None
            out += inner
        elif op is sre.BRANCH:
            for branch in av[1]:
                inner = _regex_chars(list(branch))
                if inner is None:
                    return None
                out += inner
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            inner = _regex_chars(list(av[2]))
            if inner is None:
                return None
            out += inner
        else:
            return None
    return _norm(out)


def _bounded_blank(writer: "_Writer", regexes: list[str]) -> str:
    """The GBNF of the whitespace a gap between two tokens may hold, where ignored terminals of ``regexes`` (each
    only ever whitespace) skip any run of it: up to :data:`MAX_INDENT` spaces and tabs, then up to
    :data:`MAX_LINE_BREAKS` line breaks, each followed by as much indentation. Only what the terminals skip: a
    character each of them matches alone (any run of such characters is a run of tokens), and ``\r\n`` where one
    matches it whole; "" where none of these is skipped."""
    def skipped(text: str) -> bool:
        return any(re.fullmatch(rx, text) for rx in regexes) or all(
            any(re.fullmatch(rx, ch) for rx in regexes) for ch in text)

    inline = [ch for ch in " \t" if skipped(ch)]
    breaks = [nl for nl in ("\n", "\r\n") if skipped(nl)]
    parts = []
    if inline:
        parts.append(gbnf_repeat(writer.chars(_norm([(ord(c), ord(c)) for c in inline])), 0, MAX_INDENT))
    if breaks:
        line = " | ".join(writer.literal(nl) for nl in breaks)
        indent = f" {parts[0]}" if inline else ""
        parts.append(gbnf_repeat(f"( ( {line} ){indent} )", 0, MAX_LINE_BREAKS))
    return " ".join(parts)


# -- the entry point ---------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def lark_to_gbnf(definition: str, encoding: Encoding = "raw") -> str:
    """The GBNF grammar (root rule ``root``) of the texts Lark grammar ``definition`` (its ``start`` rule) accepts,
    written as ``encoding`` says (module docstring). Blocking: loading a grammar with Lark takes milliseconds to
    seconds; converted once per definition and encoding (cached).

    Raises :class:`LarkGrammarError` (a :class:`GrammarError`: HTTP 400) for a definition Lark refuses (its words),
    one over :data:`MAX_DEFINITION_CHARS`, a terminal whose regex GBNF cannot express (naming the construct and
    the terminal), a ``%declare``d terminal (no text of its own) and a rule that never ends."""
    import lark  # (imported with the first Lark grammar: nothing else needs it)
    import lark.load_grammar

    if len(definition) > MAX_DEFINITION_CHARS:
        raise LarkGrammarError(f"the grammar is {len(definition):,} characters long; the limit is "
                               f"{MAX_DEFINITION_CHARS:,}", "grammar_too_complex")
    for module in _IMPORT.findall(definition):
        # (Lark reads other modules from files, relative to the server's own folder: only its bundled common.lark)
        if module.split(".")[0] != "common":
            raise LarkGrammarError(f"%import {module}: only Lark's common terminals (%import common.X) can be "
                                   "imported")
    try:
        # Lark's own reading and compiling of a grammar, without building a parser: every Lark parser refuses some
        # grammars (LALR's conflicts, dynamic Earley's zero-width terminals) that hold a text well all the same.
        loaded, _files = lark.load_grammar.load_grammar(definition, "<definition>", [], False)
        terminals_list, compiled, ignore_tokens = loaded.compile(["start"], set())
    except lark.exceptions.LarkError as exc:
        raise LarkGrammarError(f"the Lark grammar does not load: {exc}".strip()) from None
    except (ValueError, KeyError, TypeError, OSError, RecursionError) as exc:  # (what Lark lets a broken one raise)
        raise LarkGrammarError(f"the Lark grammar does not load: {exc!r}") from None

    writer, names = _Writer(encoding), _Names()
    rules: dict[str, list[Production]] = {}
    for rule in compiled:
        rules.setdefault(names(rule.origin.name, False), []).append(
            tuple(_Sym(names(s.name, s.is_term), s.is_term) for s in rule.expansion))
    start = names("start", False)
    if start not in rules:
        raise LarkGrammarError("the Lark grammar has no 'start' rule")
    # the order of Paull's algorithm: as the rules are reached from start (earlier rules are substituted first)
    order: list[str] = []
    todo = [start]
    while todo:
        name = todo.pop(0)
        if name in order or name not in rules:
            continue
        order.append(name)
        todo += [s.name for p in rules[name] for s in p if not s.terminal]
    terminals = {names(t.name, True): t for t in terminals_list}
    empty = {name for name, t in terminals.items() if t.pattern is not None and _matches_empty(t.pattern.to_regexp())}
    bodies = _without_left_recursion(rules, order, empty)

    used = {s.name for name in order for p in rules[name] for s in p if s.terminal}
    ignored = [names(name, True) for name in ignore_tokens]
    # ignored whitespace is written as a bounded run of its own (_bounded_blank), not as its terminals
    spaces = [name for name in dict.fromkeys(ignored)
              if terminals.get(name) is not None and terminals[name].pattern is not None
              and _whitespace(terminals[name].pattern.to_regexp())]
    for name in sorted(used | (set(ignored) - set(spaces))):
        term = terminals.get(name)
        if term is None or term.pattern is None:
            raise LarkGrammarError(f"terminal {name[2:]} has no pattern (%declare): no text can be written for it")
        pattern = term.pattern
        writer.where = f"{term.name} (/{pattern.value}/)" if term.name.startswith("__") else term.name
        if isinstance(pattern, lark.lexer.PatternStr):
            body = (writer.regex(re.escape(pattern.value), pattern.flags) if "i" in pattern.flags
                    else writer.literal(pattern.value))
        elif term.name in _COMMON_REWRITES and pattern.value == _common_pattern(term.name):
            body = writer.regex(_COMMON_REWRITES[term.name], pattern.flags)
        else:
            body = writer.regex(pattern.value, pattern.flags)
        writer.rules[name] = body
    ignore = ""
    if ignored:
        # Lark skips ignored terminals between tokens: after every token and before the first, whitespace bounded
        ignore = "ignored"
        others = [name for name in dict.fromkeys(ignored) if name not in spaces]
        blank = _bounded_blank(writer, [terminals[name].pattern.to_regexp() for name in spaces])
        if blank:
            writer.rules["ignored-space"] = blank
        gap = "ignored-space" if blank else ""
        if others:
            writer.rules[ignore] = f"{gap} ( ( {' | '.join(others)} ) {gap} )*".strip()
        else:
            writer.rules[ignore] = gap or '""'
        for name in used:
            writer.rules[f"{name}-i"] = f"{name} {ignore}"
        bodies = {rule: " ".join(f"{tok}-i" if tok in used else tok for tok in body.split(" "))
                  for rule, body in bodies.items()}
    lines = [f"root ::= {ignore + ' ' if ignore else ''}{start}"]
    lines += [f"{name} ::= {body}" for name, body in bodies.items()]
    lines += [f"{name} ::= {body}" for name, body in writer.rules.items()]
    grammar = "\n".join(lines) + "\n"
    try:
        # what llama.cpp would refuse only once it has the grammar (left recursion hidden behind a rule that can be
        # empty, which Paull's substitution does not see; a grammar past the engine's bounds) is said here
        check_gbnf(grammar, param="the converted grammar")
    except GrammarError as exc:
        own = names.lark_name(exc.rule) if exc.endless else None
        if own is not None:  # (said of the rule the client wrote, not of its converted name)
            raise LarkGrammarError(f"rule '{own}' can never end: each of its alternatives needs it again, so a model "
                                   "held to the grammar could not finish", "invalid_grammar") from None
        raise LarkGrammarError(str(exc), exc.code or "invalid_grammar") from None
    return grammar
