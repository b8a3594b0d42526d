"""The extension manager: order, failures, persistence, lookup, routes, entry points."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jan.core.events import Event, ExtensionFailed, ExtensionLoaded, ExtensionUnloaded, LocalEventBus
from jan.server.mount import mount_extensions
from jan.core.exceptions import ExtensionError, ExtensionNotFoundError, SettingsValidationError
from jan.core.extension import BUILTIN_PRIORITY, Extension, ExtensionContext
from jan.core.interfaces import ConversationalExtension, InferenceExtension
from jan.core.manager import ExtensionManager, ExtensionState
from jan.core.version import API_VERSION


# -- helpers ---------------------------------------------------------------------
def make_ext(name: str, log: list[str] | None = None, *, bases: tuple[type, ...] = (), on_load=None, on_unload=None, **attrs: Any) -> type[Extension]:
    """An Extension subclass that logs load/unload into ``log``."""
    log = log if log is not None else []

    async def _on_load(self, ctx):
        log.append(f"load:{self.name}")
        if on_load is not None:
            result = on_load(self, ctx)
            if asyncio.iscoroutine(result):
                await result

    async def _on_unload(self):
        log.append(f"unload:{self.name}")
        if on_unload is not None:
            result = on_unload(self)
            if asyncio.iscoroutine(result):
                await result

    namespace = {"name": name, "version": "1.0.0", "requires_api": ">=1,<2", "on_load": _on_load, "on_unload": _on_unload}
    namespace.update(attrs)
    return type(f"Ext_{name.replace('-', '_')}", (Extension, *bases), namespace)


def manager_for(tmp_path: Path, *exts: Any, bus=None, **kwargs: Any) -> ExtensionManager:
    manager = ExtensionManager(tmp_path / "data", bus or LocalEventBus(), discover_entry_points=False, **kwargs)
    for ext in exts:
        manager.register(ext)
    return manager


def states(manager: ExtensionManager) -> dict[str, str]:
    return {r.name: r.state for r in manager.list()}


class FakeEngine(InferenceExtension):
    """A complete (trivial) InferenceExtension."""

    def __init__(self, engine_name: str = "fake", tag: str = ""):
        self.engine_name = engine_name
        self.tag = tag

    async def load_model(self, model):
        pass

    async def unload_model(self, model_id):
        pass

    async def loaded_models(self):
        return []

    async def model_status(self, model_id):
        return {"id": model_id, "status": "unloaded"}

    async def chat(self, model, request):
        yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": self.tag}}]}

    async def complete(self, model, request):
        yield {"object": "text_completion", "choices": [{"index": 0, "text": self.tag}]}

    async def embed(self, model, request):
        return {"object": "list", "data": []}

    async def tokenize(self, model, text, *, add_special=True, parse_special=False):
        return [1]

    async def detokenize(self, model, tokens):
        return ""


def conversational_stub() -> type:
    """A ConversationalExtension implementation with every method trivially implemented."""
    methods = {name: (lambda self, *a, **k: None) for name in ConversationalExtension.__abstractmethods__}
    return type("StubStore", (ConversationalExtension,), methods)


# -- order ---------------------------------------------------------------------------
async def test_dependencies_load_first_and_unload_last(tmp_path):
    log: list[str] = []
    c = make_ext("c", log, depends_on=("b",))
    b = make_ext("b", log, depends_on=["a"])
    a = make_ext("a", log)
    solo = make_ext("solo", log)
    manager = manager_for(tmp_path, c, b, solo, a)
    await manager.start()
    assert manager.load_order.index("a") < manager.load_order.index("b") < manager.load_order.index("c")
    assert set(manager.load_order) == {"a", "b", "c", "solo"}
    assert states(manager) == {n: "loaded" for n in "abc"} | {"solo": "loaded"}
    log.clear()
    await manager.stop()
    unloads = [e for e in log if e.startswith("unload:")]
    assert unloads.index("unload:c") < unloads.index("unload:b") < unloads.index("unload:a")
    assert all(r.state == ExtensionState.UNLOADED for r in manager.list())


async def test_dependency_cycle_is_reported_and_others_still_load(tmp_path):
    log: list[str] = []
    events: list[Event] = []
    bus = LocalEventBus()
    bus.subscribe(ExtensionFailed, events.append)
    manager = manager_for(
        tmp_path,
        make_ext("a", log, depends_on=("b",)),
        make_ext("b", log, depends_on=("a",)),
        make_ext("selfish", log, depends_on=("selfish",)),
        make_ext("user-of-a", log, depends_on=("a",)),
        make_ext("fine", log),
        bus=bus,
    )
    await manager.start()
    records = {r.name: r for r in manager.list()}
    assert records["fine"].state == "loaded"
    for name in ("a", "b", "selfish", "user-of-a"):
        assert records[name].state == "failed", name
    assert "dependency cycle" in records["a"].error and "a -> b -> a" in records["a"].error
    assert "dependency cycle" in records["b"].error
    assert "selfish -> selfish" in records["selfish"].error
    assert "depends on 'a'" in records["user-of-a"].error and "cycle" in records["user-of-a"].error
    assert log == ["load:fine"]
    assert {e.name for e in events} == {"a", "b", "selfish", "user-of-a"}


async def test_missing_dependency_is_reported(tmp_path):
    manager = manager_for(tmp_path, make_ext("needy", depends_on=("ghost",)))
    await manager.start()
    record = manager.record("needy")
    assert record.state == "failed"
    assert record.error == "depends on 'ghost', which is not installed"


# -- API compatibility --------------------------------------------------------------------
@pytest.mark.parametrize(
    "requires, reason_bits",
    [(">=2,<3", [">=2,<3", API_VERSION]), ("banana", ["not a valid version specifier"]), (12, ["must be a version specifier"])],
)
async def test_incompatible_api_is_refused_with_a_reason(tmp_path, requires, reason_bits):
    log: list[str] = []
    failed: list[ExtensionFailed] = []
    bus = LocalEventBus()
    bus.subscribe(ExtensionFailed, failed.append)
    manager = manager_for(tmp_path, make_ext("future", log, requires_api=requires), make_ext("ok", log), bus=bus)
    await manager.start()
    record = manager.record("future")
    assert record.state == ExtensionState.INCOMPATIBLE
    for bit in reason_bits:
        assert bit in record.error
    assert "load:future" not in log and "load:ok" in log
    assert [(e.name, e.state) for e in failed] == [("future", "incompatible")]
    with pytest.raises(ExtensionNotFoundError):
        manager.get_extension("future")


async def test_api_version_is_checked_against_the_managers_version(tmp_path):
    manager = manager_for(tmp_path, make_ext("modern", requires_api="~=1.3"), api_version="1.2")
    await manager.start()
    assert manager.record("modern").state == "incompatible"
    manager = manager_for(tmp_path / "2", make_ext("modern", requires_api="~=1.3"), api_version="1.7")
    await manager.start()
    assert manager.record("modern").state == "loaded"


# -- failures -----------------------------------------------------------------------------
async def test_broken_extensions_are_recorded_and_disabled_while_others_load(tmp_path, monkeypatch):
    log: list[str] = []

    def bad_load(self, ctx):
        ctx.add_route("GET", "/v1/bad", _ok_handler)
        ctx.register_engine(FakeEngine("bad-engine"))
        ctx.subscribe(Event, lambda e: log.append("bad handler called"))
        raise RuntimeError("cannot open database")

    def exploding_factory():
        raise OSError("no GPU here")

    entry_points = importlib.metadata.EntryPoints(
        [importlib.metadata.EntryPoint("ghost", "jan_no_such_module_1234:Ext", "jan.extensions")]
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: entry_points if kw.get("group") == "jan.extensions" else importlib.metadata.EntryPoints([]))

    manager = ExtensionManager(tmp_path, LocalEventBus())
    manager.register(make_ext("bad", log, on_load=bad_load))
    manager.register(exploding_factory, name="exploding")
    manager.register(object(), name="not-an-extension")
    manager.register(make_ext("needs-bad", log, depends_on=("bad",)))
    manager.register(make_ext("good", log))
    failed: list[ExtensionFailed] = []
    manager.bus.subscribe(ExtensionFailed, failed.append)
    await manager.start()  # must not raise

    records = {r.name: r for r in manager.list()}
    assert records["good"].state == "loaded"
    assert records["ghost"].state == "failed"
    assert "import failed" in records["ghost"].error and "jan_no_such_module_1234" in records["ghost"].error
    assert records["exploding"].state == "failed" and "no GPU here" in records["exploding"].error
    assert records["not-an-extension"].state == "failed"
    assert records["bad"].state == "failed"
    assert records["bad"].error == "on_load failed: RuntimeError: cannot open database"
    assert records["bad"].version == "1.0.0" and records["bad"].enabled is True
    assert records["needs-bad"].state == "failed" and "depends on 'bad', which failed to load" in records["needs-bad"].error
    assert {e.name for e in failed} >= {"ghost", "exploding", "bad", "needs-bad"}

    # What the failed extension registered before raising is gone.
    assert manager.routes() == []
    with pytest.raises(ExtensionNotFoundError):
        manager.get_inference("bad-engine")
    log.clear()
    await manager.bus.emit(ExtensionLoaded(name="x"))
    assert "bad handler called" not in log
    with pytest.raises(ExtensionNotFoundError):
        manager.get_extension("bad")


async def test_enable_retries_a_failed_extension(tmp_path):
    attempts = []

    def flaky(self, ctx):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first time fails")

    manager = manager_for(tmp_path, make_ext("flaky", on_load=flaky), make_ext("dependent", depends_on=("flaky",)))
    await manager.start()
    assert states(manager) == {"flaky": "failed", "dependent": "failed"}
    record = await manager.enable("flaky")
    assert record.state == "loaded" and record.error is None
    assert states(manager) == {"flaky": "loaded", "dependent": "loaded"}


async def test_on_load_timeout_and_failing_on_unload(tmp_path):
    async def hang(self, ctx):
        await asyncio.sleep(30)

    def unload_fails(self):
        raise RuntimeError("unload boom")

    log: list[str] = []
    manager = manager_for(
        tmp_path,
        make_ext("hangs", log, on_load=hang),
        make_ext("first", log),
        make_ext("grumpy", log, on_unload=unload_fails, depends_on=("first",)),
        load_timeout=0.2,
    )
    await manager.start()
    record = manager.record("hangs")
    assert record.state == "failed" and "did not finish within 0.2" in record.error
    await manager.stop()  # the failing on_unload does not stop the others
    assert log[-2:] == ["unload:grumpy", "unload:first"]
    assert manager.load_order == []


async def test_calling_enable_from_on_load_is_refused(tmp_path):
    async def reentrant(self, ctx):
        await ctx.manager.enable("other")

    manager = manager_for(tmp_path, make_ext("other"), make_ext("reentrant", on_load=reentrant))
    await asyncio.wait_for(manager.start(), 5)  # no deadlock
    record = manager.record("reentrant")
    assert record.state == "failed" and "ExtensionError" in record.error


async def test_invalid_name_and_duplicates(tmp_path):
    first = make_ext("dup", description="first")
    second = make_ext("dup", description="second")
    manager = manager_for(tmp_path, make_ext("../evil"), first, second, make_ext("@scope/fine-name"))
    await manager.start()
    records = {r.name: r for r in manager.list()}
    assert records["../evil"].state == "failed" and "invalid extension name" in records["../evil"].error
    assert records["dup"].description == "first"
    assert records["@scope/fine-name"].state == "loaded"


# -- enable / disable persistence ---------------------------------------------------------
async def test_enable_disable_is_persisted_and_reloaded_by_a_new_manager(tmp_path):
    log: list[str] = []
    a = make_ext("a", log)
    b = make_ext("b", log, depends_on=("a",))
    c = make_ext("c", log)
    unloaded: list[str] = []
    manager = manager_for(tmp_path, a, b, c)
    manager.bus.subscribe(ExtensionUnloaded, lambda e: unloaded.append(e.name))
    await manager.start()

    state_file = tmp_path / "data" / "extensions" / "extensions.json"
    saved = json.loads(state_file.read_text())
    assert saved["extensions"]["a"] == {"enabled": True, "version": "1.0.0"}

    log.clear()
    record = await manager.disable("a")
    assert record.state == "disabled" and record.enabled is False
    assert log == ["unload:b", "unload:a"]  # the dependent goes first
    assert unloaded == ["b", "a"]
    assert manager.record("b").state == "failed" and "disabled" in manager.record("b").error
    assert json.loads(state_file.read_text())["extensions"]["a"]["enabled"] is False
    assert not list(state_file.parent.glob("*.tmp"))  # atomic write left no temp file

    log.clear()
    await manager.enable("a")  # brings the dependent back too
    assert log == ["load:a", "load:b"]
    await manager.disable("c")
    await manager.stop()

    # A fresh manager over the same data folder.
    log.clear()
    manager2 = manager_for(tmp_path, a, b, c)
    await manager2.start()
    assert states(manager2) == {"a": "loaded", "b": "loaded", "c": "disabled"}
    assert "load:c" not in log
    await manager2.enable("c")
    await manager2.stop()
    manager3 = manager_for(tmp_path, a, b, c)
    assert manager3.record("c").state == "unloaded" and manager3.record("c").enabled is True


async def test_enable_disable_before_start_and_unknown_names(tmp_path):
    log: list[str] = []
    manager = manager_for(tmp_path, make_ext("x", log), make_ext("y", log, enabled_by_default=False))
    await manager.disable("x")
    assert log == []
    await manager.start()
    assert states(manager) == {"x": "disabled", "y": "disabled"}
    with pytest.raises(ExtensionNotFoundError):
        await manager.enable("nope")
    with pytest.raises(ExtensionError):
        manager.register(make_ext("late"))


async def test_corrupt_extensions_json_is_set_aside(tmp_path):
    state_file = tmp_path / "data" / "extensions" / "extensions.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text("{not json")
    manager = manager_for(tmp_path, make_ext("a"))
    await manager.start()
    assert manager.record("a").state == "loaded"
    assert (state_file.parent / "extensions.json.corrupt-1").read_text() == "{not json"
    assert json.loads(state_file.read_text())["extensions"]["a"]["enabled"] is True


# -- settings through the manager -------------------------------------------------------------
async def test_settings_are_validated_persisted_and_notify(tmp_path):
    from pydantic import BaseModel, Field

    class Settings(BaseModel):
        threads: int = Field(4, ge=1, le=256)
        api_key: str = ""

    changes: list[dict] = []
    bus_changes: list[Any] = []
    contexts: list[ExtensionContext] = []

    def on_load(self, ctx):
        contexts.append(ctx)
        ctx.on_settings_change(changes.append)

    from jan.core.events import SettingsChanged

    ext = make_ext("tuned", on_load=on_load, settings_schema=Settings)
    manager = manager_for(tmp_path, ext)
    manager.bus.subscribe(SettingsChanged, bus_changes.append)
    await manager.start()
    ctx = contexts[0]
    assert ctx.settings.get("threads") == 4
    with pytest.raises(SettingsValidationError) as info:
        ctx.settings.set("threads", 0)
    assert info.value.field == "threads" and "threads" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(SettingsValidationError) as info:
        ctx.settings.update({"nope": 1})
    assert info.value.field == "nope"
    assert changes == []

    ctx.settings.update({"threads": 8, "api_key": "k"})
    assert changes == [{"api_key": "k", "threads": 8}]
    await manager.bus.drain()
    assert bus_changes[-1].extension == "tuned" and bus_changes[-1].changes["threads"] == 8
    path = tmp_path / "data" / "settings" / "tuned" / "settings.json"
    assert json.loads(path.read_text()) == {"threads": 8, "api_key": "k"}

    await manager.stop()
    manager2 = manager_for(tmp_path, ext)
    await manager2.start()
    assert manager2.settings("tuned").get("threads") == 8
    assert contexts[-1].settings.model.threads == 8
    # callbacks registered by the unloaded extension are gone
    ctx.settings.set("threads", 9)
    assert len(changes) == 1


async def test_required_setting_blocks_loading_until_set(tmp_path):
    schema = {
        "type": "object",
        "properties": {"api_key": {"type": "string", "minLength": 1}, "timeout": {"type": "number", "default": 30}},
        "required": ["api_key"],
    }
    manager = manager_for(tmp_path, make_ext("remote", settings_schema=schema))
    await manager.start()
    record = manager.record("remote")
    assert record.state == "failed" and "api_key" in record.error
    manager.settings("remote").set("api_key", "sk-123")
    assert (await manager.enable("remote")).state == "loaded"
    assert manager.settings("remote").all() == {"api_key": "sk-123", "timeout": 30}


# -- lookup --------------------------------------------------------------------------------------
async def test_get_prefers_choice_then_priority_then_last_loaded(tmp_path):
    Store = conversational_stub()
    builtin = make_ext("builtin-store", bases=(Store,), priority=BUILTIN_PRIORITY)
    third = make_ext("third-party-store", bases=(Store,))

    def provide(self, ctx):
        ctx.provide(Store())

    provider = make_ext("provider", on_load=provide, depends_on=("third-party-store",))
    manager = manager_for(tmp_path, builtin, third, provider)
    await manager.start()

    best = manager.get(ConversationalExtension)
    # same priority (0): the one loaded last (provider depends on third-party-store) wins
    assert not isinstance(best, Extension)
    assert manager.get("assistant") is best  # conversational stores also serve assistants
    ranked = manager.get_all("conversational")
    assert [getattr(x, "name", "provided") for x in ranked] == ["provided", "third-party-store", "builtin-store"]

    manager.set_preferred("conversational", "builtin-store")
    assert manager.get(ConversationalExtension) is manager.get_extension("builtin-store")
    saved = json.loads((tmp_path / "data" / "extensions" / "extensions.json").read_text())
    assert saved["preferred"] == {"conversational": "builtin-store"}
    manager.set_preferred(ConversationalExtension, None)

    await manager.disable("provider")
    assert manager.get("conversational") is manager.get_extension("third-party-store")
    assert "conversational" in manager.record("third-party-store").types
    assert "assistant" in manager.record("third-party-store").types
    with pytest.raises(ExtensionNotFoundError, match="monitoring"):
        manager.get("monitoring")


async def test_engines_registered_by_hook_or_by_inheritance(tmp_path):
    def register(self, ctx):
        ctx.register_engine(FakeEngine("openai", tag="remote"))
        ctx.register_engine(FakeEngine("llama.cpp", tag="override"), priority=-1000)

    class NativeEngine(Extension, FakeEngine):
        name = "native"
        requires_api = ">=1"
        priority = BUILTIN_PRIORITY

        def __init__(self):
            FakeEngine.__init__(self, "llama.cpp", tag="native")

    manager = manager_for(tmp_path, NativeEngine, make_ext("remote", on_load=register))
    await manager.start()
    assert manager.get_inference("llama.cpp").tag == "native"
    assert manager.get_inference("openai").tag == "remote"
    assert set(manager.engines()) == {"llama.cpp", "openai"}
    assert "inference" in manager.record("remote").types
    manager.set_preferred("inference:llama.cpp", "remote")
    assert manager.get_inference("llama.cpp").tag == "override"
    chunks = [c async for c in manager.get_inference("openai").chat({}, {})]
    assert chunks[0]["choices"][0]["delta"]["content"] == "remote"
    await manager.disable("remote")
    with pytest.raises(ExtensionNotFoundError, match="loaded engines: llama.cpp"):
        manager.get_inference("openai")


async def test_context_is_closed_after_unload(tmp_path):
    contexts: list[ExtensionContext] = []
    manager = manager_for(tmp_path, make_ext("x", on_load=lambda self, ctx: contexts.append(ctx)))
    await manager.start()
    ext = manager.get_extension("x")
    assert ext.ctx is contexts[0] and contexts[0].data_folder == manager.data_folder
    assert contexts[0].extension_folder == manager.data_folder / "extensions" / "x"
    await manager.stop()
    assert contexts[0].closed
    with pytest.raises(ExtensionError):
        contexts[0].add_route("GET", "/x", _ok_handler)
    with pytest.raises(ExtensionError):
        ext.ctx


async def test_context_manager_and_event_sequence(tmp_path):
    events: list[str] = []
    bus = LocalEventBus()
    bus.subscribe((ExtensionLoaded, ExtensionUnloaded), lambda e: events.append(f"{type(e).__name__}:{e.name}"))
    async with manager_for(tmp_path, make_ext("a"), bus=bus) as manager:
        assert manager.started
    assert events == ["ExtensionLoaded:a", "ExtensionUnloaded:a"]


# -- routes -----------------------------------------------------------------------------------------
async def _ok_handler(request):  # pragma: no cover - replaced in the route tests
    from aiohttp import web

    return web.json_response({"ok": True})


async def test_route_hooks_are_collected_and_mounted(tmp_path):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    table = web.RouteTableDef()

    @table.get("/v1/extensions/hello/table")
    async def from_table(request):
        return web.json_response({"from": "table"})

    def on_load(self, ctx):
        async def hello(request):
            return web.json_response({"hello": ctx.settings.get("who", "world")})

        ctx.add_route("get", "/v1/extensions/hello", hello, name="hello")
        ctx.add_routes(table)
        ctx.add_routes([("POST", "/v1/extensions/hello/echo", _echo)])

        def make_subapp():
            sub = web.Application()
            sub.router.add_get("/ping", _pong)
            return sub

        ctx.add_subapp("/ext/hello/", make_subapp)

    manager = manager_for(tmp_path, make_ext("hello", on_load=on_load))
    await manager.start()
    specs = manager.routes()
    assert [(s.method, s.path, s.extension) for s in specs] == [
        ("GET", "/v1/extensions/hello", "hello"),
        ("GET", "/v1/extensions/hello/table", "hello"),
        ("POST", "/v1/extensions/hello/echo", "hello"),
    ]
    assert [(s.prefix, s.extension) for s in manager.subapps()] == [("/ext/hello", "hello")]

    app = web.Application()
    mount_extensions(manager, app)
    async with TestClient(TestServer(app)) as client:
        assert (await (await client.get("/v1/extensions/hello")).json()) == {"hello": "world"}
        assert (await (await client.get("/v1/extensions/hello/table")).json()) == {"from": "table"}
        assert (await (await client.post("/v1/extensions/hello/echo", data=b"hi")).text()) == "hi"
        assert (await (await client.get("/ext/hello/ping")).text()) == "pong"

        await manager.disable("hello")
        assert manager.routes() == []
        assert (await client.get("/v1/extensions/hello")).status == 404
        assert (await client.get("/ext/hello/ping")).status == 404

        await manager.enable("hello")
        manager.settings("hello").set("who", "jan")
        assert (await (await client.get("/v1/extensions/hello")).json()) == {"hello": "jan"}
        assert (await client.get("/ext/hello/ping")).status == 200


async def _echo(request):
    from aiohttp import web

    return web.Response(text=(await request.read()).decode())


async def _pong(request):
    from aiohttp import web

    return web.Response(text="pong")


async def test_route_hook_validation(tmp_path):
    errors: list[Exception] = []

    def on_load(self, ctx):
        for call in (
            lambda: ctx.add_route("FETCH", "/x", _ok_handler),
            lambda: ctx.add_route("GET", "no-slash", _ok_handler),
            lambda: ctx.add_route("GET", "/x", "not callable"),
            lambda: ctx.add_subapp("/", lambda: None),
            lambda: ctx.add_routes([object()]),
            lambda: ctx.register_engine(object()),
            lambda: ctx.provide(object()),
        ):
            try:
                call()
            except (TypeError, ValueError) as exc:
                errors.append(exc)

    manager = manager_for(tmp_path, make_ext("picky", on_load=on_load))
    await manager.start()
    assert len(errors) == 7
    assert manager.routes() == []


# -- entry-point discovery --------------------------------------------------------------------------
def _write_dist(root: Path, dist: str, version: str, entry_points: str, modules: dict[str, str]) -> None:
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


async def test_entry_point_discovery_from_a_fake_distribution(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _write_dist(
        site,
        "jan_fake_ext",
        "2.3.4",
        """
        [jan.extensions]
        fake-class = jan_fake_ext_pkg:FakeExtension
        fake-module = jan_fake_ext_pkg.as_module
        fake-factory = jan_fake_ext_pkg:make_extension
        fake-broken = jan_fake_ext_pkg.broken
        [console_scripts]
        unrelated = jan_fake_ext_pkg:main
        """,
        {
            "jan_fake_ext_pkg/__init__.py": """
                from jan.core.extension import Extension

                class FakeExtension(Extension):
                    name = "fake-class"
                    requires_api = ">=1,<2"
                    loaded = False

                    async def on_load(self, ctx):
                        type(self).loaded = True

                class Made(Extension):
                    name = "fake-factory"
                    version = "9.9"

                def make_extension():
                    return Made()
                """,
            "jan_fake_ext_pkg/as_module.py": """
                from jan.core.extension import Extension

                class ModuleExtension(Extension):
                    name = "fake-module"

                extension = ModuleExtension()
                """,
            "jan_fake_ext_pkg/broken.py": "raise ImportError('missing native library libfoo.so')\n",
        },
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        manager = ExtensionManager(tmp_path / "data")
        await manager.start()
        records = {r.name: r for r in manager.list() if r.name.startswith("fake-")}
        assert records["fake-class"].state == "loaded"
        assert records["fake-class"].version == "2.3.4"  # from the distribution
        assert "jan_fake_ext" in records["fake-class"].source
        assert records["fake-module"].state == "loaded"
        assert records["fake-factory"].state == "loaded" and records["fake-factory"].version == "9.9"
        assert records["fake-broken"].state == "failed"
        assert "libfoo.so" in records["fake-broken"].error
        assert sys.modules["jan_fake_ext_pkg"].FakeExtension.loaded is True
        await manager.stop()
    finally:
        for mod in [m for m in sys.modules if m.startswith("jan_fake_ext_pkg")]:
            del sys.modules[mod]


async def test_entry_points_can_be_monkeypatched_and_explicit_registration_wins(tmp_path, monkeypatch):
    module = tmp_path / "mods" / "jan_ep_mod_xyz.py"
    module.parent.mkdir()
    module.write_text(
        "from jan.core.extension import Extension\n"
        "class E(Extension):\n    name = 'shared-name'\n    description = 'from entry point'\n"
    )
    monkeypatch.syspath_prepend(str(module.parent))
    eps = importlib.metadata.EntryPoints([importlib.metadata.EntryPoint("shared-name", "jan_ep_mod_xyz:E", "jan.extensions")])
    calls = []

    def fake_entry_points(**kwargs):
        calls.append(kwargs)
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    manager = ExtensionManager(tmp_path / "data")
    manager.register(make_ext("shared-name", description="explicit"))
    await manager.start()
    assert calls == [{"group": "jan.extensions"}]
    assert manager.record("shared-name").description == "explicit"
    sys.modules.pop("jan_ep_mod_xyz", None)


# -- stop ----------------------------------------------------------------------------
class _Stopping(Event):
    """Told (emit_nowait) by an extension as it unloads."""


async def test_stop_waits_for_the_event_handlers_still_running(tmp_path):
    """Handlers the bus runs in tasks of their own (``emit_nowait``) end before the stop returns: left pending, the
    event loop that closes after a stop of jan destroyed them midway ("Task was destroyed but it is pending!")."""
    bus = LocalEventBus()
    ended: list[str] = []

    async def handler(event: _Stopping) -> None:
        await asyncio.to_thread(lambda: None)  # (work off the loop: a few turns of it)
        await asyncio.to_thread(lambda: None)
        ended.append("handled")

    bus.subscribe(_Stopping, handler)
    manager = manager_for(tmp_path, make_ext("teller", on_unload=lambda self: bus.emit_nowait(_Stopping())), bus=bus)
    await manager.start()
    await manager.stop()
    assert ended == ["handled"] and bus.pending == 0


async def test_jan_s_own_extensions_log_their_load_at_debug_and_third_party_ones_at_info(tmp_path, caplog):
    """``jan serve`` began with seven INFO lines, one per built-in extension loaded, which say nothing the user did;
    a third-party extension's load (one the user installed) is still said at INFO, even ranked as a built-in."""
    builtin = make_ext("own", priority=BUILTIN_PRIORITY, __module__="jan.extensions.own.extension")
    ranked_low = make_ext("ranked-low", priority=BUILTIN_PRIORITY)  # (a third party's, ranked as jan's own)
    manager = manager_for(tmp_path, builtin(), ranked_low(), make_ext("theirs")())
    caplog.set_level("DEBUG", logger="jan.core.manager")
    await manager.start()
    await manager.stop()
    said = {(r.levelname, r.getMessage().split()[1], r.getMessage().split()[-1]) for r in caplog.records
            if r.getMessage().startswith("extension ")}
    assert said == {("DEBUG", "own", "loaded"), ("DEBUG", "own", "unloaded"),
                    ("INFO", "ranked-low", "loaded"), ("INFO", "ranked-low", "unloaded"),
                    ("INFO", "theirs", "loaded"), ("INFO", "theirs", "unloaded")}, said
