"""Anthropic's Message Batches over the batch service: the create body, the ``message_batch`` object, the results
lines, and the runner that answers each request's ``params`` as ``POST /v1/messages`` answers it.

Create: ``{"requests": [{"custom_id", "params"}]}``, 1 to :data:`MAX_REQUESTS` requests, each ``custom_id``
1-64 of ``A-Z a-z 0-9 _ -`` and unique; what breaks these is a 400 ``invalid_request_error``. ``params`` is read
when its turn comes: a body the Messages API refuses ends that request ``errored`` with the error it answers.

The batch's ``processing_status`` is ``in_progress``, ``canceling`` or ``ended``; its ``request_counts`` are
all ``processing`` until it ends, then ``succeeded``/``errored``/``canceled``/``expired`` (as Anthropic tallies
them); ``results_url`` is set once it ended. Each results line: ``{"custom_id", "result": {"type": "succeeded",
"message"} | {"type": "errored", "error": {"type": "error", "error": {...}}} | {"type": "canceled"} |
{"type": "expired"}}``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web
from pydantic import Field

from jan.errors import ContextOverflowError, MediaError
from jan.json_text import utf8_json
from jan.server.body_size import body_step
from jan.server.dialects import anthropic as wire
from jan.server.dialects.anthropic_threads import error_shape
from jan.server.document_inputs import read_body_documents
from jan.server.errors import APIError, to_api_error
from jan.server.keys import MEDIA_FETCHER, SERVICES
from jan.server.media_fetch import fetch_body_images
from jan.server.routes.anthropic import collect_message, said_of_body
from jan.server.routes.files import stored_image
from jan.server.schemas import StrictModel
from jan.server.validation import validate_json
from jan.services.batch_types import Batch, BatchItem, ItemOutcome, ItemResult
from jan.services.documents import read_documents
from jan.store.uploads import UploadStore
from jan.templates.grammar import GrammarError

DIALECT = "anthropic"
ID_PREFIX = "msgbatch_"
MAX_REQUESTS = 100_000
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 20, 1000
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENDED_AT = ("completed_at", "cancelled_at", "expired_at", "failed_at")


class BatchRequest(StrictModel):
    custom_id: str
    params: dict[str, Any]


class BatchCreateRequest(StrictModel):
    """The body of ``POST /v1/messages/batches``."""

    requests: list[BatchRequest] = Field(min_length=1, max_length=MAX_REQUESTS)


def checked_items(body: BatchCreateRequest) -> list[tuple[str, dict[str, Any]]]:
    """The requests as the service's items; a 400 naming the first ``custom_id`` that is malformed or repeated."""
    seen: set[str] = set()
    for i, request in enumerate(body.requests):
        param = f"requests[{i}].custom_id"
        if not _CUSTOM_ID.fullmatch(request.custom_id):
            raise APIError(400, f"{param}: must be 1-64 of A-Z a-z 0-9 _ -, not {request.custom_id[:80]!r}",
                           param=param, code="invalid_value")
        if request.custom_id in seen:
            raise APIError(400, f"{param}: custom_id {request.custom_id!r} is not unique within the batch",
                           param=param, code="duplicate_custom_id")
        seen.add(request.custom_id)
    return [(r.custom_id, r.params) for r in body.requests]


def _status(batch: Batch) -> str:
    if batch.ended:
        return "ended"
    return "canceling" if batch.status == "cancelling" else "in_progress"


def batch_object(batch: Batch, base_url: str) -> dict[str, Any]:
    """Anthropic's ``message_batch`` (``base_url``: the server's, which ``results_url`` starts with)."""
    counts = batch.counts
    ended = batch.ended
    ended_at = next((batch.times[k] for k in _ENDED_AT if k in batch.times), None) if ended else None
    return {
        "id": batch.id, "type": "message_batch", "processing_status": _status(batch),
        "request_counts": {"processing": 0 if ended else counts.total,
                           "succeeded": counts.succeeded if ended else 0, "errored": counts.errored if ended else 0,
                           "canceled": counts.canceled if ended else 0, "expired": counts.expired if ended else 0},
        "ended_at": wire.rfc3339(ended_at), "created_at": wire.rfc3339(batch.created_at),
        "expires_at": wire.rfc3339(batch.expires_at), "archived_at": None,
        "cancel_initiated_at": wire.rfc3339(batch.times.get("cancelling_at")),
        "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def result_line(result: ItemResult) -> dict[str, Any]:
    """One line of the results file."""
    if result.outcome == "succeeded":
        return {"custom_id": result.custom_id, "result": {"type": "succeeded", "message": result.body}}
    if result.outcome == "errored":
        return {"custom_id": result.custom_id, "result": {"type": "errored", "error": result.body}}
    return {"custom_id": result.custom_id, "result": {"type": result.outcome}}


def results_jsonl(results: Sequence[ItemResult]) -> bytes:
    return b"".join(utf8_json(json.dumps(result_line(r), ensure_ascii=False)) + b"\n" for r in results)


class AnthropicBatchRunner:
    """Answers each request's ``params`` as ``POST /v1/messages`` does (:class:`BatchRunner`)."""

    def __init__(self, app: web.Application, uploads: UploadStore) -> None:
        self._app = app
        self._uploads = uploads

    async def execute(self, batch: Batch, item: BatchItem) -> ItemOutcome:
        try:
            message = await self._message(json.dumps(item.body).encode())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the request's error, in Anthropic's shape
            return self.failed(exc)
        usage = message.get("usage") or {}
        # Anthropic's input_tokens leave the cached prefix out: the batch counts the whole prompt
        cached = int(usage.get("cache_read_input_tokens") or 0)
        return ItemOutcome(200, message, int(usage.get("input_tokens") or 0) + cached,
                           int(usage.get("output_tokens") or 0), cached_tokens=cached)

    def failed(self, exc: BaseException) -> ItemOutcome:
        err = to_api_error(exc)
        return ItemOutcome(wire.error_status(err.status, err.code), error_shape(err))

    async def _message(self, raw: bytes) -> dict[str, Any]:
        body = await body_step(validate_json, raw, wire.MessagesRequest)
        if body.stream:
            raise APIError(400, "stream: a batch's requests are answered whole; leave stream out", param="stream")
        if body.thread is not None:
            raise APIError(400, "thread: a batch's requests are answered on their own, not in a held thread",
                           param="thread")
        if body.mcp_servers:
            # (a batch's turn runs no tools: the servers' calls would go unanswered)
            raise APIError(400, "mcp_servers: a batch's requests are answered without MCP servers; send them to "
                           "/v1/messages", param="mcp_servers")
        wire.check_thinking_budget(body, "")
        app = self._app
        await fetch_body_images(body, app[MEDIA_FETCHER])
        await wire.resolve_file_images(body, functools.partial(stored_image, self._uploads))
        await read_body_documents(body, self._uploads, app[MEDIA_FETCHER])
        # a batch's turn waits for a free slot rather than failing on a full queue: live requests go first
        chat_request = replace(await body_step(wire.to_chat_request, body), wait_for_room=True)
        try:
            chat_request = await read_documents(chat_request)
            stream = app[SERVICES].chat.stream(chat_request)
            return await collect_message(stream, body, wire.new_message_id())
        except (MediaError, GrammarError, ContextOverflowError) as exc:
            raise said_of_body(exc, body, chat_request) from None

    async def finalize(self, batch: Batch, results: Sequence[ItemResult]) -> Mapping[str, Any]:
        return {}  # the results are read from the batch's own results file
