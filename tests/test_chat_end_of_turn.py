"""A model without a chat template chats through ChatML, and may spell its end of turn (``<|im_end|>``) as text
rather than as a token it was trained to end on: that text ends the reply like the model's own end-of-generation
token. ``ignore_eos`` generates past both, as llama-server's does past every end-of-generation token (benchmarks
and load tests ask for exactly ``max_tokens``); a client's own stop strings still end the reply.

stories260K has no template and no ``<|im_end|>`` token; a JSON schema makes it write the marker as text."""

from __future__ import annotations

import pytest
from extension_helpers import call
from server_helpers import start_server

SPELLED = "x<|im_end|>y"
# the marker, then more than max_tokens can write: the reply is cut by its length, never by the grammar's end
BODY = {"model": "stories260K", "temperature": 0, "max_tokens": 20,
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "w", "schema": {"type": "string", "pattern": r"^x<\|im_end\|>y{40}$"}}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("eot"), [stories_path])
    yield srv
    srv.stop()


def _reply(server, **extra) -> tuple[str, str]:
    status, out = call(server, "POST", "/v1/chat/completions", {**BODY, **extra})
    assert status == 200, out
    choice = out["choices"][0]
    return choice["message"]["content"], choice["finish_reason"]


def test_the_spelled_end_of_turn_ends_the_reply(server):
    assert _reply(server) == ('"x', "stop")


def test_ignore_eos_generates_past_it(server):
    content, finish = _reply(server, ignore_eos=True)
    assert content.startswith(f'"{SPELLED}y') and finish == "length"


def test_a_clients_stop_still_ends_it_with_ignore_eos(server):
    assert _reply(server, ignore_eos=True, stop=["im_"]) == ('"x<|', "stop")
