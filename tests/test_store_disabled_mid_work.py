"""The conversational extension (threads, messages, stored responses) disabled while work that uses it is under way.

A request or a run that took the extension before it was unloaded found it gone at its next call: the extension
raised a bare ``ExtensionError``, which every front end answered as a 500 ``internal_error`` with a traceback in the
log; a run's leg logged "its leg failed" and "internal error" with two tracebacks, and a response that could not be
saved any more logged its traceback. The service is simply gone, as for a request that comes after the disable: a
503 ``extension_unavailable``, and one log line where work in the background could not finish.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from jan.core import ExtensionNotFoundError
from jan.core.interfaces import ConversationalExtension
from jan.server.config import ServerConfig
from jan.server.errors import to_api_error
from jan.testing.server import ServerThread

pytestmark = pytest.mark.timeout(300)

GONE = "the conversational extension is not loaded (it was disabled or is stopping)"


@pytest.fixture
def server(tmp_path, stories_path):
    srv = ServerThread(ServerConfig(data_folder=tmp_path / "data", models=[str(stories_path)], n_ctx=512,
                                    n_parallel=2, n_threads=1)).__enter__()
    yield srv
    srv.stop()


def _post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=120)


def _tracebacks(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None and r.name.startswith("jan")]


def test_the_extension_held_across_its_unload_says_it_is_gone_a_503(server):
    from jan.server.keys import SERVICES

    extension = server.app[SERVICES].manager.get(ConversationalExtension)  # as a request holds it over an await
    assert _post(server, "/v1/extensions/conversational/disable", {}).status_code == 200
    with pytest.raises(ExtensionNotFoundError) as caught:
        server.call(extension.list_threads())
    error = to_api_error(caught.value)
    assert (error.status, error.code) == (503, "extension_unavailable"), error


def test_a_run_whose_store_goes_before_its_turn_ends_with_one_line_and_its_stream_told(server, monkeypatch, caplog):
    from jan.services import runs

    async def gone(self, **kw):
        raise ExtensionNotFoundError(GONE)

    monkeypatch.setattr(runs._Execution, "_chat_request", gone)
    caplog.set_level(logging.INFO)
    response = _post(server, "/v1/threads/runs", {"assistant_id": "jan", "model": "stories260K", "stream": True,
                                                   "thread": {"messages": [{"role": "user", "content": "Once"}]}})
    assert response.status_code == 200, response.text
    events = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    ended = [json.loads(e) for e in events[:-1] if '"thread.run"' in e][-1]
    assert ended["status"] in ("failed", "incomplete"), ended
    assert "internal_error" not in response.text, response.text
    assert not _tracebacks(caplog), [r.getMessage() for r in _tracebacks(caplog)]
    told = [r for r in caplog.records if ended["id"] in r.getMessage() and GONE in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]


def test_a_response_whose_store_goes_before_it_is_saved_is_answered_with_one_line(server, monkeypatch, caplog):
    from jan.server.dialects.responses_store import ResponsesStore

    async def gone(self, *args, **kw):
        raise ExtensionNotFoundError(GONE)

    monkeypatch.setattr(ResponsesStore, "complete", gone)
    caplog.set_level(logging.INFO)
    response = _post(server, "/v1/responses", {"model": "stories260K", "input": "Once", "max_output_tokens": 8})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] in ("completed", "incomplete"), answer
    assert not _tracebacks(caplog), [r.getMessage() for r in _tracebacks(caplog)]
    told = [r for r in caplog.records if answer["id"] in r.getMessage() and "could not save" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.WARNING and GONE in told[0].getMessage()
