"""The aiohttp application factory.

Everything the server serves comes through the extension manager: the
built-in extensions (local engine, model manager, conversation store, ...)
are discovered through the same ``jan.extensions`` entry points as any
third-party one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from jan.core import ExtensionLoaded, ExtensionLoadingError, ExtensionManager, LocalEventBus
from jan.server.config import ServerConfig
import jan.server.dialect_errors  # noqa: F401 - the dialects' error shapes, before any of their modules loads
from jan.server.errors import describe_error, dialect_error_middleware, error_middleware, quiet_client_protocol_errors
from jan.server import expect
from jan.server.body_read import body_read_middleware, declared_size_check
from jan.server.disconnect import handling_middleware
from jan.server.keys import (BUS, CONFIG, HTTP_REQUESTS, LIVE_CONTROLS, MANAGER, MEDIA_FETCHER, METRIC_WINDOWS,
                             SERVICES, SHUTTING_DOWN, STARTED_AT)
from jan.server.media_fetch import MediaAllowlist, MediaFetcher
from jan.services.container import Services
from jan.server.mount import mount_extensions
from jan.server.protocol import head_without_body
from jan.server.request_counts import HttpRequestCounts
from jan.server.request_id import on_prepare as stamp_request_id, request_id_middleware
from jan.server.security import (
    api_key_middleware,
    cors_middleware,
    cors_on_prepare,
    cross_site_middleware,
    host_allowlist_middleware,
)
from jan.server.validation import body_codings_middleware, end_unreadable_body

log = logging.getLogger("jan.server")


#: The routes whose body is a multipart form, not JSON.
FORM_ROUTES = {("POST", "/v1/files"), *(("POST", prefix + "/audio/" + task) for prefix in ("", "/v1")
                                         for task in ("transcriptions", "translations"))}


def _route_tables() -> list[web.RouteTableDef]:
    from jan.server.route_index import lazy_table
    from jan.server.routes import docs, health, models, openai

    # Chat, completions, embeddings, the models and health are imported now; every other route (the other dialects,
    # Jan's own resources, extension admin, the chat page) is registered now with a stand-in that imports its module
    # on its first call (jan.server.route_index: resident memory at start, issue 16).
    return [openai.routes, models.routes, health.routes, docs.routes, lazy_table()]


def _setup_route_state(app: web.Application) -> None:
    """Route modules with state of their own (uploads, batches, stored responses, held threads) set it up before the
    app starts, their modules imported or not (jan.server.route_state)."""
    from jan.server import route_state

    route_state.setup(app)


#: Seconds ``jan serve`` waits for third-party extensions' loads before it serves (jan's own are always waited
#: for): one whose ``on_load`` hangs shows as ``loading`` meanwhile instead of holding the server up for its
#: whole ``load_timeout``; one that loads later serves its routes as its load ends (``jan.server.late_routes``).
SERVE_LOAD_WAIT = 10.0


async def create_app(config: ServerConfig | None = None, *, extensions: Iterable[object] = (),
                     manager: ExtensionManager | None = None) -> web.Application:
    """Build the server: start the extension manager, mount every route, return the app.

    ``extensions`` are registered in addition to the discovered ones (tests,
    embedding applications).
    """
    config = config or ServerConfig()
    from jan.store import make_data_folder

    make_data_folder(config.data_folder)  # (one that cannot be made: which, and what to do; not mkdir's errno)
    if manager is None:
        manager = ExtensionManager(config.data_folder, LocalEventBus(), only_builtin=not config.enable_extensions,
                                   load_wait=SERVE_LOAD_WAIT)
    for ext in extensions:
        manager.register(ext)
    await manager.start()
    # jan's own extensions (models, engines, threads: bounded, quick loads) are what every request needs: the
    # server answers once they are loaded, never with a 503 "still loading" for them on a busy machine
    await manager.settle(names=manager.builtin_names())
    try:
        return await _build_app(config, manager)
    except BaseException:
        # nothing will stop the extensions started above (an app that was not made has no cleanup): stopped
        # here, or their sessions and engines leak ("Unclosed client session" at exit)
        await manager.stop()
        raise


async def _build_app(config: ServerConfig, manager: ExtensionManager) -> web.Application:
    for record in manager.list():
        if record.error:
            log.warning("extension %s is %s: %s", record.name, record.state, record.error)
    await _report_damaged_models(manager)
    _configure_local_engine(manager, config)

    tables = _route_tables()
    # Bodies sent to jan's own routes must say they are JSON (415 otherwise). Not the Ollama dialect's
    # (/api/*): Ollama accepts any Content-Type and its documented `curl -d` examples send none; nor the
    # routes that take a multipart form (a file upload, an audio clip: each refuses any other body itself).
    # The Origin check still refuses cross-site writes there.
    own_handlers = {route.handler for table in tables for route in table
                    if isinstance(route, web.RouteDef) and not route.path.startswith("/api/")
                    and (route.method, route.path) not in FORM_ROUTES}
    # Every check that needs no body: run for each request, and by jan's expect handler before it invites a body
    # with 100 Continue (jan.server.expect), so that a request refused anyway never uploads it first.
    before_body = [dialect_error_middleware, error_middleware, host_allowlist_middleware(config),
                   cors_middleware(config), cross_site_middleware(config, own_handlers), api_key_middleware(config),
                   body_codings_middleware]
    jan_handlers = {route.handler for table in tables for route in table if isinstance(route, web.RouteDef)}
    request_counts = HttpRequestCounts()
    app = web.Application(
        client_max_size=config.max_body_bytes,
        # Order matters: the request's id is chosen first (every log line and answer below carries it); errors on a
        # dialect's routes (Anthropic's) leave in that dialect's shape (outermost);
        # a bad Host is refused first, then CORS preflights are answered, then cross-site writes are
        # refused (key or not), then the key is checked, then a body in codings not undone here is refused.
        # (What aiohttp refuses before these run is shaped by the runner: jan.server.protocol.AppRunner.)
        # Innermost: the route's body is read within the read timeout and its route's size limit
        # (jan.server.body_read), and the request is noted for the waits that end when its client leaves.
        # Every request is counted (jan_http_requests_total) as answered, whichever middleware answered it.
        middlewares=[request_id_middleware, request_counts.middleware, *before_body,
                     body_read_middleware(config, jan_handlers),
                     handling_middleware],
    )
    expect.install(app, expect.before_body(before_body, declared_size_check(config, jan_handlers)))
    app.on_response_prepare.append(cors_on_prepare(config))
    app.on_response_prepare.append(stamp_request_id)
    app.on_response_prepare.append(end_unreadable_body)
    app.on_response_prepare.append(head_without_body)
    quiet_client_protocol_errors()
    app[CONFIG] = config
    app[MANAGER] = manager
    # (one fetcher: a run reads an image a thread message links to as a chat completion reads one, same allowlist)
    app[MEDIA_FETCHER] = MediaFetcher(MediaAllowlist.parse(config.allow_media_from))
    app[SERVICES] = Services.from_manager(manager, describe_error=describe_error, default_model=config.default_model,
                                          fetch_image=app[MEDIA_FETCHER].data_url)
    app[BUS] = manager.bus
    app[STARTED_AT] = time.monotonic()
    app[METRIC_WINDOWS] = {}
    app[HTTP_REQUESTS] = request_counts
    app[SHUTTING_DOWN] = asyncio.Event()
    app[LIVE_CONTROLS] = {}
    app.on_cleanup.append(_close_media_fetcher)
    app.on_shutdown.append(_announce_shutdown)
    for table in tables:
        app.add_routes(table)
    _setup_route_state(app)
    for name, why in mount_extensions(manager, app).items():
        await manager.refuse(name, why)  # one extension fails, jan keeps starting (its route clashes)
    app.cleanup_ctx.append(_lifetime)
    app.cleanup_ctx.append(_expire_runs)
    await _recover_runs(app)
    return app


#: Seconds between two sweeps for runs that waited in ``requires_action`` past their ``expires_at`` (a run read,
#: listed or answered is checked as it is; the sweep frees the threads nobody looks at).
RUN_EXPIRY_SWEEP_S = 30.0


async def _recover_runs(app: web.Application) -> None:
    """Runs cut off by the last stop: interrupted, never pending forever. The run service is made for it only when
    a record is live or waiting (resident memory at start, issue 16: see ``Services.runs``); without one there is
    nothing to recover, nor to expire. Its module is imported off the loop; one that cannot be imported fails no
    start (the runs routes fail on it, each request): the runs are recovered at the next start that loads it."""
    from jan.server.route_index import ModuleLoadError, import_lazily
    from jan.services.run_records import needs_attention

    if not await asyncio.to_thread(needs_attention, app[MANAGER].data_folder):
        return
    try:
        await asyncio.to_thread(import_lazily, "jan.services.runs")
    except ModuleLoadError as exc:
        log.error("the runs the last stop cut off are not recovered (the next start tries again): %s", exc)
        return
    await app[SERVICES].runs.recover_interrupted()


async def _expire_runs(app: web.Application) -> AsyncIterator[None]:
    """One sweep at start (runs that expired while jan was stopped) and one every :data:`RUN_EXPIRY_SWEEP_S`, once
    there is a run service (made at start when a record waits, else by the first request that uses runs)."""
    services = app[SERVICES]

    async def sweep() -> None:
        first = True
        while True:
            try:
                if services.has_runs:
                    await services.runs.expire_due(scan_disk=first)
                    first = False
            except Exception:  # noqa: BLE001 - a failed sweep is logged; the next one tries again
                log.exception("could not expire the runs waiting past their time")
            await asyncio.sleep(RUN_EXPIRY_SWEEP_S)

    task = asyncio.create_task(sweep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _report_damaged_models(manager: ExtensionManager) -> None:
    """List the models once at start, so that a damaged model.json is set aside and logged now (the store logs
    each one it finds, and one an earlier command set aside), not first noticed as a model gone missing."""
    from jan.core import ModelExtension

    try:
        models = manager.get(ModelExtension)
    except LookupError:
        return  # none loaded: said above, with the cause, when it failed
    try:
        await models.list_models()
    except Exception as exc:  # noqa: BLE001 - a look at the folder for the log, never a reason not to start
        log.warning("could not list the models: %s", exc)


async def _close_media_fetcher(app: web.Application) -> None:
    await app[MEDIA_FETCHER].close()


async def _announce_shutdown(app: web.Application) -> None:
    app[SHUTTING_DOWN].set()
    # Runs are no streams of one request: each is stopped here and saved interrupted (resumable), its listeners
    # told — awaited, so that every run is settled before cleanup stops the extensions (_lifetime): a leg still
    # going then would save its tool call's failure as the result and start a model turn with no model.
    # Made now if no request made it yet: a request whose runs route is still loading its module
    # (jan.server.route_index) makes it after this line, and must find it stopping (its run refused, 503), never
    # start a run as the extensions stop. Its module is imported off the loop; the service is made on it.
    # A module that cannot be imported made no run service, so no run: nothing to stop, and the stop goes on.
    from jan.server.route_index import ModuleLoadError, import_lazily

    services = app[SERVICES]
    if not services.has_runs:
        try:
            await asyncio.to_thread(import_lazily, "jan.services.runs")
        except ModuleLoadError as exc:
            log.warning("no run to interrupt: %s", exc)
            return
    await services.runs.interrupt_all()


def _configure_local_engine(manager: ExtensionManager, config: ServerConfig) -> None:
    try:
        local = manager.get_inference("llama.cpp")
    except ExtensionLoadingError:
        # the server does not wait for a slow extension: its engine gets the options as soon as it is loaded
        def loaded(_event: ExtensionLoaded) -> None:
            if manager.engines().get("llama.cpp") is not None:
                unsubscribe()
                _configure_local_engine(manager, config)

        unsubscribe = manager.bus.subscribe(ExtensionLoaded, loaded)
        return
    except LookupError:
        return
    if hasattr(local, "set_defaults"):
        local.set_defaults(**config.engine_defaults())
    if hasattr(local, "set_residency") and (config.max_loaded_models is not None or config.keep_alive is not None):
        local.set_residency(max_loaded=config.max_loaded_models, keep_alive=config.keep_alive)


async def _name_models(app: web.Application, loaded: list[dict]) -> None:
    """``jan serve --alias``/``--tags`` (llama-server's) given to the one model ``--model`` loaded. An alias that is
    the id of another model of the data folder would hide that model: refused, the server does not start."""
    from jan.errors import ModelLoadError, ModelNotFoundError

    config = app[CONFIG]
    if not (config.aliases or config.tags) or len(loaded) != 1:
        return
    models = app[SERVICES].models
    model_id = loaded[0]["id"]
    for alias in config.aliases:
        if alias == model_id:
            continue
        try:
            other = await models.get(alias)
        except (ModelNotFoundError, ValueError):
            continue
        raise ModelLoadError(f"--alias {alias}: the data folder has a model '{other['id']}' of that id; give "
                             "another alias")
    models.name_model(model_id, config.aliases, config.tags)


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    """Load the models named on the command line; on shutdown, unload everything."""
    from jan.server.preload import preload_models

    manager = app[MANAGER]
    try:
        loaded = await preload_models(manager, app[CONFIG].models)
        from jan.services.models import unread_server_defaults

        defaults = app[CONFIG].engine_defaults()
        if loaded and unread_server_defaults(loaded, defaults) is not None:
            # a generation flag none of the --model reads: refused when no other local model could load with it
            # either (they are defaults for every model the server loads, on demand too)
            others = await app[SERVICES].models.model_extension().list_models()
            unread = unread_server_defaults([*loaded, *(m for m in others if (m.get("engine") or "llama.cpp")
                                                        == "llama.cpp")], defaults)
            if unread is not None:
                raise unread
        await _name_models(app, loaded)
        yield
    finally:
        await manager.stop()
