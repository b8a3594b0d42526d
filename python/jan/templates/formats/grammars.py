"""Constraint grammars that make a model call tools in its own format.

:func:`call_grammar` builds the GBNF for ``tool_choice`` ``"required"`` or
a named function (and, as a lazy grammar, for ``"auto"``): one call, or with
``parallel_tool_calls`` one or more, written exactly as the format's parser
reads them back, the arguments constrained by each function's JSON schema.
XML-style formats (Qwen3-Coder, GLM) write the required parameters, in
schema order, then nothing else: the grammar cannot express "any subset in
any order" compactly, and required-only is always a valid call.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Mapping, Sequence

from ..grammar import (LARK_KEYWORD, GrammarBuilder, GrammarError, check_schema_keywords, gbnf_literal,
                       json_schema_to_grammar, raw_literal, required_names)
from ..grammar import tool_parameters_schema as _params_schema
from .text import is_string_param, json_value_text
from .xml_calls import GLM_STOPS, QWEN3_CODER_STOPS, XmlStops

__all__ = ["call_grammar", "select_functions"]


def select_functions(tools: Sequence[Any], tool_choice: Any) -> list[Mapping[str, Any]]:
    """The function dicts a ``tool_choice`` allows; raises GrammarError for an unknown name or no tools."""
    funcs = []
    for t in tools or ():
        fn = t.get("function") if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping) else t
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str) and fn.get("name"):
            funcs.append(fn)
    wanted = None
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function")
        wanted = fn.get("name") if isinstance(fn, Mapping) else tool_choice.get("name")
        if not isinstance(wanted, str):
            raise GrammarError("tool_choice must name a function")
    elif isinstance(tool_choice, str) and tool_choice not in ("auto", "required", "any", "none"):
        wanted = tool_choice
    if wanted is not None:
        funcs = [f for f in funcs if f["name"] == wanted]
        if not funcs:
            raise GrammarError(f"tool_choice names {wanted!r}, which is not in tools")
    if not funcs:
        raise GrammarError("tool_choice requires at least one tool")
    return funcs


def parameters_error(parameters: Any) -> GrammarError | None:
    """Why a tool's ``parameters`` schema cannot constrain a call (``None`` when it can), as the
    :class:`GrammarError` a run's grammar would fail with (a ``$ref`` that does not resolve, a ``false`` property,
    an empty enum, a bad pattern, a grammar over llama.cpp's bounds...), located in the schema: its caller names the
    field (:meth:`~GrammarError.said_of`; the error returned may be shared: never raise it as it is).

    Kept per schema text (in its own key order, which the grammar follows): a client sends the same tools request
    after request, and token counting checks them without building any call grammar."""
    try:
        key = json.dumps(parameters, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return _parameters_error(parameters)
    return _cached_parameters_error(key)


@functools.lru_cache(maxsize=512)
def _cached_parameters_error(parameters_json: str) -> GrammarError | None:
    return _parameters_error(json.loads(parameters_json))


def _parameters_error(parameters: Any) -> GrammarError | None:
    try:
        json_schema_to_grammar(_params_schema({"parameters": parameters}))
    except GrammarError as exc:
        return exc
    return None


def parameters_problem(parameters: Any) -> str | None:
    """:func:`parameters_error` as text (the place a JSON pointer into the schema: ``#/properties/x/type: ...``). A
    tool jan offers from a provider (an MCP server's) is left out for it, rather than failing the run."""
    err = parameters_error(parameters)
    return None if err is None else str(err)


def _named(exc: GrammarError, tools: Sequence[Any], fn: Mapping[str, Any]) -> GrammarError:
    """``exc`` (a tool's parameters schema that does not convert) said of the field the client sent it in, the
    place in the schema kept (:meth:`GrammarError.said_of`)."""
    i = next((k for k, t in enumerate(tools) if t is fn or (isinstance(t, Mapping) and t.get("function") is fn)), None)
    return exc.said_of(f"tools[{i}].function.parameters" if i is not None else "tools")


def _rule_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", name) or "fn"


#: the call grammars that write a string value as raw text between tags, each with what its parser reads as structure
RAW_VALUE_STOPS: dict[str, XmlStops] = {"qwen3-coder": QWEN3_CODER_STOPS, "seed-oss": QWEN3_CODER_STOPS,
                                        "glm": GLM_STOPS}


def raw_value_calls(fmt_name: str) -> bool:
    """Whether call grammar ``fmt_name`` (a :class:`ChatFormat` ``tool_grammar`` key) writes string values raw between
    tags, where :func:`call_grammar` refuses a schema literal holding what its parser reads as structure."""
    return fmt_name in RAW_VALUE_STOPS


def _raw_literal(text: str, stops: XmlStops, at: tuple[str | int, ...], name: bool = False) -> None:
    """Refuse (GrammarError located at ``at`` in the parameters schema) a schema's own text that a call grammar would
    write raw between the tags of an XML-style call (a parameter's name, an enum/const value) when the format's parser
    would read it back as something else: a value has no escape there, and llama.cpp's grammar matches a control
    token by its text, so ``</parameter>`` inside the value would end it (the call cut, the rest markup)."""
    what = "parameter's name" if name else "value"
    for tag, meaning in (stops.key if name else stops.value).items():
        if tag in text:
            raise GrammarError(f"the {what} holds `{tag}`, which is {meaning} in this model's call format and cannot "
                               "be escaped there", code="invalid_schema").located(at)
    if name and text != text.strip():
        raise GrammarError(f"the {what} starts or ends with white space, which this model's call format drops from "
                           "a name", code="invalid_schema").located(at)
    if not name and stops.value_trimmed and (text.startswith("\n") or text.endswith("\n")):
        raise GrammarError(f"the {what} starts or ends with a newline, which this model's call format drops from a "
                           "value", code="invalid_schema").located(at)


def _xml_params(b: GrammarBuilder, fn: Mapping[str, Any], key_open: str, key_close: str, val_open: str, val_close: str,
                stops: XmlStops) -> str:
    schema = _params_schema(fn)
    if isinstance(schema, Mapping):
        # (its properties and required are read here, before add_schema would check them: a "required" of 1 was a
        # TypeError, the request's 500)
        check_schema_keywords(schema, ())
        # the call holds only the required parameters, but every one the model may be shown must be a schema a
        # grammar can hold: an optional one's fault (a type no JSON has) was let through in these formats alone,
        # refused in every other (said of its place, as there)
        GrammarBuilder().add_schema(schema)
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    required = [k for k in required_names(schema) if isinstance(props, Mapping) and k in props] if isinstance(schema, Mapping) else []
    parts = []
    for key in required:
        # (the name is written raw between its tags, as a string value is: what the parser would read as markup in
        # either is refused, said of its place in the schema)
        _raw_literal(key, stops, ("properties", key), name=True)
        enum = props[key].get("enum") if isinstance(props[key], Mapping) else None
        const = props[key].get("const") if isinstance(props[key], Mapping) else None
        if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
            for i, v in enumerate(enum):
                _raw_literal(v, stops, ("properties", key, "enum", i))
            # a parameter not typed a string is read back as JSON where its text is JSON ("123" came back 123): such
            # a value is written as its JSON string, which the parser reads back as the value itself
            value = "( " + " | ".join(raw_literal(v) if json.loads(json_value_text(schema, key, v)) == v
                                      else gbnf_literal(json.dumps(v, ensure_ascii=False)) for v in enum) + " )"
        elif isinstance(const, str) and is_string_param(schema, key):
            # a string const is its one value, written raw as an enum's is (free text could not write it when it
            # holds a "<", and would let the model write another)
            _raw_literal(const, stops, ("properties", key, "const"))
            value = raw_literal(const)
        elif is_string_param(schema, key) and isinstance((props[key] or {}).get(LARK_KEYWORD), str):
            # a custom tool's text, written as itself between the tags: held to its Lark grammar
            hint = f"{_rule_name(fn['name'])}-{_rule_name(key)}"
            # (narrowed so that it never writes what the parser reads as the value's end: raw_text_without)
            try:
                value = b.add_text_grammar(props[key][LARK_KEYWORD], "raw", hint, tuple(stops.value))
            except GrammarError as exc:
                raise exc.located(("properties", key, LARK_KEYWORD)) from None
        elif is_string_param(schema, key):
            value = b.add_rule(f"{_rule_name(fn['name'])}-{_rule_name(key)}-text", '[^<]*')
        else:
            # ($refs in it point into the whole parameters schema: its $defs are the root's)
            value = b.add_schema(props[key], f"{_rule_name(fn['name'])}-{_rule_name(key)}", root=schema,
                                 path=("properties", key))
        parts.append(f"{gbnf_literal(key_open + key + key_close)} {value} {gbnf_literal(val_close)}")
    return " ".join(parts) if parts else '""'


def call_grammar(fmt_name: str, tools: Sequence[Any], tool_choice: Any = "required", *, parallel: bool = True) -> str:
    """GBNF forcing tool call(s) in format ``fmt_name`` (a :class:`ChatFormat` ``tool_grammar`` key).

    Raises :class:`GrammarError` (a ValueError) for a bad ``tool_choice`` or schema.
    """
    funcs = select_functions(tools, tool_choice)
    b = GrammarBuilder()
    ws = b.primitive("ws")

    def args_rule(fn: Mapping[str, Any]) -> str:
        return b.add_schema(_params_schema(fn), f"{_rule_name(fn['name'])}-args")

    def name_json(fn: Mapping[str, Any]) -> str:
        return gbnf_literal(json.dumps(fn["name"], ensure_ascii=False))

    def alt(body_of) -> str:
        alts = []
        for f in funcs:
            # the tool's schema alone first, as every entry point checks it (check_schemas): what only its finished
            # grammar shows (no finite value, a bound of llama.cpp's) is said of its place, not of the call grammar
            err = parameters_error(f.get("parameters"))
            if err is not None:
                raise _named(err, tools, f)
            try:
                body = body_of(f)
            except GrammarError as exc:
                raise _named(exc, tools, f) from None
            alts.append(b.add_rule(f"{_rule_name(f['name'])}-call", body))
        return alts[0] if len(alts) == 1 else "( " + " | ".join(alts) + " )"

    def repeat(call: str, sep: str = ws) -> str:
        return f"{call} ( {sep} {call} )*" if parallel else call

    if fmt_name == "hermes":
        call = alt(lambda f: f'"<tool_call>\\n{{\\"name\\": " {name_json(f)} ", \\"arguments\\": " {args_rule(f)} "}}\\n</tool_call>"')
        root = repeat(call)
    elif fmt_name == "llama3":
        root = alt(lambda f: f'"{{\\"name\\": " {name_json(f)} ", \\"parameters\\": " {args_rule(f)} "}}"')
    elif fmt_name in ("mistral-json", "granite", "nemotron", "firefunction", "apriel"):
        obj = alt(lambda f: f'"{{\\"name\\": " {name_json(f)} ", \\"arguments\\": " {args_rule(f)} "}}"')
        items = f'{obj} ( ", " {obj} )*' if parallel else obj
        open_, close = {
            "mistral-json": ("[TOOL_CALLS][", "]"),
            "granite": ("<|tool_call|>[", "]"),
            "nemotron": ("<TOOLCALL>[", "]</TOOLCALL>"),
            "firefunction": (" functools[", "]"),
            "apriel": ("<tool_calls>[", "]</tool_calls>"),
        }[fmt_name]
        root = f"{gbnf_literal(open_)} {items} {gbnf_literal(close)}"
    elif fmt_name == "mistral-args":
        call = alt(lambda f: f'"[TOOL_CALLS]" {gbnf_literal(f["name"])} "[ARGS]" {args_rule(f)}')
        root = repeat(call, '""')
    elif fmt_name == "functionary-v3.1":
        call = alt(lambda f: f'"<function=" {gbnf_literal(f["name"])} ">" {args_rule(f)} "</function>"')
        root = repeat(call, '""')
    elif fmt_name == "functionary-v3.2":
        # the prompt ends with ">>>": the first recipient follows directly
        call = alt(lambda f: f'{gbnf_literal(f["name"])} "\\n" {args_rule(f)}')
        root = f'{call} ( ">>>" {call} )*' if parallel else call
    elif fmt_name in ("qwen3-coder", "seed-oss"):
        wrap = "seed:tool_call" if fmt_name == "seed-oss" else "tool_call"  # Seed-OSS's own wrapper tag
        call = alt(
            lambda f: f'{gbnf_literal("<" + wrap + ">" + chr(10) + "<function=" + f["name"] + ">" + chr(10))} '
            f'{_xml_params(b, f, "<parameter=", ">" + chr(10), "", chr(10) + "</parameter>" + chr(10), RAW_VALUE_STOPS[fmt_name])} '
            f'{gbnf_literal("</function>" + chr(10) + "</" + wrap + ">")}'
        )
        root = repeat(call)
    elif fmt_name == "glm":
        call = alt(
            lambda f: f'{gbnf_literal("<tool_call>" + f["name"] + chr(10))} '
            f'{_xml_params(b, f, "<arg_key>", "</arg_key>" + chr(10) + "<arg_value>", "", "</arg_value>" + chr(10), RAW_VALUE_STOPS[fmt_name])} '
            '"</tool_call>"'
        )
        root = repeat(call)
    elif fmt_name in ("deepseek-r1", "deepseek-v3.1"):
        if fmt_name == "deepseek-r1":
            call = alt(lambda f: f'"<｜tool▁call▁begin｜>function<｜tool▁sep｜>" {gbnf_literal(f["name"])} "\\n```json\\n" {args_rule(f)} "\\n```<｜tool▁call▁end｜>"')
        else:
            call = alt(lambda f: f'"<｜tool▁call▁begin｜>" {gbnf_literal(f["name"])} "<｜tool▁sep｜>" {args_rule(f)} "<｜tool▁call▁end｜>"')
        root = f'"<｜tool▁calls▁begin｜>" {repeat(call, chr(34) * 2)} "<｜tool▁calls▁end｜>"'
    elif fmt_name == "kimi":
        call = alt(lambda f: f'"<|tool_call_begin|>functions." {gbnf_literal(f["name"])} ":" [0-9] "<|tool_call_argument_begin|>" {args_rule(f)} "<|tool_call_end|>"')
        root = f'"<|tool_calls_section_begin|>" {repeat(call, chr(34) * 2)} "<|tool_calls_section_end|>"'
    elif fmt_name == "solar-open":
        # the call id: ten lowercase letters or digits, as the template asks of the model
        ident = " ".join(["[a-z0-9]"] * 10)
        call = alt(lambda f: f'"<|tool_call:begin|>" {ident} "<|tool_call:name|>" {gbnf_literal(f["name"])} '
                             f'"<|tool_call:args|>" {args_rule(f)} "<|tool_call:end|>"')
        # the calls message's header is the model's to write after its thinking (the prompt ends in the first one)
        root = f'"<|begin|>assistant"? "<|tool_calls|>" {repeat(call, chr(34) * 2)} "<|calls|>"'
    elif fmt_name == "harmony":
        root = alt(lambda f: f'"<|channel|>commentary to=functions." {gbnf_literal(f["name"])} " <|constrain|>json<|message|>" {args_rule(f)}')
    elif fmt_name == "apertus":
        # the short form: each call one object whose member is named after the function
        obj = alt(lambda f: f'"{{" {name_json(f)} ": " {args_rule(f)} "}}"')
        items = f'{obj} ( ", " {obj} )*' if parallel else obj
        root = f'"<|tools_prefix|>[" {items} "]<|tools_suffix|>"'
    elif fmt_name == "command-r7b":
        obj = alt(lambda f: f'"{{\\"tool_call_id\\": \\"" [0-9] "\\", \\"tool_name\\": " {name_json(f)} ", \\"parameters\\": " {args_rule(f)} "}}"')
        items = f'{obj} ( ", " {obj} )*' if parallel else obj
        root = f'"<|START_ACTION|>[" {items} "]<|END_ACTION|>"'
    else:
        raise GrammarError(f"no tool-call grammar for format {fmt_name!r}")
    b.add_rule("root", root)
    return b.format()
