"""Broken third-party extensions are reported by GET /v1/extensions while the server keeps serving.

A tiny distribution is written into tmp_path at test time with entry points:
one whose ``on_load`` raises, one naming a module that does not exist, one that
requires a future extension API; one whose routes raise or answer no response,
two with unusable settings schemas, a tool provider listing malformed tools, and
an entry point (sorted first) claiming another extension's name.
"""

from __future__ import annotations

import json
import textwrap
import urllib.parse

import openai
import pytest

from extension_helpers import call, on_sys_path, records, write_distribution
from server_helpers import start_server

MODULE = textwrap.dedent('''
    from jan.core import Extension


    class FailsToLoad(Extension):
        name = "broken-on-load"
        description = "raises in on_load"
        requires_api = ">=1,<2"
        settings_schema = {"type": "object", "properties": {"retries": {"type": "integer", "minimum": 0, "default": 1}}}

        async def on_load(self, ctx):
            async def handler(request):
                raise AssertionError("never mounted")

            ctx.add_route("GET", "/v1/broken", handler)
            raise RuntimeError("the database file is missing")


    class TooNew(Extension):
        name = "too-new"
        requires_api = ">=2"


    class RouteBugs(Extension):
        name = "route-bugs"
        description = "the real one"

        async def on_load(self, ctx):
            from aiohttp import web

            async def raises(request):
                raise RuntimeError("secret detail of the bug")

            async def no_response(request):
                return {"not": "a response"}

            async def bad_value(request):
                raise ValueError("n: must be positive")

            async def sub_raises(request):
                raise KeyError("oops")

            async def exits(request):
                import sys
                sys.exit(9)  # left to asyncio, a SystemExit out of the request's task stopped the whole server

            def subapp():
                app = web.Application()
                app.router.add_get("/boom", sub_raises)
                return app

            ctx.add_route("GET", "/v1/extensions/route-bugs/raises", raises)
            ctx.add_route("GET", "/v1/extensions/route-bugs/none", no_response)
            ctx.add_route("GET", "/v1/extensions/route-bugs/value", bad_value)
            ctx.add_route("GET", "/v1/extensions/route-bugs/exits", exits)
            ctx.add_subapp("/v1/extensions/route-bugs/sub", subapp)


    class Impostor(Extension):
        name = "route-bugs"
        description = "an impostor"


    class BadSchema(Extension):
        name = "bad-schema"
        settings_schema = {"type": "object", "properties": {"x": {"type": "bogus", "default": 1}}}


    class NotASchema(Extension):
        name = "not-a-schema"
        settings_schema = 42


    class BadDefault(Extension):
        name = "bad-default"
        settings_schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "default": 0}}}


    from jan.core import Tool, ToolProvider, ToolResult


    class Fine(Tool):
        name = "fine_tool"
        description = "works"
        source = "bad-tools"

        async def call(self, arguments, *, timeout=None):
            return ToolResult.text("fine")


    class BadName(Fine):
        name = "bad name!"


    class BadTools(Extension, ToolProvider):
        name = "bad-tools"

        async def list_tools(self):
            return [{"name": "a_dict"}, BadName(), Fine()]
''')


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("broken")
    site = tmp / "site"
    write_distribution(site, "jan-broken-demo", "0.0.1", {
        "broken-on-load": "jan_broken_demo:FailsToLoad",
        "broken-import": "jan_broken_demo_no_such_module:Extension",
        "too-new": "jan_broken_demo:TooNew",
        "route-bugs": "jan_broken_demo:RouteBugs",
        "a-impostor": "jan_broken_demo:Impostor",
        "bad-schema": "jan_broken_demo:BadSchema",
        "not-a-schema": "jan_broken_demo:NotASchema",
        "bad-default": "jan_broken_demo:BadDefault",
        "bad-tools": "jan_broken_demo:BadTools",
        "exits-on-import": "jan_broken_demo_exits:Extension",
        "malformed-value": "jan_broken_demo:RouteBugs:extra",
    }, {"jan_broken_demo/__init__.py": MODULE,
        # a module that ends the program when a dependency is missing: it ended `jan serve` and `jan extensions list`
        "jan_broken_demo_exits.py": "import sys\nsys.exit('this extension needs foo: pip install foo')\n"})
    with on_sys_path(site, "jan_broken_demo", "jan_broken_demo_exits"):
        srv = start_server(tmp, [stories_path])
        yield srv
        srv.stop()


def test_failures_are_listed_with_state_and_error(server):
    found = records(server)
    on_load = found["broken-on-load"]
    assert on_load["state"] == "failed" and on_load["enabled"] is True
    assert on_load["error"] == "on_load failed: RuntimeError: the database file is missing"
    assert on_load["version"] == "0.0.1" and on_load["description"] == "raises in on_load"

    missing = found["broken-import"]
    assert missing["state"] == "failed"
    assert missing["error"].startswith("import failed: ModuleNotFoundError") and "jan_broken_demo_no_such_module" in missing["error"]

    exits = found["exits-on-import"]
    assert exits["state"] == "failed"
    assert exits["error"] == "import failed: SystemExit: this extension needs foo: pip install foo"

    malformed = found["malformed-value"]  # ep.load() said: 'NoneType' object has no attribute 'group'
    assert malformed["state"] == "failed"
    assert "'jan_broken_demo:RouteBugs:extra' is not 'module:object'" in malformed["error"], malformed

    too_new = found["too-new"]
    assert too_new["state"] == "incompatible" and ">=2" in too_new["error"]

    for name in ("llamacpp", "models", "monitoring", "remote"):
        assert found[name]["state"] == "loaded", found[name]
    # what the failed extension registered before raising was removed again
    assert call(server, "GET", "/v1/broken")[0] == 404


def test_the_server_keeps_serving_chat(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "Hello"}]
    reply = client.chat.completions.create(model="stories260K", messages=messages, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    streamed = client.chat.completions.create(model="stories260K", messages=messages, max_tokens=8, temperature=0,
                                              stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == reply.choices[0].message.content


def test_enabling_retries_and_reports_the_failure_again(server):
    status, record = call(server, "POST", "/v1/extensions/broken-on-load/enable")
    assert status == 200 and record["state"] == "failed" and "database file is missing" in record["error"]
    status, record = call(server, "POST", "/v1/extensions/too-new/enable")
    assert status == 200 and record["state"] == "incompatible"


def test_settings_of_broken_extensions(server):
    # on_load failed, but its schema is known: settings can still be fixed
    status, body = call(server, "PATCH", "/v1/extensions/broken-on-load/settings", {"retries": -1})
    assert status == 400 and body["error"]["param"] == "retries"
    status, body = call(server, "PATCH", "/v1/extensions/broken-on-load/settings", {"retries": 3})
    assert status == 200 and body["values"] == {"retries": 3}



def test_the_stored_settings_of_an_extension_that_failed_to_import_are_read_and_removed(server):
    """Neither needs the extension's code: it answered 409 "schema unknown", and what the user stored stayed."""
    stored = server.config.data_folder / "settings" / "broken-import" / "settings.json"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps({"api_key": "sk-secret", "retries": 2}))
    status, body = call(server, "GET", "/v1/extensions/broken-import/settings")
    assert status == 200, body
    # which values are secrets the schema would say: none is shown
    assert body["schema"] is None and body["user_values"] == {"api_key": "********", "retries": "********"}
    assert "failed to import" in body["error"] and "sk-secret" not in json.dumps(body)
    # a change needs the schema
    status, body = call(server, "PATCH", "/v1/extensions/broken-import/settings", {"retries": 3})
    assert status == 409 and body["error"]["code"] == "extension_unavailable", body
    status, body = call(server, "DELETE", "/v1/extensions/broken-import/settings")
    assert status == 200 and body["values"] == {} and body["user_values"] == {}, body
    assert json.loads(stored.read_text()) == {}
    # an entry jan named itself (its extension's name is another's) has no settings of its own: the other's stay
    impostor = next(name for name in records(server) if name.startswith("route-bugs ("))
    for method in ("GET", "DELETE"):
        status, body = call(server, method, f"/v1/extensions/{urllib.parse.quote(impostor, safe='')}/settings")
        assert status == 409 and body["error"]["code"] == "extension_unavailable", (method, body)


def test_enabling_disabling_and_listing_an_extension_that_failed_to_import(server):
    for action, enabled in (("disable", False), ("enable", True)):
        status, record = call(server, "POST", f"/v1/extensions/broken-import/{action}")
        assert status == 200 and record["enabled"] is enabled and record["state"] in ("failed", "disabled"), record
        assert records(server)["broken-import"]["enabled"] is enabled
    assert record["state"] == "failed" and record["error"].startswith("import failed")


def test_a_route_that_raises_or_answers_nothing_is_a_500_naming_its_extension(server):
    for path, detail in (("/v1/extensions/route-bugs/raises", "RuntimeError"),
                         ("/v1/extensions/route-bugs/sub/boom", "KeyError"),  # a sub-application's handler
                         ("/v1/extensions/route-bugs/none", "dict, not a response"),
                         ("/v1/extensions/route-bugs/exits", "ExtensionExitError")):
        status, body = call(server, "GET", path)
        assert status == 500, (path, body)
        error = body["error"]
        assert error["code"] == "extension_error" and "'route-bugs'" in error["message"], body
        assert detail in error["message"] and "secret detail" not in error["message"]
    # what jan maps keeps its meaning: a ValueError is the client's 400
    status, body = call(server, "GET", "/v1/extensions/route-bugs/value")
    assert status == 400 and body["error"]["message"] == "n: must be positive"
    assert records(server)["route-bugs"]["state"] == "loaded"  # nothing of that unloads it
    status, record = call(server, "POST", "/v1/extensions/route-bugs/disable")
    assert status == 200 and record["state"] == "disabled"
    try:
        status, body = call(server, "GET", "/v1/extensions/route-bugs/raises")
        assert status == 404 and "'route-bugs'" in body["error"]["message"], body
    finally:
        assert call(server, "POST", "/v1/extensions/route-bugs/enable")[1]["state"] == "loaded"


def test_an_entry_point_claiming_another_extensions_name_is_listed_failed(server):
    found = records(server)
    # "a-impostor" sorts first, but the entry point named as its extension keeps the name
    assert found["route-bugs"]["description"] == "the real one" and found["route-bugs"]["state"] == "loaded"
    impostor = [r for name, r in found.items() if name.startswith("route-bugs (")]
    assert len(impostor) == 1, found.keys()
    assert impostor[0]["state"] == "failed" and "a-impostor" in impostor[0]["source"]
    assert "'route-bugs' is already taken by entry point route-bugs" in impostor[0]["error"]


def test_an_unusable_settings_schema_fails_the_extension_and_a_change_is_a_409_naming_it(server):
    found = records(server)
    for name, why in (("bad-schema", "'type' \"bogus\" is not a JSON schema type"),
                      ("not-a-schema", "not 42"),
                      ("bad-default", "the default of 'n' (0) does not match its own schema")):
        assert found[name]["state"] == "failed", found[name]
        assert f"extension {name!r} has an invalid settings schema" in found[name]["error"] and why in found[name]["error"]
        # a change needs a schema that works; what is stored is read and removed without one
        status, answer = call(server, "PATCH", f"/v1/extensions/{name}/settings", {"x": 1})
        assert status == 409, (name, answer)
        assert answer["error"]["code"] == "invalid_settings_schema" and repr(name) in answer["error"]["message"]
        for method in ("GET", "DELETE"):
            status, answer = call(server, method, f"/v1/extensions/{name}/settings")
            assert status == 200 and answer["schema"] is None and answer["user_values"] == {}, (name, answer)
            assert f"extension {name!r} has an invalid settings schema" in answer["error"]


def test_malformed_tools_cost_only_themselves(server):
    status, body = call(server, "GET", "/v1/tools")
    assert status == 200, body
    names = [t["function"]["name"] for t in body["data"]]
    assert "fine_tool" in names and "current_time" in names and "bad name!" not in names


async def test_a_runs_tool_listing_leaves_malformed_tools_out_too(tmp_path):
    """A run lists its tools through the MCP host's ``servers=`` path (jan.services.tool_loop), not the registry's:
    a malformed tool costs only itself there too."""
    import importlib

    from jan.core import ExtensionManager, ToolRegistry
    from jan.extensions.mcp import McpHostExtension
    from jan.services.tool_loop import _list_tools

    site = tmp_path / "site"
    (site / "jan_broken_tools").mkdir(parents=True)
    (site / "jan_broken_tools" / "__init__.py").write_text(MODULE)
    with on_sys_path(site, "jan_broken_tools"):
        module = importlib.import_module("jan_broken_tools")
        manager = ExtensionManager(tmp_path / "data", discover_entry_points=False)
        manager.register(module.BadTools)
        manager.register(McpHostExtension)
        async with manager:
            registry = ToolRegistry(manager)
            for listing in (await registry.list_tools(), await _list_tools(registry, set())):
                assert [t.name for t in listing] == ["fine_tool"]


def test_the_cli_without_a_server_lists_them_and_says_when_an_enabled_one_cannot_load(tmp_path):
    """`jan extensions list/enable --local`: a module that sys.exit()s on import once ended the very command that
    should show it; enabling an extension that cannot be imported said a bare "enabled"."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    write_distribution(site, "jan-broken-cli", "0.0.1", {
        "cli-exits": "jan_broken_cli_exits:Extension",
        "cli-missing": "jan_broken_cli_no_such_module:Extension",
    }, {"jan_broken_cli_exits.py": "import sys\nsys.exit('needs foo')\n"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
           "JAN_API_URL": "http://127.0.0.1:9", "JAN_DATA_FOLDER": str(tmp_path / "data")}

    def jan(*args):
        return subprocess.run([sys.executable, "-m", "jan", "extensions", *args, "--local"], env=env,
                              capture_output=True, text=True, timeout=120)

    listed = jan("list", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    found = {r["name"]: r for r in json.loads(listed.stdout)}
    assert found["cli-exits"]["state"] == "failed" and "SystemExit: needs foo" in found["cli-exits"]["error"]
    assert found["llamacpp"]["enabled"] is True
    # piped, the table's STATE column is the states', not as wide as the longest error: each error is told after it
    plain = jan("list")
    assert plain.returncode == 0 and "ModuleNotFoundError" not in plain.stdout, plain
    header = plain.stdout.splitlines()[0]
    assert header.index("TYPES") - header.index("STATE") <= len("incompatible") + 2, plain.stdout
    assert "jan: cli-missing: failed: import failed: ModuleNotFoundError" in plain.stderr, plain.stderr
    enabled = jan("enable", "cli-missing")
    assert enabled.returncode == 0, enabled.stderr[-2000:]
    assert enabled.stdout.startswith("cli-missing: enabled (failed: import failed: ModuleNotFoundError")
    disabled = jan("disable", "cli-missing")  # (needs none of its code either)
    assert disabled.returncode == 0 and disabled.stdout.strip() == "cli-missing: disabled", disabled.stderr[-2000:]
    assert {r["name"]: r for r in json.loads(jan("list", "--json").stdout)}["cli-missing"]["enabled"] is False
    assert jan("enable", "llamacpp").stdout.strip() == "llamacpp: enabled"


RESULTS_MODULE = textwrap.dedent('''
    import datetime

    from jan.core import Extension, Tool, ToolProvider, ToolResult
    from jan.core.interfaces.tools import ToolJson, ToolText


    class Returns(Tool):
        description = "returns what an author might"
        source = "odd-results"

        def __init__(self, name, value):
            self.name, self.value = name, value

        async def call(self, arguments, *, timeout=None):
            return self.value


    ODD = {
        "a_set": {1, 2},
        "a_datetime": datetime.datetime(2026, 1, 1),
        "bytes": b"raw",
        "nan": float("nan"),
        "nested_set": ToolResult((ToolJson({"ids": {1}}),)),
        "infinite_json": ToolResult((ToolJson(float("inf")),)),
        "bare_string_part": ToolResult(("plain",)),
        "text_not_str": ToolResult((ToolText(42),)),
    }
    FINE = {"a_dict": {"n": 1}, "a_string": "hi", "none": None, "a_result": ToolResult.text("ok")}


    class OddResults(Extension, ToolProvider):
        name = "odd-results"

        async def list_tools(self):
            return [Returns(n, v) for n, v in {**ODD, **FINE}.items()]
''')


async def test_a_tool_result_jan_cannot_store_is_that_tools_error_not_a_failed_run(tmp_path):
    """The kind: what a tool returns is the author's, and jan wrote it out as JSON only after the registry's
    "always an outcome" promise: a set, a datetime, NaN or a bare string part raised out of ``ToolRegistry.call``,
    failing the run (or the CLI chat) that called it. It is now an error result naming the tool and its source,
    which the model reads and the thread stores."""
    import importlib

    from jan.core import ExtensionManager, ToolRegistry

    site = tmp_path / "site"
    (site / "jan_odd_results").mkdir(parents=True)
    (site / "jan_odd_results" / "__init__.py").write_text(RESULTS_MODULE)
    with on_sys_path(site, "jan_odd_results"):
        module = importlib.import_module("jan_odd_results")
        manager = ExtensionManager(tmp_path / "data", discover_entry_points=False)
        manager.register(module.OddResults)
        async with manager:
            registry = ToolRegistry(manager)
            for name in module.ODD:
                result = (await registry.call(name, {})).result
                assert result.is_error, name
                assert f"The tool {name} (from odd-results) returned a result jan cannot use" in result.as_text()
                json.dumps(result.to_dict(), allow_nan=False)  # what the thread stores
            for name in module.FINE:
                result = (await registry.call(name, {})).result
                assert not result.is_error, (name, result)
                json.dumps(result.to_dict(), allow_nan=False)


async def test_a_tool_or_provider_that_swallows_its_cancellation_is_left_behind_at_its_bound(tmp_path, monkeypatch):
    """The kind: ``asyncio.wait_for`` is no bound for extension code that swallows its cancellation (it waits for
    the cancelled coroutine to end). A tool's call past its timeout, or a provider's listing past LIST_TIMEOUT,
    held the call (the run, the CLI chat) or every listing (``GET /v1/tools``, every run's) until the author's code
    chose to end: forever, for one that never does. They are left behind now, as hung lifecycle hooks are."""
    import asyncio

    import jan.core.tools as core_tools
    from jan.core import Extension, ExtensionManager, Tool, ToolProvider, ToolRegistry, ToolResult
    from jan.extensions.mcp import McpHostExtension
    from jan.services.tool_loop import _list_tools

    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass  # the author's mistake

    class Stubborn(Tool):
        name = "stubborn"
        source = "stubborn-tools"

        async def call(self, arguments, *, timeout=None):
            await stubborn()
            return ToolResult.text("too late")

    class Fine(Tool):
        name = "fine"
        source = "fine-tools"

        async def call(self, arguments, *, timeout=None):
            return ToolResult.text("fine")

    class HangingProvider(Extension, ToolProvider):
        name = "hanging-provider"

        async def list_tools(self):
            await stubborn()
            return []

    class FineProvider(Extension, ToolProvider):
        name = "fine-provider"

        async def list_tools(self):
            return [Fine()]

    monkeypatch.setattr(core_tools, "LIST_TIMEOUT", 0.5)
    manager = ExtensionManager(tmp_path / "data", discover_entry_points=False)
    manager.register(HangingProvider)
    manager.register(FineProvider)
    manager.register(McpHostExtension)  # a run's listing then goes through jan.services.tool_loop's own path

    async def guarded(coro):  # asyncio.wait, not wait_for: a guard that a swallowed cancellation cannot hold
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=120)
        assert done, "held by an extension that swallows its cancellation"
        return task.result()

    async with manager:
        try:
            registry = ToolRegistry(manager)
            outcome = await guarded(registry.call("stubborn", {}, timeout=0.5, tool=Stubborn()))
            assert outcome.result.is_error and "did not answer within 0.5 seconds" in outcome.result.as_text()
            for listing in (registry.list_tools(), _list_tools(registry, set())):
                assert [t.name for t in await guarded(listing)] == ["fine"]
        finally:
            release.set()
