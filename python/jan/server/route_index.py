"""The routes whose module is imported on their first request, not at start.

``jan serve`` answers chat, completions, embeddings, ``/v1/models`` and health from modules it imports at start; every
other route module (the other dialects: Anthropic's, OpenAI's Responses and Conversations, Ollama's,
llama-server's; threads, assistants, runs, files, batches, audio, model admin, extensions, MCP, the chat page) holds
pydantic models and handlers a session may never use, a few MiB of resident memory at start (issue 16). Each of their
routes is registered from the start, with its method and path, from the table below: its handler is a stand-in that imports
the module on the route's first call and hands the request to the module's own handler for that method and path
(the same request: match info, body and all). So 404s, 405s, CORS preflights, the API key, the JSON-415 rule
(``own_handlers``) and the error shapes (:mod:`jan.server.dialect_errors`) are what they were; only the module
holding the handler's body loads late. What the modules keep in the app from its start (stores, sweeps) is set up
by :mod:`jan.server.route_state`.

A module that fails to import (a broken install, an error in code run at import) fails the request that needed it as
any handler's unexpected exception does: a 500 ``internal_error`` in the route's dialect, its cause in the log
(:class:`ModuleLoadError`); nothing of the failure is kept, so the next call imports it again, and nothing it raises
(a ``SystemExit`` of code run at import included) ends the worker thread or the loop.

``tests/test_route_index.py`` imports every module below and checks that :data:`LAZY_ROUTES` is exactly the routes
they declare, in their order: the table cannot drift from the modules.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Awaitable, Callable
from types import ModuleType

from aiohttp import web

__all__ = ["LAZY_MODULES", "LAZY_ROUTES", "ModuleLoadError", "import_lazily", "lazy_table", "load", "load_all",
           "target"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The modules of ``jan.server.routes`` imported on first use, in the order their routes are registered. "runs"
#: comes before "threads": its static POST /v1/threads/runs must be registered before /v1/threads/{thread_id},
#: which an aiohttp that matches in registration order (before 3.10) would otherwise give it to.
LAZY_MODULES = ("model_admin", "runs", "threads", "assistants", "files", "extensions", "mcp", "web", "ollama",
                "anthropic", "responses", "conversations", "llamacpp", "batches", "audio")

#: (module, method, path) of every route of :data:`LAZY_MODULES`, in each module's order.
LAZY_ROUTES: tuple[tuple[str, str, str], ...] = (
    # model_admin
    ("model_admin", "POST", "/v1/models"),
    ("model_admin", "PATCH", "/v1/models/{model_id:.+}"),
    ("model_admin", "DELETE", "/v1/models/{model_id:.+}"),
    ("model_admin", "POST", "/v1/models/pull"),
    ("model_admin", "GET", "/v1/downloads"),
    ("model_admin", "DELETE", "/v1/downloads/{task_id}"),
    # runs
    ("runs", "POST", "/v1/threads/{thread_id}/runs"),
    ("runs", "POST", "/v1/threads/runs"),
    ("runs", "GET", "/v1/threads/{thread_id}/runs"),
    ("runs", "POST", "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"),
    ("runs", "POST", "/v1/threads/{thread_id}/runs/{run_id}/resume"),
    ("runs", "GET", "/v1/threads/{thread_id}/runs/{run_id}/events"),
    ("runs", "GET", "/v1/threads/{thread_id}/runs/{run_id}/steps"),
    ("runs", "GET", "/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}"),
    ("runs", "GET", "/v1/threads/{thread_id}/runs/{run_id}"),
    ("runs", "PATCH", "/v1/threads/{thread_id}/runs/{run_id}"),
    ("runs", "POST", "/v1/threads/{thread_id}/runs/{run_id}"),
    ("runs", "POST", "/v1/threads/{thread_id}/runs/{run_id}/control"),
    ("runs", "POST", "/v1/threads/{thread_id}/runs/{run_id}/cancel"),
    # threads
    ("threads", "POST", "/v1/threads"),
    ("threads", "GET", "/v1/threads"),
    ("threads", "GET", "/v1/threads/{thread_id}"),
    ("threads", "PATCH", "/v1/threads/{thread_id}"),
    ("threads", "POST", "/v1/threads/{thread_id}"),
    ("threads", "DELETE", "/v1/threads/{thread_id}"),
    ("threads", "POST", "/v1/threads/{thread_id}/messages"),
    ("threads", "GET", "/v1/threads/{thread_id}/messages"),
    ("threads", "GET", "/v1/threads/{thread_id}/messages/{message_id}"),
    ("threads", "PATCH", "/v1/threads/{thread_id}/messages/{message_id}"),
    ("threads", "POST", "/v1/threads/{thread_id}/messages/{message_id}"),
    ("threads", "GET", "/v1/threads/{thread_id}/files/{file_id}"),
    ("threads", "DELETE", "/v1/threads/{thread_id}/messages/{message_id}"),
    # assistants
    ("assistants", "POST", "/v1/assistants"),
    ("assistants", "GET", "/v1/assistants"),
    ("assistants", "GET", "/v1/assistants/{assistant_id}"),
    ("assistants", "PATCH", "/v1/assistants/{assistant_id}"),
    ("assistants", "POST", "/v1/assistants/{assistant_id}"),
    ("assistants", "DELETE", "/v1/assistants/{assistant_id}"),
    # files
    ("files", "POST", "/v1/files"),
    ("files", "GET", "/v1/files"),
    ("files", "GET", "/v1/files/{file_id}"),
    ("files", "DELETE", "/v1/files/{file_id}"),
    ("files", "GET", "/v1/files/{file_id}/content"),
    # extensions
    ("extensions", "GET", "/v1/extensions"),
    ("extensions", "POST", "/v1/extensions/{name}/enable"),
    ("extensions", "POST", "/v1/extensions/{name}/disable"),
    ("extensions", "GET", "/v1/extensions/{name}/settings"),
    ("extensions", "PATCH", "/v1/extensions/{name}/settings"),
    ("extensions", "DELETE", "/v1/extensions/{name}/settings"),
    ("extensions", "GET", "/v1/extensions/{name}"),
    ("extensions", "PATCH", "/v1/extensions/{name}"),
    # mcp
    ("mcp", "GET", "/v1/mcp/servers"),
    ("mcp", "GET", "/v1/mcp/servers/{name}"),
    ("mcp", "POST", "/v1/mcp/servers/{name}/enable"),
    ("mcp", "POST", "/v1/mcp/servers/{name}/disable"),
    ("mcp", "GET", "/v1/tools"),
    # web
    ("web", "GET", "/"),
    ("web", "GET", "/favicon.ico"),
    ("web", "GET", "/static/{name:.+}"),
    # ollama
    ("ollama", "POST", "/api/chat"),
    ("ollama", "POST", "/api/generate"),
    ("ollama", "POST", "/api/embed"),
    ("ollama", "POST", "/api/embeddings"),
    ("ollama", "GET", "/api/tags"),
    ("ollama", "POST", "/api/show"),
    ("ollama", "GET", "/api/ps"),
    ("ollama", "DELETE", "/api/delete"),
    ("ollama", "POST", "/api/copy"),
    ("ollama", "POST", "/api/create"),
    ("ollama", "HEAD", "/api/blobs/{digest}"),
    ("ollama", "POST", "/api/blobs/{digest}"),
    ("ollama", "POST", "/api/pull"),
    ("ollama", "POST", "/api/push"),
    ("ollama", "GET", "/api/version"),
    # anthropic
    ("anthropic", "POST", "/v1/messages"),
    ("anthropic", "POST", "/v1/messages/count_tokens"),
    # responses
    ("responses", "POST", "/responses"),
    ("responses", "POST", "/v1/responses"),
    ("responses", "POST", "/responses/input_tokens"),
    ("responses", "POST", "/v1/responses/input_tokens"),
    ("responses", "GET", "/v1/responses/{response_id}"),
    ("responses", "DELETE", "/v1/responses/{response_id}"),
    ("responses", "POST", "/v1/responses/{response_id}/cancel"),
    ("responses", "GET", "/v1/responses/{response_id}/input_items"),
    # conversations
    ("conversations", "POST", "/v1/conversations"),
    ("conversations", "GET", "/v1/conversations/{conversation_id}"),
    ("conversations", "POST", "/v1/conversations/{conversation_id}"),
    ("conversations", "DELETE", "/v1/conversations/{conversation_id}"),
    ("conversations", "GET", "/v1/conversations/{conversation_id}/items"),
    ("conversations", "POST", "/v1/conversations/{conversation_id}/items"),
    ("conversations", "GET", "/v1/conversations/{conversation_id}/items/{item_id}"),
    ("conversations", "DELETE", "/v1/conversations/{conversation_id}/items/{item_id}"),
    # llamacpp
    ("llamacpp", "POST", "/completion"),
    ("llamacpp", "POST", "/infill"),
    ("llamacpp", "GET", "/props"),
    ("llamacpp", "POST", "/embedding"),
    ("llamacpp", "GET", "/slots"),
    ("llamacpp", "POST", "/slots/{id_slot}"),
    ("llamacpp", "GET", "/lora-adapters"),
    ("llamacpp", "POST", "/lora-adapters"),
    ("llamacpp", "POST", "/models/load"),
    ("llamacpp", "POST", "/models/unload"),
    # batches
    ("batches", "POST", "/v1/batches"),
    ("batches", "GET", "/v1/batches"),
    ("batches", "GET", "/v1/batches/{batch_id}"),
    ("batches", "POST", "/v1/batches/{batch_id}/cancel"),
    ("batches", "POST", "/v1/messages/batches"),
    ("batches", "GET", "/v1/messages/batches"),
    ("batches", "GET", "/v1/messages/batches/{message_batch_id}"),
    ("batches", "POST", "/v1/messages/batches/{message_batch_id}/cancel"),
    ("batches", "GET", "/v1/messages/batches/{message_batch_id}/results"),
    ("batches", "DELETE", "/v1/messages/batches/{message_batch_id}"),
    # audio
    ("audio", "POST", "/audio/transcriptions"),
    ("audio", "POST", "/v1/audio/transcriptions"),
    ("audio", "POST", "/audio/translations"),
    ("audio", "POST", "/v1/audio/translations"),
)


class ModuleLoadError(ImportError):
    """A module imported on first use could not be imported: ``name`` is the module, ``__cause__`` what its import
    raised. An :class:`ImportError` whatever that was, so that it is answered as any handler's unexpected error."""

    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(f"{name} could not be loaded ({type(cause).__name__}: {cause})", name=name)


def import_lazily(name: str) -> ModuleType:
    """``importlib.import_module(name)`` for a module imported on first use (in a worker thread, mostly): what its
    import raises is a :class:`ModuleLoadError`. A ``SystemExit`` (code run at import that calls ``sys.exit()``, a
    library's "missing dependency" exit) is one too: raised through ``asyncio.to_thread`` into a handler it would end
    the event loop and the whole server with it. Python keeps nothing of a failed import, so the next call tries
    again."""
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as exc:
        raise ModuleLoadError(name, exc) from exc


#: The real handler of each (module, method, path), once its module was imported.
_resolved: dict[tuple[str, str, str], Handler] = {}


def _module(name: str) -> ModuleType:
    return import_lazily(f"jan.server.routes.{name}")


def _resolve(key: tuple[str, str, str]) -> Handler:
    """The module's own handler for the route (its module imported now, once: a failed import raises here, the
    request's 500, and the next call tries again)."""
    handler = _resolved.get(key)
    if handler is None:
        name, method, path = key
        for route in _module(name).routes:
            if isinstance(route, web.RouteDef) and route.method == method and route.path == path:
                handler = route.handler
                break
        else:  # the table says a route the module does not declare (tests/test_route_index.py checks it cannot)
            raise LookupError(f"jan.server.routes.{name} has no route {method} {path}")
        _resolved[key] = handler
    return handler


#: The modules :func:`load` handed out (each one whole: imported to its end).
_loaded: dict[str, ModuleType] = {}


async def load(name: str) -> ModuleType:
    """The lazily loaded module ``name`` for code outside its routes (``/v1/models`` as Anthropic's SDK asks it):
    imported in a worker on first use, as a stand-in's first call imports it, never on the loop every stream
    shares."""
    module = _loaded.get(name)
    if module is None:
        module = _loaded[name] = await asyncio.to_thread(_module, name)
    return module


def _stand_in(key: tuple[str, str, str]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        real = _resolved.get(key)
        if real is None:  # the module's import (up to ~0.1 s: runs, Ollama) in a worker, not holding up every stream
            real = await asyncio.to_thread(_resolve, key)
        return await real(request)

    handler.__name__ = handler.__qualname__ = f"lazy:{key[0]}:{key[1]} {key[2]}"
    handler.lazy_route = key  # type: ignore[attr-defined]
    return handler


def target(handler: Handler) -> Handler:
    """The handler that answers for ``handler``: a stand-in's module's own (imported now: :class:`ModuleLoadError`
    when it cannot be), any other as it is."""
    key = getattr(handler, "lazy_route", None)
    return handler if key is None else _resolve(key)


def _available(name: str) -> bool:
    # (a trimmed install without one of these modules serves without its routes, as it always did)
    return importlib.util.find_spec(f"jan.server.routes.{name}") is not None


def lazy_table() -> web.RouteTableDef:
    """The lazily loaded routes: each one's method and path with a stand-in handler."""
    table = web.RouteTableDef()
    present = {name for name in LAZY_MODULES if _available(name)}
    for key in LAZY_ROUTES:
        if key[0] in present:
            table.route(key[1], key[2])(_stand_in(key))
    return table


def load_all() -> dict[str, ModuleLoadError]:
    """Import every lazily loaded module there is: what documents the routes (``/openapi.json``) needs their request
    models, docstrings and the shapes they register. One that cannot be imported is left out (the others are
    documented all the same) and returned, by name, with why."""
    failed: dict[str, ModuleLoadError] = {}
    for name in LAZY_MODULES:
        if _available(name):
            try:
                _module(name)
            except ModuleLoadError as exc:
                failed[name] = exc
    return failed
