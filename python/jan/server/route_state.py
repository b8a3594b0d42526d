"""What route modules keep in the app from its start: the stores and services they share, and the work done at start
(sweeps, resumes, prunes) and at shutdown (cancels, stops).

It lives here, apart from the route modules, because those are imported on their first request
(:mod:`jan.server.route_index`: resident memory at start, issue 16) while this must happen at start whatever is
asked: what a crash left of an upload is swept, unended batches resume, unused Ollama blobs are pruned, held message
threads follow their Jan threads, running responses are cancelled at shutdown. Nothing here imports a dialect's wire
format or handlers; the route modules take their app keys from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from jan.background import report_failure
from jan.core import ConversationalExtension, ThreadDeleted
from jan.core.guarded import get_guarded
from jan.errors import ModelNotFoundError
from jan.server.dialects.anthropic_threads import MessageThreads
from jan.server.dialects.conversation_locks import ConversationLocks
from jan.server.dialects.responses_run import ReplayableStreams
from jan.server.dialects.responses_store import ResponsesStore
from jan.server.errors import APIError, error_body
from jan.server.keys import BUS, CONFIG, MANAGER, MEDIA_FETCHER, SERVICES
from jan.server.route_index import import_lazily
from jan.services.batch_types import Batch, BatchItem, ItemOutcome, ItemResult, RunnerUnavailableError
from jan.services.batches import BatchService
from jan.store.batches import BatchStore
from jan.store.blobs import BlobStore
from jan.store.leases import LEASE_DIR_NAME, Leases
from jan.store.uploads import UploadStore

log = logging.getLogger("jan.server")

__all__ = ["BATCHES", "BATCH_RUNNERS", "CONVERSATION_LOCKS", "RUNS", "STORE", "STREAMS", "THREADS", "UNSAVED_ENDS",
           "UPLOADS", "prune_blobs", "setup"]

#: Uploads (``/v1/files``): read by the chat routes too (a file part's ``file_id``).
UPLOADS = web.AppKey("uploads", UploadStore)
#: The batches of both dialects (``jan.server.routes.batches``).
BATCHES = web.AppKey("batches", BatchService)
#: Stored responses (``jan.server.routes.responses``).
STORE = web.AppKey("responses_store", ResponsesStore)
#: Responses being generated, by id: what cancel and a GET while running reach.
RUNS = web.AppKey("responses_runs", dict)
#: The ``error`` of each response whose end this server could not save (a disk that filled as it ended), by id, the
#: newest :data:`UNSAVED_ENDS_KEPT`: a GET of its record, left on disk as it began, says why it did not finish, not
#: that the server stopped (what a record left unfinished says otherwise, and after a restart).
UNSAVED_ENDS = web.AppKey("responses_unsaved_ends", dict)
UNSAVED_ENDS_KEPT = 1024
#: The conversations a response is being made in now: one at a time (jan.server.dialects.conversation_locks).
CONVERSATION_LOCKS = web.AppKey("conversation_locks", ConversationLocks)
#: Background streams, running or ended a short while ago: what GET /v1/responses/{id}?stream=true replays.
STREAMS = web.AppKey("responses_streams", ReplayableStreams)
#: Anthropic's message threads (thread: create / continue): held as Jan threads, see dialects/anthropic_threads.py.
THREADS = web.AppKey("anthropic_threads", MessageThreads)

#: Each batch dialect: (dialect, id prefix, module, runner class). The module (its wire format, the routes its items
#: go through) is imported when a batch of the dialect first runs or is created.
BATCH_RUNNERS: tuple[tuple[str, str, str, str], ...] = (
    ("openai", "batch_", "jan.server.dialects.openai_batches", "OpenAIBatchRunner"),
    ("anthropic", "msgbatch_", "jan.server.dialects.anthropic_batches", "AnthropicBatchRunner"),
)

#: The most seconds a stop of jan waits for the responses it cancels to end (each one saves how it ended first).
STOP_BOUND = 15.0


def setup(app: web.Application) -> None:
    """Every route module's state, in the order they depend on each other."""
    setup_files(app)
    setup_batches(app)  # (after files: OpenAI's batches read and write uploads)
    setup_responses(app)
    setup_ollama(app)
    setup_anthropic(app)


# -- files -------------------------------------------------------------------------------------------------
def setup_files(app: web.Application) -> None:
    """The store of uploads; at start, what a crash left of an upload or a deletion is cleared away."""
    app[UPLOADS] = UploadStore(app[CONFIG].data_folder)
    app.on_startup.append(_sweep_uploads)


async def _sweep_uploads(app: web.Application) -> None:
    try:
        await asyncio.to_thread(app[UPLOADS].sweep)
    except OSError as exc:  # housekeeping (a read-only folder): never a reason not to start
        log.warning("files: could not sweep %s: %s", app[UPLOADS].folder, exc)


# -- batches -----------------------------------------------------------------------------------------------
#: The path each batch dialect's items are answered as: an item's error is in the shape of that route's errors.
_ITEM_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


class _DeferredRunner:
    """A dialect's :class:`~jan.services.batch_types.BatchRunner`, made (its module imported, off the loop) when it
    first runs an item: a server that never runs a batch of that dialect never imports it.

    A module that cannot be imported is :class:`~jan.services.batch_types.RunnerUnavailableError`: the batch fails
    (``failed``, why in its errors; its items ``errored``, in the shape jan keeps for the dialect's errors before its
    modules load: :mod:`jan.server.dialect_errors`), the worker goes on, and the next batch tries the import again."""

    def __init__(self, dialect: str, module: str, name: str, app: web.Application, uploads: UploadStore):
        self._dialect, self._module, self._name, self._app, self._uploads = dialect, module, name, app, uploads
        self._runner: Any = None

    async def _made(self) -> Any:
        if self._runner is None:
            try:
                module = await asyncio.to_thread(import_lazily, self._module)
                runner = getattr(module, self._name)(self._app, self._uploads)
            except Exception as exc:  # (ModuleLoadError, or a module without its runner)
                raise RunnerUnavailableError(str(exc)) from exc
            if self._runner is None:  # (two first uses at once: one runner)
                self._runner = runner
        return self._runner

    async def execute(self, batch: Batch, item: BatchItem) -> ItemOutcome:
        return await (await self._made()).execute(batch, item)

    def failed(self, exc: BaseException) -> ItemOutcome:
        if self._runner is not None:
            return self._runner.failed(exc)
        # The module never loaded (so nothing of it ran): the error as the dialect's route answers an internal
        # failure, saying why (the batch's only word on it, in Anthropic's results).
        err = APIError(500, f"This request was not run: {exc}", type="server_error", code="internal_error")
        status, body = error_body(err, _ITEM_PATHS.get(self._dialect, ""))
        return ItemOutcome(status, body)

    async def finalize(self, batch: Batch, results: Sequence[ItemResult]) -> Mapping[str, Any]:
        return await (await self._made()).finalize(batch, results)


def setup_batches(app: web.Application) -> None:
    """The batch service with both dialects' runners (after :func:`setup_files`: OpenAI's read and write uploads); it
    takes up unended batches as the server starts and stops its worker first thing when the server stops (the
    running item runs again at the next start), before the engines it uses are stopped."""
    uploads = app[UPLOADS]
    service = BatchService(BatchStore(app[CONFIG].data_folder))
    for dialect, id_prefix, module, name in BATCH_RUNNERS:
        service.register(dialect, id_prefix, _DeferredRunner(dialect, module, name, app, uploads))
    app[BATCHES] = service
    app.on_startup.append(_start_batches)
    app.on_shutdown.append(_stop_batches)


async def _start_batches(app: web.Application) -> None:
    await app[BATCHES].start()


async def _stop_batches(app: web.Application) -> None:
    await app[BATCHES].stop()


# -- responses ---------------------------------------------------------------------------------------------
def setup_responses(app: web.Application) -> None:
    """The app's response store and in-flight registry; on shutdown, running responses are cancelled."""
    manager = app[MANAGER]
    app[STORE] = ResponsesStore(app[CONFIG].data_folder / "responses",
                                lambda: get_guarded(manager, ConversationalExtension),
                                fetch_image=app[MEDIA_FETCHER].data_url)  # (a linked image: a run's fetch)
    app[RUNS] = {}
    app[UNSAVED_ENDS] = {}
    # a conversation is a thread: held as a run holds one, in every process sharing the data folder
    app[CONVERSATION_LOCKS] = ConversationLocks(lambda thread_id: app[SERVICES].runs.claim_turn(thread_id),
                                                lambda thread_id: app[SERVICES].runs.release_turn(thread_id))
    app[STREAMS] = ReplayableStreams()
    app.on_startup.append(_end_unfinished_responses)
    app.on_shutdown.append(_cancel_responses)


async def _end_unfinished_responses(app: web.Application) -> None:
    """At start: the stored responses a server left unfinished when it stopped (a crash, kill -9) are saved as they
    read (``failed``, the server stopped); those another live server sharing the data folder generates (its lease
    held) are left to it."""
    store = app[STORE]
    leases = Leases(store.folder.parent / LEASE_DIR_NAME)
    try:
        ended = await store.end_unfinished(leases.is_live)
    except Exception:  # noqa: BLE001 - housekeeping: they read failed all the same, and the next start tries again
        log.warning("responses: could not end those a stopped server left unfinished", exc_info=True)
        return
    if ended:
        log.info("responses: %d left unfinished by a server that stopped saved as failed", len(ended))


async def _cancel_responses(app: web.Application) -> None:
    """On shutdown (after :data:`~jan.server.keys.SHUTTING_DOWN` is set, so no response starts any more: see
    ``jan.server.routes.responses.create_response``): every response still generating is cancelled and awaited, its
    end saved, before the extensions stop; none is waited for longer than :data:`STOP_BOUND` s."""
    runs = list(app[RUNS].values())
    if runs:
        stopping = [report_failure(asyncio.ensure_future(run.abort()), f"stopping response {run.id}", log)
                    for run in runs]
        _done, late = await asyncio.wait(stopping, timeout=STOP_BOUND)
        for task in late:
            task.cancel()
        for run in runs:
            if not run.done:
                log.warning("response %s did not end before jan stopped; it reads failed from now on", run.id)


# -- Ollama ------------------------------------------------------------------------------------------------
def setup_ollama(app: web.Application) -> None:
    """Blobs no model uses are removed at start (as Ollama prunes unused layers) and after ``/api/delete``."""
    app.on_startup.append(prune_blobs)


async def prune_blobs(app: web.Application) -> list[Path]:
    """Remove the blobs no model uses (:meth:`BlobStore.prune`); a failure is logged, never the request's."""
    blobs = BlobStore(app[CONFIG].data_folder)
    if not await asyncio.to_thread(blobs.folder.is_dir):
        return []
    try:
        models = app[SERVICES].models.model_extension()
        referenced: set[Path] = set()
        for model in await models.list_models():
            for find in (models.model_file, models.mmproj_file, models.draft_model_file, models.lora_files):
                try:
                    found = await find(model["id"])
                except ModelNotFoundError:
                    # deleted since the listing (a delete or a replacing create at the same time): its files are
                    # no longer its; the rest are pruned all the same (a failure here kept every blob, logged)
                    break
                # (LoRA adapters: /api/create's adapters reference their blobs in place, as a projector does)
                for path in found if isinstance(found, list) else [found] if found else []:
                    referenced.add(await asyncio.to_thread(Path(path).resolve))
        removed = await asyncio.to_thread(blobs.prune, referenced)
    except Exception:  # noqa: BLE001 - housekeeping: the blobs stay until the next try
        log.warning("ollama: could not prune unused blobs", exc_info=True)
        return []
    for path in removed:
        log.info("ollama: removed unused blob %s", path.name)
    return removed


# -- Anthropic ---------------------------------------------------------------------------------------------
def setup_anthropic(app: web.Application) -> None:
    manager = app[MANAGER]
    app[THREADS] = MessageThreads(app[CONFIG].data_folder / "message_threads",
                                  lambda: get_guarded(manager, ConversationalExtension),
                                  fetch_image=app[MEDIA_FETCHER].data_url)
    app.cleanup_ctx.append(_threads_lifetime)


async def _threads_lifetime(app: web.Application) -> AsyncIterator[None]:
    """Held threads follow their Jan threads: swept at start, and forgotten when one is deleted."""
    threads = app[THREADS]
    try:
        await threads.sweep()
    except Exception:  # the server starts all the same; the next start sweeps again
        log.exception("could not sweep the held message threads")
    unsubscribe = app[BUS].subscribe(ThreadDeleted, threads.thread_deleted)
    try:
        yield
    finally:
        unsubscribe()
