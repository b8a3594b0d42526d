"""A misbehaving MCP server (``tests/mcp_servers/wild_server.py``, raw JSON-RPC) against the MCP host.

Each test is one kind of misbehaviour, and what a user or model is owed for it: every tool reachable under a
distinct name, listings that follow the server's ``list_changed``, a server that ends between calls restarted
before the next, one that writes junk to stdout told by name, one wedged in a call replaced, huge lines taken or
ended with a clear error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jan.core import ExtensionManager, McpHost, ToolRegistry
from jan.extensions.mcp import McpHostExtension
from jan.extensions.mcp.server import tool_names
from mcp_helpers import write_mcp_config

pytestmark = pytest.mark.timeout(300)

WILD_SERVER = Path(__file__).parent / "mcp_servers" / "wild_server.py"


def wild_entry(*flags: str, **extra) -> dict:
    return {"command": sys.executable, "args": [str(WILD_SERVER), *flags], **extra}


async def started(data: Path, servers: dict) -> ExtensionManager:
    write_mcp_config(data, servers)
    manager = ExtensionManager(data, discover_entry_points=False)
    manager.register(McpHostExtension())
    await manager.start()
    return manager


def test_names_changed_to_fit_stay_distinct():
    long = "y" * 80
    names = tool_names("srv", ["a.b", "a_b", "検索", "取得", long + "1", long + "2", "plain"])
    assert len(set(names.values())) == len(names)
    assert names["a_b"] == "srv__a_b" and names["plain"] == "srv__plain"  # a name that fits is kept as it is
    assert names["a.b"].startswith("srv__a_b_")
    assert all(len(n) <= 64 for n in names.values())
    # stable: a name does not depend on the listing's order
    assert tool_names("srv", list(reversed(list(names)))) == names


async def test_every_tool_is_reachable_under_its_own_name(tmp_path):
    manager = await started(tmp_path / "data", {"wild": wild_entry()})
    try:
        status = await manager.get(McpHost).server("wild")
        assert status.state == "running", status
        jan_names = {t["name"]: t["tool_name"] for t in status.tools}
        assert len(set(jan_names.values())) == len(jan_names) == 14  # all but the second "echo"
        assert [(r["name"], r["reason"]) for r in status.rejected] == [("echo", "a second tool of the same name")]
        registry = ToolRegistry(manager)
        listed = {t.name for t in await registry.list_tools(servers={"wild"})}
        assert set(jan_names.values()) <= listed
        for mcp_name in ("a.b", "a_b", "検索", "取得", "x" * 70 + "_one", "x" * 70 + "_two"):
            outcome = await registry.call(jan_names[mcp_name], {})
            assert outcome.result.as_text() == f"{mcp_name} done", mcp_name
    finally:
        await manager.stop()


async def eventually(check, what: str, bound: float = 60.0):
    """``await check()`` until it is truthy (a server's notification is handled in the background), for at most
    ``bound`` seconds."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not (value := await check()):
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)
    return value


async def test_listings_follow_the_servers_list_changed(tmp_path):
    manager = await started(tmp_path / "data", {"wild": wild_entry()})
    try:
        host, registry = manager.get(McpHost), ToolRegistry(manager)
        assert "wild__grown" not in {t.name for t in await registry.list_tools(servers={"wild"})}
        outcome = await registry.call("wild__grow", {})  # adds a tool, a prompt, a resource; notifies each
        assert not outcome.result.is_error

        async def grown():
            return "wild__grown" in {t.name for t in await registry.list_tools(servers={"wild"})}

        await eventually(grown, "the tool the server added is offered")
        assert (await registry.call("wild__grown", {})).result.as_text() == "grown done"
        status = await host.server("wild")
        assert [p["name"] for p in status.prompts] == ["grown_prompt"]
        assert [r["uri"] for r in status.resources] == ["note://grown"]
        assert status.restarts == 0  # followed on the running connection, not by restarting it
    finally:
        await manager.stop()


async def test_a_server_that_ends_after_a_call_is_restarted_before_the_next(tmp_path):
    manager = await started(tmp_path / "data", {"once": wild_entry("--exit-after-call")})
    try:
        host, registry = manager.get(McpHost), ToolRegistry(manager)
        for n in range(3):  # each call finds the server gone since the last, and starts it again
            outcome = await registry.call("once__echo", {"text": f"call {n}"})
            assert not outcome.result.is_error and outcome.result.as_text() == f"call {n}", outcome.result

            async def ended():
                return (await host.server("once", connect=False)).state != "running"

            await eventually(ended, "the server's exit is noticed while it is idle")
        assert (await host.server("once", connect=False)).restarts == 2
    finally:
        await manager.stop()


async def test_stdout_junk_is_told_naming_the_server(tmp_path, caplog):
    manager = await started(tmp_path / "data", {"noisy": wild_entry("--junk-at-start")})
    try:
        registry = ToolRegistry(manager)
        with caplog.at_level("DEBUG"):
            outcome = await registry.call("noisy__junk", {})
            assert outcome.result.as_text() == "junk done"
            assert (await registry.call("noisy__echo", {"text": "still here"})).result.as_text() == "still here"
        told = [r for r in caplog.records if "noisy" in r.getMessage() and "no JSON-RPC" in r.getMessage()]
        assert told and told[0].levelname == "WARNING"
        assert "Welcome to the wild server!" in told[0].getMessage()  # the line itself, for the server's author
        assert sum(r.levelname == "WARNING" for r in told) == 1  # once per start, not a line per junk line
        # the SDK's own traceback for it, which names no server, is not logged besides
        assert not [r for r in caplog.records if r.name == "mcp.client.stdio" and r.levelname == "ERROR"]
    finally:
        await manager.stop()


@pytest.mark.parametrize("bound_by", ["server", "caller"])
async def test_a_server_wedged_in_a_call_is_replaced(tmp_path, monkeypatch, bound_by):
    """``hang`` never answers and the server answers nothing after it. The call's bound is the server's own
    ``timeout`` (the SDK's request timeout) or the caller's (the registry's, cutting the call off): either way the
    server is probed with a listing, found wedged, and replaced, and the next call is answered by a new process."""
    import jan.extensions.mcp.server as mcp_server

    monkeypatch.setattr(mcp_server, "PROBE_TIMEOUT", 1.0)
    entry = wild_entry(timeout=1) if bound_by == "server" else wild_entry()
    manager = await started(tmp_path / "data", {"stuck": entry})
    try:
        host, registry = manager.get(McpHost), ToolRegistry(manager)
        assert (await registry.call("stuck__echo", {"text": "first"})).result.as_text() == "first"
        outcome = await registry.call("stuck__hang", {}, timeout=1 if bound_by == "caller" else 60)
        assert outcome.result.is_error and "did not answer" in outcome.result.as_text()

        async def replaced():
            status = await host.server("stuck", connect=False)
            return status if status.state != "running" else None

        status = await eventually(replaced, "the wedged server is taken out")
        assert status.state == "failed" and "stopped answering" in status.error
        again = await registry.call("stuck__echo", {"text": "second"})
        assert not again.result.is_error and again.result.as_text() == "second"
        assert (await host.server("stuck", connect=False)).restarts == 1
    finally:
        await manager.stop()


async def test_huge_lines_end_in_a_result_or_a_clear_error(tmp_path, monkeypatch):
    """A multi-MB JSON-RPC line is read whole and its text cut to the output limit; a line that never ends is a call
    that did not answer (the caller's bound), and its server is replaced as a wedged one is: no call stalls, and the
    next one is answered."""
    import jan.extensions.mcp.server as mcp_server

    monkeypatch.setattr(mcp_server, "PROBE_TIMEOUT", 1.0)
    manager = await started(tmp_path / "data", {"wild": wild_entry()})
    try:
        host, registry = manager.get(McpHost), ToolRegistry(manager, max_output_chars=1000)
        big = (await registry.call("wild__big", {"chars": 4_000_000}, timeout=120)).result
        assert not big.is_error and big.truncated and big.as_text().startswith("y" * 900)
        endless = (await registry.call("wild__endless", {}, timeout=2)).result
        assert endless.is_error and "did not answer" in endless.as_text()

        async def replaced():
            status = await host.server("wild", connect=False)
            return status if status.state != "running" else None

        assert (await eventually(replaced, "the server stuck in its line is taken out")).state == "failed"
        again = (await registry.call("wild__echo", {"text": "after"}, timeout=120)).result
        assert not again.is_error and again.as_text() == "after"
    finally:
        await manager.stop()


@pytest.mark.parametrize("status", [401, 405, 500])
async def test_an_http_server_that_refuses_says_its_status(tmp_path, status):
    """401: the credentials; 405 (a POST to an older HTTP+SSE server's /sse URL): the transport; 500: the status."""
    from aiohttp import web
    from mcp_helpers import free_port

    async def refuse(request):
        await request.read()
        return web.Response(status=status, text="no")

    app = web.Application()
    app.router.add_route("*", "/mcp", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    manager = await started(tmp_path / "data", {"remote": {"url": f"http://127.0.0.1:{port}/mcp"}})
    try:
        status_now = await manager.get(McpHost).server("remote")
        assert status_now.state == "failed"
        assert f"HTTP {status}" in status_now.error
        assert ("credentials" in status_now.error) == (status == 401)
        assert ("HTTP+SSE" in status_now.error) == (status == 405)
        outcome = await ToolRegistry(manager).call("remote__anything", {})
        assert outcome.result.is_error
    finally:
        await manager.stop()
        await runner.cleanup()


async def test_an_http_servers_client_is_closed_with_its_connection(tmp_path, monkeypatch):
    """Each start's HTTP client (jan's own, made for the server's headers) is closed when its connection ends."""
    from mcp.shared import _httpx_utils
    from mcp_helpers import http_notes_server, notes_folder

    made = []
    create = _httpx_utils.create_mcp_http_client

    def record(*args, **kwargs):
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_httpx_utils, "create_mcp_http_client", record)
    with http_notes_server(notes_folder(tmp_path), tmp_path / "http.log") as url:
        manager = await started(tmp_path / "data", {"notes": {"url": url}})
        try:
            assert (await manager.get(McpHost).server("notes")).state == "running"
            assert made and not made[-1].is_closed
        finally:
            await manager.stop()
    assert made and all(client.is_closed for client in made)


async def test_a_start_that_times_out_leaves_no_unretrieved_failure(tmp_path, monkeypatch, caplog):
    """A handshake past START_TIMEOUT is the server's failure (its status, one warning), never also asyncio's
    "Future exception was never retrieved" when the abandoned start is collected."""
    import gc

    import jan.extensions.mcp.server as mcp_server

    monkeypatch.setattr(mcp_server, "START_TIMEOUT", 1.0)
    gate = tmp_path / "gate"
    held = Path(__file__).parent / "mcp_servers" / "held_server.py"
    manager = await started(tmp_path / "data", {"held": {"command": sys.executable, "args": [str(held), str(gate)]}})
    try:
        with caplog.at_level("DEBUG"):
            status = await manager.get(McpHost).server("held")
            assert status.state == "failed" and "did not start" in status.error
            await manager.stop()
            gc.collect()
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    finally:
        gate.touch()
        await manager.stop()


async def test_a_tool_whose_schema_cannot_be_used_is_left_out_of_runs_not_failing_them(tmp_path, tool_model):
    """``badref``'s and ``nothing``'s schemas make no grammar: a run offering the whole server failed
    (``invalid_prompt``) for them, every run. They are left out and told in its warnings; the others are offered."""
    from api_helpers import Client, running
    from mcp_helpers import forced_call, tool_thread
    from run_helpers import run_to_end

    data = tmp_path / "data"
    write_mcp_config(data, {"wild": wild_entry()})
    with running(data, tool_model, n_ctx=4096) as srv:
        async with Client(srv.base_url) as api:
            tid = await tool_thread(api, [{"type": "mcp", "server_label": "wild", "require_approval": "never"}])
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", forced_call("wild__a_b"))
            assert run["status"] in ("completed", "incomplete"), run
            warnings = " ".join(run["warnings"])
            assert "'wild__badref' is left out" in warnings and "does not resolve" in warnings
            assert "'wild__nothing' is left out" in warnings
            status, body = await api.call("POST", f"/v1/threads/{tid}/runs", forced_call("wild__badref"))
            assert status == 400 and "parameters schema cannot be used" in body["error"]["message"], body


async def test_a_tool_whose_schema_cannot_be_used_is_left_out_of_a_responses_mcp_tool(tmp_path, tool_model):
    """The same server named by a Responses ``mcp`` tool (jan.services.mcp_use, the Anthropic connector's path too):
    the whole response was a 400 naming ``tools[12].parameters``, a field the request does not have. The two tools
    are left out of the listing and the offer; the others are listed and offered, the response answered."""
    from api_helpers import Client, running

    data = tmp_path / "data"
    write_mcp_config(data, {"wild": wild_entry()})
    body = {"model": "qwen3-tools", "input": "hi", "tools": [{"type": "mcp", "server_label": "wild",
                                                              "require_approval": "never"}]}
    with running(data, tool_model, n_ctx=4096) as srv:
        async with Client(srv.base_url) as api:
            # (the 400 was here: the tools offered, the call grammar made; one token makes no call to run)
            await api.ok("POST", "/v1/responses", body | {"max_output_tokens": 1})
            counted = await api.ok("POST", "/v1/responses/input_tokens", body)
            assert counted["input_tokens"] > 0
            resp = await api.ok("POST", "/v1/responses", body | {"max_output_tokens": 5, "tool_choice": "none"})
            listing = resp["output"][0]
            assert listing["type"] == "mcp_list_tools" and not listing.get("error"), listing
            names = {t["name"] for t in listing["tools"]}
            assert "badref" not in names and "nothing" not in names and "a.b" in names, names
