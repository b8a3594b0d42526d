"""The Jinja environment chat templates render in, and the render budget enforced inside it.

Split from :mod:`jan.templates.chat` so that Jinja (with the pickle, tempfile and compression
modules its bytecode cache pulls in, ~2 MiB resident) loads with the first template a process
compiles, not with every import of jan: a server answering only completions or embeddings never
needs it.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, modifies_known_mutable, safe_range

from .chat import (DEFAULT_BUDGET, MAX_TEMPLATE_CHARS, ChatTemplateRenderError, RenderBudget, TemplateBudgetError,
                   TemplateError)

#: What a render raises for a template's own errors (jan's TemplateError aside).
JinjaError = jinja2.TemplateError

_budget = threading.local()  # .deadline (monotonic seconds) and .budget of the render on this thread


def _tick() -> None:
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateBudgetError(f"chat template took longer than its budget of {_budget.budget.seconds:g} s")


def _check_size(value: Any) -> Any:
    budget = getattr(_budget, "budget", None)
    if budget is not None and isinstance(value, (str, list, tuple)) and len(value) > budget.max_chars:
        raise TemplateBudgetError(f"chat template built a value of {len(value):,} items; the limit is {budget.max_chars:,}")
    return value


def _budgeted_range(*args: int) -> Any:
    for i, value in enumerate(safe_range(*args)):
        if not i & 255:
            _tick()
        yield value


def _input_ids(value: Any, seen: set[int], depth: int = 0) -> None:
    """The ids of every list, dict and set reachable from a render's inputs."""
    if isinstance(value, (list, dict, set, tuple)) and id(value) not in seen and depth < 64:
        seen.add(id(value))
        items = value.values() if isinstance(value, dict) else value
        for v in items:
            _input_ids(v, seen, depth + 1)


class _BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """HF's sandbox, plus the render budget checked at every step the template takes.

    One difference from HF's: a template may change the lists, dicts and sets it built itself (Kimi-K2 queues
    tool call ids with ``ns.ids.append(...)`` and takes them back with ``pop(0)``), as llama.cpp's template
    engine lets it. What the caller passed in (messages, tools, variables) stays immutable: those objects are
    known by id for the length of the render (they are alive throughout, so no new object can take an id).
    """

    intercepted_binops = frozenset({"*", "**", "+"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not SandboxedEnvironment.is_safe_attribute(self, obj, attr, value):
            return False
        if not modifies_known_mutable(obj, attr):
            return True
        inputs = getattr(_budget, "inputs", None)
        return inputs is not None and id(obj) not in inputs

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _tick()
        out = _check_size(super().call(__context, __obj, *args, **kwargs))
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (list, dict, set)):
            _check_size(list(owner) if not isinstance(owner, list) else owner)  # a list grown by append/extend
        return out

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        _tick()
        budget = getattr(_budget, "budget", None) or DEFAULT_BUDGET
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > budget.max_chars:
                    raise TemplateBudgetError(f"chat template built a value of {len(seq) * n:,} items; "
                                              f"the limit is {budget.max_chars:,}")
        if operator_ == "**" and isinstance(right, int) and abs(right) > 4096:
            raise TemplateBudgetError("chat template raised a number to a power over 4096")
        return _check_size(super().call_binop(context, operator_, left, right))


def _budgeted_filter(func: Any) -> Any:
    @functools.wraps(func)  # keeps jinja_pass_arg, so context-taking filters still get it
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tick()
        return _check_size(func(*args, **kwargs))

    return wrapper


def _raise_exception(message: str) -> None:
    raise TemplateError(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson HTML-escapes <, >, & and ' which would corrupt prompts;
    # HF's version is plain json.dumps without ASCII escaping.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationExtension(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: HF marks assistant text with it.

    HF uses it to build training masks; for inference it renders its body
    unchanged. Without it such templates would not even compile.
    """

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _make_env() -> ImmutableSandboxedEnvironment:
    env = _BudgetedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationExtension],
    )
    env.filters["tojson"] = _tojson
    env.filters = {name: _budgeted_filter(f) for name, f in env.filters.items()}
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["range"] = _budgeted_range
    return env


# One environment for all templates: it is never changed after this point,
# and compiled templates render concurrently without shared state.
_ENV = _make_env()


@lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """``source`` compiled in the one sandboxed environment (cached: a model's template compiles once).
    Raises :class:`TemplateError` when it is too long, does not compile or nests too deeply."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"chat template is {len(source):,} characters long; the limit is {MAX_TEMPLATE_CHARS:,}")
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"chat template does not compile: {exc} (line {exc.lineno})") from None
    except RecursionError:
        raise TemplateError("chat template nests too deeply to compile") from None


def render_budgeted(template: jinja2.Template, context: dict[str, Any], budget: RenderBudget) -> str:
    """``template.render(**context)`` within ``budget``; raises TemplateBudgetError past it."""
    outer = getattr(_budget, "deadline", None), getattr(_budget, "budget", None)
    deadline = time.monotonic() + budget.seconds
    if outer[0] is not None:
        deadline = min(deadline, outer[0])  # a nested render (the tools preamble) shares the caller's budget
    outer_inputs = getattr(_budget, "inputs", None)
    inputs: set[int] = set(outer_inputs or ())
    _input_ids(context, inputs)
    _budget.deadline, _budget.budget, _budget.inputs = deadline, budget, inputs
    try:
        parts: list[str] = []
        size = 0
        for piece in template.generate(**context):
            size += len(piece)
            if size > budget.max_chars:
                raise TemplateBudgetError(f"chat template wrote more than {budget.max_chars:,} characters")
            parts.append(piece)
            _tick()
        return "".join(parts)
    except RecursionError:
        raise ChatTemplateRenderError("chat template recursed too deeply (a macro calling itself?)") from None
    finally:
        _budget.deadline, _budget.budget = outer
        _budget.inputs = outer_inputs
