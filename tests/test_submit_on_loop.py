"""Short completion prompts are tokenized and submitted on the event loop; long ones, and grammars, on a worker.

The hop to a worker thread and back cost a short request 0.3-1 ms of its time to first token on a 2-core machine
(jan/services/local.py, SUBMIT_ON_LOOP_CHARS). These tests check where the work runs and that both ways answer,
and fail, alike.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

import jan.services.completions as completions
from jan.services.local import SUBMIT_ON_LOOP_CHARS, submits_on_loop

from server_helpers import start_server


@pytest.mark.parametrize("prompts,n,grammar,bias,expected", [
    (["a" * SUBMIT_ON_LOOP_CHARS], 1, None, None, True),
    (["a" * (SUBMIT_ON_LOOP_CHARS + 1)], 1, None, None, False),
    (["a" * 200, "b" * 200], 1, None, None, True),
    (["a" * 200, "b" * 200], 2, None, None, False),  # every choice submits its own copy
    ([list(range(300))], 1, None, None, True),  # token ids count one each
    (["hi"], 1, 'root ::= "a"', None, False),  # a grammar is checked and parsed: off the loop
    (["hi"], 1, None, {str(i): 1.0 for i in range(600)}, False),  # each entry goes into the sampler chain
    (["hi"], 1, None, {"5": 1.0}, True),
])
def test_what_is_light_enough_for_the_loop(prompts, n, grammar, bias, expected):
    assert submits_on_loop(prompts, n, grammar, bias) is expected


@pytest.fixture
def server(tmp_path, stories_path):
    s = start_server(tmp_path, [stories_path])
    yield s
    s.stop()


def _post(server, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(server.base_url + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_short_prompts_submit_on_the_loop_and_long_ones_on_a_worker(server, monkeypatch):
    hops: list[str] = []  # the thread each off-loop submit ran on
    real = completions.off_loop

    async def recording(fn, *args, **kw):
        def run():
            hops.append(threading.current_thread().name)
            return fn(*args, **kw)
        return await real(run)

    monkeypatch.setattr(completions, "off_loop", recording)
    base = {"model": "stories260K", "max_tokens": 8, "temperature": 0}
    status, short = _post(server, {**base, "prompt": "Once upon a time"})
    assert status == 200 and short["choices"][0]["text"] and hops == []
    long_prompt = "Once upon a time " * 40  # 680 characters
    status, long = _post(server, {**base, "prompt": long_prompt})
    assert status == 200 and long["choices"][0]["text"] and len(hops) == 1
    status, _ = _post(server, {**base, "prompt": "Once", "grammar": 'root ::= "a"'})
    assert status == 200 and len(hops) == 2
    # the same request gives the same text either way
    monkeypatch.setattr(completions, "submits_on_loop", lambda *a: False)
    assert _post(server, {**base, "prompt": "Once upon a time"})[1]["choices"][0]["text"] == short["choices"][0]["text"]
    assert len(hops) == 3


def test_a_bad_prompt_submitted_on_the_loop_is_the_same_400(server):
    """Errors raised while submitting (here a token id out of the vocabulary) reach the client as they did from a
    worker thread."""
    status, body = _post(server, {"model": "stories260K", "prompt": [1, 2, 999999], "max_tokens": 4})
    assert status == 400, body
    assert "999999" in body["error"]["message"]
    # and the server goes on answering
    assert _post(server, {"model": "stories260K", "prompt": "Once", "max_tokens": 2})[0] == 200
