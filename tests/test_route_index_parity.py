"""What a lazily loaded route (``jan.server.route_index``: its module imported on its first request) must keep of the
route it stands for, whether its module was loaded yet or not: who owns it when an extension's route clashes with
it, and a stop of jan that finds the run service not made yet (no run route loaded, or one still loading)."""

from __future__ import annotations

import asyncio

import pytest

from jan.core import Extension, ExtensionManager, LocalEventBus
from jan.server.app import create_app
from jan.server.config import ServerConfig
from jan.server.keys import SERVICES
from jan.server.route_index import LAZY_ROUTES
from jan.services.errors import ServiceUnavailableError

BOUND = 60


async def _handler(request):  # never reached: the clashing extensions are refused
    raise AssertionError("refused extensions are not served")


def _clashing(name: str, method: str, path: str) -> type[Extension]:
    async def on_load(self, ctx):
        ctx.add_route(method, path, _handler)

    return type(f"Ext_{name}", (Extension,), {"name": name, "requires_api": ">=1,<2", "on_load": on_load})


async def _app(tmp_path, extensions=()):
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), only_builtin=True, load_wait=None)
    for ext in extensions:
        manager.register(ext)
    app = await asyncio.wait_for(create_app(ServerConfig(data_folder=tmp_path / "data", n_threads=1),
                                            manager=manager), BOUND)
    app.freeze()  # (as a runner does: its signals can be sent)
    await asyncio.wait_for(app.startup(), BOUND)
    return app, manager


#: One route of each lazily loaded module (the first it declares; /static's path has a colon of its own).
ONE_PER_MODULE = {module: (method, path) for module, method, path in reversed(LAZY_ROUTES)}


async def test_an_extension_clashing_with_a_lazily_loaded_route_is_told_jan_serves_it(tmp_path):
    # The stand-in's name is "lazy:<module>:<method> <path>"; read as an extension's handler name it said the route
    # was "already served by extension 'lazy'".
    extensions = [_clashing(f"clash_{module}", method, path) for module, (method, path) in ONE_PER_MODULE.items()]
    app, manager = await _app(tmp_path, extensions)
    try:
        records = {r.name: r for r in manager.list()}
        for module, (method, path) in ONE_PER_MODULE.items():
            record = records[f"clash_{module}"]
            assert record.state == "failed", (module, record)
            assert "already served by jan (built-in)" in record.error, (module, record.error)
    finally:
        await app.shutdown()
        await app.cleanup()


async def test_a_stop_before_any_run_was_made_still_refuses_a_run_made_after_it(tmp_path):
    # A request on a runs route whose module is still loading (a worker import) when jan stops makes the run service
    # after the stop's interrupt: that service must be stopping, its run refused (503), as when every route module
    # was imported at start — never a run started while the extensions stop.
    from jan.services.runs import RunRequest

    app, _ = await _app(tmp_path)
    try:
        assert not app[SERVICES].has_runs  # nothing to recover at start: not made
        await asyncio.wait_for(app.shutdown(), BOUND)
        with pytest.raises(ServiceUnavailableError, match="shutting down"):
            await asyncio.wait_for(app[SERVICES].runs.start(RunRequest(thread_id="thread_late")), BOUND)
    finally:
        await app.cleanup()
