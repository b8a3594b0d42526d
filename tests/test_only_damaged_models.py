"""A data folder whose only model has a damaged model.json is not "no models yet".

The model is there, its model.json left in place for the user to mend (README: a damaged model.json is reported and
left where it is), but `jan serve`'s start line and `jan chat` without a model said "no models yet: add one with
`jan models pull URL` ...", sending a user to add again the model they have. Both now name the damaged model and
the file to repair or remove, locally and from a server.
"""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from jan.cli import serve as serve_cli
from jan.server.app import create_app
from jan.server.config import ServerConfig
from test_cli_helpers import cli_env, fails, jan, ok

BOUND = 60  # (bounds a hang, measures nothing)
FIX = "repair or remove models/stories260K/model.json"


def _damaged_folder(data, stories_path) -> None:
    ok(jan("models", "import", stories_path, env=cli_env(data)))
    (data / "models" / "stories260K" / "model.json").write_text("{not json")


def test_jan_chat_without_a_model_names_the_damaged_one(data, stories_path):
    from api_helpers import running

    _damaged_folder(data, stories_path)
    message = fails(jan("chat", env=cli_env(data), input="Hi\n"), "stories260K", FIX)
    assert "no models yet" not in message, message
    with running(data) as srv:
        message = fails(jan("chat", env=cli_env(data, local=False, JAN_API_URL=srv.base_url), input="Hi\n"),
                        "stories260K", FIX)
        assert "no models yet" not in message, message
    assert (data / "models" / "stories260K" / "model.json").read_text() == "{not json"  # left as it was


async def test_the_serve_start_line_names_the_damaged_model(data, stories_path):
    _damaged_folder(data, stories_path)
    app = await asyncio.wait_for(create_app(ServerConfig(data_folder=data, n_threads=1)), BOUND)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        line = await asyncio.wait_for(serve_cli._models_line(app), BOUND)
    finally:
        await client.close()
    assert "no models yet" not in line and "stories260K" in line and FIX in line, line
