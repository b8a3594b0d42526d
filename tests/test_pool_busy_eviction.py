"""A model with running requests is never unloaded to make room for another (nor to be loaded again with
other options): the load waits until it is idle, and fails with a 503 error (Retry-After) past its bound.

The fault this covers: with ``--max-loaded-models 1``, a request for model B unloaded model A while A was
generating, and A's request came back as HTTP 200 with ``finish_reason: "cancelled"`` and truncated text.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest

import jan
from jan.engine.registry import ModelPoolBusyError
from jan.server.errors import to_api_error

from server_helpers import start_server

PROMPT = "Once upon a time"
# long enough to still be generating when the other model is asked for (about seconds on one thread),
# short enough that the test waits for its end
LONG = 300
GENEROUS_S = 300  # bounds for joins and HTTP reads: a busy 2-core machine, never a pacing


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    """Run ``fn`` on a thread; the returned dict gets its ``result`` or its ``error``."""
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _joined(thread: threading.Thread, out: dict):
    thread.join(GENEROUS_S)
    assert not thread.is_alive(), "the load never returned"
    if "error" in out:
        raise out["error"]
    return out["result"]


def _read_to_end(request, first) -> tuple[str, jan.Chunk]:
    text = [first.text]
    final = first if first.finish_reason else None
    for chunk in request:
        text.append(chunk.text)
        if chunk.finish_reason:
            final = chunk
    assert final is not None
    return "".join(text), final


def test_a_load_waits_for_the_busy_model_and_never_cuts_it_off(stories_path, tiny_random_path):
    with jan.ModelPool(max_loaded=1, n_ctx=1024, n_threads=1) as pool:
        a = pool.load("a", stories_path)
        reference = a.generate(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True).text

        running = a.stream(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True)
        first = next(iter(running))  # A is generating now

        def other_model():
            b = pool.load("b", tiny_random_path)
            return b.generate(PROMPT, max_tokens=8, temperature=0, ignore_eos=True)

        thread, out = _in_thread(other_model)
        text, final = _read_to_end(running, first)
        answered = _joined(thread, out)

        # A ran to its end: not cut off by B's load
        assert final.finish_reason == "length" and final.usage.completion_tokens == LONG
        assert text == reference
        # B was served, in A's place: A was unloaded only once idle
        assert answered.finish_reason == "length" and answered.usage.completion_tokens == 8
        assert pool.loaded() == ["b"]
        with pytest.raises(jan.EngineError):
            a.generate(PROMPT, max_tokens=1)


def test_a_load_that_finds_every_model_busy_past_its_bound_fails_with_a_503(stories_path, tiny_random_path):
    # room_timeout is the bound under test: A runs to its context's end (thousands of tokens), far past it
    with jan.ModelPool(max_loaded=1, room_timeout=0.2, n_ctx=4096, n_threads=1) as pool:
        a = pool.load("a", stories_path)
        running = a.stream(PROMPT, max_tokens=100_000, temperature=0, ignore_eos=True)
        chunks = iter(running)
        next(chunks)

        with pytest.raises(ModelPoolBusyError) as caught:
            pool.load("b", tiny_random_path)

        # A is untouched and still generating
        assert pool.loaded() == ["a"] and pool.get("a") is a
        assert next(chunks).finish_reason is None
        running.cancel()

        # the server answers it as a full queue: 503 with Retry-After
        err = to_api_error(caught.value)
        assert err.status == 503 and "Retry-After" in err.headers and "b" in err.message


def test_another_loads_meanwhile_served_and_an_idle_model_goes_first(stories_path, tiny_random_path):
    """While A is busy, B may take the place of an idle C (least recently used idle first), and A stays."""
    # A runs to its context's end (thousands of tokens) unless cancelled: busy while B loads however fast the
    # machine (LONG tokens ended in ~40 ms on a fast core, and an idle A, least recently used, would go first)
    with jan.ModelPool(max_loaded=2, n_ctx=4096, n_threads=1) as pool:
        a = pool.load("a", stories_path)
        pool.load("c", tiny_random_path)
        pool.get("c")  # A is now the least recently used, but busy
        running = a.stream(PROMPT, max_tokens=100_000, temperature=0, ignore_eos=True)
        chunks = iter(running)
        next(chunks)
        pool.load("b", tiny_random_path)
        assert pool.loaded() == ["a", "b"]
        assert next(chunks).finish_reason is None  # A is untouched and still generating
        running.cancel()


def test_loading_again_with_other_options_waits_for_the_running_requests(stories_path):
    with jan.ModelPool(n_ctx=1024, n_threads=1) as pool:
        old = pool.load("a", stories_path)
        running = old.stream(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True)
        first = next(iter(running))

        thread, out = _in_thread(lambda: pool.load("a", stories_path, n_ctx=512))
        _, final = _read_to_end(running, first)
        new = _joined(thread, out)

        assert final.finish_reason == "length" and final.usage.completion_tokens == LONG
        assert new is not old and new.n_ctx == 512 and pool.get("a") is new


def test_a_model_handed_out_for_a_request_is_held_until_that_request_is_in_and_done(stories_path,
                                                                                      tiny_random_path):
    """Between the hand-out (``claim=True``: a server lending the model to a request) and the submit, the
    model is not busy yet; a load of another model must not unload it then, or the request fails."""
    with jan.ModelPool(max_loaded=1, room_timeout=0.2, n_ctx=1024, n_threads=1) as pool:
        a = pool.load("a", stories_path, claim=True)
        with pytest.raises(ModelPoolBusyError):
            pool.load("b", tiny_random_path)
        assert pool.get("a") is a
        # the claimed request comes and ends: A may go now
        assert a.generate(PROMPT, max_tokens=4, temperature=0).usage.completion_tokens == 4
        pool.load("b", tiny_random_path)
        assert pool.loaded() == ["b"]

        assert pool.get("b", claim=True)  # the same for a model already loaded
        with pytest.raises(ModelPoolBusyError):
            pool.load("a", stories_path)
        # keep-alive expiry waits for it too
        pool.set_keep_alive("b", 0)
        assert pool.reap_idle() == [] and pool.loaded() == ["b"]


def _completion(base_url: str, model: str, max_tokens: int = 8) -> dict:
    resp = httpx.post(f"{base_url}/v1/completions", timeout=GENEROUS_S,
                      json={"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0,
                            "ignore_eos": True})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_server_with_one_model_loaded_finishes_a_request_before_loading_the_other(tmp_path, stories_path,
                                                                                   tiny_random_path):
    server = start_server(tmp_path, [stories_path, tiny_random_path], max_loaded_models=1, n_ctx=1024)
    try:
        base = server.base_url
        reference = _completion(base, "stories260K", LONG)["choices"][0]["text"]

        body = {"model": "stories260K", "prompt": PROMPT, "max_tokens": LONG, "temperature": 0,
                "ignore_eos": True, "stream": True}
        text, finish, other = [], None, None
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=GENEROUS_S) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if not line.startswith("data: {"):
                    continue
                choice = json.loads(line[len("data: "):])["choices"][0]
                text.append(choice["text"])
                finish = choice.get("finish_reason") or finish
                if other is None:  # A has produced its first tokens: now ask for B
                    other = _in_thread(lambda: _completion(base, "llama-2-tiny-random", 8))
        answered = _joined(*other)

        # A was not cut off (before the fix: 200 with finish_reason "cancelled" and a truncated text)
        assert finish == "length" and "".join(text) == reference
        assert answered["choices"][0]["finish_reason"] == "length"
        # B was answered in A's place: A was unloaded for it, which happens only once A is idle
        loaded = httpx.get(f"{base}/v1/models", timeout=GENEROUS_S).json()["data"]
        state = {m["id"]: m["state"] for m in loaded}
        assert state["stories260K"] == "unloaded" and state["llama-2-tiny-random"] == "ready"
    finally:
        server.stop()
