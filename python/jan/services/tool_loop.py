"""The tool loop of a run: which tools an assistant may use, who approves a call, running calls, recording them.

No web framework here: the run's executor (:class:`jan.services.runs.RunService`)
drives the loop — generate a step; if the model called tools, :func:`triage`
them, run the approved ones with :func:`run_calls`, save them with
:func:`save_tool_messages`, continue — and stops in ``requires_action`` when
a call needs the user.

**Which tools.** An assistant's ``tools`` (overridden by the thread's
``assistants[0].tools``, then by a run's ``tools``) lists entries in
OpenAI's shapes:

* ``{"type": "function", "function": {"name": "current_time"}, "require_approval": "never"}``
  — one tool of the registry (built-in or ``<server>__<tool>`` from MCP).
  A function the registry does not have (it carries its own
  ``description``/``parameters``) is a *client* tool: the run always stops
  in ``requires_action`` and the caller submits its output.
* ``{"type": "mcp", "server_label": "notes", "allowed_tools": ["read_note"], "require_approval": "never"}``
  — the tools of one configured MCP server (all, or ``allowed_tools``).

**Approval.** ``require_approval`` is ``"always"`` unless the entry says
``"never"`` (or the tool's name is in the policy's ``auto_approve``
list, which may use ``*`` wildcards): no tool runs without the user unless
it is allowlisted. A call the policy does not allow is put to the user
(``required_action.submit_tool_outputs``); they approve, deny (the model is
told) or provide the output.

**Records.** The assistant's tool-calling turn is saved as an assistant
message with ``metadata.tool_calls`` (OpenAI's ``tool_calls`` list); each
result as a ``role: "tool"`` message whose ``metadata`` holds
``tool_call_id``, ``name``, ``arguments``, ``duration_ms``, ``approved_by``
(``"policy"``, ``"user"`` or ``"client"``), ``is_error`` and ``run_id`` (also the message's own
``run_id``, as the run's replies carry it: ``?run_id=`` lists a run's messages).
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from jan.json_text import loads_json
from jan.image_types import b64encode_text
from jan.core import Tool, ToolRegistry, ToolResult
from jan.core.tools import DEFAULT_TOOL_TIMEOUT, ToolCallOutcome
from jan.services.errors import RequestError
from jan.templates.formats.reasoning import joined_thoughts
from jan.services.thread_turns import stored_calls, stored_metadata
# (the checks of entries and policies, here since the loop's start: imported from here too)
from jan.services.tool_checks import (SERVER_NAME_RULE, check_function_entries, check_tool_entries,  # noqa: F401
                                     check_tool_policy, valid_server_name)

__all__ = [
    "DEFAULT_MAX_STEPS",
    "PendingCall",
    "ToolDecision",
    "ToolPolicy",
    "chat_messages",
    "check_tool_schemas",
    "documents_of",
    "image_files_of",
    "resolve_policy",
    "run_calls",
    "save_tool_messages",
    "tool_bookkeeping",
    "triage",
    "turn_dict",
    "whole_arguments",
]

#: Model turns a run may take (each tool round is one) before it must answer.
DEFAULT_MAX_STEPS = 8
DENIED = "The user denied this tool call."


def whole_arguments(arguments: str) -> bool:
    """Whether a call's arguments are a whole JSON object, not cut off mid-way. A turn the token limit ended
    (``finish_reason: "length"``) may hold a call whose arguments it cut: such a call is neither run nor put to the
    user (a run, ``jan chat``), as its arguments are not what the model meant to pass; one whose arguments are whole
    (only its closing markup cut) counts. Empty arguments are no whole object: the output parser gives a call cut
    off after its name, before any of its arguments, as ``""`` (a call the model finished without arguments is
    ``"{}"``), and taking it for ``{}`` put a forced call that the limit cut short to the user, or to the client as
    ``requires_action``, with arguments the model never wrote."""
    try:
        return isinstance(loads_json(arguments), dict) if arguments.strip() else False
    except ValueError:
        return False


@dataclass(frozen=True)
class ToolEntry:
    """One usable tool of a run: its OpenAI spec, the registry tool (``None``: a client tool), auto-approval."""

    name: str
    spec: dict[str, Any]
    tool: Tool | None
    auto: bool


@dataclass
class ToolPolicy:
    """The tools of a run and the rules for calling them (see the module docstring)."""

    entries: dict[str, ToolEntry] = field(default_factory=dict)
    #: The first model turn's ``tool_choice`` when the run gives none (e.g. always look something up first).
    tool_choice: Any = None
    max_steps: int = DEFAULT_MAX_STEPS
    timeout: float = DEFAULT_TOOL_TIMEOUT
    #: Entries that name nothing the run can use (:class:`ToolProblem`): a run refuses to start with a ``hard`` one,
    #: and tells the others in its ``warnings``.
    problems: list[ToolProblem] = field(default_factory=list)
    #: MCP servers whose tools the run lacks, by name: why (a call of one of their tools is told that, not that the
    #: run may not use it).
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Tools left out of the run although they are there, by name: why (their parameters schema cannot be used).
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return [p.message for p in self.problems]

    def check(self) -> None:
        """:class:`RequestError` for the first entry that names nothing jan has (a server not configured, a tool no
        provider offers): a run would go on without it, which is no run the user asked for."""
        hard = next((p for p in self.problems if p.hard), None)
        if hard is not None:
            raise RequestError(hard.message, param=hard.param, code=hard.code)

    @property
    def specs(self) -> list[dict[str, Any]]:
        """The ``tools`` of the chat request."""
        return [e.spec for e in self.entries.values()]

    def __bool__(self) -> bool:
        return bool(self.entries)


@dataclass(frozen=True)
class ToolProblem:
    """A tool entry that gives the run nothing: ``hard`` when it names nothing jan has (a run refuses to start:
    the request's 400, ``code`` ``unknown_mcp_server`` or ``unknown_tool``), otherwise a server that is there but
    off or down now (the run goes on without its tools and says so in its ``warnings``)."""

    message: str
    param: str
    code: str
    hard: bool


@dataclass(frozen=True)
class PendingCall:
    """A call waiting for the user: OpenAI's ``{"id", "type": "function", "function": {"name", "arguments"}}``."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PendingCall":
        fn = data.get("function") or {}
        return cls(str(data["id"]), str(fn.get("name", "")), str(fn.get("arguments", "") or ""))


@dataclass(frozen=True)
class ToolDecision:
    """Outcome of a user's (or the client's) answer to one pending call."""

    call: PendingCall
    approve: bool = False
    output: str | None = None  # the client's own output (approve is then irrelevant)
    reason: str | None = None


#: Tool kinds a run can use: functions (a client's, or a built-in/MCP tool by name) and MCP servers.
TOOL_KINDS = ("function", "mcp")


def _stored_check(check: Callable[..., None], value: Any, owner: str, param: str) -> None:
    """``check(value, param=param)``, its :class:`RequestError` told as the ``owner``'s (a stored layer's)."""
    try:
        check(value, param=param)
    except RequestError as exc:
        raise RequestError(f"{owner}{exc}" if owner else str(exc), param=exc.param, code=exc.code) from None


def _tool_list(value: Any) -> list[dict[str, Any]] | None:
    return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else None


def _approval(entry: dict[str, Any]) -> str:
    value = entry.get("require_approval", "always")
    return "never" if value == "never" else "always"


async def resolve_policy(registry: ToolRegistry, *, run_tools: Any = None, thread_entry: dict[str, Any] | None = None,
                         assistant: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> ToolPolicy:
    """The tools a run may use: run ``tools`` > thread ``assistants[0].tools`` > assistant ``tools``.

    ``tool_policy`` (``{"auto_approve": [...], "max_steps": n, "timeout": s, "tool_choice": ...}``)
    is read the same way (run ``overrides`` > thread entry > assistant).
    Tools the registry does not offer are left out, never silently: an entry naming nothing jan has (an MCP
    server that is not configured, an ``allowed_tools`` name its server lacks, a function that is neither a tool
    of the registry nor a client tool describing itself) is a hard :class:`ToolProblem` (the run's start refuses
    it: :meth:`ToolPolicy.check`); one whose server is configured but disabled or down now is a warning, and the
    server's calls are told why (``policy.unavailable``).
    """
    thread_entry = thread_entry or {}
    assistant = assistant or {}
    # where the entries come from, for the problems found in them
    entries, owner, prefix = _tool_list(run_tools), "", "tools"
    if entries is None:
        entries, owner, prefix = _tool_list(thread_entry.get("tools")), "the thread's ", "assistants[0].tools"
    if entries is None:
        entries = _tool_list(assistant.get("tools")) or []
        owner, prefix = f"assistant '{assistant.get('id') or '?'}' ", "tools"
    # The stored layers were written by any client (or by hand): one no run could use is the request's 400 naming
    # where it lives (as the stored parameters are: RunService._start), never a value read as something else nor a
    # run that fails at its first turn.
    layers = ((overrides, "", "tool_policy"),
              (thread_entry.get("tool_policy"), "the thread's ", "assistants[0].tool_policy"),
              (assistant.get("tool_policy"), f"assistant '{assistant.get('id') or '?'}' ", "tool_policy"))
    for layer, layer_owner, param in layers:
        _stored_check(check_tool_policy, layer, layer_owner, param)
    _stored_check(check_function_entries, entries, owner, prefix)
    policy_layers = [p for p, _, _ in layers if isinstance(p, dict)]

    def setting(key: str, default: Any) -> Any:
        return next((p[key] for p in policy_layers if p.get(key) is not None), default)

    auto_patterns = [str(p) for p in setting("auto_approve", []) or []]
    policy = ToolPolicy(max_steps=max(1, int(setting("max_steps", DEFAULT_MAX_STEPS))),
                        timeout=float(setting("timeout", DEFAULT_TOOL_TIMEOUT)),
                        tool_choice=setting("tool_choice", None))
    if not entries:
        return policy
    # The MCP servers this run names: only they are started or waited for while listing (a hung server the run
    # does not use must not hold it up).
    named = {e.get("server_label") for e in entries if e.get("type") == "mcp" and isinstance(e.get("server_label"), str)}
    named |= {fn["name"].split("__", 1)[0] for e in entries if e.get("type") == "function"
              for fn in [e.get("function") or {}] if isinstance(fn.get("name"), str) and "__" in fn["name"]}
    available = {t.name: t for t in await _list_tools(registry, named)}
    servers = await _mcp_servers(registry)
    # each provider tool's schema is checked by making its grammar: on a worker thread, as every grammar is made
    unusable = await asyncio.to_thread(lambda: {t.name: _schema_problem(t.spec()) for t in available.values()})

    clients: dict[str, str] = {}  # a client's own functions: where each is given

    def add(name: str, tool: Tool | None, spec: dict[str, Any], never: bool, where: str) -> None:
        if tool is not None:
            # A provider's schema that no grammar can be made of (an MCP server's $ref that does not resolve, a
            # `false` property...) failed the whole run, every run offering that server: this tool is left out
            # and told, as a server that is down is. (A client's own function is the request's 400, below:
            # the schema is the client's.)
            why = unusable[name] if name in unusable else _schema_problem(spec)
            if why is not None:
                policy.left_out[name] = f"its parameters schema cannot be used ({why})"
                problem(where, f"the tool '{name}' is left out: its parameters schema cannot be used ({why})",
                        "unusable_tool_schema", hard=False)
                return
        else:
            clients[name] = where
        auto = tool is not None and (never or any(fnmatch.fnmatchcase(name, p) for p in auto_patterns))
        policy.entries[name] = ToolEntry(name, spec, tool, auto)

    def problem(where: str, message: str, code: str, *, hard: bool, param: str | None = None) -> None:
        """``param``: the field, where ``where`` is a place inside it (a path in its schema)."""
        policy.problems.append(ToolProblem(f"{owner}{where}: {message}", param or where, code, hard))

    def server_down(label: str, where: str) -> bool:
        """Whether ``label`` names a configured server that is off or down now (told as a warning); one that is not
        configured is the entry's hard problem."""
        status = servers.get(label)
        if status is None:
            policy.unavailable[label] = f"no MCP server '{label}' is configured"
            problem(where, f"names MCP server '{label}', which is not configured (GET /v1/mcp/servers lists "
                           "them)", "unknown_mcp_server", hard=True)
            return True
        if not status.enabled:
            why = f"MCP server '{label}' is disabled (POST /v1/mcp/servers/{label}/enable)"
        elif not any(t.source == f"mcp:{label}" for t in available.values()):
            state = str(getattr(status.state, "value", status.state))
            if state == "starting":  # a slow or hung handshake: it goes on starting, a later run may have it
                why = f"MCP server '{label}' is still starting"
            elif state == "running":
                why = f"MCP server '{label}' is running but offers no tools"
            else:
                why = f"MCP server '{label}' is not available ({status.error or state})"
        else:
            return False
        policy.unavailable[label] = why
        problem(where, f"{why}: its tools are not offered to this run", "mcp_server_unavailable", hard=False)
        return True

    for i, entry in enumerate(entries):
        where = f"{prefix}[{i}]"
        kind = entry.get("type")
        if kind == "function":
            fn = entry.get("function") or {}
            name = fn.get("name")
            if not isinstance(name, str) or not name:
                continue
            tool = available.get(name)
            if tool is not None:
                add(name, tool, tool.spec(), _approval(entry) == "never", f"{where}.function")
            elif isinstance(fn.get("parameters"), dict) or fn.get("description"):
                add(name, None, {"type": "function", "function": {
                    "name": name, "description": fn.get("description") or "",
                    "parameters": fn.get("parameters") or {"type": "object", "properties": {}}}}, False, where)
            else:
                label = name.split("__", 1)[0] if "__" in name else None
                if label is not None and servers and server_down(label, f"{where}.function.name"):
                    continue
                problem(f"{where}.function.name", f"names '{name}', which is no tool jan has (GET /v1/tools lists "
                        "them; a client's own tool gives its description and parameters)", "unknown_tool", hard=True)
        elif kind == "mcp":
            label = entry.get("server_label")
            if not isinstance(label, str):
                continue
            if servers is None:  # no MCP host enabled (the mcp extension turned off)
                policy.unavailable[label] = "no MCP host is enabled (the 'mcp' extension)"
                problem(f"{where}.server_label", f"MCP server '{label}': no MCP host is enabled (the 'mcp' "
                        "extension): its tools are not offered to this run", "mcp_server_unavailable", hard=False)
                continue
            if server_down(label, f"{where}.server_label"):
                continue
            allowed = entry.get("allowed_tools")
            prefix_ = f"{label}__"
            offered = {getattr(tool, "mcp_name", name[len(prefix_):]): (name, tool) for name, tool in available.items()
                       if tool.source == f"mcp:{label}" and name.startswith(prefix_)}
            if isinstance(allowed, list):
                unknown = [t for t in allowed if t not in offered]
                if unknown and offered:
                    problem(f"{where}.allowed_tools", f"MCP server '{label}' has no tool {', '.join(map(repr, unknown))} "
                            f"(it has {', '.join(sorted(offered))})", "unknown_tool", hard=True)
            for mcp_name, (name, tool) in offered.items():
                if isinstance(allowed, list) and mcp_name not in allowed:
                    continue
                add(name, tool, tool.spec(), _approval(entry) == "never", where)
    if clients:
        # A client's own function whose schema no grammar can be made of is the request's 400 (as a chat
        # completion's is), found now: it once started the run, which then failed at its first turn.
        specs = {name: policy.entries[name].spec for name in clients}
        bad = await asyncio.to_thread(lambda: {n: _schema_error(spec) for n, spec in specs.items()})
        for name, err in bad.items():
            if err is not None:
                # (said of the entry's parameters, the place in the schema kept: problem() puts the field first)
                where = f"{clients[name]}.function.parameters"
                said = err.said_of(where)
                problem(said.path or where, said.problem, "invalid_schema", hard=True, param=where)
    return policy


async def check_tool_schemas(tools: Any, *, param: str) -> None:
    """The parameters schema of each function entry of ``tools`` (an assistant's or a thread's
    ``assistants[i].tools``, stored for every later run), made into the grammar a run makes of it, on a worker
    thread: one no grammar can be made of (a type no JSON has, a ``$ref`` that does not resolve, a bad pattern...)
    is a :class:`RequestError` (``invalid_schema``, ``param``: ``{param}[i].function.parameters``) now, as a chat
    completion's is. It was stored and refused by every run of it afterwards. Entries of other kinds and entries
    without ``parameters`` are left to :func:`check_tool_entries`."""
    if not isinstance(tools, list):
        return
    given = [(i, {"function": {"parameters": entry["function"]["parameters"]}}) for i, entry in enumerate(tools)
             if isinstance(entry, dict) and entry.get("type") == "function" and isinstance(entry.get("function"), dict)
             and entry["function"].get("parameters") is not None]
    if not given:
        return
    problems = await asyncio.to_thread(lambda: [(i, _schema_error(spec)) for i, spec in given])
    for i, err in problems:
        if err is not None:
            said = err.said_of(f"{param}[{i}].function.parameters")  # (the place in the schema kept)
            raise RequestError(str(said), param=said.param, code=said.code or "invalid_schema")


def _schema_problem(spec: dict[str, Any]) -> str | None:
    """Why a tool's spec's parameters cannot constrain a call (see ``parameters_problem``: the place in the schema
    a JSON pointer); None when they can."""
    err = _schema_error(spec)
    return None if err is None else str(err)


def _schema_error(spec: dict[str, Any]) -> Any:
    """The GrammarError a tool's spec's parameters make (see ``parameters_error``), None when they make a grammar.
    Kept per schema: a provider's tools are the same run after run, and each check makes a grammar."""
    parameters = (spec.get("function") or {}).get("parameters")
    try:
        key = json.dumps(parameters, sort_keys=True)
    except (TypeError, ValueError):
        key = None
    return _parameters_error(key) if key is not None else _uncached_error(parameters)


@functools.lru_cache(maxsize=512)
def _parameters_error(schema_json: str) -> Any:
    return _uncached_error(loads_json(schema_json))


def _uncached_error(parameters: Any) -> Any:
    from jan.templates.formats.grammars import parameters_error

    return parameters_error(parameters)


async def _list_tools(registry: ToolRegistry, servers: set[str]) -> list[Tool]:
    """``registry.list_tools()``, telling an MCP host which ``servers`` the run names (its ``list_tools(servers=)``):
    the others are neither started nor waited for. Without such a host, the registry's own listing."""
    import inspect

    from jan.core import McpHost

    providers = registry.providers()
    if not any(isinstance(p, McpHost) and "servers" in inspect.signature(p.list_tools).parameters for p in providers):
        return await registry.list_tools()
    from jan.core.tools import provider_tools

    async def one(provider: Any) -> list[Tool]:
        try:
            if isinstance(provider, McpHost) and "servers" in inspect.signature(provider.list_tools).parameters:
                return await provider_tools(provider, servers)
            return await provider_tools(provider)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken provider must not hide the others (as the registry's)
            import logging

            logging.getLogger("jan.core.tools").warning("tool provider %r could not list its tools: %s", provider, exc)
            return []

    seen: dict[str, Tool] = {}
    for tools in await asyncio.gather(*(one(p) for p in providers)):
        for tool in tools:
            seen.setdefault(tool.name, tool)  # the better-ranked provider wins, as in the registry
    return list(seen.values())


async def _mcp_servers(registry: ToolRegistry) -> dict[str, Any] | None:
    """The configured MCP servers by name (their status, none started), or None without an MCP host."""
    from jan.core import McpHost

    manager = getattr(registry, "manager", None)
    try:
        host = manager.get(McpHost) if manager is not None else None
    except Exception:  # noqa: BLE001 - no MCP host enabled: nothing to tell about servers
        return None
    if host is None:
        return None
    try:
        return {s.name: s for s in await host.list_servers()}
    except Exception:  # noqa: BLE001 - e.g. an unreadable mcp.json (the host reports it)
        return None


def triage(policy: ToolPolicy, calls: Iterable[PendingCall]) -> tuple[list[PendingCall], list[PendingCall]]:
    """Split a step's calls into ``(auto, ask)``: allowlisted calls of known tools run at once."""
    auto: list[PendingCall] = []
    ask: list[PendingCall] = []
    for call in calls:
        entry = policy.entries.get(call.name)
        (auto if entry is not None and entry.auto else ask).append(call)
    return auto, ask


@dataclass(frozen=True)
class CallRecord:
    """A finished call as it is saved: the call, its result, duration and who approved it."""

    call: PendingCall
    result: ToolResult
    duration_ms: int
    approved_by: str


async def run_calls(registry: ToolRegistry, policy: ToolPolicy, calls: list[PendingCall], *,
                    approved_by: str, decisions: dict[str, ToolDecision] | None = None) -> list[CallRecord]:
    """Run calls concurrently (each bounded by the policy's timeout); denied or client-answered ones don't run.

    A call to a tool the run may not use gives an error result (the model is
    told) — the model can only call what it was offered.
    """
    decisions = decisions or {}

    async def one(call: PendingCall) -> CallRecord:
        settled = settled_answer(call, decisions.get(call.id))
        if settled is not None:
            return settled
        entry = policy.entries.get(call.name)
        if entry is None or entry.tool is None:
            down = policy.unavailable.get(call.name.split("__", 1)[0]) if "__" in call.name else None
            down = down or policy.left_out.get(call.name)
            if down is not None:  # its server went away since the call was made (disabled, removed, down)
                reason = f"cannot run: {down}"
            elif entry is None:
                reason = "is not one of the tools this assistant may use"
            else:
                reason = "is run by the client, which gave no output"
            return CallRecord(call, ToolResult.error(f"The tool {call.name} {reason}."), 0, approved_by)
        outcome: ToolCallOutcome = await registry.call(call.name, call.arguments, timeout=policy.timeout,
                                                       tool=entry.tool)
        return CallRecord(call, outcome.result, outcome.duration_ms, approved_by)

    return list(await asyncio.gather(*(one(c) for c in calls)))


def settled_answer(call: PendingCall, decision: ToolDecision | None) -> CallRecord | None:
    """The record of an answer that runs no tool (the client's own output, a denial): its result is the answer
    itself, in hand from the moment it is given; None for a call that must run (approved, or not answered)."""
    if decision is not None and decision.output is not None:
        return CallRecord(call, ToolResult.text(decision.output), 0, "client")
    if decision is not None and not decision.approve:
        text = DENIED + (f" Reason: {decision.reason}" if decision.reason else "")
        return CallRecord(call, ToolResult.error(text), 0, "user")
    return None


async def save_tool_messages(store: Any, thread_id: str, run_id: str, assistant_id: str | None,
                             records: list[CallRecord], step: int) -> list[dict[str, Any]]:
    """Append one ``role: "tool"`` message per record (its text is never HTML: clients render it as text). A
    result with images keeps them as the thread keeps every message's images (files of the thread, named by
    ``image_file`` parts: :mod:`jan.store.files`), so each later turn of the run and of the thread sends them
    again (:func:`chat_messages`)."""
    saved = []
    for record in records:
        saved.append(await store.create_message(thread_id, {
            "role": "tool", "content": await _stored_content(record.result), "status": "ready", "run_id": run_id,
            **({"assistant_id": assistant_id} if assistant_id else {}),
            "metadata": {"run_id": run_id, "step": step, "tool_call_id": record.call.id, "name": record.call.name,
                         "arguments": record.call.arguments, "duration_ms": record.duration_ms,
                         "approved_by": record.approved_by, "is_error": record.result.is_error,
                         "truncated": record.result.truncated, "result": record.result.to_dict()},
        }))
    return saved


async def _stored_content(result: ToolResult) -> Any:
    """A result's stored content: its text, or with images its text and image parts in order (each image as the
    ``data:`` URL the store keeps as a thread file; one that cannot be read stays its note)."""
    from jan.core import ToolImage
    from jan.services.tool_images import ToolImagePart, result_parts

    if not any(isinstance(p, ToolImage) for p in result.parts):
        return result.as_text()
    parts = await asyncio.to_thread(result_parts, result)  # (each image decoded once: not on the event loop)
    return [{"type": "image_url", "image_url": {"url": f"data:{p.mime_type};base64,"
                                                       f"{b64encode_text(p.data)}"}}
            if isinstance(p, ToolImagePart) else {"type": "text", "text": p.text} for p in parts]


def tool_bookkeeping(message: dict[str, Any]) -> bool:
    """Whether a stored message only records a run's use of tools: a tool's result (``role: "tool"``) or a model
    turn that only called tools (an assistant message with ``metadata.tool_calls`` and no content). OpenAI's
    threads have no such messages (its run's ``tool_calls`` step tells the calls and their outputs), so jan's run
    stream never announces one and the OpenAI message routes leave them out; the thread keeps them, as the history
    the model's next turns read."""
    if message.get("role") == "tool":
        return True
    metadata = stored_metadata(message)
    # (an empty assistant message that keeps a conversation's item no turn holds, a hosted web search call, records a
    # tool's use the same way: jan.server.dialects.responses_store.KeptTurn)
    return message.get("role") == "assistant" and not message.get("content") and (
        bool(stored_calls(metadata)) or isinstance(metadata.get("item"), dict))


def _part_text(part: dict[str, Any]) -> str:
    """A stored text or reasoning part's text (``{"value": ...}`` as the store keeps it, or the text itself), ""
    for one that holds no string (a hand edit's ``{"value": 5}`` failed every run on its thread with a 500)."""
    text = part.get("text")
    value = text.get("value") if isinstance(text, dict) else text
    return value if isinstance(value, str) else ""


def text_of(message: dict[str, Any]) -> str:
    """The text of a stored message (its text parts, joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(_part_text(part))
    return "".join(parts)


def chat_messages(history: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """A thread as OpenAI chat messages, tool calls and tool results included: the dict form of the thread's one
    reading (:func:`jan.services.thread_turns.thread_history`, a Responses conversation's too), each image file and
    attached document named by its id (``{"type": "image_file", "image_file": {"file_id"}}``, ``{"type":
    "document", "document": {"file_id", "title"}}``; the run reads them: :func:`jan.services.runs.history_messages`).

    ``pending`` and ``error`` messages are skipped, and so are replies cut off by a restart
    (``metadata.stop_reason: "interrupted"``: until resumed they stand for the pending reply they were), tool results
    whose call is not in the history (a template would reject them) and empty replies. A reply cut off in its
    thinking is an answer's turn of its thinking alone (``content`` ``""``, ``reasoning_content``), as the Responses
    API keeps it.
    """
    from jan.services.thread_turns import file_refs, thread_history

    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    out += [turn_dict(turn) for turn in thread_history(history, file_refs(history), stray_results=False)]
    return out


def turn_dict(turn: Any) -> dict[str, Any]:
    """A typed turn (:class:`~jan.services.types.ChatMessage`) as :func:`chat_messages` writes it: its content the
    text, or its parts where it has more than plain text (documents, images: a thread file by id, another image as
    its ``data:`` URL; third-party text, marked ``"untrusted"``: :func:`jan.services.untrusted.text_part_dict`),
    ``None`` for a calling turn with no text; a tool result always names its call's tool (``name``, ``None`` for
    none); earlier thinking as ``reasoning_content``."""
    from jan.services.thread_turns import DocumentFileRef, ImageFileRef, ImageLinkRef
    from jan.services.types import DocumentPart, ImagePart, TextPart
    from jan.services.untrusted import UntrustedTextPart, text_part_dict

    def part(p: Any) -> dict[str, Any] | None:
        if isinstance(p, ImageFileRef):
            return {"type": "image_file", "image_file": {"file_id": p.file_id}}
        if isinstance(p, ImageLinkRef):  # (its URL: the run fetches it, jan.services.runs.thread_files)
            return {"type": "image_url", "image_url": {"url": p.url}}
        if isinstance(p, DocumentFileRef):
            return {"type": "document", "document": {"file_id": p.file_id, "title": p.title}}
        if isinstance(p, ImagePart):
            return {"type": "image_url", "image_url": {"url": f"data:{p.mime_type};base64,"
                                                              f"{b64encode_text(p.data)}"}}
        if isinstance(p, TextPart):
            return text_part_dict(p) if p.text else None
        if isinstance(p, DocumentPart):  # (a document read already: its text, as the chat service reads it)
            return {"type": "text", "text": p.data.decode("utf-8", "replace")}
        return None

    content: Any
    # (a string only where its readers take no third-party text for the turn's own: a tool result's string they read
    # as the tool's output, jan.services.runs._typed_message and jan chat's; a document's text keeps its marked part)
    if all(isinstance(p, TextPart)
           and (not isinstance(p, UntrustedTextPart) or turn.role == "tool" and p.source == "tool")
           for p in turn.content):
        content = turn.text or (None if turn.tool_calls else "")
    else:
        content = [d for d in (part(p) for p in turn.content) if d is not None]
    entry = turn.openai_dict(content)
    if turn.role == "tool":
        entry.setdefault("name", None)
    return entry


def image_files_of(message: dict[str, Any]) -> list[str]:
    """The ids of the images a stored message references (its ``image_file`` parts), in order."""
    return [p["image_file"]["file_id"] for p in message.get("content") or []
            if isinstance(p, dict) and p.get("type") == "image_file" and isinstance(p.get("image_file"), dict)
            and isinstance(p["image_file"].get("file_id"), str)]


def documents_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents a stored message's ``attachments`` hold, in order: ``{"file_id", "title"}`` (the thread file
    keeping the text the server read from the upload, and the upload's file name). Attachments without one
    (written by an older jan, or by a store user that gave none) are data only."""
    out = []
    for attachment in message.get("attachments") or []:
        document = attachment.get("document") if isinstance(attachment, dict) else None
        if isinstance(document, dict) and isinstance(document.get("file_id"), str):
            title = document.get("filename")
            out.append({"file_id": document["file_id"], "title": title if isinstance(title, str) else None})
    return out


def reasoning_of(message: dict[str, Any]) -> str:
    """The thinking saved with a message (its ``reasoning`` content parts: a run's hold ``{"value": ...}``, a stored
    response's the text itself), or ""."""
    thoughts = []
    for p in message.get("content") or []:
        if isinstance(p, dict) and p.get("type") == "reasoning":
            thoughts.append(_part_text(p))
    return joined_thoughts(thoughts)


def parse_calls(tool_calls: list[dict[str, Any]] | None) -> list[PendingCall]:
    """An aggregated message's ``tool_calls`` (or a stored one's, :func:`jan.services.thread_turns.stored_calls`) as
    :class:`PendingCall` objects."""
    calls = []
    for raw in tool_calls or []:
        fn = raw.get("function") if isinstance(raw, dict) else None
        # (a stored call of another shape, a hand edit's, is none: as a thread's reading leaves it out)
        if isinstance(fn, dict) and raw.get("id") and fn.get("name"):
            arguments = fn.get("arguments")
            calls.append(PendingCall(str(raw["id"]), str(fn["name"]),
                                     arguments if isinstance(arguments, str) else json.dumps(arguments or {})))
    return calls
