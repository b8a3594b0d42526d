"""A context too big to make is the setting's fault, named as such: ``n_ctx`` × ``n_parallel`` past the 32 bits
llama.cpp counts cells in (the product wrapped: 2**30 tokens for 4 slots loaded as the model's default context,
without a word), and an explicit ``n_ctx`` whose KV cache is more than the free memory (a 500
``model_load_failed``). Both are a ModelSettingError naming ``n_ctx`` from :class:`jan.Model` and the pool's
preflight, and a 400 naming ``settings.ctx_len`` (or ``settings.n_parallel``) on every route: a PATCH that sets
the pair, and a load of a model.json whose ``ctx_len`` meets the server's slots; the models already loaded stay.
``jan serve --ctx-size`` with ``--parallel`` is refused before anything starts; ``jan run --ctx-size`` names its flag."""

from __future__ import annotations

import pytest
from api_helpers import Client, running
from test_cli_helpers import cli_env, fails
from test_cli_helpers import jan as jan_cli

import jan
from jan.engine.model import MAX_CONTEXT_CELLS
from jan.engine.preflight import check_load
from jan.errors import ModelSettingError
from jan.server.keys import MANAGER

HELLO = [{"role": "user", "content": "Once upon a time"}]
#: 2**30 tokens for each of 4 slots: one cell past what llama.cpp counts (it wrapped to 0, the default context)
WRAPS = 2**30
#: llama.cpp's largest per-slot context for one slot: a KV cache of terabytes even for stories260K
HUGE = 2**31 - 1


@pytest.mark.parametrize("n_ctx, n_parallel", [(WRAPS, 4), (HUGE, 4), (MAX_CONTEXT_CELLS // 3 + 1, 3)])
def test_context_past_the_cell_count_is_refused_before_loading(stories_path, n_ctx, n_parallel):
    for load in (lambda: jan.Model(stories_path, n_ctx=n_ctx, n_parallel=n_parallel, n_threads=1),
                 lambda: check_load(stories_path, {"n_ctx": n_ctx, "n_parallel": n_parallel})):
        with pytest.raises(ModelSettingError, match=r"^n_ctx: .* more than llama\.cpp holds") as caught:
            load()
        assert caught.value.param == "n_ctx"


def test_context_whose_cache_cannot_be_made_names_n_ctx(stories_path):
    with pytest.raises(ModelSettingError, match=r"^n_ctx: a context of 2147483647 tokens .* GiB of KV cache") as caught:
        jan.Model(stories_path, n_ctx=HUGE, n_parallel=1, n_threads=1)
    assert caught.value.param == "n_ctx" and caught.value.code == "context_too_large"


def test_a_cache_past_all_the_memory_is_refused_before_llama_cpp_tries(stories_path, monkeypatch):
    """More KV cache than the machine's RAM, swap and GPU memory together is refused before the context is made:
    llama.cpp's cell bookkeeping alone took gigabytes and minutes for 2**31 cells before its allocation failed."""
    import jan.engine.model as model_module

    def never(*args, **kwargs):
        raise AssertionError("llama.cpp was asked to make a context that cannot fit")

    monkeypatch.setattr(model_module, "memory_total_bytes", lambda **kw: 1024)
    monkeypatch.setattr(model_module._engine, "Scheduler", never)
    with pytest.raises(ModelSettingError, match=r"^n_ctx: a context of 256 tokens .* GiB of memory this machine "
                                                r"has") as caught:
        jan.Model(stories_path, n_ctx=256, n_parallel=1, n_threads=1)
    assert caught.value.param == "n_ctx" and caught.value.code == "context_too_large"


def test_a_cache_past_the_free_memory_is_refused_before_llama_cpp_tries(stories_path, monkeypatch):
    """A cache within the machine's memory but past what is free now (RAM and swap) is refused too: llama.cpp clears
    the cache it makes, and Linux, which overcommits, let the server be OOM-killed with every model it served (an
    explicit ctx_len of 10**8 on 4 slots of llama-2-tiny-random took 23 GB and the process) rather than fail."""
    import jan.engine.model as model_module

    def never(*args, **kwargs):
        raise AssertionError("llama.cpp was asked to make a context that cannot fit the free memory")

    monkeypatch.setattr(model_module, "host_memory_free_bytes", lambda: 1024)
    monkeypatch.setattr(model_module._engine, "Scheduler", never)
    with pytest.raises(ModelSettingError, match=r"^n_ctx: a context of 256 tokens .* GiB of memory free") as caught:
        jan.Model(stories_path, n_ctx=256, n_parallel=1, n_threads=1)
    assert caught.value.param == "n_ctx" and caught.value.code == "context_too_large"


def test_the_cells_bookkeeping_counts_with_the_cache(tiny_random_path, monkeypatch):
    """llama.cpp's bookkeeping of each cell (52 bytes) is host memory beside the cache's tensors: more than a small
    model's whole cache per cell (32 bytes for llama-2-tiny-random), so a check of the tensors alone let through
    contexts needing 2.6 times the memory it counted."""
    import jan.engine.model as model_module
    from jan.engine.fit import CELL_BOOKKEEPING_BYTES
    from jan.engine.header import read_info
    from jan.engine.kv_cache import kv_bytes_per_cell

    def never(*args, **kwargs):
        raise AssertionError("llama.cpp was asked to make a context that cannot fit")

    n_ctx, n_parallel = 1 << 20, 2
    tensors = kv_bytes_per_cell(read_info(str(tiny_random_path)).metadata) * n_ctx * n_parallel
    assert CELL_BOOKKEEPING_BYTES * n_ctx * n_parallel > tensors / 2
    for memory in ("memory_total_bytes", "host_memory_free_bytes"):
        with monkeypatch.context() as patch:
            patch.setattr(model_module, memory, lambda **kw: tensors)  # the tensors fit, the cells' bookkeeping not
            patch.setattr(model_module._engine, "Scheduler", never)
            with pytest.raises(ModelSettingError, match=r"^n_ctx: a context of 1048576 tokens for each of 2 slots"):
                jan.Model(tiny_random_path, n_ctx=n_ctx, n_parallel=n_parallel, n_threads=1)


def test_swap_counts_toward_the_memory_and_is_read_only_past_the_ram(stories_path, monkeypatch):
    """The RAM and device memory llama.cpp reports decide first; swap (psutil's reading) only for a cache larger
    than them, which it may still let through to llama.cpp."""
    from types import SimpleNamespace

    import psutil

    import jan.engine.model as model_module
    from jan.engine.fit import memory_total_bytes

    class Asked(Exception):
        pass

    def asked(*args, **kwargs):
        raise Asked

    swap_reads = []

    def swap_memory():
        swap_reads.append(1)
        return SimpleNamespace(total=2**62)

    monkeypatch.setattr(psutil, "swap_memory", swap_memory)
    monkeypatch.setattr(model_module._engine, "Scheduler", asked)
    # (the swap here is a reading, none of it free: what is free now is its own check, above)
    monkeypatch.setattr(model_module, "host_memory_free_bytes", lambda: 2**62)
    ram = memory_total_bytes(swap=False)
    assert ram > 0 and not swap_reads
    with pytest.raises(Asked):  # a small cache: llama.cpp is asked, swap never read
        jan.Model(stories_path, n_ctx=256, n_parallel=1, n_threads=1)
    assert not swap_reads
    # one slot of the largest context llama.cpp takes: a cache (terabytes) past this machine's RAM, within the swap here
    with pytest.raises(Asked):
        jan.Model(stories_path, n_ctx=HUGE, n_parallel=1, n_threads=1)
    assert swap_reads


def test_a_context_that_fits_still_loads(stories_path):
    model = jan.Model(stories_path, n_ctx=MAX_CONTEXT_CELLS // 2 // 2**20, n_parallel=2, n_threads=1)
    model.close()


def _loaded(srv) -> list[str]:
    return srv.call(srv.app[MANAGER].get_inference("llama.cpp").loaded_models())


async def test_server_names_the_setting_and_keeps_other_models(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path, n_parallel=4) as srv:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "big", "mode": "reference"}, 201)
            await api.ok("POST", "/v1/models/stories260K/start")

            # both in one model.json: refused when stored, naming the one the PATCH sets
            status, err = await api.patch("/v1/models/big", {"settings": {"ctx_len": WRAPS, "n_parallel": 8}})
            assert status == 400 and err["error"]["param"] == "settings.ctx_len", err
            await api.ok("PATCH", "/v1/models/big", {"settings": {"n_parallel": 2}})
            status, err = await api.patch("/v1/models/big", {"settings": {"n_parallel": 4, "ctx_len": None}})
            assert status == 200, err
            await api.ok("PATCH", "/v1/models/big", {"settings": {"ctx_len": WRAPS // 2}})
            status, err = await api.patch("/v1/models/big", {"settings": {"n_parallel": 8}})
            assert status == 400 and err["error"]["param"] == "settings.n_parallel", err
            await api.ok("PATCH", "/v1/models/big", {"settings": {"n_parallel": None}})

            # ctx_len alone is fine when stored; the load meets the server's 4 slots (or the memory) and says which
            # (a cache of terabytes is refused before llama.cpp is asked to make it: on every route at once)
            for settings, code in (({"ctx_len": WRAPS}, "invalid_value"),
                                   ({"ctx_len": HUGE, "n_parallel": 1}, "context_too_large")):
                await api.ok("PATCH", "/v1/models/big", {"settings": settings})
                status, err = await api.post("/v1/models/big/start")
                assert status == 400, err
                assert err["error"]["param"] == "settings.ctx_len" and err["error"]["code"] == code, err
                assert err["error"]["message"].startswith("settings.ctx_len: "), err
                if code == "context_too_large":  # the advice names the setting as the API does (the model.json's)
                    assert err["error"]["message"].endswith("use a smaller ctx_len, or leave it unset to fit the "
                                                            "free memory"), err
                assert _loaded(srv) == ["stories260K"]  # nothing half-loaded, nothing unloaded
                status, err = await api.post("/v1/chat/completions", {"model": "big", "max_tokens": 2,
                                                                      "messages": HELLO})
                assert status == 400 and err["error"]["param"] == "settings.ctx_len", err
                status, err = await api.post("/api/chat", {"model": "big", "stream": False, "messages": HELLO})
                assert status == 400 and err["error"].startswith("settings.ctx_len: "), err
                status, err = await api.post("/v1/messages", {"model": "big", "max_tokens": 2, "messages": HELLO})
                assert status == 400 and err["type"] == "error", err
                assert err["error"]["message"].startswith("settings.ctx_len: "), err
                assert _loaded(srv) == ["stories260K"]  # nothing half-loaded, nothing unloaded

            await api.ok("PATCH", "/v1/models/big", {"settings": {"ctx_len": 256, "n_parallel": None}})
            await api.ok("POST", "/v1/models/big/start")
            assert sorted(_loaded(srv)) == ["big", "stories260K"]


def test_jan_serve_refuses_a_context_past_the_cell_count_before_it_starts(tmp_path):
    result = jan_cli("serve", "--ctx-size", str(WRAPS), "--parallel", "4", env=cli_env(tmp_path / "data"))
    assert result.returncode == 2, result  # (flags that contradict each other: a usage error)
    assert "-c/--ctx-size: 1073741824 tokens for each of 4 slots (-np/--parallel) are 4294967296 tokens" in result.stderr


def test_jan_run_names_its_ctx_size_flag_for_a_context_that_cannot_be_made(tmp_path, stories_path):
    result = jan_cli("run", str(stories_path), "--ctx-size", str(HUGE), "Once", env=cli_env(tmp_path / "data"))
    assert result.returncode == 1, result
    fails(result, "-c/--ctx-size: a context of 2147483647 tokens needs")
    assert "settings.ctx_len" not in result.stderr
