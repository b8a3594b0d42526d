"""OpenAI's Batch API over the batch service: the create body, the input file's checks, the batch object, and the
runner that answers each line with the services ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``
and ``/v1/responses`` use (the Responses line through the very preparation and run of ``POST /v1/responses``:
stored unless its ``store`` is false, so a later ``previous_response_id`` may continue it), then writes the output
and error files (OpenAI Files, purpose ``batch_output``).

Input file: JSONL, one ``{"custom_id", "method": "POST", "url", "body"}`` a line, ``url`` the batch's
``endpoint``, every ``body`` naming the same ``model``; at most :data:`MAX_LINES` lines. What breaks these rules
makes the batch ``failed`` with OpenAI's ``errors`` (``{"object": "list", "data": [{"code", "message", "param",
"line"}]}``, codes ``invalid_json_line``, ``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``,
``empty_file``, ``too_many_tasks``, ``invalid_request``), as OpenAI reports them after creating the batch;
what is wrong with the create body itself (an endpoint not served, a window other than ``24h``, a file that is
not there or not of purpose ``batch``) is a 400.

Output lines: ``{"id": "batch_req_...", "custom_id", "response": {"status_code", "request_id", "body"}, "error":
null}``; an item that answered an error goes to the error file the same way, one that never ran with ``response:
null`` and ``error: {"code": "batch_expired" | "batch_cancelled", "message"}``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from jan.errors import ContextOverflowError, MediaError
from jan.json_text import utf8_json
from jan.templates.grammar import GrammarError
from jan.server import openai_wire as wire
from jan.server.errors import APIError, context_error, to_api_error
from jan.server.keys import SERVICES
from jan.server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Metadata, StrictModel
from jan.server.validation import MAX_JSON_DEPTH, json_values_in, loads_bounded, validate_json
from jan.server.body_size import body_step
from jan.server.dialects import responses as responses_wire
from jan.server.routes.files import stored_image
from jan.server.routes.openai import collect_completion, typed_chat, typed_embedding
from jan.server.routes.responses import prepare_response, response_run
from jan.server.streaming import started
from jan.services.batch_types import Batch, BatchItem, ItemOutcome, ItemResult
from jan.store.errors import InvalidArgumentError, NotFoundError
from jan.store.uploads import UploadStore

DIALECT = "openai"
ID_PREFIX = "batch_"
#: The endpoints a batch may name (and each line's ``url``); OpenAI's others (moderations, images: jan serves
#: neither live) are refused with a 400 that lists these.
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
#: The field each endpoint's prompt is in: a prompt that does not fit the context is said of it, as live.
_PROMPT_PARAMS = {"/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/embeddings": "input",
                  "/v1/responses": "input"}
COMPLETION_WINDOWS = ("24h",)
#: OpenAI's bounds: requests per batch, bytes of an input file.
MAX_LINES = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
#: Line errors told at most (a file of 50,000 bad lines is told by its first ones).
MAX_ERRORS = 100
OUTPUT_PURPOSE = "batch_output"
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 20, 100
#: What a line's error says of an item that never ran.
_NOT_RUN = {"expired": ("batch_expired", "This request could not be executed before the completion window expired."),
            "canceled": ("batch_cancelled", "This request was not executed because the batch was cancelled.")}


class OutputExpiresAfter(StrictModel):
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class BatchCreateRequest(StrictModel):
    """The body of ``POST /v1/batches``."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: Metadata | None = None  # (OpenAI's rules, checked as every other body's metadata)
    output_expires_after: OutputExpiresAfter | None = None


def check_create(body: BatchCreateRequest) -> None:
    """The create body's own rules (OpenAI's 400s): a served endpoint, the 24h window."""
    if body.endpoint not in ENDPOINTS:
        raise APIError(400, f"endpoint: {body.endpoint!r} is not supported here; use one of {', '.join(ENDPOINTS)}",
                       param="endpoint", code="invalid_value")
    if body.completion_window not in COMPLETION_WINDOWS:
        raise APIError(400, f"completion_window: only '24h' is supported, not {body.completion_window!r}",
                       param="completion_window", code="invalid_value")


def _error(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


#: The JSON values a line holds besides its body, as :func:`json_values_in` counts them: its object and the commas
#: between its four fields (``custom_id``, ``method``, ``url``, ``body``). A line's body is held to the server's
#: ``max_json_values`` as the same body sent as a request is: counting the line's own four, a body at the limit,
#: which the endpoint takes, failed the batch.
_LINE_VALUES = json_values_in(b'{"custom_id": "", "method": "POST", "url": "", "body": 0}')


def read_input(uploads: UploadStore, file_id: str, endpoint: str, max_values: int | None = None
               ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any] | None, str | None]:
    """Blocking: the input file's items ``(custom_id, body)``, OpenAI's ``errors`` object when its lines break the
    rules (then no item is run), and the model the lines name. A 400 naming ``input_file_id`` for a file that is
    not there, not of purpose ``batch``, or too large. ``max_values``: the most JSON values a line may hold (the
    server's ``max_json_values``, as for a request's body: one line of 16 MiB of tiny values, parsed in one call,
    held every other request), counted before the line is parsed."""
    try:
        data, doc = uploads.read_bytes(file_id, MAX_INPUT_BYTES)
    except NotFoundError:
        raise APIError(400, f"input_file_id: there is no file {file_id!r} (upload one with purpose 'batch')",
                       param="input_file_id", code="file_not_found") from None
    except InvalidArgumentError as exc:
        raise APIError(400, f"input_file_id: {exc}", param="input_file_id", code=exc.code or "invalid_value") from None
    if doc.get("purpose") != "batch":
        raise APIError(400, f"input_file_id: file {file_id!r} has purpose {doc.get('purpose')!r}; a batch's input "
                            "file must be uploaded with purpose 'batch'", param="input_file_id", code="invalid_value")
    errors: list[dict[str, Any]] = []
    items: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    model: str | None = None
    lines = [(n, raw) for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    if not lines:
        errors.append(_error("empty_file", "The input file has no requests.", None))
    elif len(lines) > MAX_LINES:
        errors.append(_error("too_many_tasks", f"The input file has {len(lines)} requests; a batch takes at most "
                                               f"{MAX_LINES}.", None))
    for number, raw in lines if not errors else ():
        values = json_values_in(raw) - _LINE_VALUES  # (the body's: the limit is a request body's)
        if max_values is not None and values > max_values:
            errors.append(_error("too_many_json_values", f"This line's body holds about {values:,} JSON values, "
                                 f"more than the {max_values:,} this server parses in one request (its "
                                 "max_json_values).", number))
        else:
            model = _read_line(raw, number, endpoint, seen, model, items, errors)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        return [], {"object": "list", "data": errors}, model
    return items, None, model


def _read_line(raw: bytes, number: int, endpoint: str, seen: set[str], model: str | None,
               items: list[tuple[str, dict[str, Any]]], errors: list[dict[str, Any]]) -> str | None:
    """One line of an input file parsed and checked: its item added to ``items``, or its error to ``errors``; the
    batch's model, as it now is."""
    why = ""
    try:
        # read as a request body is (RFC 8259 JSON: no NaN or Infinity, no number past a double, no lone
        # surrogate; its body nested as deep as a request's may be, the line one level above it): such a line
        # was taken here and then failed the batch's own write with Python's words (a 400 "'utf-8' codec
        # can't encode...", "Out of range float values...") naming no line
        line = loads_bounded(raw, max_depth=MAX_JSON_DEPTH + 1)
    except APIError as exc:
        line, why = None, f" ({exc.message})"
    if not isinstance(line, dict):
        errors.append(_error("invalid_json_line", f"This line is not parseable as valid JSON.{why}", number))
    else:
        problem = _line_problem(line, endpoint, seen, model)
        if problem is not None:
            errors.append(_error(*problem[:2], number, problem[2]))
        else:
            seen.add(line["custom_id"])
            model = model or line["body"].get("model")
            items.append((line["custom_id"], line["body"]))
    return model


def _line_problem(line: Mapping[str, Any], endpoint: str, seen: set[str], model: str | None
                  ) -> tuple[str, str, str] | None:
    """``(code, message, param)`` of what is wrong with one parsed line, or None."""
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "invalid_request", "custom_id: required, a non-empty string", "custom_id"
    if custom_id in seen:
        return "duplicate_custom_id", f"The custom_id {custom_id!r} is used by an earlier line; each must be " \
                                      "unique.", "custom_id"
    if line.get("method") != "POST":
        return "invalid_request", f"method: must be 'POST', not {line.get('method')!r}", "method"
    if line.get("url") != endpoint:
        return "url_mismatch", f"The url {line.get('url')!r} does not match the batch's endpoint {endpoint!r}.", "url"
    body = line.get("body")
    if not isinstance(body, dict):
        return "invalid_request", "body: required, a JSON object (the request to the endpoint)", "body"
    if model is not None and body.get("model") not in (None, model):
        return "model_mismatch", f"The model {body.get('model')!r} differs from {model!r} of an earlier line; " \
                                 "a batch uses one model.", "body.model"
    return None


def batch_object(batch: Batch) -> dict[str, Any]:
    """OpenAI's batch object."""
    extra, times, counts = batch.extra, batch.times, batch.counts
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors": extra.get("errors"),
        "input_file_id": extra.get("input_file_id", ""), "completion_window": extra.get("completion_window", "24h"),
        "status": batch.status, "output_file_id": extra.get("output_file_id"),
        "error_file_id": extra.get("error_file_id"), "created_at": batch.created_at,
        "in_progress_at": times.get("in_progress_at"), "expires_at": batch.expires_at,
        "finalizing_at": times.get("finalizing_at"), "completed_at": times.get("completed_at"),
        "failed_at": times.get("failed_at"), "expired_at": times.get("expired_at"),
        "cancelling_at": times.get("cancelling_at"), "cancelled_at": times.get("cancelled_at"),
        # (a cancelled item is not a failed one: it was never asked; an expired one is told in the error file)
        "request_counts": {"total": counts.total, "completed": counts.succeeded,
                           "failed": counts.errored + counts.expired},
        "metadata": batch.metadata, "model": extra.get("model"),
        "usage": {"input_tokens": batch.input_tokens, "input_tokens_details": {"cached_tokens": batch.cached_tokens},
                  "output_tokens": batch.output_tokens,
                  "output_tokens_details": {"reasoning_tokens": batch.reasoning_tokens},
                  "total_tokens": batch.input_tokens + batch.output_tokens},
    }


def output_line(result: ItemResult) -> dict[str, Any]:
    """One line of the output or error file."""
    if result.status_code is None:
        code, message = _NOT_RUN.get(result.outcome, ("batch_failed", "This request was not executed."))
        return {"id": result.request_id or None, "custom_id": result.custom_id, "response": None,
                "error": {"code": code, "message": message}}
    return {"id": result.request_id, "custom_id": result.custom_id,
            "response": {"status_code": result.status_code, "request_id": result.request_id, "body": result.body},
            "error": None}


class OpenAIBatchRunner:
    """Answers OpenAI batch lines with the live endpoints' services (:class:`jan.services.batch_types.BatchRunner`)."""

    def __init__(self, app: web.Application, uploads: UploadStore) -> None:
        self._app = app
        self._uploads = uploads

    async def execute(self, batch: Batch, item: BatchItem) -> ItemOutcome:
        raw = json.dumps(item.body).encode()
        answer_of = {"/v1/chat/completions": self._chat, "/v1/completions": self._completion,
                     "/v1/embeddings": self._embeddings, "/v1/responses": self._response}[batch.endpoint]
        try:
            answer = await answer_of(raw)
        except asyncio.CancelledError:
            raise
        except ContextOverflowError as exc:  # said of the endpoint's prompt field, as the live route says it
            return ItemOutcome(400, context_error(exc, _PROMPT_PARAMS[batch.endpoint]).body())
        except Exception as exc:  # noqa: BLE001 - the line's error, in OpenAI's shape, as the route answers it
            return self.failed(exc)
        usage = answer.get("usage") or {}
        # a chat's or completion's counts are OpenAI chat's names, a response's the Responses API's (an embedding
        # has prompt tokens only)
        prompt = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        completion = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        return ItemOutcome(200, answer, int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
                           int(usage.get("completion_tokens") or usage.get("output_tokens") or 0),
                           cached_tokens=int(prompt.get("cached_tokens") or 0),
                           reasoning_tokens=int(completion.get("reasoning_tokens") or 0))

    def failed(self, exc: BaseException) -> ItemOutcome:
        err = to_api_error(exc)
        return ItemOutcome(err.status, err.body())

    async def _chat(self, raw: bytes) -> dict[str, Any]:
        body = await body_step(validate_json, raw, ChatCompletionRequest)
        _no_stream(body.stream)
        # a batch's turn waits for a free slot rather than failing on a full queue: live requests go first
        chat = replace(await typed_chat(self._app, body), wait_for_room=True)
        try:
            result = await self._app[SERVICES].chat.complete(chat)
        except MediaError as exc:
            raise wire.media_error(exc, body) from None
        return wire.chat_completion(result, top_logprobs=chat.top_logprobs, legacy_functions=body.legacy_functions,
                                    post_sampling=chat.post_sampling_probs)

    async def _completion(self, raw: bytes) -> dict[str, Any]:
        body = await body_step(validate_json, raw, CompletionRequest)
        _no_stream(body.stream)
        req = await body_step(wire.completion_request, body)
        return await collect_completion(self._app[SERVICES].completions.stream(req), req)

    async def _embeddings(self, raw: bytes) -> dict[str, Any]:
        body = await body_step(validate_json, raw, EmbeddingRequest)
        try:
            result = await self._app[SERVICES].embeddings.embed(await typed_embedding(self._app, body))
        except MediaError as exc:  # (as the live route says it)
            raise wire.embedding_media_error(exc, body) from None
        return wire.embeddings_response(result, body.encoding_format)

    async def _response(self, raw: bytes) -> dict[str, Any]:
        """The response object ``POST /v1/responses`` answers the same body (a failed or incomplete one too: the
        live endpoint answers those 200 as well)."""
        body = await body_step(validate_json, raw, responses_wire.ResponsesRequest)
        _no_stream(body.stream)
        if body.background:
            raise APIError(400, "background: a batch's requests are answered whole; leave background out",
                           param="background", code="invalid_value")
        for index, tool in enumerate(body.tools or ()):
            if isinstance(tool, responses_wire.McpTool):  # (a batch's line reaches no MCP server: not dropped)
                raise APIError(400, f"tools[{index}]: a batch's requests run no MCP tools; send it to "
                                    "/v1/responses", param=f"tools[{index}]", code="invalid_value")
        # (a line in a conversation another response is being made in waits for it, as queued work waits for room)
        prepared = await prepare_response(self._app, body, functools.partial(stored_image, self._uploads),
                                          wait_for_conversation=True)
        try:
            # a batch's turn waits for a free slot rather than failing on a full queue: live requests go first
            prepared.chat_request = replace(prepared.chat_request, wait_for_room=True)
            stream = self._app[SERVICES].chat.stream(prepared.chat_request)
            try:  # setup errors (an unknown model, a bad image) are the line's 4xx, as live, and nothing is stored
                deltas = await started(None, stream, body.model)
            except (MediaError, GrammarError) as exc:
                raise prepared.named(exc) from None
            # Not among the live runs (whose cancel a stop of jan sends, ending them "cancelled"): this one is the
            # batch's, stopped with its item, which then runs again at the next start.
            run = await response_run(self._app, prepared, stream, deltas)
            run.start(on_done=prepared.release)
        except BaseException:
            prepared.release()  # (no run: the conversation is free again)
            raise
        try:
            return await run.wait()
        finally:
            if not run.done:  # the batch was cancelled or jan stops: the generation stops (and its end is saved)
                await run.cancel()

    async def finalize(self, batch: Batch, results: Sequence[ItemResult]) -> Mapping[str, Any]:
        """The output file (the items answered 200) and the error file (the others), when each has lines."""
        output = [output_line(r) for r in results if r.outcome == "succeeded"]
        errors = [output_line(r) for r in results if r.outcome != "succeeded"]
        expiry = (batch.extra.get("output_expires_after") or {}).get("seconds")
        return {"output_file_id": await self._file(batch, "output", output, expiry),
                "error_file_id": await self._file(batch, "error", errors, expiry)}

    async def _file(self, batch: Batch, kind: str, lines: list[dict[str, Any]], expiry: int | None) -> str | None:
        if not lines:
            return None

        filename = f"{batch.id}_{kind}.jsonl"

        def write() -> str:
            # A finalize done again (jan stopped or crashed after it wrote the file and before the batch's end was
            # saved) takes the file it wrote then, whole (a commit is atomic) and made of the same ended results:
            # never a second copy, the first left in the Files API named by no batch.
            for made in self._uploads.list(purpose=OUTPUT_PURPOSE).data:
                if made.get("filename") == filename:
                    return made["id"]
            writer = self._uploads.writer(1 << 62)  # (jan's own file: no upload limit)
            try:
                for line in lines:
                    writer.write(utf8_json(json.dumps(line, ensure_ascii=False)) + b"\n")
            except BaseException:
                writer.discard()
                raise
            return self._uploads.commit(writer, filename=filename, purpose=OUTPUT_PURPOSE,
                                        expires_after=expiry)["id"]

        return await asyncio.to_thread(write)


def _no_stream(stream: bool | None) -> None:
    if stream:
        raise APIError(400, "stream: a batch's requests are answered whole; leave stream out", param="stream",
                       code="invalid_value")
