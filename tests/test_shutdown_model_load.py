"""A model load still running when the server stops: its client is answered at once, the stop waits for the load's
thread, and the next server on the data folder loads the model as ever.

The load's client got nothing through the stop's grace period, then a dropped connection (its handler cancelled);
and the stop went on without the load's thread, which went on reading the weights after the server had stopped.
Now the client gets the 503 ``server_shutdown`` in its dialect's shape as the stop begins, the load ends on its
thread (the pool, closed, closes the model it made) and the stop ends once it has.
The load is held deterministically: the model's construction waits on a gate that opens once the client has its
answer and the stopping engine has closed its pool.
"""

from __future__ import annotations

import json
import threading

import pytest
from api_helpers import config
from extension_helpers import call
from server_helpers import post_read_whole

from jan.engine import registry
from jan.testing.server import ServerThread

WAIT_S = 60  # (bounds against a hang, never measures)
MODEL = "stories260K"

LOADS = {  # each route that loads a model, and its body
    f"/v1/models/{MODEL}/start": {},
    "/models/load": {"model": MODEL},  # llama-server's router mode
    f"/lora-adapters?model={MODEL}": b"[]",  # llama-server's: the model loaded first
    "/api/generate": {"model": MODEL},  # Ollama: no prompt, a load
    "/api/chat": {"model": MODEL, "messages": []},
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
}


@pytest.mark.parametrize("path", list(LOADS))
def test_a_model_load_in_progress_when_the_server_stops(tmp_path, stories_path, monkeypatch, path):
    data = tmp_path / "data"
    loading, gate, made = threading.Event(), threading.Event(), threading.Event()

    class HeldModel(registry.Model):
        def __init__(self, *args, **kwargs):
            loading.set()
            try:
                assert gate.wait(WAIT_S)
                super().__init__(*args, **kwargs)
            finally:
                made.set()

    srv = ServerThread(config(data, stories_path)).__enter__()
    stopper = threading.Thread(target=srv.stop)
    try:
        status, body = call(srv, "POST", f"/v1/models/{MODEL}/stop", {})  # (loaded at start: unloaded for the test)
        assert status == 200, body
        monkeypatch.setattr(registry, "Model", HeldModel)
        close = registry.ModelPool.close

        def closed_then_go(pool) -> None:  # the held load goes on once the stopping engine has closed its pool
            close(pool)
            gate.set()

        monkeypatch.setattr(registry.ModelPool, "close", closed_then_go)
        answer, reader = post_read_whole(srv.base_url, path, LOADS[path], WAIT_S)
        assert loading.wait(WAIT_S)
        stopper.start()
        reader.join(WAIT_S)  # answered while the load is still held
        assert not reader.is_alive()
    finally:
        gate.set()
        if stopper.is_alive() or stopper.ident is not None:
            stopper.join(WAIT_S)
        else:
            srv.stop()
    assert answer, "the client got no answer"
    head, body = bytes(answer).split(b"\r\n\r\n", 1)
    assert int(head.split(b" ")[1]) == 503, answer
    error = json.loads(body)["error"]
    if path.startswith("/api/"):  # Ollama's shape
        assert "shutting down" in error, error
    elif path.startswith(("/models/load", "/lora-adapters")):  # llama-server's
        assert error["code"] == 503 and "shutting down" in error["message"], error
    else:
        assert error["code"] == "server_shutdown", error
    assert made.is_set(), "the stop ended before the model's load did"
    monkeypatch.undo()
    with ServerThread(config(data, stories_path)) as again:  # and the next server loads it as ever
        status, body = call(again, "POST", f"/v1/models/{MODEL}/stop", {})
        assert status == 200, body
        status, body = call(again, "POST", f"/v1/models/{MODEL}/start", {})
        assert status == 200 and body["state"] == "ready", body
