"""The Responses API's remote MCP tools (``{"type": "mcp", ...}``), mapped to :mod:`jan.services.mcp_use`.

Wire shapes only: which servers a request names (:func:`server_uses`: a ``server_url`` only where
``--allow-media-from`` allows it, as a media URL, else a 400 naming the field; not listed again where the response's
context holds the listing), the approvals its input answers (:func:`approvals`: ``mcp_approval_response`` items,
each of an ``mcp_approval_request`` of the response's context — the chain ``previous_response_id`` continues, its
conversation — or sent back in the input, none answered twice) and the chat request the servers' tools join
(:func:`with_tools`). The service connects, lists, runs the loop and closes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jan.server.dialects import responses as wire
from jan.services.errors import RequestError
from jan.services.kept_items import calls_after
from jan.services.mcp_use import ApprovedCall, McpCallDone, McpListed, McpServerUse, McpSession, forced
from jan.services.types import ChatRequest


def _names(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return frozenset(value)
    return frozenset(value.tool_names) if value.tool_names is not None else None


def server_uses(body: wire._Prompt, allows_url: Any, context: list[dict[str, Any]]) -> list[McpServerUse]:
    """The MCP servers of ``body.tools``; ``allows_url(url)``: whether the server may connect to ``url``;
    ``context``: the stored items the response reads before its input (the responses ``previous_response_id``
    continues, a conversation's), whose ``mcp_list_tools`` are not made again (OpenAI's: "as long as the
    mcp_list_tools item is present in the context", the server is not listed again), nor are those of the input."""
    uses: list[McpServerUse] = []
    listed = {i.get("server_label"): i for i in context
              if isinstance(i, dict) and i.get("type") == "mcp_list_tools" and isinstance(i.get("tools"), list)
              and not i.get("error")}
    for item in body.input if isinstance(body.input, list) else ():  # (sent back by a client that keeps its items)
        if not isinstance(item, wire.McpItem) or item.type != "mcp_list_tools":
            continue
        extra = item.model_extra or {}
        if isinstance(extra.get("server_label"), str) and isinstance(extra.get("tools"), list) and not extra.get("error"):
            listed[extra["server_label"]] = extra
    for index, tool in enumerate(body.tools or ()):
        if not isinstance(tool, wire.McpTool):
            continue
        where = f"tools[{index}]"
        if any(u.server_label == tool.server_label for u in uses):
            raise RequestError(f"{where}.server_label: '{tool.server_label}' names a server given already; each MCP "
                               "tool needs its own server_label", param=f"{where}.server_label",
                               code="invalid_value")
        url = tool.server_url
        if url is not None:
            if not url.lower().startswith(("http://", "https://")):
                raise RequestError(f"{where}.server_url: expected an http(s):// URL", param=f"{where}.server_url",
                                   code="invalid_value")
            if not allows_url(url):
                # connecting is a fetch on the client's behalf: refused unless the server was started to allow it
                raise RequestError(f"{where}.server_url: this server connects to no MCP server URL it was not "
                                   "allowed (start it with --allow-media-from naming the URL's prefix), or give "
                                   "no server_url and a server_label naming a server of its mcp.json",
                                   param=f"{where}.server_url", code="not_allowed")
        headers = dict(tool.headers or {})
        if tool.authorization:
            headers["Authorization"] = f"Bearer {tool.authorization}"
        approval = tool.require_approval
        always = never = frozenset()
        default = True
        if approval == "never":
            default = False
        elif isinstance(approval, wire.McpApprovalFilter):
            always = _names(approval.always) or frozenset()
            never = _names(approval.never) or frozenset()
        previous_list = listed.get(tool.server_label)
        uses.append(McpServerUse(tool.server_label, url, headers, _names(tool.allowed_tools), always, never, default,
                                 tuple(previous_list.get("tools") or ()) if previous_list else None,
                                 f"{where}.server_label"))
    return uses


def approvals(body: wire.ResponsesRequest, context: list[dict[str, Any]],
              uses: list[McpServerUse]) -> list[ApprovedCall]:
    """The calls the input approves or denies (``mcp_approval_response``), each of an ``mcp_approval_request`` of
    the response's ``context`` (the chain ``previous_response_id`` continues, its conversation: :func:`server_uses`)
    or sent back in the input, and of a server the request names again. A request answered already (in the context
    or earlier in the input: its ``mcp_approval_response``, or the ``mcp_call`` it approved) is a 400: answered
    again, its call would run twice."""
    asked = {i.get("id"): i for i in context if isinstance(i, dict) and i.get("type") == "mcp_approval_request"}
    answered = {i.get("approval_request_id") for i in context
                if isinstance(i, dict) and i.get("type") in ("mcp_approval_response", "mcp_call")}
    # a client that keeps its items (store: false, so no previous_response_id to read) sends the request back
    for item in body.input if isinstance(body.input, list) else ():
        if isinstance(item, wire.McpItem) and item.type == "mcp_approval_request" and item.id is not None:
            asked[item.id] = {"id": item.id, **(item.model_extra or {})}
        elif isinstance(item, wire.McpItem) and item.type == "mcp_call":
            answered.add((item.model_extra or {}).get("approval_request_id"))
    answered.discard(None)
    labels = {u.server_label for u in uses}
    out = []
    for index, item in enumerate(body.input if isinstance(body.input, list) else ()):
        if not isinstance(item, wire.McpItem) or item.type != "mcp_approval_response":
            continue
        where = f"input[{index}]"
        if item.approve is None:
            raise RequestError(f"{where}.approve: required", param=f"{where}.approve", code="missing_required_parameter")
        request = asked.get(item.approval_request_id)
        if request is None:
            raise RequestError(f"{where}.approval_request_id: '{item.approval_request_id}' is no mcp_approval_request "
                               "of the responses this one continues (previous_response_id), of its conversation, "
                               "nor of the input", param=f"{where}.approval_request_id", code="invalid_value")
        if item.approval_request_id in answered:
            raise RequestError(f"{where}.approval_request_id: the mcp_approval_request '{item.approval_request_id}' "
                               "was answered already (its call ran, or was denied): it is not run again",
                               param=f"{where}.approval_request_id", code="invalid_value")
        answered.add(item.approval_request_id)
        if request.get("server_label") not in labels:
            raise RequestError(f"{where}: its MCP server '{request.get('server_label')}' is not in tools: give the "
                               "mcp tool again to run the call", param=where, code="invalid_value")
        out.append(ApprovedCall(request["id"], request["server_label"], request.get("name", ""),
                                request.get("arguments") or "{}", item.approve, item.reason))
    return out


def calls_run(session: McpSession) -> str:
    """What a refusal of the request says once the calls its input approved have run (a result that overflows the
    context is only found when the prompt is made, after the call): which ran, by the ``approval_request_id`` that
    approved it, so that the client does not approve (and run) one again unknowingly; "" for none run."""
    done = [e for e in session.events if isinstance(e, McpCallDone)]
    if not done:
        return ""
    said = "; ".join(f"'{e.name}' of server '{e.server_label}' (approval_request_id '{e.id}', "
                     + (f"failed: {e.error[:200]}" if e.error is not None else f"its result {len(e.output or '')} "
                        "characters") + ")" for e in done)
    return (f"The MCP calls the input approved ran before this was found, and their results are kept nowhere: "
            f"{said}. Approving them again runs them again.")


def _listing_failed(session: McpSession, label: str | None = None) -> bool:
    """Whether the listing of ``label`` (any server: None) failed. A server that cannot be reached is an
    ``mcp_list_tools`` item with an error, never a failed request: a ``tool_choice`` that forces one of its tools
    is then not applied (the answer goes on without them) rather than a 400 saying the tool does not exist."""
    return any(isinstance(e, McpListed) and e.error and label in (None, e.server_label) for e in session.events)


def with_tools(body: wire.ResponsesRequest, request: ChatRequest, session: McpSession) -> ChatRequest:
    """``request`` offering the servers' tools too (after the request's own), the approved calls' turns after the
    conversation, and the ``tool_choice`` that names an MCP tool (or ``required``) applied."""
    choice = body.tool_choice
    specs = session.specs
    if isinstance(choice, wire.AllowedToolsChoice) and choice.mcp:
        # only the MCP tools it names join (all of a server's where it names none)
        def allowed(name: str) -> bool:
            label, tool = session.owners.get(name, (None, None))
            return any(a.server_label == label and a.name in (None, tool) for a in choice.mcp)
        specs = tuple(s for s in specs if allowed(s.name))
    # (an approved call ends the turn that asked for it: as every later read of the call, kept_items.calls_after)
    request = replace(request, tools=(*request.tools, *specs),
                      messages=calls_after(request.messages, session.messages))
    if isinstance(choice, wire.AllowedToolsChoice) and choice.mcp and choice.mode == "required":
        if not request.tools and _listing_failed(session):
            return request  # (as above)
        if not request.tools:
            raise RequestError("tool_choice: mode 'required' needs tools (the allowed MCP servers offer none)",
                               param="tool_choice", code="invalid_value")
        return replace(request, tool_choice="required")
    if isinstance(choice, wire.McpChoice):
        if choice.name is None:
            names = [n for n, (label, _) in session.owners.items() if label == choice.server_label]
            if not names:
                if _listing_failed(session, choice.server_label):
                    return request  # (the answer carries the failed listing, as for any server down)
                raise RequestError(f"tool_choice: the MCP server '{choice.server_label}' offers no tool to call",
                                   param="tool_choice", code="invalid_value")
            return replace(request, tool_choice="required")
        if (choice.server_label, choice.name) not in session.owners.values():
            if _listing_failed(session, choice.server_label):
                return request  # (the answer carries the failed listing, as for any server down)
            raise RequestError(f"tool_choice: the MCP server '{choice.server_label}' offers no tool '{choice.name}'",
                               param="tool_choice", code="invalid_value")
        return forced(request, session, choice.server_label, choice.name)
    if choice == "required":
        if not request.tools and _listing_failed(session):
            return request  # (as above: the answer carries the failed listings)
        if not request.tools:
            raise RequestError("tool_choice: 'required' needs tools (the MCP servers offer none)",
                               param="tool_choice", code="invalid_value")
        return replace(request, tool_choice="required")
    return request
