"""What a new user sees (issue 10, items 24 and 27): a model without a chat template says so."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from server_helpers import start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("first-use"), [stories_path])
    yield srv
    srv.stop()


async def test_a_model_without_a_chat_template_says_so_once(server, caplog):
    caplog.set_level(logging.WARNING, logger="jan.llamacpp")
    body = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    async with aiohttp.ClientSession() as s:
        for stream in (False, True, False):
            async with s.post(server.base_url + "/v1/chat/completions", json={**body, "stream": stream}) as resp:
                assert resp.status == 200
                await resp.read()
                header = resp.headers.get("X-Jan-Chat-Template", "")
                assert header.startswith("chatml;") and "no chat template" in header
        async with s.get(server.base_url + "/v1/models/stories260K") as resp:
            model = await resp.json()
        assert model["chat_template_in_use"] == {"name": "chatml", "fallback": "the model has no chat template"}
        # text completions use no template: no such header
        async with s.post(server.base_url + "/v1/completions",
                          json={"model": "stories260K", "prompt": "Once", "max_tokens": 2}) as resp:
            assert resp.status == 200 and "X-Jan-Chat-Template" not in resp.headers
    warnings = [r for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
