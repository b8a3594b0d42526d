"""The action routes that take no body (a model's ``start`` and ``stop``, every ``cancel``, an extension's or MCP
server's ``enable``/``disable``) refuse a field sent to them: a 400 naming it (``param``, ``unknown_parameter``) in
the route's dialect, nothing done. Before, each dropped the body unsaid, so ``POST /v1/models/{id}/start`` with
``{"settings": {"ctx_len": 8192}}`` (Cortex's start took its settings so) loaded the model at its stored context and
answered 200. No body, ``{}`` and ``null`` are still taken."""

from __future__ import annotations

import json

import aiohttp
from api_helpers import Client, running

from jan.server.keys import MANAGER

FIELD = {"settings": {"ctx_len": 8192}}
HELLO = [{"role": "user", "content": "Once upon a time"}]


async def _actions(api: Client, srv) -> list[tuple[str, str]]:
    """(path, its dialect) of every action route, each on a thing that is there (its lookup's 404 comes first):
    Anthropic's batches answer in Anthropic's shape."""
    response = await api.ok("POST", "/v1/responses", {"model": "stories260K", "input": "Once", "max_output_tokens": 2})
    message_batch = await api.ok("POST", "/v1/messages/batches", {"requests": [
        {"custom_id": "a", "params": {"model": "stories260K", "max_tokens": 2, "messages": HELLO}}]})
    lines = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                        "body": {"model": "stories260K", "max_tokens": 2, "messages": HELLO}})
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", lines.encode(), filename="in.jsonl")
    async with api.session.post(srv.base_url + "/v1/files", data=form) as resp:
        assert resp.status == 200, await resp.text()
        upload = await resp.json()
    batch = await api.ok("POST", "/v1/batches", {"input_file_id": upload["id"], "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"})
    run = await api.ok("POST", "/v1/threads/runs", {"assistant_id": "jan", "model": "stories260K",
                                                    "max_completion_tokens": 2, "thread": {"messages": HELLO}})
    return [("/v1/models/stories260K/stop", "openai"),
            (f"/v1/batches/{batch['id']}/cancel", "openai"),
            (f"/v1/messages/batches/{message_batch['id']}/cancel", "anthropic"),
            (f"/v1/responses/{response['id']}/cancel", "openai"),
            (f"/v1/threads/{run['thread_id']}/runs/{run['id']}/cancel", "openai"),
            ("/v1/extensions/llamacpp/enable", "openai"),
            ("/v1/extensions/llamacpp/disable", "openai"),
            ("/v1/mcp/servers/none/enable", "openai"),
            ("/v1/mcp/servers/none/disable", "openai")]


def _loaded(srv) -> list[str]:
    return srv.call(srv.app[MANAGER].get_inference("llama.cpp").loaded_models())


async def test_start_names_a_setting_sent_to_it_and_loads_nothing(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path) as srv:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/v1/models/stories260K/stop")
            status, err = await api.post("/v1/models/stories260K/start", FIELD)
            assert status == 400, err
            assert err["error"]["param"] == "settings" and err["error"]["code"] == "unknown_parameter", err
            assert "PATCH /v1/models/stories260K" in err["error"]["message"], err
            assert _loaded(srv) == []
            for body in ({}, None):  # what the SDKs send (a JSON {}, or no body at all): taken
                status, _ = await api.call("POST", "/v1/models/stories260K/start", body)
                assert status == 200
                await api.ok("POST", "/v1/models/stories260K/stop")
            async with aiohttp.ClientSession() as session:
                async with session.post(srv.base_url + "/v1/models/stories260K/start", data=b"null",
                                        headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 200, await resp.text()
            assert _loaded(srv) == ["stories260K"]


async def test_every_action_route_refuses_fields_in_its_dialect(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path) as srv:
        async with Client(srv.base_url) as api:
            for path, dialect in await _actions(api, srv):
                status, err = await api.post(path, FIELD)
                assert status == 400, (path, err)
                if dialect == "anthropic":
                    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error", (path, err)
                    assert err["error"]["message"].startswith("settings: "), (path, err)
                else:
                    assert err["error"]["param"] == "settings", (path, err)
                    assert err["error"]["code"] == "unknown_parameter", (path, err)
                status, err = await api.post(path, [1])
                assert status == 400 and "takes no body (got an array)" in str(err), (path, err)
            assert _loaded(srv) == ["stories260K"]  # the stop with a field stopped nothing
            status, ext = await api.get("/v1/extensions/llamacpp")
            assert status == 200 and ext["enabled"], ext  # the disable with a field disabled nothing
