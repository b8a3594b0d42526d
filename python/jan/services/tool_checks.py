"""The checks of what a run's tools are made of: the ``tools`` entries and the ``tool_policy`` of an assistant, a
thread's ``assistants[i]`` entry or a run, as the API takes them and as the stored layers are read back.

Every place that takes them (``POST /v1/assistants``, ``POST /v1/threads``, a run's body, and the run service for
what it reads from the data folder) checks them here, so an entry no run could use is refused where it is given —
the request's 400 naming the field — and never a run that fails at its first turn, nor a value quietly read as
something else (a ``max_steps`` of ``"x"`` once answered with Python's own ``int()`` error and no ``param``; an
``auto_approve`` string was read letter by letter as a list of patterns)."""

from __future__ import annotations

import re
from typing import Any

from jan.core.interfaces.tools import TOOL_NAME_RE
from jan.json_text import finite_number
from jan.services.errors import RequestError, check_unique_tool_names

__all__ = ["SERVER_NAME_RULE", "TOOL_POLICY_KEYS", "check_function_entries", "check_tool_entries", "check_tool_policy", "valid_server_name"]

#: What an MCP server's name may be (as ``mcp.json`` takes it): ``__`` is no part of one, it separates a server's
#: name from its tool's in the names jan gives MCP tools (``<server>__<tool>``).
SERVER_NAME_RULE = "letters, digits, '_' or '-', at most 40, starting with a letter or digit, without '__'"
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")

#: A function's name, as every dialect takes it (OpenAI's and Anthropic's rule; the registry's tools keep it too).
TOOL_NAME_RULE = "1-64 of a-z A-Z 0-9 _ - (OpenAI's rule for a function's name)"

#: What a ``tool_policy`` holds (:func:`jan.services.tool_loop.resolve_policy` reads them).
TOOL_POLICY_KEYS = ("auto_approve", "max_steps", "timeout", "tool_choice")
#: The most model turns a policy may allow: a count, bounded as every other count of the API (int32).
_MAX_STEPS_LIMIT = 2**31 - 1


def valid_server_name(name: str) -> bool:
    """Whether ``name`` can name an MCP server (:data:`SERVER_NAME_RULE`)."""
    return bool(_SERVER_NAME.match(name)) and "__" not in name


def _refuse(param: str, message: str, code: str = "invalid_value") -> RequestError:
    return RequestError(f"{param}: {message}", param=param, code=code)


def _check_function(entry: dict[str, Any], where: str) -> str:
    """A function entry's ``function`` as the chat dialects take a function tool (its name, its description a
    string, its parameters a JSON schema object, ``strict`` a boolean); its name."""
    fn = entry.get("function")
    if not isinstance(fn, dict):
        raise _refuse(f"{where}.function", "required (an object with the function's name)")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise _refuse(f"{where}.function.name", "required (a non-empty string)")
    if not TOOL_NAME_RE.match(name):
        raise _refuse(f"{where}.function.name", f"{name[:80]!r} is no function name: use {TOOL_NAME_RULE}")
    for key, kind, wanted in (("description", str, "a string"), ("parameters", dict, "a JSON schema object"),
                              ("strict", bool, "true or false")):
        value = fn.get(key)
        if value is not None and not isinstance(value, kind):
            raise _refuse(f"{where}.function.{key}", f"must be {wanted}, not {type(value).__name__}")
    return name


def check_function_entries(tools: Any, *, param: str) -> None:
    """The function entries of a list of tool entries (the other kinds as they are): those of a stored layer, which
    the run reads (:func:`jan.services.tool_loop.resolve_policy`) and a client's function's description or schema
    of the wrong kind would fail at the run's first turn."""
    for i, entry in enumerate(tools if isinstance(tools, list) else ()):
        if isinstance(entry, dict) and entry.get("type") == "function":
            _check_function(entry, f"{param}[{i}]")


def check_tool_entries(tools: Any, *, param: str) -> None:
    """The ``tools`` of an assistant, a thread's assistant entry or a run, as stored and read by
    :func:`jan.services.tool_loop.resolve_policy`: each an object of a kind jan can run, function names unique and
    of the shape every dialect takes. OpenAI's hosted tools (``code_interpreter``, ``file_search``, ``web_search``...)
    have nothing behind them here: asking for one is the request's 400 (``RequestError``), not a run that silently
    goes without it. An entry of another kind that says ``enabled: false`` (Jan desktop's assistants carry a
    disabled ``retrieval``) is kept."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise RequestError(f"{param}: must be a list of tools", param=param, code="invalid_value")
    functions: list[tuple[int, str]] = []
    for i, entry in enumerate(tools):
        where = f"{param}[{i}]"
        if not isinstance(entry, dict):
            raise RequestError(f"{where}: must be an object", param=where, code="invalid_value")
        kind = entry.get("type")
        if kind == "function":
            functions.append((i, _check_function(entry, where)))
        elif kind == "mcp":
            label = entry.get("server_label")
            if not isinstance(label, str) or not label:
                raise RequestError(f"{where}.server_label: required (an MCP server's name, see GET /v1/mcp/servers)",
                                   param=f"{where}.server_label", code="invalid_value")
            if not valid_server_name(label):
                raise RequestError(f"{where}.server_label: {label!r} can be no MCP server's name ({SERVER_NAME_RULE})",
                                   param=f"{where}.server_label", code="invalid_value")
            allowed = entry.get("allowed_tools")
            if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(t, str) for t in allowed)):
                raise RequestError(f"{where}.allowed_tools: must be a list of the server's tool names",
                                   param=f"{where}.allowed_tools", code="invalid_value")
        elif entry.get("enabled") is not False:
            raise RequestError(f"{where}.type: {kind!r} is not a tool jan can run (it has no hosted tools such as a "
                               "code interpreter, file search or web search); give function tools or MCP servers "
                               "({'type': 'mcp', 'server_label': ...})", param=f"{where}.type", code="unsupported_tool")
    check_unique_tool_names(functions, param=param)


def check_tool_policy(policy: Any, *, param: str) -> None:
    """A ``tool_policy`` (``{"auto_approve": [names or patterns], "max_steps": n, "timeout": seconds,
    "tool_choice": the first turn's}``), null being none: each value of the kind the run reads, or a
    :class:`RequestError` naming it (``param``: the body's path to the policy). A key the policy does not have is
    refused too: a misspelt ``max_step`` would otherwise be a limit the user believes is there."""
    if policy is None:
        return
    if not isinstance(policy, dict):
        raise _refuse(param, f"must be an object ({', '.join(TOOL_POLICY_KEYS)}), not {type(policy).__name__}")
    for key in policy:
        if key not in TOOL_POLICY_KEYS:
            raise _refuse(f"{param}.{key}", f"no such setting (a tool_policy has {', '.join(TOOL_POLICY_KEYS)})",
                          code="unknown_parameter")
    patterns = policy.get("auto_approve")
    if patterns is not None and (not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns)):
        raise _refuse(f"{param}.auto_approve", "must be a list of tool names or patterns ('*' wildcards)")
    steps = policy.get("max_steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)
                              or not 1 <= steps <= _MAX_STEPS_LIMIT):
        raise _refuse(f"{param}.max_steps", f"must be a whole number of model turns from 1 to {_MAX_STEPS_LIMIT}, "
                                            f"not {steps!r}")
    timeout = policy.get("timeout")
    if timeout is not None and (not finite_number(timeout) or timeout <= 0):
        raise _refuse(f"{param}.timeout", f"must be a number of seconds above 0, not {timeout!r}")
    choice = policy.get("tool_choice")
    named = isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict) \
        and isinstance(choice["function"].get("name"), str)
    if choice is not None and choice not in ("auto", "none", "required") and not named:
        raise _refuse(f"{param}.tool_choice", "expected 'auto', 'none', 'required' or {\"type\": \"function\", "
                                              f"\"function\": {{\"name\": ...}}}}, got {choice!r}")
