"""A module imported on first use that cannot be imported (a broken install, an error in code run at import, a
``sys.exit()`` there) fails what needed it, said, in the shape of whatever asked: never the server, its loop, the
batch worker or a start; nothing is left running or pending, and once the import works again the next use works.

Each failure is made by having ``importlib.import_module`` (what every such first use imports with) raise for the
module, or by taking a name away from a module that a ``from ... import`` reads, as a broken install would."""

from __future__ import annotations

import asyncio
import importlib
import logging
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from jan.core import ExtensionCallError, ExtensionManager, LocalEventBus, McpHost
from jan.core.guarded import get_guarded
from jan.server import route_index, route_state
from jan.server.app import create_app
from jan.server.config import ServerConfig
from jan.server.keys import SERVICES
from jan.services.batch_types import ENDED
from jan.services.batches import BatchService
from jan.store.batches import BatchStore
from test_batch_service import _ended  # (the batch once ended, bounded)

pytestmark = pytest.mark.timeout(300)

BOUND = 60

OPENAI_BATCHES = "jan.server.dialects.openai_batches"
ANTHROPIC_BATCHES = "jan.server.dialects.anthropic_batches"


@pytest.fixture
def broken(monkeypatch):
    """``{module name: exception}``: ``importlib.import_module`` of that module raises the exception (a copy, each
    call) until the name is taken out again. Stand-ins are resolved afresh: this process imported their modules."""
    failing: dict[str, BaseException] = {}
    real = importlib.import_module

    def import_module(name, *args, **kwargs):
        exc = failing.get(name)
        if exc is not None:
            raise type(exc)(*exc.args)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.setattr(route_index, "_resolved", {})
    monkeypatch.setattr(route_index, "_loaded", {})
    return failing


async def _app(tmp_path):
    manager = ExtensionManager(tmp_path / "data", LocalEventBus(), only_builtin=True, load_wait=None)
    app = await asyncio.wait_for(create_app(ServerConfig(data_folder=tmp_path / "data", n_threads=1),
                                            manager=manager), BOUND)
    return app


@pytest.fixture
async def client(tmp_path):
    client = TestClient(TestServer(await _app(tmp_path)))
    await asyncio.wait_for(client.start_server(), BOUND)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.close(), BOUND)


async def _answer(client, method: str, path: str, **kwargs) -> tuple[int, object]:
    resp = await asyncio.wait_for(client.request(method, path, **kwargs), BOUND)
    return resp.status, await resp.json()


def _without_request_id(body: object) -> str:
    return re.sub(r"req_[0-9A-Za-z]+", "req_", str(body))


# -- routes loaded on first use --------------------------------------------------------------------------------
#: (module, a route of it that needs no model, headers, what its error body's shape is)
ROUTES = [("threads", "/v1/threads", {}, "openai"),
          ("batches", "/v1/messages/batches", {}, "anthropic"),
          ("ollama", "/api/tags", {}, "ollama")]


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), SystemExit(3)], ids=["error", "exit"])
@pytest.mark.parametrize("module,path,headers,shape", ROUTES, ids=[r[0] for r in ROUTES])
async def test_a_route_whose_module_fails_to_import_answers_as_a_failing_handler_and_recovers(
        client, broken, monkeypatch, module, path, headers, shape, exc):
    broken[f"jan.server.routes.{module}"] = exc
    failed = [await _answer(client, "GET", path, headers=headers) for _ in range(2)]  # (a failure is not kept)

    # what the same route answers when its handler raises an unexpected exception
    key = (module, "GET", path)

    async def raising(request):
        raise RuntimeError("an unexpected failure")

    monkeypatch.setitem(route_index._resolved, key, raising)
    expected = await _answer(client, "GET", path, headers=headers)
    for status, body in failed:
        assert (status, _without_request_id(body)) == (expected[0], _without_request_id(expected[1]))
    status, body = failed[0]
    assert status == 500
    if shape == "openai":
        assert body["error"]["code"] == "internal_error" and body["error"]["type"] == "server_error"
    elif shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
    else:
        assert set(body) == {"error"} and isinstance(body["error"], str)

    # the server, its loop and its other routes go on; once the module imports, the route answers as its own
    assert (await client.get("/health")).status == 200
    del route_index._resolved[key]
    del broken[f"jan.server.routes.{module}"]
    status, _ = await _answer(client, "GET", path, headers=headers)
    assert status == 200


@pytest.mark.parametrize("exc", [ImportError("No module named 'pydantic_core._x'"), SystemExit(1)],
                         ids=["error", "exit"])
async def test_a_module_loaded_outside_its_routes_fails_that_request_only(client, broken, exc):
    # /v1/models as Anthropic's SDK asks it answers from the Anthropic routes' module (route_index.load)
    broken["jan.server.routes.anthropic"] = exc
    headers = {"anthropic-version": "2023-06-01"}
    status, body = await _answer(client, "GET", "/v1/models", headers=headers)
    assert status == 500 and body["type"] == "error" and body["error"]["type"] == "api_error"
    assert (await _answer(client, "GET", "/v1/models"))[0] == 200  # OpenAI's listing does not need it
    del broken["jan.server.routes.anthropic"]
    status, body = await _answer(client, "GET", "/v1/models", headers=headers)
    assert status == 200 and "has_more" in body


async def test_the_api_description_leaves_out_only_what_a_failing_module_says(client, broken, caplog):
    broken["jan.server.routes.threads"] = ZeroDivisionError("division by zero")
    with caplog.at_level(logging.WARNING, "jan.server"):
        status, spec = await _answer(client, "GET", "/openapi.json")
    assert status == 200
    assert spec["paths"]["/v1/threads"]["get"]["summary"] == "GET /v1/threads"  # listed, by its method and path
    assert spec["paths"]["/v1/assistants"]["get"]["summary"] != "GET /v1/assistants"  # its module's own docstring
    assert "jan.server.routes.threads" in caplog.text and "ZeroDivisionError" in caplog.text
    assert (await client.get("/docs")).status == 200


def test_a_module_load_error_names_the_module_and_why():
    with pytest.raises(route_index.ModuleLoadError, match=r"jan\.nope could not be loaded \(ModuleNotFoundError"):
        route_index.import_lazily("jan.nope")


# -- batches ---------------------------------------------------------------------------------------------------
def _chat(n: int) -> list[tuple[str, dict]]:
    """Items of an unknown model: each ends (errored, a 404) at once, no model needed."""
    return [(f"item-{i}", {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}],
                           "max_tokens": 2}) for i in range(n)]


def _anthropic(n: int) -> list[tuple[str, dict]]:
    return [(f"item-{i}", {"model": "no-such-model", "max_tokens": 2,
                           "messages": [{"role": "user", "content": "Hi"}]}) for i in range(n)]


@pytest.fixture
async def started(tmp_path):
    app = await _app(tmp_path)
    app.freeze()
    await asyncio.wait_for(app.startup(), BOUND)
    try:
        yield app
    finally:
        await asyncio.wait_for(app.shutdown(), BOUND)
        await asyncio.wait_for(app.cleanup(), BOUND)


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), SystemExit(2)], ids=["error", "exit"])
async def test_a_batch_whose_dialect_fails_to_import_fails_and_the_worker_goes_on(started, broken, exc):
    from jan.server.dialects import anthropic_batches, openai_batches

    service: BatchService = started[route_state.BATCHES]
    broken[OPENAI_BATCHES] = exc
    broken[ANTHROPIC_BATCHES] = exc
    openai_batch = await service.create("openai", "/v1/chat/completions", _chat(3))
    anthropic_batch = await service.create("anthropic", "/v1/messages", _anthropic(2))

    # OpenAI's: failed, why in its errors; each item not run errored, nothing processing
    batch = await _ended(service, openai_batch.id)
    assert batch.status == "failed" and batch.counts.processing == 0 and batch.counts.errored == 3
    wire = openai_batches.batch_object(batch)
    assert wire["status"] == "failed" and wire["failed_at"] is not None
    [error] = wire["errors"]["data"]
    assert OPENAI_BATCHES in error["message"] and type(exc).__name__ in error["message"]
    for result in await service.results(openai_batch.id):
        assert result.outcome == "errored" and result.status_code == 500
        assert result.body["error"]["type"] == "server_error" and OPENAI_BATCHES in result.body["error"]["message"]

    # Anthropic's (no failed status): ended, every request's result errored, in Anthropic's shape, saying why
    batch = await _ended(service, anthropic_batch.id)
    wire = anthropic_batches.batch_object(batch, "http://x")
    assert wire["processing_status"] == "ended" and wire["request_counts"]["errored"] == 2
    assert wire["request_counts"]["processing"] == 0 and wire["results_url"]
    for line in map(anthropic_batches.result_line, await service.results(anthropic_batch.id)):
        error = line["result"]["error"]
        assert line["result"]["type"] == "errored" and error["type"] == "error"
        assert error["error"]["type"] == "api_error" and ANTHROPIC_BATCHES in error["error"]["message"]

    # the worker goes on: once the modules import, the next batches run to their end as ever
    del broken[OPENAI_BATCHES], broken[ANTHROPIC_BATCHES]
    again = await _ended(service, (await service.create("openai", "/v1/chat/completions", _chat(2))).id)
    assert again.status == "completed" and again.counts.errored == 2 and again.extra.get("error_file_id")
    [result, _] = await service.results(again.id)
    assert result.status_code == 404 and result.body["error"]["code"] == "model_not_found"
    again = await _ended(service, (await service.create("anthropic", "/v1/messages", _anthropic(1))).id)
    assert again.status == "completed"
    [result] = await service.results(again.id)
    assert result.body["error"]["type"] == "not_found_error"
    assert not service._active and service._worker is not None and not service._worker.done()


async def test_a_batch_taken_up_at_start_with_its_dialect_failing_fails_and_jan_starts(tmp_path, broken):
    # a batch left in progress by the last stop: at this start its dialect's module fails to import
    stopped = BatchService(BatchStore(tmp_path / "data"))
    stopped.register("openai", "batch_", object())  # (never run: only its id prefix is needed to create it)
    left = await stopped.create("openai", "/v1/chat/completions", _chat(2))
    broken[OPENAI_BATCHES] = ZeroDivisionError("division by zero")
    app = await _app(tmp_path)
    app.freeze()
    await asyncio.wait_for(app.startup(), BOUND)
    try:
        service = app[route_state.BATCHES]
        batch = await _ended(service, left.id)
        assert batch.status == "failed" and batch.counts.errored == 2 and batch.counts.processing == 0
        assert all(doc["status"] in ENDED for doc in service.store.list())  # on disk too: nothing to take up again
    finally:
        await asyncio.wait_for(app.shutdown(), BOUND)
        await asyncio.wait_for(app.cleanup(), BOUND)


# -- the run service at start and at stop ----------------------------------------------------------------------
async def test_runs_that_cannot_be_loaded_fail_neither_the_start_nor_the_stop(tmp_path, broken, monkeypatch, caplog):
    from jan.services import run_records

    monkeypatch.setattr(run_records, "needs_attention", lambda folder: True)  # (runs the last stop cut off)
    broken["jan.services.runs"] = SystemExit(1)
    with caplog.at_level(logging.ERROR, "jan.server"):
        app = await _app(tmp_path)
    assert "not recovered" in caplog.text and "jan.services.runs" in caplog.text
    app.freeze()
    await asyncio.wait_for(app.startup(), BOUND)
    await asyncio.wait_for(app.shutdown(), BOUND)  # no run to interrupt: the stop goes on
    assert not app[SERVICES].has_runs
    assert app[route_state.BATCHES]._worker is None  # (the batches' stop, after the runs', ran)
    await asyncio.wait_for(app.cleanup(), BOUND)


# -- MCP's client -------------------------------------------------------------------------------------------
async def _mcp_manager(tmp_path):
    from jan.extensions.mcp import McpHostExtension
    from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

    data = tmp_path / "data"
    write_mcp_config(data, {"notes": stdio_entry(notes_folder(tmp_path))})
    manager = ExtensionManager(data, discover_entry_points=False)
    manager.register(McpHostExtension())
    await asyncio.wait_for(manager.start(), BOUND)
    return manager


async def test_an_mcp_client_that_fails_to_import_fails_each_use_said_and_the_next_use_tries_again(
        tmp_path, monkeypatch):
    import jan.extensions.mcp.server as mcp_server

    monkeypatch.delattr(mcp_server, "McpServer")  # `from .server import McpServer` fails
    manager = await _mcp_manager(tmp_path)
    try:
        assert [r.state for r in manager.list() if r.name == "mcp"] == ["loaded"]  # (it loads all the same)
        host = manager.get(McpHost)
        with pytest.raises(ImportError, match="MCP client could not be loaded"):
            await host.list_servers()
        # the API's answer: the 500 of an extension's failure, naming it and its error (the log has the cause)
        with pytest.raises(ExtensionCallError, match=r"'mcp' failed in McpHost.list_servers\(\) with McpClientError"):
            await get_guarded(manager, McpHost).list_servers()
        monkeypatch.undo()
        [status] = await host.list_servers()  # mcp.json did not change: it is read all the same
        assert status.name == "notes" and status.state == "stopped"
    finally:
        await asyncio.wait_for(manager.stop(), BOUND)


async def test_an_mcp_sdk_that_fails_to_import_fails_the_start_said_not_timed_out(tmp_path, monkeypatch):
    import mcp

    manager = await _mcp_manager(tmp_path)
    try:
        host = manager.get(McpHost)
        with monkeypatch.context() as patch:
            patch.delattr(mcp, "Client")  # `from mcp import Client` fails as the server starts
            status = await asyncio.wait_for(host.server("notes"), BOUND)
        assert status.state == "failed" and "MCP client could not be loaded" in status.error, status
        status = await asyncio.wait_for(host.server("notes"), BOUND)  # (after its backoff) it starts
        assert status.state == "running", status
    finally:
        await asyncio.wait_for(manager.stop(), BOUND)
