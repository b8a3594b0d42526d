"""A model.json's ``parameters`` are the defaults of every route that generates with it (the README: "request
defaults ... that a request's own values override"), below what a request sends and above each dialect's own
default. `/v1/completions` gave its OpenAI default (``max_tokens`` 16) as if the client had sent it, so a model's
``parameters.max_tokens`` was ignored there alone."""

from __future__ import annotations

import pytest
from api_helpers import Client, running

#: (path, body without a token limit, the body's token limit field, how to read the tokens generated)
ROUTES = [
    ("/v1/completions", {"prompt": "Once"}, "max_tokens", lambda r: r["usage"]["completion_tokens"]),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Once"}]}, "max_tokens",
     lambda r: r["usage"]["completion_tokens"]),
    ("/v1/responses", {"input": "Once"}, "max_output_tokens", lambda r: r["usage"]["output_tokens"]),
    ("/api/generate", {"prompt": "Once", "stream": False}, None, lambda r: r["eval_count"]),
    ("/api/chat", {"messages": [{"role": "user", "content": "Once"}], "stream": False}, None,
     lambda r: r["eval_count"]),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("parameters") / "data", stories_path) as srv:
        yield srv


async def _generated(api: Client, path: str, body: dict, read) -> int:
    status, reply = await api.post(path, {"model": "stories260K", **body})
    assert status == 200, (path, reply)
    return read(reply)


@pytest.mark.parametrize("path, body, limit, read", ROUTES, ids=[r[0] for r in ROUTES])
async def test_the_models_parameters_are_the_default_and_the_request_wins(server, path, body, limit, read):
    async with Client(server.base_url) as api:
        await api.ok("PATCH", "/v1/models/stories260K", {"parameters": {"max_tokens": 5, "ignore_eos": True}})
        try:
            assert await _generated(api, path, body, read) == 5
            own = {limit: 7} if limit else {"options": {"num_predict": 7}}
            assert await _generated(api, path, {**body, **own}, read) == 7
        finally:
            await api.ok("PATCH", "/v1/models/stories260K", {"parameters": {"max_tokens": None, "ignore_eos": None}})


async def test_without_either_completions_keep_openais_default_of_16(server):
    async with Client(server.base_url) as api:
        model = await api.ok("GET", "/v1/models/stories260K")
        assert "max_tokens" not in (model.get("parameters") or {}), model
        status, reply = await api.post("/v1/completions", {"model": "stories260K", "prompt": "Once", "ignore_eos": True})
        assert status == 200 and reply["usage"]["completion_tokens"] == 16, reply
        # max_tokens 0 still asks for the prompt alone (scored with echo and logprobs), not for the default
        status, reply = await api.post("/v1/completions", {"model": "stories260K", "prompt": "Once", "max_tokens": 0,
                                                            "echo": True, "logprobs": 1})
        assert status == 200 and reply["usage"]["completion_tokens"] == 0 and reply["choices"][0]["text"] == "Once"
