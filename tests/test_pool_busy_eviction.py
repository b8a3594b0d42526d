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
from jan.server.keys import MANAGER
from jan.server.errors import to_api_error

from cut_off_helpers import LONG, LONG_N_CTX
from server_helpers import start_server

PROMPT = "Once upon a time"
#: A reference's length: what a held generation's text begins with.
SHORT = 300
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


def _entries(pool: jan.ModelPool) -> list[int]:
    """The pool's loaded models as they are now (an entry is made anew by each load)."""
    with pool._changed:
        return [id(e) for e in pool._models.values()]


def _held_while_the_load_waits(pool: jan.ModelPool, model_id: str, before: list[int],
                               chunks=None) -> jan.Chunk | None:
    """A load asked for when the pool was ``before`` (:func:`_entries`) waits for the busy ``model_id`` (marked to go
    once idle), which goes on generating meanwhile (``chunks``: its stream): asserted at that moment, however fast
    the machine (its generation runs until the test cancels it). A load that went ahead instead (the pool changed)
    is a failure at once."""
    with pool._changed:  # (notified when a model is marked to go, leaves or joins)
        assert pool._changed.wait_for(lambda: _unloading(pool, model_id) or _entries(pool) != before, GENEROUS_S)
    assert _unloading(pool, model_id), "the load went ahead while the model was busy"
    if chunks is None:
        return None
    chunk = next(chunks)
    assert chunk.finish_reason is None  # still generating: not cut off
    return chunk  # (the stream's: its text is part of it)


def _unloading(pool: jan.ModelPool, model_id: str) -> bool:
    return pool.status().get(model_id, {}).get("unloading", False)


def _read_to_end(request, *taken: jan.Chunk) -> tuple[str, jan.Chunk]:
    """The text of ``request`` (``taken``: its chunks read before) and its final chunk."""
    text = [chunk.text for chunk in taken]
    final = taken[-1] if taken and taken[-1].finish_reason else None
    for chunk in request:
        text.append(chunk.text)
        if chunk.finish_reason:
            final = chunk
    assert final is not None
    return "".join(text), final


def test_a_load_waits_for_the_busy_model_and_never_cuts_it_off(stories_path, tiny_random_path):
    # A generates until the test cancels it (LONG tokens in a context that fits them), and is seen generating while
    # B's load waits: its 300 tokens ended on a fast core within ~40 ms, and an A done before B was asked for
    # (made 35 tokens here) passed with busy models unloaded for a load (the rule taken out)
    with jan.ModelPool(max_loaded=1, n_ctx=LONG_N_CTX, n_threads=1) as pool:
        a = pool.load("a", stories_path)
        reference = a.generate(PROMPT, max_tokens=SHORT, temperature=0, ignore_eos=True).text

        running = a.stream(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True)
        chunks = iter(running)
        first = next(chunks)  # A is generating now

        def other_model():
            b = pool.load("b", tiny_random_path)
            return b.generate(PROMPT, max_tokens=8, temperature=0, ignore_eos=True)

        before = _entries(pool)
        thread, out = _in_thread(other_model)
        held = _held_while_the_load_waits(pool, "a", before, chunks)
        assert pool.loaded() == ["a"]
        running.cancel()  # A's end, by its own client: B's load goes ahead
        text, final = _read_to_end(running, first, held)
        answered = _joined(thread, out)

        # A ran until its client stopped it: not cut off by B's load
        assert final.finish_reason == "cancelled" and final.usage.completion_tokens >= 2
        assert text.startswith(reference) if len(text) >= len(reference) else reference.startswith(text), text
        # B was served, in A's place: A was unloaded only once idle
        assert answered.finish_reason == "length" and answered.usage.completion_tokens == 8
        assert pool.loaded() == ["b"]
        with pytest.raises(jan.EngineError):
            a.generate(PROMPT, max_tokens=1)


def test_a_load_that_finds_every_model_busy_past_its_bound_fails_with_a_503(stories_path, tiny_random_path):
    # room_timeout is the bound under test: A runs until the test cancels it (LONG tokens, in a context that fits
    # them), far past it (its 4096 context's end came within ~0.5 s on a fast core)
    with jan.ModelPool(max_loaded=1, room_timeout=0.2, n_ctx=LONG_N_CTX, n_threads=1) as pool:
        a = pool.load("a", stories_path)
        running = a.stream(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True)
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
    # machine (300 tokens ended in ~40 ms on a fast core, and an idle A, least recently used, would go first)
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
    # the old copy generates until the test cancels it, seen generating while the load waits (its 300 tokens
    # ended on a fast core within ~40 ms, maybe before the load came)
    with jan.ModelPool(n_ctx=LONG_N_CTX, n_threads=1) as pool:
        old = pool.load("a", stories_path)
        running = old.stream(PROMPT, max_tokens=LONG, temperature=0, ignore_eos=True)
        chunks = iter(running)
        first = next(chunks)

        before = _entries(pool)
        thread, out = _in_thread(lambda: pool.load("a", stories_path, n_ctx=512))
        held = _held_while_the_load_waits(pool, "a", before, chunks)
        running.cancel()
        _, final = _read_to_end(running, first, held)
        new = _joined(thread, out)

        assert final.finish_reason == "cancelled" and final.usage.completion_tokens >= 2
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
    # A streams until its client leaves (LONG tokens in a context that fits them), and is read on while B's load
    # waits for it: its 300 tokens ended on a fast core within ~40 ms, and an A done before B was asked for (made 35
    # tokens here) passed with busy models unloaded for a load (the rule taken out)
    server = start_server(tmp_path, [stories_path, tiny_random_path], max_loaded_models=1, n_ctx=LONG_N_CTX)
    try:
        base = server.base_url
        reference = _completion(base, "stories260K", SHORT)["choices"][0]["text"]
        pool = server.app[MANAGER].get_inference("llama.cpp").engine

        body = {"model": "stories260K", "prompt": PROMPT, "max_tokens": LONG, "temperature": 0,
                "ignore_eos": True, "stream": True}
        text, other = [], None
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=GENEROUS_S) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            for line in lines:
                if not line.startswith("data: {"):
                    continue
                choice = json.loads(line[len("data: "):])["choices"][0]
                # A is not cut off (before the fix: 200 with finish_reason "cancelled" and a truncated text)
                assert choice.get("finish_reason") is None, choice
                text.append(choice["text"])
                if other is None:  # A has produced its first tokens: now ask for B
                    before = _entries(pool)
                    other = _in_thread(lambda: _completion(base, "llama-2-tiny-random", 8))
                    _held_while_the_load_waits(pool, "stories260K", before)
                elif len(text) >= 3:  # A went on generating while B's load waited: its client leaves now
                    break
        answered = _joined(*other)

        got = "".join(text)
        assert reference.startswith(got) if len(got) <= len(reference) else got.startswith(reference)
        assert answered["choices"][0]["finish_reason"] == "length"
        # B was answered in A's place: A was unloaded for it, which happens only once A is idle
        loaded = httpx.get(f"{base}/v1/models", timeout=GENEROUS_S).json()["data"]
        state = {m["id"]: m["state"] for m in loaded}
        assert state["stories260K"] == "unloaded" and state["llama-2-tiny-random"] == "ready"
    finally:
        server.stop()
