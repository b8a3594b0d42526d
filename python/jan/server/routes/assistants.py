"""``/v1/assistants``: create, list, retrieve, modify, delete (the default ``jan`` assistant always exists at start).

Stored in Jan's ``assistant.json`` shape through ``manager.get(AssistantExtension)``.
OpenAI's sampling fields (``temperature``, ``top_p``, ``response_format``)
are kept in the assistant's ``parameters`` (Jan's field) and shown at the
top level as well; ``parameters`` is the assistant layer of a run's
parameter precedence (request > thread > assistant > model.json > engine).
"""

from __future__ import annotations

from typing import Any, Union

from aiohttp import web
from pydantic import Field

from jan.server.jsonio import json_response
from jan.server.errors import APIError
from jan.server.keys import SERVICES
from jan.server.schemas import (DESCRIPTION_MAX_CHARS, INSTRUCTIONS_MAX_CHARS, NAME_MAX_CHARS, Metadata, ReasoningEffort,
                              ToolResources,
                                StrictModel, bounded)
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.routes.threads import assistant_store, list_query, page_of
from jan.server.validation import parse_body
from jan.services.models import check_format_grammar, check_parameters
from jan.services.types import ResponseFormat
from jan.services.tool_checks import check_tool_entries, check_tool_policy
from jan.services.tool_loop import check_tool_schemas
from jan.store.assistants import assistant_sort_key, assistant_sort_key_of_id

routes = web.RouteTableDef()

_SAMPLING_TOP_LEVEL = ("temperature", "top_p", "response_format")


_Strict = StrictModel  # unknown fields refused, no coercion, null means the default


class AssistantFields(_Strict):
    name: str | None = Field(default=None, max_length=NAME_MAX_CHARS)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)
    model: str | None = Field(default=None, description="A model id, or '*' for any model")
    instructions: str | None = Field(default=None, max_length=INSTRUCTIONS_MAX_CHARS)
    tools: list[dict[str, Any]] | None = None
    tool_resources: ToolResources | None = Field(default=None, exclude=True)  # (only an empty one: not kept)
    file_ids: list[str] | None = None
    metadata: Metadata | None = None
    avatar: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="Sampling parameters (Jan)")
    temperature: float | None = bounded("temperature")
    top_p: float | None = bounded("top_p")
    response_format: Union[str, dict[str, Any], None] = None
    reasoning_effort: ReasoningEffort | None = Field(default=None, description=(
        "How hard a reasoning model thinks in this assistant's runs ('none' turns thinking off); a run's own wins"))
    tool_policy: dict[str, Any] | None = Field(default=None, description=(
        "Jan's: who approves this assistant's tool calls and how its runs use tools (auto_approve, max_steps, "
        "timeout, tool_choice; docs/tools.md); a thread's and a run's own win"))


class AssistantCreate(AssistantFields):
    id: str | None = None


class AssistantModify(AssistantFields):
    pass


EXTRA_BODIES[("POST", "/v1/assistants")] = AssistantCreate
EXTRA_BODIES[("POST", "/v1/assistants/{assistant_id}")] = AssistantModify
EXTRA_BODIES[("PATCH", "/v1/assistants/{assistant_id}")] = AssistantModify


def present(assistant: dict[str, Any]) -> dict[str, Any]:
    """An assistant as the API shows it: Jan's fields plus OpenAI's top-level sampling fields."""
    out = dict(assistant)
    params = out.get("parameters") or {}
    out.setdefault("parameters", {})
    for key in _SAMPLING_TOP_LEVEL:
        out[key] = params.get(key, "auto" if key == "response_format" else None)
    out.setdefault("tools", [])
    out.setdefault("metadata", {})
    out.setdefault("reasoning_effort", None)
    return out


def _fields(body: AssistantFields, current_params: dict[str, Any] | None) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    top = {k: fields.pop(k) for k in _SAMPLING_TOP_LEVEL if k in fields}
    for key, value in fields.items():
        if value is None and key not in ("metadata", "reasoning_effort"):
            raise APIError(400, f"{key} cannot be null", param=key, code="invalid_value")
    # what every run of this assistant reads: refused now, not when a run fails on it
    check_parameters(top, prefix=None)
    check_tool_entries(fields.get("tools"), param="tools")
    check_tool_policy(fields.get("tool_policy"), param="tool_policy")  # (as every run of it reads the policy)
    if fields.get("parameters") is not None:
        check_parameters(fields["parameters"])
    if top or "parameters" in fields:
        params = dict(fields.get("parameters", current_params) or {})
        for key, value in top.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        fields["parameters"] = params
    return fields


async def _check_model(request: web.Request, fields: dict[str, Any]) -> None:
    """The assistant's ``model``, refused now when it names no model (as OpenAI's): not a run of it failed later."""
    if "model" in fields:
        await request.app[SERVICES].runs.check_model_choice(fields["model"], any_model=True)


async def _check_format(body: AssistantFields, fields: dict[str, Any]) -> None:
    """The ``response_format`` every run of the assistant reads: one whose schema no grammar takes is refused now
    (as a chat completion refuses it), named where the body gave it."""
    # each tool's parameters schema too, which every run of the assistant makes a grammar of
    await check_tool_schemas(fields.get("tools"), param="tools")
    params = fields.get("parameters")
    if not isinstance(params, dict) or params.get("response_format") is None:
        return
    given = "response_format" if "response_format" in body.model_fields_set else "parameters.response_format"
    await check_format_grammar(ResponseFormat.from_mapping(params["response_format"], given), given)


@routes.post("/v1/assistants")
async def create_assistant(request: web.Request) -> web.Response:
    """Create an assistant (``model`` defaults to ``"*"``: any model)."""
    body = await parse_body(request, AssistantCreate)
    fields = _fields(body, None)
    await _check_model(request, fields)
    await _check_format(body, fields)
    return json_response(present(await assistant_store(request).create_assistant(fields)))


@routes.get("/v1/assistants")
async def list_assistants(request: web.Request) -> web.Response:
    """List assistants, newest first by default."""
    q = list_query(request, default_order="desc")
    store = assistant_store(request)
    items = [present(a) for a in await store.list_assistants()]
    # (a cursor of an assistant deleted since it was read is placed by its id: the SDK pages on it while a client
    # deletes the assistants it lists)
    result = page_of(items, q, key=assistant_sort_key, key_of_id=assistant_sort_key_of_id)
    # Jan's field, as GET /v1/threads and /v1/models have it: a damaged assistant.json (left in place) is named
    # there, so an assistant missing from the list is explained rather than gone without a word
    problems = getattr(store, "problems", None)
    result["problems"] = problems("assistants/") if callable(problems) else []
    return json_response(result)


@routes.get("/v1/assistants/{assistant_id}")
async def get_assistant(request: web.Request) -> web.Response:
    """Retrieve an assistant."""
    return json_response(present(await assistant_store(request).get_assistant(request.match_info["assistant_id"])))


@routes.post("/v1/assistants/{assistant_id}")
@routes.patch("/v1/assistants/{assistant_id}")
async def modify_assistant(request: web.Request) -> web.Response:
    """Modify an assistant (``metadata`` and ``parameters`` are replaced; ``temperature``/``top_p`` set one parameter)."""
    body = await parse_body(request, AssistantModify)
    store = assistant_store(request)
    assistant_id = request.match_info["assistant_id"]
    current = await store.get_assistant(assistant_id)
    fields = _fields(body, current.get("parameters"))
    await _check_model(request, fields)
    await _check_format(body, fields)
    updated = await store.update_assistant(assistant_id, fields)
    return json_response(present(updated))


@routes.delete("/v1/assistants/{assistant_id}")
async def delete_assistant(request: web.Request) -> web.Response:
    """Delete an assistant (the default ``jan`` comes back at the next start)."""
    assistant_id = request.match_info["assistant_id"]
    await assistant_store(request).delete_assistant(assistant_id)
    return json_response({"id": assistant_id, "object": "assistant.deleted", "deleted": True})
