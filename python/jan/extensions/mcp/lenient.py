"""A server's listings and tool results read item by item: one malformed item costs only that item.

The mcp SDK validates a result whole, against the negotiated protocol's schema, before it hands it over: one tool
whose ``inputSchema`` is not an object, or one without a name, makes the whole ``tools/list`` an error (all of the
server's tools gone, the server failed), and one content block of a kind the SDK does not know does the same to a
tool call's result. These requests go out as ``ClientSession.send_request`` sends them (the session's protocol
stamp and headers, the timeout) and their raw result is validated here, one item at a time, with the SDK's own
models (``mcp_types.Tool``, ``Prompt``, ``Resource``, the content blocks): the valid items are kept, each bad one is
reported as a :class:`Rejected` (its kind, index, name and why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The content block types of MCP (``mcp_types.ContentBlock``).
CONTENT_TYPES = ("text", "image", "audio", "resource_link", "resource")
#: Pages of one listing read at most (a server whose cursor never ends cannot hold jan in a loop).
MAX_PAGES = 50


@dataclass(frozen=True)
class Rejected:
    """An item of a server's answer that is not valid MCP: left out, and told in the server's status."""

    kind: str  # "tool", "prompt", "resource"
    index: int  # its place in the listing (across pages)
    name: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class CallResult:
    """A ``tools/call`` result: its valid content blocks (the SDK's models; a block that is not valid is a text
    block saying so), structured content and error flag."""

    content: list[Any]
    structured_content: Any
    is_error: bool


def _reason(exc: Exception) -> str:
    """One line for a validation error: where and what (the first problem)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc) or type(exc).__name__


def raw_supported(client: Any) -> bool:
    """Whether ``client``'s session has the SDK internals :func:`send_raw` goes through (its protocol stamp and its
    dispatcher's raw send; mcp 2.3). A later SDK without them is read through its public, whole-result methods
    instead: one bad item then costs its listing again, but nothing breaks."""
    try:
        from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value  # noqa: F401
    except ImportError:
        return False
    session = client.session
    return (callable(getattr(session, "_stamp", None))
            and callable(getattr(getattr(session, "_dispatcher", None), "send_raw_request", None)))


async def send_raw(client: Any, request: Any, timeout: float | None = None) -> dict[str, Any]:
    """``request`` (an ``mcp_types`` request) sent on ``client``'s session as its ``send_request`` sends it, its result
    returned as the server wrote it (a dict), not validated. An error answer, a timeout or a lost connection raise the
    SDK's ``MCPError``, as there."""
    from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value

    session = client.session
    data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    opts: dict[str, Any] = {}
    session._stamp(data, opts)  # the negotiated protocol's headers and _meta (a 2026 session's are required)
    headers = opts.setdefault("headers", {})
    key = getattr(type(request), "name_param", None)
    if key is not None and MCP_NAME_HEADER not in headers:
        name = (data.get("params") or {}).get(key)
        if isinstance(name, str):
            headers[MCP_NAME_HEADER] = encode_header_value(name)
    if timeout is None:
        timeout = getattr(session, "_session_read_timeout_seconds", None)
    if timeout is not None:
        opts["timeout"] = timeout
    raw = await session._dispatcher.send_raw_request(data["method"], data.get("params"), opts)
    return raw if isinstance(raw, dict) else {}


async def list_items(client: Any, kind: str, *, limit: int, timeout: float | None = None) -> tuple[list[Any], list[Rejected]]:
    """Every ``kind`` (``"tool"``, ``"prompt"``, ``"resource"``) the server lists, page after page, up to ``limit``:
    the valid ones (the SDK's models) and the rejected ones."""
    import mcp_types as types

    request_type, key, model = {
        "tool": (types.ListToolsRequest, "tools", types.Tool),
        "prompt": (types.ListPromptsRequest, "prompts", types.Prompt),
        "resource": (types.ListResourcesRequest, "resources", types.Resource),
    }[kind]
    valid: list[Any] = []
    rejected: list[Rejected] = []
    cursor: str | None = None
    index = 0
    raw_ok = raw_supported(client)
    public = getattr(client.session, f"list_{key}")
    for _ in range(MAX_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor)
        if raw_ok:
            raw = await send_raw(client, request_type(params=params), timeout)
        else:  # (validated whole by the SDK: see raw_supported)
            raw = (await public(params=params)).model_dump(by_alias=True, mode="json", exclude_none=True)
        items = raw.get(key)
        if not isinstance(items, list):
            rejected.append(Rejected(kind, index, None, f"the {key} listing holds no list of {key}"))
            break
        for item in items:
            if index >= limit:
                return valid, rejected
            try:
                valid.append(model.model_validate(item, by_name=False))
            except Exception as exc:  # noqa: BLE001 - a pydantic ValidationError (or a non-object item)
                name = item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else None
                rejected.append(Rejected(kind, index, name, _reason(exc)))
            index += 1
        cursor = raw.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            break
    return valid, rejected


def absorb_tools(client: Any, tools: list[Any]) -> list[Any]:
    """``tools`` as the session keeps them after a listing (a 2026 session drops those whose ``x-mcp-header``
    annotations are invalid, and mirrors the others' into a call's headers); the same list where the session has
    no such step."""
    import mcp_types as types

    absorb = getattr(client.session, "_absorb_tool_listing", None)
    if absorb is None:
        return tools
    return list(absorb(types.ListToolsResult(tools=tools), complete=True).tools)


async def call_tool(client: Any, name: str, arguments: dict[str, Any], timeout: float | None) -> CallResult:
    """``tools/call``, its result's content blocks validated one by one."""
    import mcp_types as types
    from pydantic import TypeAdapter

    if raw_supported(client):
        raw = await send_raw(client, types.CallToolRequest(params=types.CallToolRequestParams(name=name,
                                                                                                arguments=arguments)),
                             timeout)
    else:  # (validated whole by the SDK: see raw_supported)
        result = await client.session.call_tool(name, arguments, read_timeout_seconds=timeout)
        raw = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        raw.setdefault("resultType", None if isinstance(result, types.CallToolResult) else "input_required")
    result_type = raw.get("resultType")
    if result_type not in (None, "complete"):
        # (an input_required round asks for sampling or elicitation: jan answers neither)
        return CallResult([types.TextContent(text=f"The tool asked for something jan cannot give ({result_type}).")],
                          None, True)
    adapter: TypeAdapter[Any] = TypeAdapter(types.ContentBlock)
    content: list[Any] = []
    blocks = raw.get("content")
    for i, block in enumerate(blocks if isinstance(blocks, list) else []):
        try:
            content.append(adapter.validate_python(block, by_name=False))
        except Exception as exc:  # noqa: BLE001 - a pydantic ValidationError
            kind = block.get("type") if isinstance(block, dict) else None
            if not isinstance(kind, str):
                why = "not a content block"
            elif kind not in CONTENT_TYPES:
                why = f"{kind!r} is no MCP content type"
            else:
                why = f"an invalid {kind} block: {_reason(exc)}"
            content.append(types.TextContent(text=f"[content block {i} left out: {why}]"))
    structured = raw.get("structuredContent")
    return CallResult(content, structured if isinstance(structured, dict) else None, raw.get("isError") is True)
