"""A failed Responses response's ``error.code`` is OpenAI's code for the kind of failure — the one mapping an
Assistants run's ``last_error.code`` uses (:func:`jan.services.errors.failure_kind`) — never read off the HTTP status
the failure would get: a model with no room for the response is ``rate_limit_exceeded`` (the client's to retry), not
``server_error`` as its 503 read; a prompt too long for the context is ``invalid_prompt``. Wherever a client reads it:
the response retrieved, the background response's replayed stream (``response.failed``), a streamed response's
``response.failed`` event.

A background response is queued work: with the model's queue full it waits for room (``tests/test_queued_work.py``)
rather than fail. What does fail it is a model the pool has no room to load (:class:`ModelPoolBusyError`, a full
queue's kind: every loaded model kept busy), raised where a response asks for its model — the engine's ``acquire``,
patched here to raise it."""

from __future__ import annotations

import json
import urllib.request

import pytest
from api_helpers import parse_sse, running, until
from cut_off_helpers import request

from jan.engine.registry import ModelPoolBusyError
from jan.errors import ContextOverflowError, QueueFullError
from jan.extensions.llamacpp.extension import LlamaCppExtension
from jan.server.routes.responses import _failed
from jan.services.errors import FAILURE_KINDS, failure_kind
from jan.services.run_steps import LAST_ERROR_CODES

WAIT_S = 120  # generous: a busy 2-core machine
LONG_INPUT = "the cat sat on the mat and " * 500  # far over the test server's 512-token context


# -- the mapping -----------------------------------------------------------------------------------------------------
def test_a_response_and_a_run_name_a_failure_alike():
    assert LAST_ERROR_CODES == FAILURE_KINDS
    for exc, kind in ((QueueFullError("every slot is busy"), "rate_limit_exceeded"),
                      (ModelPoolBusyError("no room to load"), "rate_limit_exceeded"),
                      (ContextOverflowError("the prompt has 900 tokens, more than the context's 512", 900, 512),
                       "invalid_prompt"),
                      (RuntimeError("a bug"), "server_error")):
        assert _failed(exc)["code"] == failure_kind(exc) == kind, exc
    # the message is the one the HTTP error has
    assert _failed(QueueFullError("every slot is busy"))["message"] == "every slot is busy"


# -- through a server ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("response-errors") / "data", stories_path) as server:
        yield server


@pytest.fixture
def no_room(monkeypatch):
    """Every generation is refused where it asks for its model: no room in the pool to load it."""
    async def acquire(self, model):
        raise ModelPoolBusyError("every loaded model kept running requests; no room to load this one")

    monkeypatch.setattr(LlamaCppExtension, "acquire", acquire)


def _post(srv, body: dict) -> bytes:
    req = urllib.request.Request(srv.base_url + "/v1/responses", method="POST",
                                 headers={"Content-Type": "application/json"},
                                 data=json.dumps({"model": "stories260K", "max_output_tokens": 4, **body}).encode())
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        return resp.read()


def _failed_with(response: dict, kind: str) -> None:
    assert response["status"] == "failed", response
    assert response["error"]["code"] == kind and response["error"]["message"], response["error"]


def _everywhere(srv, body: dict, kind: str) -> None:
    """A background response (streamed, so its stream is kept) fails ``kind``: in its own stream's
    ``response.failed``, when retrieved, and in its stream replayed."""
    events = [data for _, data in parse_sse(_post(srv, {**body, "background": True, "stream": True}).decode())]
    assert events[-1]["type"] == "response.failed", [e["type"] for e in events]
    response = events[-1]["response"]
    _failed_with(response, kind)
    status, _, got = request(srv, "GET", f"/v1/responses/{response['id']}")
    assert status == 200
    _failed_with(got, kind)
    with urllib.request.urlopen(f"{srv.base_url}/v1/responses/{response['id']}?stream=true", timeout=WAIT_S) as resp:
        replayed = [data for _, data in parse_sse(resp.read().decode())]
    assert replayed[-1]["type"] == "response.failed"
    _failed_with(replayed[-1]["response"], kind)


def test_a_background_response_with_no_room_for_its_model_fails_rate_limit_exceeded(srv, no_room):
    _everywhere(srv, {"input": "Once upon a time"}, "rate_limit_exceeded")
    # not streamed: the same, read back
    created = json.loads(_post(srv, {"input": "Once upon a time", "background": True}))

    def ended() -> dict | None:
        got = request(srv, "GET", f"/v1/responses/{created['id']}")[2]
        return None if got["status"] in ("queued", "in_progress") else got

    _failed_with(until(ended, "the response ended", WAIT_S), "rate_limit_exceeded")


def test_a_background_response_over_the_context_fails_invalid_prompt(srv):
    _everywhere(srv, {"input": LONG_INPUT}, "invalid_prompt")
