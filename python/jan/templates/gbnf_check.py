"""Bounds on a GBNF grammar before llama.cpp sees it.

llama.cpp's grammar code is recursive in three places a client controls:
the parser (one C++ frame pair per nested ``(``), the left-recursion check
at ``llama_sampler_init_grammar`` (one frame per rule reached through the
leftmost symbols, and no memo: a chain of rules each referring to the next
twice costs 2^n calls) and the initial stacks. A grammar nested 30,000 deep
overflows the C stack and kills the process; a short one can keep a thread
busy for hours. Nothing of that can be caught after the fact, so
:func:`check_gbnf` reads the grammar first — a small parser of the same
syntax — and refuses, with a :class:`GrammarError` naming the field, any
grammar over the bounds in :class:`GrammarLimits`:

* size in bytes, number of rules, number of alternatives in all rules;
* nesting depth of ``( ... )`` groups;
* depth of the chains of leftmost rule references, and the number of calls
  llama.cpp's left-recursion check would make (counted with a memo);
* character classes: every range must be non-empty (``[\\uFFFF-\\u0000]``
  matches nothing and would only fail mid-generation), code points at most
  U+10FFFF, no NUL (llama.cpp reads the grammar as a C string);
* every rule the root reaches can end: one whose every alternative needs
  the rule again (``node ::= "[" node "]"``, a JSON schema whose object
  requires a property of its own kind) has no finite text, and a model
  held to it writes until its token limit and never finishes.

It also reports what llama.cpp would only print to its log: undefined
rules, a missing root, left recursion and syntax errors, with their
position. Pure Python, linear in the grammar's size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .grammar import MAX_GRAMMAR_BYTES, MAX_REPETITION, GrammarError, GrammarTypeError

__all__ = ["GrammarLimits", "GrammarStats", "check_gbnf", "rule_shares"]


@dataclass(frozen=True)
class GrammarLimits:
    """The bounds :func:`check_gbnf` enforces (defaults fit every grammar jan writes itself)."""

    max_bytes: int = MAX_GRAMMAR_BYTES  # 1 MiB of GBNF text
    max_depth: int = 64               # nested ( ... ) groups
    max_rules: int = 20_000           # named rules plus groups and repetitions
    max_alternatives: int = 10_000    # '|' branches in all rules together (each costs every token)
    max_chain: int = 256              # leftmost rule references, one inside the other
    max_left_visits: int = 1_000_000    # calls of llama.cpp's left-recursion check


@dataclass
class GrammarStats:
    """What :func:`check_gbnf` counted (for tests and logs)."""

    bytes: int = 0
    rules: int = 0
    alternatives: int = 0
    depth: int = 0
    chain: int = 0
    left_visits: int = 0


# An item of an alternative: ("ref", rule name), ("term", None); nullable marks x*, x?, x{0,n}; needs: for x+ and
# x{m,n} with m > 0, the repeated item (its rule has an empty alternative, yet the text holds at least one x)
@dataclass
class _Item:
    ref: str | None
    nullable: bool = False
    needs: "_Item | None" = None


@dataclass
class _Rule:
    alts: list[list[_Item]] = field(default_factory=list)


_NAME = re.compile(r"[a-zA-Z0-9-]+")
_INT = re.compile(r"[0-9]+")
_MAX_CODEPOINT = 0x10FFFF
_SURROGATE = re.compile("[\ud800-\udfff]")
_SIMPLE_ESCAPES = {"t": 9, "r": 13, "n": 10, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45}
_HEX = {"x": 2, "u": 4, "U": 8}


class _Parser:
    """GBNF as llama.cpp's ``llama_grammar_parser`` reads it (src/llama-grammar.cpp)."""

    def __init__(self, text: str, limits: GrammarLimits, param: str):
        self.s = text
        self.i = 0
        self.limits = limits
        self.param = param
        self.rules: dict[str, _Rule] = {}
        self.defined: set[str] = set()
        self.referenced: dict[str, int] = {}
        self.stats = GrammarStats(bytes=len(text.encode("utf-8", "surrogatepass")))
        self._synth = 0
        self.rule: str | None = None  # the rule being read (what an error is said of: GrammarError.rule)
        # the rules and the alternatives of each named rule (with its groups) so far: rule_shares
        self.shares: dict[str, dict[str, int]] = {"rules": {}, "alternatives": {}}

    # -- errors ----------------------------------------------------------------
    def fail(self, why: str, at: int | None = None) -> GrammarError:
        at = self.i if at is None else at
        line = self.s.count("\n", 0, at) + 1
        col = at - (self.s.rfind("\n", 0, at) + 1) + 1
        return _in_rule(GrammarError(f"{why} (line {line}, column {col})", code="invalid_grammar")
                        .said_of(self.param), self.rule)

    def over(self, what: str, value: int, limit: int, rule: str | None = None, *,
             total: str | None = None) -> GrammarError:
        """A bound exceeded in ``rule`` (default: the one being read); ``total`` (``"rules"``,
        ``"alternatives"``): a bound on a count of the whole grammar, which the error says it is
        (:attr:`GrammarError.total_of`; each rule's share of it: :func:`rule_shares`)."""
        err = _in_rule(GrammarError(f"the grammar's {what} ({value:,}) exceeds the limit of {limit:,}",
                                    code="grammar_too_complex").said_of(self.param), rule or self.rule)
        err.total_of = total
        return err

    def count(self, kind: str) -> None:
        if self.rule is not None:
            shares = self.shares[kind]
            shares[self.rule] = shares.get(self.rule, 0) + 1

    # -- lexing ----------------------------------------------------------------
    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def space(self, newline_ok: bool) -> None:
        s, i, n = self.s, self.i, len(self.s)
        while i < n:
            c = s[i]
            if c == " " or c == "\t" or (newline_ok and c in "\r\n"):
                i += 1
            elif c == "#":
                while i < n and s[i] not in "\r\n":
                    i += 1
            else:
                break
        self.i = i

    def name(self) -> str:
        m = _NAME.match(self.s, self.i)
        if not m:
            raise self.fail("expecting a rule name")
        self.i = m.end()
        return m.group()

    def char(self) -> int:
        s, i = self.s, self.i
        if i >= len(s):
            raise self.fail("unexpected end of input")
        c = s[i]
        if c != "\\":
            self.i = i + 1
            return ord(c)
        e = s[i + 1 : i + 2]
        if e in _SIMPLE_ESCAPES:
            self.i = i + 2
            return _SIMPLE_ESCAPES[e]
        if e in _HEX:
            n = _HEX[e]
            digits = s[i + 2 : i + 2 + n]
            if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"expecting {n} hex digits after \\{e}")
            value = int(digits, 16)
            if value > _MAX_CODEPOINT:
                raise self.fail(f"\\{e}{digits} is beyond U+10FFFF")
            self.i = i + 2 + n
            return value
        raise self.fail(f"unknown escape \\{e}")

    # -- grammar ---------------------------------------------------------------
    def new_rule(self) -> tuple[str, _Rule]:
        self._synth += 1
        self.stats.rules += 1
        self.count("rules")
        if self.stats.rules > self.limits.max_rules:
            raise self.over("number of rules", self.stats.rules, self.limits.max_rules, total="rules")
        name = f"\0{self._synth}"  # cannot clash with a GBNF name
        rule = _Rule()
        self.rules[name] = rule
        return name, rule

    def parse(self) -> None:
        self.space(True)
        while self.i < len(self.s):
            start = self.i
            name = self.name()
            self.space(False)
            if not self.s.startswith("::=", self.i):
                raise self.fail("expecting ::=")
            self.i += 3
            self.space(True)
            self.rule = name
            if name not in self.defined:
                self.stats.rules += 1
                self.count("rules")
                if self.stats.rules > self.limits.max_rules:
                    raise self.over("number of rules", self.stats.rules, self.limits.max_rules, total="rules")
            self.defined.add(name)
            rule = self.rules.setdefault(name, _Rule())
            self.alternates(rule, nested=False, depth=0)
            c = self.peek()
            if c == "\r":
                self.i += 2 if self.s.startswith("\r\n", self.i) else 1
            elif c == "\n":
                self.i += 1
            elif c:
                raise self.fail(f"expecting a newline or the end after rule '{name}', got {c!r}")
            if self.i == start:  # cannot happen, but never loop forever
                raise self.fail("no progress")
            self.space(True)

    def alternates(self, rule: _Rule, nested: bool, depth: int) -> None:
        rule.alts.append(self.sequence(nested, depth))
        self.count_alternative()
        while self.peek() == "|":
            self.i += 1
            self.space(True)
            rule.alts.append(self.sequence(nested, depth))
            self.count_alternative()

    def count_alternative(self) -> None:
        self.stats.alternatives += 1
        self.count("alternatives")
        if self.stats.alternatives > self.limits.max_alternatives:
            raise self.over("number of alternatives", self.stats.alternatives, self.limits.max_alternatives,
                            total="alternatives")

    def sequence(self, nested: bool, depth: int) -> list[_Item]:
        items: list[_Item] = []
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c == '"':
                self.i += 1
                while self.peek() != '"':
                    if not self.peek():
                        raise self.fail("unterminated string literal")
                    self.char()
                self.i += 1
                items.append(_Item(None))
            elif c == "[":
                self.char_class()
                items.append(_Item(None))
            elif c == "<" or c == "!":
                self.token()
                items.append(_Item(None))
            elif _NAME.match(c):
                name = self.name()
                self.referenced.setdefault(name, self.i)
                items.append(_Item(name))
            elif c == "(":
                if depth + 1 > self.limits.max_depth:
                    raise self.over("nesting depth of ( ... ) groups", depth + 1, self.limits.max_depth)
                self.stats.depth = max(self.stats.depth, depth + 1)
                open_at = self.i
                self.i += 1
                self.space(True)
                name, sub = self.new_rule()
                self.alternates(sub, nested=True, depth=depth + 1)
                if self.peek() != ")":
                    raise self.fail("expecting ')' to close the group", open_at)
                self.i += 1
                items.append(_Item(name))
            elif c == ".":
                self.i += 1
                items.append(_Item(None))
            elif c in "*+?{":
                if not items:
                    raise self.fail(f"nothing to repeat before {c!r}")
                lo = self.repetition(nested)
                self.repeat(items, lo)
                continue  # repetition() consumed the trailing space
            else:
                break
            self.space(nested)
        return items

    def repeat(self, items: list[_Item], lo: int) -> None:
        # llama.cpp writes S{m,n} as S...S S' with S' ::= S S' | (a new rule): the
        # item stays where it is, one level deeper, and may now be empty when m is 0.
        prev = items.pop()
        name, rule = self.new_rule()
        rule.alts.append([_Item(prev.ref, prev.nullable)])
        rule.alts.append([])
        items.append(_Item(name, nullable=prev.nullable or lo == 0, needs=prev if lo > 0 else None))

    def repetition(self, nested: bool) -> int:
        c = self.s[self.i]
        self.i += 1
        self.space(nested)
        if c in "*?":
            return 0
        if c == "+":
            return 1
        m = _INT.match(self.s, self.i)
        if not m:
            raise self.fail("expecting a number after '{'")
        lo = int(m.group())
        if lo > MAX_REPETITION:  # llama.cpp's own bound: past it the grammar does not parse
            raise self.over("repetition minimum", lo, MAX_REPETITION)
        self.i = m.end()
        self.space(nested)
        if self.peek() == ",":
            self.i += 1
            self.space(nested)
            m = _INT.match(self.s, self.i)
            if m:
                hi = int(m.group())
                if hi < lo:
                    raise self.fail(f"repetition {{{lo},{hi}}} has its maximum below its minimum")
                self.i = m.end()
                self.space(nested)
        if self.peek() != "}":
            raise self.fail("expecting '}'")
        self.i += 1
        self.space(nested)
        return lo

    def char_class(self) -> None:
        start = self.i
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        while self.peek() != "]":
            if not self.peek():
                raise self.fail("unterminated character class", start)
            lo = self.char()
            hi = lo
            if self.peek() == "-" and self.s[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self.char()
                if hi < lo:
                    raise self.fail(f"empty character range U+{lo:04X}-U+{hi:04X} (its end is below its start)")
            ranges.append((lo, hi))
        self.i += 1
        if not ranges and not negate:
            raise self.fail("empty character class [] matches nothing", start)
        if negate and _covers_everything(ranges):
            raise self.fail("this negated character class excludes every character", start)

    def token(self) -> None:
        start = self.i
        if self.peek() == "!":
            self.i += 1
        if self.peek() != "<":
            raise self.fail("expecting '<' after '!'")
        end = self.s.find(">", self.i)
        if end < 0:
            raise self.fail("unterminated <token>", start)
        self.i = end + 1


def _covers_everything(ranges: list[tuple[int, int]]) -> bool:
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            return False
        nxt = max(nxt, hi + 1)
    return nxt > _MAX_CODEPOINT


def _leftmost(rules: dict[str, _Rule], nullable: dict[str, bool], rule: _Rule) -> list[str]:
    """The rules llama.cpp's left-recursion check descends into from ``rule``."""
    out = []
    for alt in rule.alts:
        for item in alt:
            if item.ref is None:
                break
            out.append(item.ref)
            if not (item.nullable or nullable.get(item.ref, False)):
                break
    return out


def _nullable(rules: dict[str, _Rule]) -> dict[str, bool]:
    nullable = {name: False for name in rules}
    changed = True
    while changed:
        changed = False
        for name, rule in rules.items():
            if nullable[name]:
                continue
            if any(all(it.nullable or (it.ref is not None and nullable.get(it.ref, False)) for it in alt)
                   for alt in rule.alts):
                nullable[name] = changed = True
    return nullable


def _needed(item: _Item) -> tuple[str, ...]:
    """The rule an item's text cannot be written without (none for a terminal or an item that may be empty)."""
    if item.nullable:
        return ()
    if item.needs is not None:
        return _needed(item.needs)
    return (item.ref,) if item.ref is not None else ()


def _finite(rules: dict[str, _Rule]) -> set[str]:
    """The rules that have a finite text (some alternative needs only rules that have one), found as a worklist
    over the alternatives, each told when a rule it waits for is found finite: linear in the grammar's size."""
    waiting: dict[str, list[int]] = {}  # rule -> the alternatives (numbered) that need it
    missing: list[int] = []  # alternative -> how many of the rules it needs are not known finite yet
    owner: list[str] = []  # alternative -> its rule
    ready: list[str] = []
    for name, rule in rules.items():
        for alt in rule.alts:
            needs = {r for item in alt for r in _needed(item)}
            for r in needs:
                waiting.setdefault(r, []).append(len(missing))
            missing.append(len(needs))
            owner.append(name)
            if not needs:
                ready.append(name)
    finite: set[str] = set()
    while ready:
        name = ready.pop()
        if name in finite:
            continue
        finite.add(name)
        for k in waiting.get(name, ()):
            missing[k] -= 1
            if missing[k] == 0:
                ready.append(owner[k])
    return finite


def _endless_rule(rules: dict[str, _Rule], root: str) -> str | None:
    """A rule the root reaches that has no finite text, where there is one: the first met again on a walk from the
    root's first such rule through such rules (one on the loop that makes them endless, not a rule that only leads
    to it), said by a named rule of that loop, else the nearest named one before it (a group has no name of its
    own); ``root`` itself when none is named. None when every rule the root reaches can end."""
    finite = _finite(rules)
    start = next((name for name in _reached(rules, root) if name not in finite), None)
    if start is None:
        return None
    path = [start]
    at = {start: 0}  # rule -> its place in the path (a chain of 20,000 rules is walked in linear time)
    while True:
        # (a rule without a finite text has, in each alternative, an item whose rule has none either)
        nxt = next(r for alt in rules[path[-1]].alts for item in alt for r in _needed(item) if r not in finite)
        if nxt in at:
            loop = path[at[nxt]:]
            named = [name for name in loop if not name.startswith("\0")]
            before = [name for name in reversed(path) if not name.startswith("\0")]
            return (named or before or [root])[0]
        at[nxt] = len(path)
        path.append(nxt)


def _reached(rules: dict[str, _Rule], root: str) -> list[str]:
    """The rules ``root`` reaches (itself first), in the order a walk meets them."""
    seen = {root}
    order = [root]
    for name in order:  # (grows as it goes)
        for alt in rules[name].alts:
            for item in alt:
                if item.ref is not None and item.ref not in seen:
                    seen.add(item.ref)
                    order.append(item.ref)
    return order


def check_gbnf(text: str, *, param: str = "grammar", root: str = "root",
               limits: GrammarLimits | None = None) -> GrammarStats:
    """Check ``text`` (GBNF) against ``limits``; return what was counted.

    Raises :class:`GrammarError` (a ``ValueError``, HTTP 400) whose message
    starts with ``param`` and whose ``param``/``code`` attributes name the
    field and the reason (``invalid_grammar`` or ``grammar_too_complex``).
    """
    limits = limits or GrammarLimits()
    if not isinstance(text, str):
        raise _error(param, f"{param}: expected GBNF text, got {type(text).__name__}", "invalid_grammar",
                     GrammarTypeError)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise _error(param, f"{param}: the grammar's size ({size:,} bytes) exceeds the limit of {limits.max_bytes:,}",
                     "grammar_too_complex")
    if "\0" in text:
        raise _error(param, f"{param}: the grammar contains a NUL character (write \\x00 inside a literal)",
                     "invalid_grammar")
    if _SURROGATE.search(text):
        raise _error(param, f"{param}: the grammar contains a lone UTF-16 surrogate", "invalid_grammar")
    p = _Parser(text, limits, param)
    p.parse()
    stats = p.stats

    for name, at in p.referenced.items():
        if name not in p.defined:
            raise p.fail(f"rule '{name}' is used but never defined", at)
    if root not in p.defined:
        raise _error(param, f"{param}: the grammar has no '{root}' rule", "invalid_grammar")

    # Walk the leftmost references the way llama.cpp's left-recursion check
    # does, but with a memo: count its calls and the longest chain, iteratively.
    rules = p.rules
    nullable = _nullable(rules)
    edges = {name: _leftmost(rules, nullable, rule) for name, rule in rules.items()}
    visits: dict[str, int] = {}
    chain: dict[str, int] = {}
    state: dict[str, int] = {}  # 1: in progress, 2: done
    for start in rules:
        if state.get(start) == 2:
            continue
        stack = [(start, 0)]
        state[start] = 1
        while stack:
            name, k = stack[-1]
            children = edges[name]
            if k < len(children):
                stack[-1] = (name, k + 1)
                child = children[k]
                s = state.get(child)
                if s == 1:
                    shown = child if not child.startswith("\0") else "a group inside it"
                    raise _in_rule(_error(param, f"{param}: the grammar is left-recursive (through rule '{shown}'); "
                                                 "llama.cpp cannot use it", "invalid_grammar"), name)
                if s is None:
                    state[child] = 1
                    stack.append((child, 0))
                continue
            stack.pop()
            state[name] = 2
            visits[name] = min(1 + sum(visits[c] for c in children), 1 << 62)
            chain[name] = 1 + max((chain[c] for c in children), default=0)
    # llama.cpp starts its check from every rule that was not visited yet.
    stats.left_visits = sum(visits.values())
    stats.chain = max(chain.values(), default=0)
    # (said of the named rule that starts the longest chain, or costs the check most: where a client's schema made
    # it, :func:`jan.templates.grammar.json_schema_to_grammar` tells the place in the schema)
    named = [name for name in chain if not name.startswith("\0")] or list(chain)
    if stats.chain > limits.max_chain:
        raise p.over("chain of leftmost rule references", stats.chain, limits.max_chain,
                     max(named, key=lambda n: chain[n]))
    if stats.left_visits > limits.max_left_visits:
        raise p.over("left-recursion check work", stats.left_visits, limits.max_left_visits,
                     max(named, key=lambda n: visits[n]))
    endless = _endless_rule(rules, root)
    if endless is not None:
        err = _in_rule(_error(param, f"{param}: rule '{endless}' can never end (each of its alternatives needs it "
                                     "again), so a model held to the grammar could not finish: it would write until "
                                     "its token limit", "invalid_grammar"), endless)
        err.endless = True
        raise err
    return stats


def rule_shares(text: str, kind: str) -> dict[str, int]:
    """Each named rule's share (with its groups) of the whole grammar ``text``'s count ``kind`` (``"rules"`` or
    ``"alternatives"``: what :func:`check_gbnf` bounds in all), read past those bounds: where a grammar over one is
    said of the part of it that holds most (the bound is crossed wherever the count happens to reach it)."""
    unbounded = GrammarLimits(max_bytes=1 << 62, max_rules=1 << 62, max_alternatives=1 << 62)
    p = _Parser(text, unbounded, "grammar")
    try:
        p.parse()
    except GrammarError:
        pass  # (another fault further on: the shares up to it)
    return p.shares[kind]


def _in_rule(err: GrammarError, rule: str | None) -> GrammarError:
    """``err`` marked with the grammar's rule it was found in (:attr:`GrammarError.rule`)."""
    err.rule = rule if rule is None or not rule.startswith("\0") else None
    return err


def _error(param: str, message: str, code: str, kind: type[GrammarError] = GrammarError) -> GrammarError:
    err = kind(message)
    err.param = param
    err.code = code
    return err
