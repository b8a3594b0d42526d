"""An extension whose hook hangs holds up nothing but what depends on it; a failed load leaves nothing behind.

Every wait here is on an event, bounded generously (``BOUND``); the hooks that hang are released at the
end of each test so no task outlives it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from jan.core.events import ExtensionFailed, ExtensionLoaded, ExtensionUnloaded, LocalEventBus
from jan.core.exceptions import ExtensionError, ExtensionLoadingError, ExtensionNotFoundError
from jan.core.interfaces import ConversationalExtension
from jan.core.manager import ExtensionManager

from test_core_manager import FakeEngine, make_ext, manager_for, states

BOUND = 60  # seconds: only ever reached when the behaviour under test is broken


class Gate:
    """What a hung hook waits for; ``stubborn`` hooks also ignore their cancellation until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def hang(self, *, stubborn: bool = False) -> None:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            if not stubborn:
                raise
            await self.release.wait()
        raise RuntimeError("released")


def watch(manager: ExtensionManager, event_type: type, name: str) -> asyncio.Future[Any]:
    """The first ``event_type`` event about ``name`` from now on (await it within ``BOUND``)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def seen(event: Any) -> None:
        if event.name == name and not future.done():
            future.set_result(event)
            unsubscribe()

    unsubscribe = manager.bus.subscribe(event_type, seen)
    return asyncio.ensure_future(asyncio.wait_for(future, BOUND))


# -- on_load that never returns -------------------------------------------------------------------
async def test_a_hung_on_load_holds_up_only_its_dependents(tmp_path):
    gate = Gate()
    log: list[str] = []

    async def hang(self, ctx):
        ctx.add_route("GET", "/v1/hung", lambda request: None)
        await gate.hang()

    manager = manager_for(
        tmp_path,
        make_ext("hung", log, on_load=hang, extension_type="conversational"),
        make_ext("independent", log),
        make_ext("needs-hung", log, depends_on=("hung",)),
        make_ext("needs-independent", log, depends_on=("independent",)),
        load_timeout=None, load_wait=0.1,
    )
    loaded = watch(manager, ExtensionLoaded, "needs-independent")
    await asyncio.wait_for(manager.start(), BOUND)  # returns although "hung" never will
    await loaded
    await asyncio.wait_for(gate.entered.wait(), BOUND)
    assert states(manager) == {"hung": "loading", "needs-hung": "loading",
                               "independent": "loaded", "needs-independent": "loaded"}
    assert log.index("load:independent") < log.index("load:needs-independent")
    assert "load:needs-hung" not in log  # dependency order kept: it waits
    assert manager.routes() == []  # what is still loading is not served yet

    # Its services are "not yet", not "not there": the error says it is loading (a server answers 503).
    with pytest.raises(ExtensionLoadingError) as info:
        manager.get(ConversationalExtension)
    assert info.value.loading == ("hung",) and "'hung' is still loading" in str(info.value)
    assert isinstance(info.value, ExtensionNotFoundError)
    with pytest.raises(ExtensionLoadingError):
        manager.get_extension("needs-hung")

    await asyncio.wait_for(manager.stop(), BOUND)  # stops the load; never waits for it to finish
    assert gate.cancelled.is_set()
    assert manager.load_order == [] and manager.routes() == []
    assert set(states(manager).values()) == {"unloaded"}


async def test_on_load_past_the_timeout_fails_its_extension_and_dependents_with_a_clear_error(tmp_path):
    gate = Gate()
    contexts = []

    async def stubborn(self, ctx):
        contexts.append(ctx)
        ctx.add_route("GET", "/v1/stubborn", lambda request: None)
        await gate.hang(stubborn=True)  # even swallows its cancellation

    manager = manager_for(
        tmp_path,
        make_ext("stubborn", on_load=stubborn),
        make_ext("needs-stubborn", depends_on=("stubborn",)),
        make_ext("independent"),
        load_timeout=0.3, load_wait=None,
    )
    failed = watch(manager, ExtensionFailed, "needs-stubborn")
    await asyncio.wait_for(manager.start(), BOUND)
    event = await failed
    try:
        record = manager.record("stubborn")
        assert record.state == "failed" and record.error == "on_load did not finish within 0.3 s"
        assert event.error == "depends on 'stubborn', which failed to load (on_load did not finish within 0.3 s)"
        assert manager.record("independent").state == "loaded"
        assert manager.routes() == []
        # The abandoned on_load can register nothing any more.
        with pytest.raises(ExtensionError):
            contexts[0].add_route("GET", "/v1/late", lambda request: None)
        with pytest.raises(ExtensionNotFoundError) as info:
            manager.get_extension("stubborn")
        assert not isinstance(info.value, ExtensionLoadingError)
    finally:
        gate.release.set()
        await manager.stop()


async def test_disabling_an_extension_while_it_loads_stops_the_load_and_enable_retries(tmp_path):
    gate = Gate()
    attempts: list[int] = []

    async def first_time_hangs(self, ctx):
        attempts.append(1)
        ctx.add_route("GET", "/v1/slow", lambda request: None)
        ctx.register_engine(FakeEngine("slow-engine"))
        if len(attempts) == 1:
            await gate.hang()

    manager = manager_for(tmp_path, make_ext("slow", on_load=first_time_hangs),
                          make_ext("needs-slow", depends_on=("slow",)), load_timeout=None, load_wait=0.1)
    await asyncio.wait_for(manager.start(), BOUND)
    await asyncio.wait_for(gate.entered.wait(), BOUND)
    assert manager.record("slow").state == "loading"

    record = await asyncio.wait_for(manager.disable("slow"), BOUND)
    assert record.state == "disabled" and gate.cancelled.is_set()
    assert manager.record("needs-slow").state == "failed"
    assert "depends on 'slow', which was disabled" in manager.record("needs-slow").error
    assert manager.routes() == []
    with pytest.raises(ExtensionNotFoundError):
        manager.get_inference("slow-engine")

    manager.load_wait = None  # this time, wait for the load
    record = await asyncio.wait_for(manager.enable("slow"), BOUND)
    assert record.state == "loaded" and len(attempts) == 2
    assert states(manager) == {"slow": "loaded", "needs-slow": "loaded"}
    assert [r.path for r in manager.routes()] == ["/v1/slow"]
    await manager.stop()


async def test_an_engine_that_is_still_loading_is_reported_as_loading(tmp_path):
    gate = Gate()

    async def hang(self, ctx):
        await gate.hang()

    manager = manager_for(tmp_path, make_ext("engine-ext", on_load=hang, extension_type="inference",
                                             engine_name="slow-engine"), load_timeout=None, load_wait=0)
    await asyncio.wait_for(manager.start(), BOUND)
    with pytest.raises(ExtensionLoadingError) as info:
        manager.get_inference("slow-engine")
    assert info.value.loading == ("engine-ext",)
    with pytest.raises(ExtensionNotFoundError) as other:
        manager.get_inference("another-engine")
    assert not isinstance(other.value, ExtensionLoadingError)
    await asyncio.wait_for(manager.stop(), BOUND)


async def test_enable_returns_while_a_load_hangs(tmp_path):
    gate = Gate()

    async def hang(self, ctx):
        await gate.hang()

    manager = manager_for(tmp_path, make_ext("later", on_load=hang, enabled_by_default=False),
                          load_timeout=None, load_wait=0.1)
    await manager.start()
    record = await asyncio.wait_for(manager.enable("later"), BOUND)
    assert record.state == "loading" and record.enabled is True
    assert await manager.settle(0) is False
    gate.release.set()  # on_load raises once released
    assert await manager.settle(BOUND) is True
    assert manager.record("later").state == "failed"
    assert manager.record("later").error == "on_load failed: RuntimeError: released"
    await manager.stop()


# -- on_unload and cleanups that never return ---------------------------------------------------------
async def test_a_hung_on_unload_is_bounded_and_never_holds_up_the_others(tmp_path):
    gate = Gate()
    log: list[str] = []
    cleaned: list[str] = []

    async def register_cleanup(self, ctx):
        async def cleanup():  # async: it must still get to run after a hung on_unload used up its time
            await asyncio.sleep(0)
            cleaned.append(self.name)

        ctx.add_cleanup(cleanup)

    async def hang(self):
        await gate.hang(stubborn=True)

    manager = manager_for(
        tmp_path,
        make_ext("base", log, on_load=register_cleanup),
        make_ext("sticky", log, on_load=register_cleanup, on_unload=hang, depends_on=("base",)),
        make_ext("needs-sticky", log, on_load=register_cleanup, depends_on=("sticky",)),
        make_ext("bystander", log, on_load=register_cleanup),
        unload_timeout=0.3,
    )
    await manager.start()
    unloaded: list[str] = []
    manager.bus.subscribe(ExtensionUnloaded, lambda e: unloaded.append(e.name))
    try:
        await asyncio.wait_for(manager.stop(), BOUND)
        # the dependent first, the dependency after the hung one gave up; the bystander regardless
        assert set(unloaded) == {"base", "sticky", "needs-sticky", "bystander"}
        assert log.index("unload:needs-sticky") < log.index("unload:sticky") < log.index("unload:base")
        assert set(cleaned) == {"base", "sticky", "needs-sticky", "bystander"}  # its cleanups still ran
        assert manager.load_order == []
    finally:
        gate.release.set()


async def test_disable_with_a_hung_on_unload_and_a_hung_cleanup_is_bounded(tmp_path):
    gate = Gate()
    cleanup_gate = Gate()

    async def load(self, ctx):
        ctx.add_route("GET", "/v1/x", lambda request: None)
        ctx.add_cleanup(lambda: cleanup_gate.hang(stubborn=True))

    async def hang(self):
        await gate.hang()

    manager = manager_for(tmp_path, make_ext("x", on_load=load, on_unload=hang), make_ext("y"), unload_timeout=0.3)
    await manager.start()
    try:
        record = await asyncio.wait_for(manager.disable("x"), BOUND)
        assert record.state == "disabled" and manager.routes() == []
        assert gate.cancelled.is_set()
        assert manager.record("y").state == "loaded"
        record = await asyncio.wait_for(manager.enable("x"), BOUND)
        assert record.state == "loaded"
    finally:
        gate.release.set()
        cleanup_gate.release.set()
        await manager.stop()


# -- a failing on_load leaves nothing behind --------------------------------------------------------------
async def test_a_failing_on_load_leaves_nothing_registered(tmp_path):
    cleaned: list[str] = []
    heard: list[Any] = []

    async def half_then_raise(self, ctx):
        ctx.add_route("GET", "/v1/half", lambda request: None)
        ctx.add_subapp("/half", web.Application)
        ctx.register_engine(FakeEngine("half-engine"))
        ctx.subscribe(ExtensionLoaded, heard.append)
        ctx.on_settings_change(heard.append)
        ctx.add_cleanup(lambda: cleaned.append("cleanup"))
        ctx.contribute_settings({"type": "object", "properties": {"extra": {"type": "integer", "default": 3}}})
        raise RuntimeError("half-way")

    schema = {"type": "object", "properties": {"colour": {"type": "string", "default": "red"}}}
    manager = manager_for(tmp_path, make_ext("half", on_load=half_then_raise, settings_schema=schema))
    await manager.start()
    assert manager.record("half").state == "failed"
    assert manager.routes() == [] and manager.subapps() == [] and cleaned == ["cleanup"]
    with pytest.raises(ExtensionNotFoundError):
        manager.get_inference("half-engine")
    await manager.bus.emit(ExtensionLoaded(name="other"))
    assert heard == []
    assert set(manager.settings("half").json_schema()["properties"]) == {"colour"}
    await manager.stop()


async def test_add_routes_is_all_or_nothing(tmp_path):
    async def handler(request):
        return web.Response()

    async def load(self, ctx):
        with pytest.raises(TypeError):
            ctx.add_routes([("GET", "/v1/fine", handler), ("GET", "/v1/broken", "not callable")])
        with pytest.raises(TypeError):
            ctx.add_routes([web.get("/v1/fine", handler), object()])

    manager = manager_for(tmp_path, make_ext("careless", on_load=load))
    await manager.start()
    assert manager.record("careless").state == "loaded"
    assert manager.routes() == []
    await manager.stop()


async def test_extensions_load_side_by_side_in_dependency_order(tmp_path):
    """Independent loads overlap (both are in on_load at once); a dependent starts after its dependency."""
    both_in = asyncio.Event()
    inside: set[str] = set()
    order: list[str] = []

    async def meet(self, ctx):
        order.append(self.name)
        inside.add(self.name)
        if {"left", "right"} <= inside:
            both_in.set()
        await both_in.wait()

    async def after(self, ctx):
        order.append(self.name)

    manager = manager_for(tmp_path, make_ext("left", on_load=meet), make_ext("right", on_load=meet),
                          make_ext("after-left", on_load=after, depends_on=("left",)), load_wait=None)
    await asyncio.wait_for(manager.start(), BOUND)
    assert states(manager) == {"left": "loaded", "right": "loaded", "after-left": "loaded"}
    assert order.index("after-left") > order.index("left")
    await manager.stop()


def test_default_bounds(tmp_path):
    manager = ExtensionManager(tmp_path, LocalEventBus(), discover_entry_points=False)
    # a library or CLI command waits for every load (each bounded by load_timeout); a server waits a while only
    assert manager.load_timeout == 60.0 and manager.unload_timeout is not None and manager.load_wait is None
    from jan.server.app import SERVE_LOAD_WAIT
    assert 0 < SERVE_LOAD_WAIT < manager.load_timeout
    assert issubclass(ExtensionLoadingError, LookupError) and issubclass(ExtensionLoadingError, ExtensionError)


async def test_an_extensions_event_handler_that_hangs_holds_up_no_load_unload_or_disable(tmp_path):
    gate = Gate()

    async def listen(self, ctx):
        async def hang(event):
            await gate.hang()

        ctx.subscribe((ExtensionLoaded, ExtensionUnloaded), hang)

    manager = manager_for(tmp_path, make_ext("listener", on_load=listen), make_ext("later", depends_on=("listener",)),
                          make_ext("other"), unload_timeout=0.3, load_wait=None)
    try:
        await asyncio.wait_for(manager.start(), BOUND)
        assert states(manager) == {"listener": "loaded", "later": "loaded", "other": "loaded"}
        record = await asyncio.wait_for(manager.disable("other"), BOUND)
        assert record.state == "disabled"
        await asyncio.wait_for(manager.stop(), BOUND)
        assert manager.load_order == []
    finally:
        gate.release.set()


async def test_the_load_order_is_the_order_loads_began_whatever_order_they_end_in(tmp_path):
    """Overlapping loads end in any order; the ranking of providers (last loaded wins a tie) must not flip."""
    second_done = asyncio.Event()

    async def wait_for_second(self, ctx):
        ctx.register_engine(FakeEngine("shared", tag=self.name))
        await second_done.wait()

    async def second(self, ctx):
        ctx.register_engine(FakeEngine("shared", tag=self.name))
        second_done.set()

    manager = manager_for(tmp_path, make_ext("first", on_load=wait_for_second),
                          make_ext("second", on_load=second), load_wait=None)
    ended: list[str] = []
    manager.bus.subscribe(ExtensionLoaded, lambda e: ended.append(e.name))
    await asyncio.wait_for(manager.start(), BOUND)
    assert ended == ["second", "first"]
    assert manager.load_order == ["first", "second"]
    assert manager.get_inference("shared").tag == "second"
    await manager.stop()


# -- the host's admission of what an extension contributes -----------------------------------------------
async def test_routes_are_known_while_loading_and_a_refused_admission_fails_the_load(tmp_path):
    """What an extension added in a hung on_load is listed as loading; the host's hook sees its routes as the
    load ends, before it counts as loaded, and a refusal fails it (and what depends on it) with the reason."""
    gate = Gate()
    seen: list[tuple[str, list[str], list[str], str]] = []

    async def slow(self, ctx):
        ctx.add_route("GET", "/v1/slow", lambda request: None)
        ctx.add_subapp("/slow-sub", web.Application)
        gate.entered.set()
        await gate.release.wait()  # then returns: its on_load succeeds

    async def admit(name, routes, subapps):
        seen.append((name, [r.path for r in routes], [s.prefix for s in subapps], manager.record(name).state))
        return "its route GET /v1/slow is already served by someone" if name == "slow" else None

    manager = manager_for(
        tmp_path,
        make_ext("slow", on_load=slow),
        make_ext("needs-slow", depends_on=("slow",)),
        load_timeout=None, load_wait=0,
    )
    manager.set_admission(admit)
    assert manager.admission is admit
    failed = watch(manager, ExtensionFailed, "needs-slow")
    await manager.start()
    await asyncio.wait_for(gate.entered.wait(), BOUND)
    assert [r.path for r in manager.loading_routes()] == ["/v1/slow"]
    assert [s.prefix for s in manager.loading_subapps()] == ["/slow-sub"]
    assert manager.routes() == []
    gate.release.set()
    await failed
    assert seen == [("slow", ["/v1/slow"], ["/slow-sub"], "loading")]
    record = manager.record("slow")
    assert record.state == "failed" and record.error == "its route GET /v1/slow is already served by someone"
    assert manager.loading_routes() == [] and manager.routes() == []
    assert "failed to load (its route GET /v1/slow" in manager.record("needs-slow").error
    await asyncio.wait_for(manager.stop(), BOUND)


def test_a_stubborn_on_load_does_not_keep_asyncio_run_from_ending(tmp_path):
    """``asyncio.run`` (``jan serve``, the CLI) ends by cancelling every task and waiting for each: an on_load that
    ignores its cancellation, abandoned by the manager, once kept a SIGTERM'd server alive for good."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f'''
        import asyncio
        from jan.core import Extension, ExtensionManager

        class Stubborn(Extension):
            name = "stubborn"
            async def on_load(self, ctx):
                while True:
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        pass

        async def main():
            manager = ExtensionManager({str(tmp_path)!r}, discover_entry_points=False, load_wait=0)
            manager.register(Stubborn)
            await manager.start()
            await manager.stop()  # stops the load still running: cancelled, ignored, abandoned
            print("stopped", flush=True)

        asyncio.run(main())
        print("ended", flush=True)
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 0 and done.stdout.split() == ["stopped", "ended"], done.stderr[-2000:]


async def test_sys_exit_in_an_extensions_code_is_that_extensions_error(tmp_path):
    """A SystemExit leaving an asyncio task stops the event loop: one extension's ``sys.exit()`` (a module that
    exits when its dependency is missing) ended jan. Each place that runs extension code turns it into an error."""
    from jan.core import Extension, ModelReady, Tool, ToolProvider, ToolRegistry

    class ExitTool(Tool):
        name = "exit_tool"
        source = "exits"

        async def call(self, arguments, *, timeout=None):
            raise SystemExit(4)

    class Exits(Extension, ToolProvider):
        name = "exits"
        heard: list[str] = []

        async def list_tools(self):
            return [ExitTool()]

        async def on_load(self, ctx):
            async def handler(event):
                raise SystemExit(5)

            ctx.subscribe(ModelReady, handler)
            ctx.subscribe(ModelReady, lambda event: (_ for _ in ()).throw(SystemExit(6)))
            ctx.subscribe(ModelReady, lambda event: self.heard.append(event.model_id))
            ctx.on_settings_change(lambda changes: (_ for _ in ()).throw(SystemExit(7)))

        async def on_unload(self):
            raise SystemExit(8)

    class ExitsOnLoad(Extension):
        name = "exits-on-load"

        async def on_load(self, ctx):
            raise SystemExit("needs foo")

    def exits_when_created():
        raise SystemExit(2)

    manager = ExtensionManager(tmp_path, discover_entry_points=False)
    manager.register(Exits)
    manager.register(ExitsOnLoad)
    manager.register(exits_when_created, name="exits-when-created")
    async with manager:
        found = {r.name: r for r in manager.list()}
        assert found["exits"].state == "loaded"
        assert found["exits-on-load"].state == "failed"
        assert found["exits-on-load"].error == "on_load failed: ExtensionExitError: called sys.exit('needs foo')"
        assert found["exits-when-created"].state == "failed" and "SystemExit: 2" in found["exits-when-created"].error
        await manager.bus.emit(ModelReady(model_id="m1", engine="e"))
        manager.bus.emit_nowait(ModelReady(model_id="m2", engine="e"))
        await asyncio.wait_for(manager.bus.drain(), BOUND)
        assert Exits.heard == ["m1", "m2"]  # the other handlers ran
        manager.settings("exits").set("anything", 1)
        await asyncio.wait_for(manager.settings("exits").drain(), BOUND)
        outcome = await ToolRegistry(manager).call("exit_tool", {})
        assert outcome.result.is_error and "called sys.exit(4)" in outcome.result.as_text()
        await manager.disable("exits")
        assert {r.name: r.state for r in manager.list()}["exits"] == "disabled"


async def test_a_route_added_after_on_load_returned_is_refused_not_silently_never_served(tmp_path):
    from jan.core import Extension

    later: list[Any] = []

    class Late(Extension):
        name = "late-routes"

        async def on_load(self, ctx):
            ctx.add_route("GET", "/v1/extensions/late-routes/early", lambda request: None)
            later.append(ctx)

    manager = ExtensionManager(tmp_path, discover_entry_points=False)
    manager.register(Late)
    async with manager:
        ctx = later[0]
        for add in (lambda: ctx.add_route("GET", "/v1/extensions/late-routes/late", lambda request: None),
                    lambda: ctx.add_routes([("GET", "/v1/extensions/late-routes/late", lambda request: None)]),
                    lambda: ctx.add_subapp("/v1/extensions/late-routes/sub", web.Application)):
            with pytest.raises(ExtensionError, match="'late-routes' added .* after its on_load returned"):
                add()
        assert [r.path for r in manager.routes()] == ["/v1/extensions/late-routes/early"]


async def test_the_log_of_an_extensions_event_handler_that_raises_or_hangs_names_the_extension(tmp_path, caplog):
    """A handler's failure was logged as ``event handler Cls.on_load.<locals>.h failed``: its function only, no word
    of whose code it was. Subscribed through ``ctx.subscribe``, every such line names the extension; the handler
    still receives the events, and a sync handler stays sync."""
    gate = Gate()
    got: list[str] = []

    async def listen(self, ctx):
        def raises(event):
            got.append(type(event).__name__)
            raise RuntimeError("handler boom")

        async def raises_later(event):
            raise KeyError("async boom")

        async def hangs(event):
            await gate.hang()

        ctx.subscribe(ExtensionLoaded, raises)
        ctx.subscribe(ExtensionLoaded, raises_later)
        ctx.subscribe(ExtensionLoaded, hangs)
        with pytest.raises(TypeError, match="callable"):
            ctx.subscribe(ExtensionLoaded, "not a function")

    bus = LocalEventBus(handler_timeout=0.2)
    manager = manager_for(tmp_path, make_ext("noisy", on_load=listen), make_ext("other", depends_on=("noisy",)),
                          bus=bus, load_wait=None)
    try:
        with caplog.at_level("WARNING", logger="jan.core.events"):
            await asyncio.wait_for(manager.start(), BOUND)
            await asyncio.wait_for(manager.stop(), BOUND)
        assert got and set(got) == {"ExtensionLoaded"}  # (still called, through the wrapper)
        lines = [r.getMessage() for r in caplog.records if r.name == "jan.core.events"]
        for what in ("failed on ExtensionLoaded: RuntimeError: handler boom", "failed on ExtensionLoaded: KeyError",
                     "did not finish on ExtensionLoaded"):
            line = next((line for line in lines if what in line), None)
            assert line is not None and "of extension 'noisy'" in line, (what, lines)
    finally:
        gate.release.set()


def test_threads_an_extension_leaves_running_do_not_keep_jan_serve_from_ending(tmp_path):
    """A SIGTERM'd `jan serve` waited without end for an extension's thread that was never stopped (a plain
    non-daemon thread, or a call run with ``asyncio.to_thread`` that never returns: ``asyncio.run`` and then the
    interpreter's exit wait for both). It ends, with its status, naming the threads it left behind."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    import urllib.request

    from jan.testing.server import free_port

    from extension_helpers import write_distribution

    site = tmp_path / "site"
    write_distribution(site, "jan-leaky", "1.0", {"leaky": "jan_leaky:Leaky"}, {"jan_leaky.py": textwrap.dedent('''
        import asyncio
        import threading
        from jan.core import Extension

        STOP = threading.Event()  # never set: the author forgot

        def spin():
            STOP.wait()

        class Leaky(Extension):
            name = "leaky"

            async def on_load(self, ctx):
                threading.Thread(target=spin, name="leaky-worker").start()
                self.task = asyncio.ensure_future(asyncio.to_thread(spin))
    ''')})
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jan.cli", "serve", "--port", str(port), "--data-folder",
                                 str(tmp_path / "data")], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/extensions/leaky", timeout=5) as resp:
                    assert b'"loaded"' in resp.read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(BOUND) == 0, log.read_text()[-3000:]
        output = log.read_text()
        assert "'leaky-worker' (jan_leaky.spin)" in output, output[-3000:]
        assert "left behind" in output
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
