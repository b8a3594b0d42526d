"""A load that fails after a model was unloaded to make room for it leaves the pool as it was.

The fault this covers: with ``ModelPool(max_loaded=1)`` (``jan serve --max-loaded-models 1``) holding model A, a
load of model B whose file passes every check made before unloading anything (the header reads) but that
llama.cpp refuses when it reads the weights (a tensor missing, out of memory) unloaded A first, and A stayed
gone: its user lost a working model for a load that never happened. Ollama and LM Studio keep it. Now the pool
loads A again (same file, same options, same keep-alive) before raising B's error, which is unchanged.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

import httpx
import jan
import pytest
from jan.engine import registry
from jan.server.keys import MANAGER
from server_helpers import start_server

GENEROUS_S = 300  # bounds for joins, waits and HTTP reads: a busy 2-core machine, never a pacing
# a tensor llama.cpp requires, renamed (same length: every offset stays): the header reads (vocab-only), the
# weights do not ("missing tensor")
_TENSOR, _RENAMED = b"output_norm.weight", b"outpux_norm.weight"


def write_missing_tensor_copy(src: Path, dst: Path) -> Path:
    """A copy of ``src`` that passes the load checks made before the pool unloads anything but fails the load."""
    data = Path(src).read_bytes()
    assert data.count(_TENSOR) == 1, "the test model's tensor names changed"
    tmp = dst.with_name(dst.name + ".part")
    tmp.write_bytes(data.replace(_TENSOR, _RENAMED))
    os.replace(tmp, dst)  # a new file version: no header read of the old one stands for it
    return dst


@pytest.fixture
def broken_path(tmp_path, stories_path) -> Path:
    return write_missing_tensor_copy(stories_path, tmp_path / "broken.gguf")


@pytest.fixture
def broken_error(broken_path) -> BaseException:
    """What loading the broken file raises on its own, with no pool: what a pool's caller must see too."""
    with pytest.raises(Exception) as info:
        jan.Model(broken_path, n_ctx=64, n_threads=1).close()
    return info.value


def _answers(model: jan.Model) -> None:
    done = model.generate("Once upon a time", max_tokens=4, temperature=0, ignore_eos=True)
    assert done.finish_reason == "length" and done.usage.completion_tokens == 4


def test_the_broken_file_passes_the_checks_before_room_is_made(broken_path, broken_error):
    from jan.engine.preflight import check_load

    check_load(broken_path, {"n_ctx": 64, "n_threads": 1})  # nothing the pool checks first refuses it
    assert isinstance(broken_error, jan.ModelFileError)  # llama.cpp refuses the weights


def test_a_load_failing_after_making_room_loads_the_unloaded_model_again(stories_path, broken_path, broken_error,
                                                                         caplog):
    with jan.ModelPool(max_loaded=1, n_threads=1) as pool:
        a = pool.load("a", stories_path, n_ctx=64, n_parallel=2)
        pool.set_keep_alive("a", 3600.0)
        before = pool.status()["a"]
        with caplog.at_level(logging.INFO, logger="jan.engine"), pytest.raises(type(broken_error)) as info:
            pool.load("b", broken_path, n_ctx=64)
        assert str(info.value) == str(broken_error)  # the load's own error, unchanged
        assert pool.loaded() == ["a"]
        again = pool.get("a")
        assert again is not a  # loaded again, as it was (the copy unloaded stays closed)
        with pytest.raises(jan.ModelClosedError):
            a.generate("Once", max_tokens=1)
        after = pool.status()["a"]
        for key in ("path", "options", "n_ctx", "slots_total"):
            assert after[key] == before[key], key
        assert 3000 < after["expires_in"] <= 3600  # its own keep-alive too
        _answers(again)
        # a load as the one before hands the restored model out (nothing loads again)
        assert pool.load("a", stories_path, n_ctx=64, n_parallel=2) is again
        said = [r.getMessage() for r in caplog.records]
        assert any("'b'" in m and "'a' was unloaded" in m for m in said), said
        assert any("'a'" in m and "loaded again" in m for m in said), said


def test_a_replacement_failing_loads_the_copy_it_replaced_again(stories_path, broken_path, broken_error):
    """The same id with another file (or options) replaces the loaded copy: a replacement that fails keeps it."""
    with jan.ModelPool(max_loaded=2, n_ctx=64, n_threads=1) as pool:
        pool.load("a", stories_path)
        pool.load("c", stories_path)
        with pytest.raises(type(broken_error)) as info:
            pool.load("a", broken_path)
        assert str(info.value) == str(broken_error)
        assert sorted(pool.loaded()) == ["a", "c"]
        assert pool.status()["a"]["path"] == str(stories_path)
        _answers(pool.get("a"))


def test_without_a_bound_nothing_is_unloaded_nor_loaded_again(stories_path, broken_path, broken_error):
    with jan.ModelPool(n_ctx=64, n_threads=1) as pool:
        a = pool.load("a", stories_path)
        with pytest.raises(type(broken_error)):
            pool.load("b", broken_path)
        assert pool.loaded() == ["a"] and pool.get("a") is a


def test_when_the_model_cannot_be_loaded_again_the_loads_own_error_is_raised(stories_path, monkeypatch, caplog):
    """Out of memory for both (what no check foresees): the caller gets the load's error, the log says the rest."""
    with jan.ModelPool(max_loaded=1, n_ctx=64, n_threads=1) as pool:
        pool.load("a", stories_path)

        class NoMemory(jan.Model):
            def __init__(self, *args, model_id=None, **kwargs):
                if model_id == "b":
                    raise jan.ModelLoadError("failed to allocate the KV cache")
                raise RuntimeError("the restore failed too")

        monkeypatch.setattr(registry, "Model", NoMemory)
        with caplog.at_level(logging.WARNING, logger="jan.engine"), \
                pytest.raises(jan.ModelLoadError, match="^failed to allocate the KV cache$"):
            pool.load("b", stories_path)
        assert pool.loaded() == []
        said = [r.getMessage() for r in caplog.records]
        assert any("'a'" in m and "could not be loaded again" in m and "the restore failed too" in m
                   for m in said), said
        monkeypatch.undo()
        # the room is free again: nothing is left pending
        _answers(pool.load("b", stories_path))
        assert pool.loaded() == ["b"]


def test_a_request_for_the_unloaded_model_waits_for_it_to_be_loaded_again(stories_path, broken_path, monkeypatch):
    """A request for A that comes while B's load (which unloaded A) is under way waits for that load to end and
    is handed A loaded again — one copy, no error, no second load of it."""
    reading = threading.Event()
    fail_now = threading.Event()
    loads: list[str] = []

    class SlowBroken(jan.Model):
        def __init__(self, path, *args, model_id=None, **kwargs):
            loads.append(model_id)
            if model_id == "b":
                reading.set()
                assert fail_now.wait(GENEROUS_S)
            super().__init__(path, *args, model_id=model_id, **kwargs)

    with jan.ModelPool(max_loaded=1, n_ctx=64, n_threads=1) as pool:
        pool.load("a", stories_path)
        monkeypatch.setattr(registry, "Model", SlowBroken)
        out: dict = {}

        def run(key, fn):
            try:
                out[key] = fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                out[key] = exc

        b = threading.Thread(target=run, args=("b", lambda: pool.load("b", broken_path)), daemon=True)
        b.start()
        assert reading.wait(GENEROUS_S)
        assert pool.loaded() == []  # A was unloaded for B
        a = threading.Thread(target=run, args=("a", lambda: pool.load("a", stories_path)), daemon=True)
        a.start()
        with pool._changed:  # A's request waits in line for room (B holds it)
            assert pool._changed.wait_for(lambda: "a" in pool._waiting.values(), GENEROUS_S)
        fail_now.set()
        b.join(GENEROUS_S)
        a.join(GENEROUS_S)
        assert not b.is_alive() and not a.is_alive()
        assert isinstance(out["b"], jan.ModelFileError), out["b"]
        assert isinstance(out["a"], jan.Model), out["a"]
        assert pool.loaded() == ["a"] and pool.get("a") is out["a"]
        assert loads == ["b", "a"]  # A loaded again once, by B's failed load; its request was handed that copy
        _answers(out["a"])


def _chat(server, model: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/chat/completions", timeout=GENEROUS_S,
                      json={"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "Once"}]})


def test_server_load_failing_after_making_room_keeps_the_loaded_model(tmp_path, stories_path, tiny_random_path):
    """``jan serve --max-loaded-models 1``: a request (and the load route) for a model whose weights llama.cpp
    refuses gets the error it got before (400 ``invalid_model_file``), and the model loaded before still answers."""
    doomed = tmp_path / "src" / "doomed.gguf"
    doomed.parent.mkdir()
    shutil.copyfile(stories_path, doomed)
    server = start_server(tmp_path, [doomed, tiny_random_path], max_loaded_models=1, n_ctx=256)
    try:
        local = server.app[MANAGER].get_inference("llama.cpp")
        assert server.call(local.loaded_models()) == ["llama-2-tiny-random"]
        write_missing_tensor_copy(stories_path, doomed)  # its weights damaged since; its header still reads
        for reply in (_chat(server, "doomed"),
                      httpx.post(f"{server.base_url}/v1/models/doomed/start", timeout=GENEROUS_S)):
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["code"] == "invalid_model_file"
            assert server.call(local.loaded_models()) == ["llama-2-tiny-random"]
            answer = _chat(server, "llama-2-tiny-random")
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        server.__exit__(None, None, None)
