"""Managing the models in the data folder: import, edit, delete, download (``/v1/models`` writes).

Reads (``GET /v1/models``, start/stop) are in ``models.py``; everything here
goes through ``manager.get(ModelExtension)`` and the model's engine.

* ``POST /v1/models`` — ``{"path": "/abs/file.gguf", "id"?, "mode"?: "symlink"|"copy"|"link"|"reference", ...}``
  imports a local GGUF file; a body without ``path`` is a model.json
  (``{"id", "name", "sources", "settings", "parameters", "engine", ...}``) to add as is.
* ``PATCH /v1/models/{id}`` — merge into model.json (``settings``/``parameters``/``metadata`` one level deep).
  What it sets in ``settings``/``parameters``/``engine``/``system``/``messages`` is checked as requests will read
  it (``system``: the model's default system prompt, ``messages``: turns put before every chat's; a 400 naming
  the field, nothing stored), against the model's GGUF header where the setting depends on it (KV cache
  types, chat template); so is a new model's (``POST /v1/models``).
* ``DELETE /v1/models/{id}`` — unload it if loaded, then delete its folder.
* ``POST /v1/models/pull`` — ``{"url": "https://...|hf://owner/repo/file.gguf", "id"?, "sha256"?, "stream"?}``.
  Streams the download's status as server-sent events (``data: {"id", "model_id", "url", "state",
  "downloaded_bytes", "total_bytes", ...}`` whenever it changes, at most 4 per second) until the state is
  ``completed`` (with ``model``), ``failed`` (with ``error``) or ``cancelled``, then ``data: [DONE]``.
  Closing the stream does **not** cancel the download (it goes on in the background; see
  ``GET /v1/downloads``). ``"stream": false`` answers ``202`` with the status at once. An id holding a
  model from another source is a 409; the same source again updates the files and keeps the user's
  settings, parameters, name and description. A failed pull leaves no files behind (bar a partial one
  to resume from).
* ``GET /v1/downloads`` — the downloads running or ended recently.
* ``DELETE /v1/downloads/{id}`` — cancel a running download (its partial file is removed).

The model id ``pull`` is reserved (``POST /v1/models/pull`` starts a download).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Annotated, Any, Literal, Union

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from jan.downloads import DownloadCancelledError, DownloadError
from jan.errors import ModelLoadError, ModelNotFoundError, not_found_message
from jan.server.jsonio import json_response
from jan.server.errors import APIError
from jan.server.schemas import StrictModel
from jan.server.keys import SERVICES, SHUTTING_DOWN
from jan.server.resolve import model_extension
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.routes.models import with_state
from jan.server.sse import SSEStream
from jan.server.validation import body_step, parse_body, read_json
from jan.services.errors import RequestError, ServiceUnavailableError
from jan.services.models import canonical_settings, unload_now
from jan.store import slugify_id, validate_id

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()

PROGRESS_INTERVAL = 0.25
FINAL_STATES = ("completed", "failed", "cancelled")


_Strict = StrictModel  # unknown fields refused, no coercion, null means the default


class ImportModelRequest(_Strict):
    """Import a GGUF file that is on this computer."""

    path: str = Field(min_length=1, description="Absolute path of a .gguf file on the server's computer")
    id: str | None = Field(default=None, description="Model id (default: from the file name)")
    mode: Literal["symlink", "copy", "link", "reference"] = Field(
        "symlink", description="symlink/copy/hard-link the file into the data folder, or reference it in place")
    name: str | None = None
    description: str | None = None
    settings: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    system: str | None = Field(default=None, description="The model's default system prompt: used when a chat "
                               "request has no system message of its own")
    messages: list[Any] | None = Field(default=None, description="A conversation stored with the model "
                                       "([{role: user|assistant|system, content}]), put before every chat's turns")
    license: str | None = None


class ModelSource(BaseModel):
    model_config = ConfigDict(extra="allow")
    filename: str | None = None
    url: str | None = None


class ModelJsonRequest(_Strict):
    """A model.json (Jan's schema) to add as is."""

    id: str = Field(min_length=1)
    object: Literal["model"] | None = None
    name: str | None = None
    version: str | None = None
    description: str | None = None
    format: str | None = None
    sources: list[ModelSource] | None = None
    settings: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    engine: str | None = None
    system: str | None = Field(default=None, description="The model's default system prompt: used when a chat "
                               "request has no system message of its own")
    messages: list[Any] | None = Field(default=None, description="A conversation stored with the model "
                                       "([{role: user|assistant|system, content}]), put before every chat's turns")
    license: str | None = None
    created: Annotated[int, Field(ge=0, le=2**53)] | None = None  # milliseconds; JSON-safe integers


class CreateModelRequest(RootModel[Union[ImportModelRequest, ModelJsonRequest]]):
    """``{"path": ...}`` imports a local GGUF file; any other body is a model.json."""


class ModelPatch(_Strict):
    name: str | None = None
    version: str | None = None
    description: str | None = None
    format: str | None = None
    sources: list[ModelSource] | None = None
    settings: dict[str, Any] | None = Field(default=None, description="Merged key by key; null removes a key")
    parameters: dict[str, Any] | None = Field(default=None, description="Merged key by key; null removes a key")
    metadata: dict[str, Any] | None = Field(default=None, description="Merged key by key; null removes a key")
    engine: str | None = None
    system: str | None = Field(default=None, description="The model's default system prompt: used when a chat "
                               "request has no system message of its own")
    messages: list[Any] | None = Field(default=None, description="A conversation stored with the model "
                                       "([{role: user|assistant|system, content}]), put before every chat's turns")
    license: str | None = None


class PullRequest(_Strict):
    url: str = Field(min_length=1, description="https:// (or http://) URL of a .gguf file, hf://owner/repo/file.gguf, "
                     "or a whole hf://owner/repo[:QUANT] (its model and mmproj projector chosen from its files)")
    id: str | None = Field(default=None, description="Model id (default: from the file name)")
    sha256: str | None = Field(default=None, description="Expected SHA-256 of the file")
    stream: bool = Field(True, description="Stream progress as server-sent events; false: answer 202 at once")


EXTRA_BODIES[("POST", "/v1/models")] = CreateModelRequest
EXTRA_BODIES[("PATCH", "/v1/models/{model_id}")] = ModelPatch
EXTRA_BODIES[("POST", "/v1/models/pull")] = PullRequest


#: Model ids that would be shadowed by a route under /v1/models (``GET /v1/models/pull`` lists downloads).
RESERVED_IDS = ("pull",)


def _allowed_id(model_id: str | None) -> None:
    if model_id is not None:  # the id rule's own words, naming the field (the store's error names none)
        validate_id(model_id, "model id", param="id")
    if model_id in RESERVED_IDS:
        raise APIError(400, f"id: '{model_id}' is reserved (it names the route /v1/models/{model_id})", param="id",
                       code="invalid_value")


def _download_error(exc: DownloadError) -> APIError:
    status = exc.http_status  # the one mapping every pull route shares (404: the source has no such file)
    return APIError(status, str(exc), param="url" if status in (400, 404) else None, code=exc.reason,
                    type="invalid_request_error" if status < 500 else "server_error")


@routes.post("/v1/models")
async def create_model(request: web.Request) -> web.Response:
    """Add a model: import a local GGUF file (``path``) or write a model.json."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object", code="invalid_json")
    models = model_extension(request)
    if "path" in data:
        body = await body_step(ImportModelRequest.model_validate, data)  # (a big body's off the event loop)
        if body.settings is not None:
            body.settings = canonical_settings(body.settings)
        _allowed_id(body.id)
        path = os.path.expanduser(body.path)
        # the id the import will take (as import_model picks it): a setting naming a file in the model's folder
        # (draft_model, mmproj) is judged there
        model_id = body.id or slugify_id(os.path.splitext(os.path.basename(path))[0])
        # checked before anything is written: an import that fails here leaves no model behind; settings
        # that depend on the file (KV cache types, chat template) are judged against the file itself
        await request.app[SERVICES].models.check_model_and_file({
            "id": model_id, "engine": "llama.cpp", "settings": body.settings, "parameters": body.parameters,
            "system": body.system, "messages": body.messages, **({"file_path": path} if os.path.isabs(path) else {})})
        if not os.path.isabs(path):
            raise APIError(400, "path must be absolute", param="path", code="invalid_value")
        try:
            model = await models.import_model(path, model_id=model_id, mode=body.mode)
        except ModelLoadError as exc:  # the file's header could not be read: the client's file, not us
            raise APIError(400, f"path: '{path}' is not a loadable GGUF file ({exc})", param="path",
                           code="invalid_model_file") from None
        extra = await body_step(body.model_dump, exclude_unset=True, exclude={"path", "id", "mode"}, exclude_none=True)
        if extra:
            try:
                model = await models.update_model(model["id"], extra)
            except BaseException:
                with contextlib.suppress(Exception):
                    await models.delete_model(model["id"])
                raise
    else:
        body = await body_step(ModelJsonRequest.model_validate, data)
        if body.settings is not None:
            body.settings = canonical_settings(body.settings)
        _allowed_id(body.id)
        # (a big body's messages dumped off the loop; each call its own copy, as either may change it)
        await request.app[SERVICES].models.check_model_and_file(await body_step(body.model_dump, exclude_none=True))
        create = getattr(models, "create_model", None)
        if create is None:
            raise APIError(501, "The model extension in use cannot add a model.json; import a file with 'path'",
                           type="server_error", code="not_supported")
        model = await create(await body_step(body.model_dump, exclude_none=True))
    return json_response(await with_state(request, model), status=201)


@routes.patch("/v1/models/{model_id:.+}")
async def update_model(request: web.Request) -> web.Response:
    """Change a model.json (``settings``, ``parameters`` and ``metadata`` merge one level deep)."""
    body = await parse_body(request, ModelPatch)
    patch = await body_step(body.model_dump, exclude_unset=True)  # (a big body's messages: off the loop)
    for key, value in patch.items():
        if value is None and key not in ("settings", "parameters", "metadata"):
            raise APIError(400, f"{key} cannot be null", param=key, code="invalid_value")
    patch = {k: v for k, v in patch.items() if v is not None}
    if "settings" in patch:  # (word settings kept as they are used: "F16" as f16)
        patch["settings"] = canonical_settings(patch["settings"])
    models = model_extension(request)
    model_id = request.match_info["model_id"]
    model = await models.get_model(model_id)
    if patch:
        # The model.json as the PATCH would leave it, checked as requests will read it: a value that
        # fails every request to the model (ctx_len -5, temperature "hot") is a 400 and is not stored.
        merged = {**model, **{k: v for k, v in patch.items() if k not in ("settings", "parameters", "metadata")}}
        changed = [k for k in patch if k not in ("settings", "parameters")]
        for field in ("settings", "parameters"):
            if field in patch:
                merged[field] = {**(model.get(field) or {}), **patch[field]}
                changed += [f"{field}.{key}" for key, value in patch[field].items() if value is not None]
        await request.app[SERVICES].models.check_model_and_file(merged, changed)
        model = await models.update_model(model_id, patch)
    return json_response(await with_state(request, model))


@routes.delete("/v1/models/{model_id:.+}")
async def delete_model(request: web.Request) -> web.Response:
    """Delete a model (unloaded first if it is loaded) and its files in the data folder."""
    models = model_extension(request)
    model_id = request.match_info["model_id"]
    request.app[SERVICES].models.refuse_alias(model_id, "delete")  # (not "not found": the model it names is here)
    try:
        model = await models.get_model(model_id)
    except ModelNotFoundError:  # no model.json: what a killed pull or import left, removed as a model would be
        # (a damaged model.json may belong to a loaded model: unloaded first, as a model is, never left serving)
        unloaded = await request.app[SERVICES].models.unload_unlisted(model_id)
        if await request.app[SERVICES].models.delete_leftover(model_id) or unloaded:
            return json_response({"id": model_id, "object": "model", "deleted": True})
        raise
    try:  # (checked: an unload's failure of the engine's own names it)
        engine = request.app[SERVICES].models.engine_for(model)
    except (RequestError, ServiceUnavailableError):  # no engine enabled for it: nothing of it is loaded
        engine = None
    if engine is not None:  # a load in progress is waited for and undone too: never serve deleted weights
        await unload_now(engine, model["id"])
    await models.delete_model(model["id"])
    return json_response({"id": model["id"], "object": "model", "deleted": True})


def _status(task: Any) -> dict[str, Any]:
    status = {"object": "model.download", **task.status()}
    if status.get("error") is not None and not isinstance(status["error"], str):
        status["error"] = str(status["error"]) or type(status["error"]).__name__  # an exception object
    return status


@routes.post("/v1/models/pull")
async def pull_model(request: web.Request) -> web.StreamResponse:
    """Download a model (https:// or hf://); streams progress events until it ends."""
    body = await parse_body(request, PullRequest)
    _allowed_id(body.id)
    models = model_extension(request)
    kwargs = {"sha256": body.sha256} if body.sha256 else {}
    try:
        task = await models.pull(body.url, body.id, **kwargs)
    except DownloadError as exc:
        raise _download_error(exc) from None
    if not body.stream:
        return json_response(_status(task), status=202)

    sse = SSEStream(request)
    waiter = asyncio.ensure_future(task.wait())
    last: dict[str, Any] | None = None
    stopping = request.app[SHUTTING_DOWN]
    try:
        while not waiter.done():
            if stopping.is_set():
                # the stop ends the download with the extensions, after the grace period the server gives open
                # answers: this one ends now, saying why, instead of holding the stop up and then being cut off
                await sse.error(APIError(503, "The server is shutting down; the download stops with it (pull the "
                                              "model again to resume it).",
                                         type="server_error", code="server_shutdown").body())
                return sse.response
            status = _status(task)
            if status != last and status["state"] not in FINAL_STATES:
                await sse.send(status)
                last = status
            await asyncio.wait([waiter], timeout=PROGRESS_INTERVAL)
        final = _status(task)
        if waiter.cancelled() or final["state"] == "cancelled" or isinstance(waiter.exception(), DownloadCancelledError):
            final["state"] = "cancelled"  # the interface says CancelledError; jan.downloads raises its own
        elif waiter.exception() is not None:
            final["state"] = "failed"
            final["error"] = final.get("error") or str(waiter.exception())
        else:
            final["state"] = "completed"
            final["model"] = await with_state(request, waiter.result())
        await sse.send(final, hold=True)
        await sse.done()
    except ConnectionError:
        log.debug("pull %s: client stopped listening; the download goes on", task.id)
    finally:
        if not waiter.done():
            waiter.cancel()  # stops waiting only; the download itself continues
        elif not waiter.cancelled():
            waiter.exception()  # retrieved, so asyncio does not log it
    return sse.response


# Not under /v1/models/: a literal there would shadow a model id (GET /v1/models/{model_id}).
@routes.get("/v1/downloads")
async def list_pulls(request: web.Request) -> web.Response:
    """Downloads running or ended recently."""
    tasks = await model_extension(request).list_downloads()
    return json_response({"object": "list", "data": [_status(t) for t in tasks]})


@routes.delete("/v1/downloads/{task_id}")
async def cancel_pull(request: web.Request) -> web.Response:
    """Cancel a running download (by download id or model id)."""
    task_id = request.match_info["task_id"]
    if not await model_extension(request).cancel_pull(task_id):
        raise APIError(404, f"{not_found_message('download', task_id)}: none of that id or model is running",
                       param="task_id", code="not_found")
    return json_response({"id": task_id, "object": "model.download", "state": "cancelled", "cancelled": True})
