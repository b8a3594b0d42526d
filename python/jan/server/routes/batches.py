"""Batches, in both dialects, over one :class:`~jan.services.batches.BatchService`:

OpenAI's Batch API: ``POST /v1/batches``, ``GET /v1/batches`` (``limit`` 1-100, ``after``),
``GET /v1/batches/{batch_id}``, ``POST /v1/batches/{batch_id}/cancel``
(:mod:`jan.server.dialects.openai_batches`).

Anthropic's Message Batches: ``POST /v1/messages/batches``, ``GET /v1/messages/batches`` (``limit`` 1-1000,
``before_id``, ``after_id``), ``GET /v1/messages/batches/{id}``, ``POST /v1/messages/batches/{id}/cancel``,
``GET /v1/messages/batches/{id}/results`` (JSONL), ``DELETE /v1/messages/batches/{id}``
(:mod:`jan.server.dialects.anthropic_batches`); errors there leave in Anthropic's shape (they are under
``/v1/messages``).

HTTP only: each dialect's batches are the service's batches of that dialect; one of the other dialect's ids is a
404, as an unknown one.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from jan.errors import not_found_message
from jan.server.dialects import anthropic_batches as anthropic
from jan.server.dialects import openai_batches as openai
from jan.server.errors import APIError
from jan.server.jsonio import json_response
from jan.server.routes.docs import EXTRA_BODIES, JSON, RESPONSE_SCHEMAS, RESPONSES
from jan.server.route_state import BATCHES, UPLOADS
from jan.server.validation import no_fields, parse_body, query_int, request_json_values_limit
from jan.services.batch_types import Batch
from jan.services.batches import BatchService
from jan.store.errors import InvalidArgumentError, InvalidIdError, NotFoundError
from jan.store.pagination import paginate

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()

# (BATCHES: jan.server.route_state, which sets the service up at start; this module loads on first use)

EXTRA_BODIES[("POST", "/v1/batches")] = openai.BatchCreateRequest
EXTRA_BODIES[("POST", "/v1/messages/batches")] = anthropic.BatchCreateRequest
RESPONSE_SCHEMAS["Batch"] = {
    "type": "object", "required": ["id", "object", "endpoint", "status", "created_at", "request_counts"],
    "properties": {"id": {"type": "string"}, "object": {"const": "batch"}, "endpoint": {"type": "string"},
                   "status": {"enum": ["validating", "failed", "in_progress", "finalizing", "completed", "expired",
                                       "cancelling", "cancelled"]},
                   "created_at": {"type": "integer"}, "request_counts": {"type": "object"}}}
RESPONSE_SCHEMAS["MessageBatch"] = {
    "type": "object", "required": ["id", "type", "processing_status", "request_counts", "created_at", "expires_at"],
    "properties": {"id": {"type": "string"}, "type": {"const": "message_batch"},
                   "processing_status": {"enum": ["in_progress", "canceling", "ended"]},
                   "request_counts": {"type": "object"}, "created_at": {"type": "string"},
                   "expires_at": {"type": "string"}, "results_url": {"type": ["string", "null"]}}}
for _method, _path in (("POST", "/v1/batches"), ("GET", "/v1/batches/{batch_id}"),
                       ("POST", "/v1/batches/{batch_id}/cancel")):
    RESPONSES[(_method, _path)] = {"200": ("The batch", {JSON: "Batch"})}
RESPONSES[("GET", "/v1/batches")] = {"200": ("The batches", {JSON: "List"})}
for _method, _path in (("POST", "/v1/messages/batches"), ("GET", "/v1/messages/batches/{message_batch_id}"),
                       ("POST", "/v1/messages/batches/{message_batch_id}/cancel")):
    RESPONSES[(_method, _path)] = {"200": ("The message batch", {JSON: "MessageBatch"})}
RESPONSES[("GET", "/v1/messages/batches/{message_batch_id}/results")] = {
    "200": ("One JSON line per request: custom_id and result", {"application/binary": None})}


def _service(request: web.Request) -> BatchService:
    return request.app[BATCHES]


async def _batch(request: web.Request, dialect: str, name: str) -> Batch:
    """The batch the path names, of ``dialect``; a 404 for none (or another dialect's)."""
    batch_id = request.match_info[name]
    try:
        batch = await _service(request).get(batch_id)
    except (NotFoundError, InvalidIdError):
        batch = None
    if batch is None or batch.dialect != dialect:
        raise APIError(404, not_found_message("batch", batch_id), code="not_found")
    return batch


def _page(batches: list[Batch], *, limit: int, after: str | None, before: str | None,
          names: dict[str, str]):
    """Newest first, from the cursors; a cursor naming no batch of the list is a 400 naming its query field."""
    try:
        return paginate([{"id": b.id, "batch": b} for b in batches], limit=limit, order="desc", after=after,
                        before=before)
    except (InvalidArgumentError, InvalidIdError) as exc:
        name = names.get(getattr(exc, "param", None) or "", "after")
        raise APIError(400, f"{name}: names no batch of this list", param=name, code="invalid_value") from None


# -- OpenAI ------------------------------------------------------------------------------------------------
@routes.post("/v1/batches")
async def create_batch(request: web.Request) -> web.Response:
    """Create a batch from an uploaded JSONL file (purpose ``batch``); answers the batch object. Lines that break
    the rules make it ``failed`` with ``errors``; a bad body is a 400."""
    body = await parse_body(request, openai.BatchCreateRequest)
    openai.check_create(body)
    items, errors, model = await asyncio.to_thread(openai.read_input, request.app[UPLOADS], body.input_file_id,
                                                   body.endpoint, request_json_values_limit(request))
    extra = {"input_file_id": body.input_file_id, "completion_window": body.completion_window, "model": model,
             "output_expires_after": body.output_expires_after.model_dump() if body.output_expires_after else None}
    batch = await _service(request).create(openai.DIALECT, body.endpoint, items, metadata=body.metadata,
                                           extra=extra, errors=errors)
    log.info("batches: created %s (%s, %d requests%s)", batch.id, batch.endpoint, batch.counts.total,
             ", failed validation" if errors else "")
    return json_response(openai.batch_object(batch))


@routes.get("/v1/batches")
async def list_batches(request: web.Request) -> web.Response:
    """OpenAI's batches, newest first; ``limit`` (1-100, 20) and ``after`` (a batch id)."""
    limit = query_int(request, "limit", openai.DEFAULT_LIST_LIMIT, 1, openai.MAX_LIST_LIMIT)
    batches = await _service(request).list(openai.DIALECT)
    page = _page(batches, limit=limit, after=request.query.get("after") or None, before=None,
                 names={"after": "after"})
    data = [openai.batch_object(item["batch"]) for item in page.data]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": page.has_more})


@routes.get("/v1/batches/{batch_id}")
async def get_batch(request: web.Request) -> web.Response:
    return json_response(openai.batch_object(await _batch(request, openai.DIALECT, "batch_id")))


@routes.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    """Cancel a batch: ``cancelling`` (its running request stopped), then ``cancelled``; a 400 for one ended
    otherwise, or whose every request has its answer, its end being saved (OpenAI's ``finalizing``: nothing is left
    to cancel; answered once it has ended, as the same cancel a moment later is)."""
    batch = await _batch(request, openai.DIALECT, "batch_id")
    await no_fields(request)
    return json_response(openai.batch_object(await _service(request).cancel(batch.id)))


# -- Anthropic ---------------------------------------------------------------------------------------------
def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@routes.post("/v1/messages/batches")
async def create_message_batch(request: web.Request) -> web.Response:
    """Create a Message Batch of ``requests`` (``custom_id`` and Messages ``params``); answers the batch."""
    body = await parse_body(request, anthropic.BatchCreateRequest)
    items = anthropic.checked_items(body)
    batch = await _service(request).create(anthropic.DIALECT, "/v1/messages", items)
    log.info("batches: created %s (%d message requests)", batch.id, batch.counts.total)
    return json_response(anthropic.batch_object(batch, _base_url(request)))


@routes.get("/v1/messages/batches")
async def list_message_batches(request: web.Request) -> web.Response:
    """Anthropic's batches, newest first; ``limit`` (1-1000, 20), ``after_id``/``before_id``."""
    limit = query_int(request, "limit", anthropic.DEFAULT_LIST_LIMIT, 1, anthropic.MAX_LIST_LIMIT)
    after, before = request.query.get("after_id") or None, request.query.get("before_id") or None
    batches = await _service(request).list(anthropic.DIALECT)
    page = _page(batches, limit=limit, after=after, before=before, names={"after": "after_id", "before": "before_id"})
    data = [anthropic.batch_object(item["batch"], _base_url(request)) for item in page.data]
    return json_response({"data": data, "has_more": page.has_more, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None})


@routes.get("/v1/messages/batches/{message_batch_id}")
async def get_message_batch(request: web.Request) -> web.Response:
    batch = await _batch(request, anthropic.DIALECT, "message_batch_id")
    return json_response(anthropic.batch_object(batch, _base_url(request)))


@routes.post("/v1/messages/batches/{message_batch_id}/cancel")
async def cancel_message_batch(request: web.Request) -> web.Response:
    """Cancel: ``canceling`` (its running request stopped), then ``ended`` with the rest ``canceled``; a 400 for
    one ended, or whose every request has its answer (see :func:`cancel_batch`)."""
    batch = await _batch(request, anthropic.DIALECT, "message_batch_id")
    await no_fields(request)
    return json_response(anthropic.batch_object(await _service(request).cancel(batch.id), _base_url(request)))


@routes.get("/v1/messages/batches/{message_batch_id}/results")
async def message_batch_results(request: web.Request) -> web.Response:
    """The results of an ended batch as JSONL, one line per request; a 400 while it is still processing."""
    batch = await _batch(request, anthropic.DIALECT, "message_batch_id")
    if not batch.ended:
        raise APIError(400, f"Message Batch {batch.id} has not ended yet; its results are available once its "
                            "processing_status is ended.", code="invalid_state")
    results = await _service(request).results(batch.id)
    data = await asyncio.to_thread(anthropic.results_jsonl, results)
    return web.Response(body=data, content_type="application/binary")


@routes.delete("/v1/messages/batches/{message_batch_id}")
async def delete_message_batch(request: web.Request) -> web.Response:
    """Delete an ended batch (cancel one still processing first: a 400 otherwise)."""
    batch = await _batch(request, anthropic.DIALECT, "message_batch_id")
    await _service(request).delete(batch.id)
    return json_response({"id": batch.id, "type": "message_batch_deleted"})
