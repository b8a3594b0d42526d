"""llama-server's slot routes beyond the actions themselves: what ``GET /slots`` tells of each slot's request, the LoRA
scales a saved slot was computed under, a remote model's slot routes (its upstream's), ``--no-slots``, and a slot
holding an image saved and restored as llama-server packs it."""

from __future__ import annotations

import httpx
import pytest

import jan
from jan.errors import BadRequestError, SlotFileError

from cut_off_helpers import LONG, LONG_N_CTX
from server_helpers import ok, start_server

PROMPT = "Once upon a time there was a little girl"
GREEDY = {"model": "stories260K", "temperature": 0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("slots-more")


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, folder):
    srv = start_server(tmp_path_factory.mktemp("srv"), [stories_path], n_parallel=2, cache_ram_mib=0,
                       slot_save_path=str(folder))
    yield srv
    srv.stop()


def slots(server, **params) -> httpx.Response:
    return httpx.get(f"{server.base_url}/slots", params={"model": "stories260K", **params}, timeout=120)


# -- GET /slots: each slot's request ---------------------------------------------------------------------------------
#: The fields llama-server's GET /slots tells of a slot that ran a request (server-context.cpp, server_slot::to_json
#: without LLAMA_SERVER_SLOTS_DEBUG), and of its params (task_params::to_json "only metrics").
TASK_FIELDS = {"id", "n_ctx", "speculative", "is_processing", "id_task", "n_prompt_tokens",
               "n_prompt_tokens_processed", "n_prompt_tokens_cache", "params", "next_token"}
PARAM_FIELDS = {"seed", "temperature", "dynatemp_range", "dynatemp_exponent", "top_k", "top_p", "min_p", "top_n_sigma",
                "xtc_probability", "xtc_threshold", "typical_p", "repeat_last_n", "repeat_penalty", "presence_penalty",
                "frequency_penalty", "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
                "mirostat", "mirostat_tau", "mirostat_eta", "adaptive_target", "adaptive_decay", "max_tokens",
                "n_predict", "n_keep", "n_discard", "ignore_eos", "stream", "n_probs", "min_keep", "chat_format",
                "reasoning_format", "reasoning_in_content", "generation_prompt", "samplers", "speculative.types",
                "timings_per_token", "post_sampling_probs", "backend_sampling", "lora"}


def test_an_idle_slot_tells_the_last_request_it_ran_as_llama_server_does(server):
    """Its number, the tokens the slot holds and its params; its counts reset (0, n_remain -1), as llama-server 0.3.36
    resets them when a request ends (checked against its GET /slots)."""
    done = ok(server, "/completion", GREEDY | {"prompt": PROMPT, "n_predict": 6, "top_k": 7, "id_slot": 1})
    listed = slots(server).json()
    slot = listed[1]
    assert set(slot) == TASK_FIELDS, slot
    assert slot["is_processing"] is False and slot["id_task"] >= 0
    held = done["tokens_evaluated"] + done["tokens_predicted"] - 1  # (the last token sampled is not evaluated)
    assert slot["n_prompt_tokens"] == held
    assert slot["n_prompt_tokens_processed"] == slot["n_prompt_tokens_cache"] == 0
    assert slot["next_token"] == [{"has_next_token": False, "has_new_line": False, "n_remain": -1, "n_decoded": 0}]
    params = slot["params"]
    assert set(params) == PARAM_FIELDS, set(params) ^ PARAM_FIELDS
    assert params["temperature"] == 0 and params["top_k"] == 7 and params["n_predict"] == params["max_tokens"] == 6
    assert params["lora"] == [] and params["speculative.types"] == "none"
    assert "prompt" not in slot and "generated" not in slot  # (llama-server shows text only with its debug switch)


def test_a_running_request_is_told_in_the_slot_that_runs_it(stories_path):
    """The slot running a request is processing and tells its task, what it decoded and what remains; the other slot
    is idle (before, the first slots were told busy, whichever ran the request). The snapshot is taken between two
    engine steps while the request runs: it goes on until the test cancels it (LONG tokens in a context that fits
    them; its 2000 could end on a fast core before the snapshot, and the test tried again, up to 5 times)."""
    with jan.Model(stories_path, n_ctx=LONG_N_CTX, n_threads=1, n_parallel=2, cache_ram_mib=0) as m:
        request = m.stream("Tom had a big red ball", max_tokens=LONG, temperature=0, ignore_eos=True, id_slot=1,
                           top_k=9)
        next(iter(request))
        idle, busy = m.slots_info()
        request.cancel()
        request.result()
        assert idle.is_processing is False and idle.has_task is False
        assert busy.has_task and busy.has_next_token and busy.n_decoded >= 1
        assert busy.n_remain == LONG - busy.n_decoded
        assert busy.n_prompt_processed + busy.n_prompt_cached == busy.n_prompt_tokens > 0
        assert busy.n_cache_tokens >= busy.n_prompt_tokens
        assert busy.params.top_k == 9 and busy.params.ignore_eos is True
        # once it ended, the slot tells it as its last request, its counts reset as llama-server resets them
        after = m.slots_info()[1]
        assert after.is_processing is False and after.has_next_token is False and after.id_task == busy.id_task
        assert after.n_decoded == 0 and after.n_remain == -1 and after.params.top_k == 9


def test_without_the_engines_slots_the_route_tells_the_first_ones_busy(server, monkeypatch):
    """An engine that cannot tell its slots (no ``slots_info``): the status' count of busy slots, as before."""
    from jan.server.keys import MANAGER

    engine = server.app[MANAGER].get_inference("llama.cpp")

    async def nothing(model_id):
        return None

    monkeypatch.setattr(engine, "slots_info", nothing)
    listed = slots(server).json()
    assert [set(s) for s in listed] == [{"id", "n_ctx", "speculative", "is_processing"}] * 2


# -- the LoRA scales of a saved slot ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapters(tmp_path_factory, stories_path):
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    from jan.testing.gguf_models import write_lora_adapter

    folder = tmp_path_factory.mktemp("lora")
    return (str(write_lora_adapter(folder / "a.gguf", stories_path, seed=1)),
            str(write_lora_adapter(folder / "b.gguf", stories_path, seed=2)))


STORY = "Once upon a time, there was a little girl named Lily. She loved to play"
N = 16


def _with_adapters(stories_path, adapters):
    # one slot, no host-memory prompt cache: a prompt's reused tokens can only be the slot's own
    return jan.Model(stories_path, lora=[adapters[0], (adapters[1], 0.0)], n_ctx=256, n_threads=1, n_parallel=1,
                     cache_ram_mib=0)


def test_a_restored_slot_keeps_the_lora_scales_it_was_computed_under(stories_path, adapters, tmp_path):
    """A save records the scales the slot's KV was computed under beside the file; a restore tags the slot with them.
    Before, a restored slot was taken as computed under the default scales: a request with the defaults reused KV
    computed under other weights (and answered what neither scale vector answers), and one with the saved scales
    evaluated the whole prompt again."""
    other = [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]
    path = tmp_path / "b.bin"
    with _with_adapters(stories_path, adapters) as m:
        fresh_default = m.generate(STORY, max_tokens=N, temperature=0).text
        m.slot_action("erase", 0)
        fresh_other = m.generate(STORY, max_tokens=N, temperature=0, lora=other).text
        assert fresh_other != fresh_default  # (the adapters change the output: the test can tell)
        m.slot_action("save", 0, path)
        assert (tmp_path / "b.bin..lora").read_text().split() == ["jan-slot-lora", "1", "2", "0", "1"]
        m.slot_action("erase", 0)
        m.slot_action("restore", 0, path)
        assert list(m.slots_info()[0].lora) == [0.0, 1.0]
        default = m.generate(STORY, max_tokens=N, temperature=0)
        assert default.usage.cached_tokens == 0 and default.text == fresh_default
        m.slot_action("restore", 0, path)
        again = m.generate(STORY, max_tokens=N, temperature=0, lora=other)
        assert again.usage.cached_tokens > 0 and again.text == fresh_other


def test_a_slot_saved_under_adapters_is_no_cache_of_a_model_without_them(stories_path, adapters, tmp_path):
    path = tmp_path / "a.bin"
    with _with_adapters(stories_path, adapters) as m:
        m.generate(STORY, max_tokens=4, temperature=0)
        m.slot_action("save", 0, path)
    with jan.Model(stories_path, n_ctx=256, n_threads=1, cache_ram_mib=0) as base:
        with pytest.raises(SlotFileError, match="saved under 2 LoRA adapters, and this model has 0"):
            base.slot_action("restore", 0, path)
        assert base.slots_info()[0].n_cache_tokens == 0  # (a failed restore leaves the slot empty)
        # a save without adapters drops the scales an earlier save left under that name
        base.generate(STORY, max_tokens=4, temperature=0)
        base.slot_action("save", 0, path)
        assert not (tmp_path / "a.bin..lora").exists()
        assert base.slot_action("restore", 0, path)["n_tokens"] > 0


def test_a_slot_file_without_scales_is_taken_as_computed_under_the_defaults(stories_path, adapters, tmp_path):
    """A file with no scales beside it (llama-server's, which records none) restores as computed under the model's
    default scales, as llama-server takes it; a scales file that is not jan's is refused."""
    path = tmp_path / "plain.bin"
    with _with_adapters(stories_path, adapters) as m:
        first = m.generate(STORY, max_tokens=N, temperature=0)
        m.slot_action("save", 0, path)
        (tmp_path / "plain.bin..lora").unlink()
        m.slot_action("erase", 0)
        m.slot_action("restore", 0, path)
        again = m.generate(STORY, max_tokens=N, temperature=0)
        assert again.usage.cached_tokens > 0 and again.text == first.text
        (tmp_path / "plain.bin..lora").write_text("garbage\n")
        with pytest.raises(SlotFileError, match="LoRA scales file"):
            m.slot_action("restore", 0, path)


def test_the_lora_scales_beside_a_slot_file_never_overwrite_another_slot_file(stories_path, adapters, tmp_path):
    """The scales of a save to ``a.bin`` went to ``a.bin.lora``: a slot file saved under that name was overwritten
    (and a save without adapters deleted it). They now go to ``a.bin..lora``, a name no slot file may have: the
    server's filename check refuses ``..`` as llama-server's does, and the engine refuses a slot file named so."""
    with _with_adapters(stories_path, adapters) as m:
        m.generate(STORY, max_tokens=4, temperature=0)
        m.slot_action("save", 0, tmp_path / "a.bin.lora")
        kept = (tmp_path / "a.bin.lora").read_bytes()
        m.slot_action("save", 0, tmp_path / "a.bin")
        assert (tmp_path / "a.bin.lora").read_bytes() == kept  # (still the slot file it was)
        assert (tmp_path / "a.bin..lora").read_text().startswith("jan-slot-lora")
        assert m.slot_action("restore", 0, tmp_path / "a.bin.lora")["n_tokens"] > 0
        for action in ("save", "restore"):
            with pytest.raises(BadRequestError, match="cannot end in '..lora'") as caught:
                m.slot_action(action, 0, tmp_path / "a.bin..lora")
            assert caught.value.param == "path"
        assert (tmp_path / "a.bin..lora").read_text().startswith("jan-slot-lora")
    with jan.Model(stories_path, n_ctx=256, n_threads=1, cache_ram_mib=0) as base:
        base.generate(STORY, max_tokens=4, temperature=0)
        base.slot_action("save", 0, tmp_path / "a.bin")  # (drops a.bin's scales, and only them)
        assert not (tmp_path / "a.bin..lora").exists() and (tmp_path / "a.bin.lora").read_bytes() == kept


def test_the_server_refuses_a_slot_file_named_as_lora_scales(server, folder):
    """``NAME..lora`` (where a save keeps its LoRA scales) is no slot file name the server takes, as llama-server
    takes no name holding ``..``."""
    r = httpx.post(f"{server.base_url}/slots/0", params={"action": "save"},
                   json={"model": "stories260K", "filename": "x.bin..lora"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["message"] == "Invalid filename"
    assert not (folder / "x.bin..lora").exists()


# -- a remote model's slots: forwarded to its upstream ---------------------------------------------------------------
@pytest.fixture(scope="module")
def upstream(tmp_path_factory, stories_path):
    folder = tmp_path_factory.mktemp("upstream-slots")
    srv = start_server(tmp_path_factory.mktemp("upstream"), [stories_path], n_parallel=1, cache_ram_mib=0,
                       slot_save_path=str(folder))
    srv.slot_folder = folder
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory, stories_path, upstream):
    from jan.store import DataFolder

    tmp = tmp_path_factory.mktemp("front")
    srv = start_server(tmp, [stories_path], n_parallel=1)  # (no --slot-save-path of its own)
    models = DataFolder(tmp / "data").models
    models.create({"id": "remote-stories", "engine": "openai",
                   "settings": {"base_url": upstream.base_url + "/v1", "model": "stories260K", "api_key": "unused"}})
    # an upstream without --slot-save-path: the front itself, serving its own stories260K
    models.create({"id": "remote-unsaved", "engine": "openai",
                   "settings": {"base_url": srv.base_url + "/v1", "model": "stories260K", "api_key": "unused"}})
    # an upstream without the route at all (OpenAI's API has none): a root where nothing is served
    models.create({"id": "remote-openai", "engine": "openai",
                   "settings": {"base_url": upstream.base_url + "/elsewhere/v1", "model": "stories260K",
                                "api_key": "unused"}})
    yield srv
    srv.stop()


def front_action(front, id_slot, name, body) -> httpx.Response:
    return httpx.post(f"{front.base_url}/slots/{id_slot}?action={name}", json=body, timeout=120)


def test_a_remote_models_slot_actions_go_to_its_upstream(front, upstream):
    """Before, a remote model's slot action was a 400 ("an engine without slots"); now it is its upstream's, whose
    folder and slots they are (the front needs no --slot-save-path)."""
    ok(upstream, "/completion", GREEDY | {"prompt": PROMPT, "n_predict": 4})
    saved = front_action(front, 0, "save", {"model": "remote-stories", "filename": "far.bin"})
    assert saved.status_code == 200, saved.text
    answer = saved.json()
    assert answer["n_saved"] > 0 and (upstream.slot_folder / "far.bin").stat().st_size == answer["n_written"]
    erased = front_action(front, 0, "erase", {"model": "remote-stories"}).json()
    assert erased == {"id_slot": 0, "n_erased": saved.json()["n_saved"]}
    restored = front_action(front, 0, "restore", {"model": "remote-stories", "filename": "far.bin"}).json()
    assert restored["n_restored"] == saved.json()["n_saved"]
    listed = httpx.get(f"{front.base_url}/slots", params={"model": "remote-stories"}, timeout=120)
    assert listed.status_code == 200 and [s["id"] for s in listed.json()] == [0], listed.text


@pytest.mark.parametrize("model,id_slot,body,status,says", [
    ("remote-stories", 0, {"filename": "../x.bin"}, 400, "Invalid filename"),
    ("remote-stories", 3, {"filename": "x.bin"}, 400, "Invalid slot ID"),
    ("remote-unsaved", 0, {"filename": "x.bin"}, 501, "Start it with `--slot-save-path`"),
    ("remote-openai", 0, {"filename": "x.bin"}, 400, "has no /slots endpoint"),
])
def test_a_remote_models_refused_slot_action_says_whose_refusal_it_is(front, upstream, model, id_slot, body, status,
                                                                       says):
    response = front_action(front, id_slot, "save", {"model": model, **body})
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert says in err["message"] and ("the upstream at" in err["message"]), err


# -- --no-slots, /props ----------------------------------------------------------------------------------------------
def test_no_slots_turns_get_slots_off_as_llama_servers_flag_does(tmp_path, stories_path, server):
    """llama-server's --no-slots: GET /slots is its 501 and /props says endpoint_slots false (before, jan had no such
    flag and /props always said true); slot actions are --slot-save-path's, not this flag's."""
    assert httpx.get(f"{server.base_url}/props", timeout=120).json()["endpoint_slots"] is True
    srv = start_server(tmp_path, [stories_path], n_parallel=1, endpoint_slots=False)
    try:
        response = httpx.get(f"{srv.base_url}/slots", timeout=120)
        assert response.status_code == 501, response.text
        err = response.json()["error"]
        assert err["type"] == "not_supported_error" and "Start it with `--slots`" in err["message"], err
        props = httpx.get(f"{srv.base_url}/props", timeout=120).json()
        assert props["endpoint_slots"] is False and props["total_slots"] == 1
    finally:
        srv.stop()


def test_jan_serve_takes_no_slots(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import jan.cli.serve as serve_cli

    seen = {}

    async def fake_run_server(config):
        seen["config"] = config

    monkeypatch.setattr(serve_cli, "run_server", fake_run_server)
    for flags, expected in (([], True), (["--no-slots"], False), (["--slots"], True)):
        result = CliRunner().invoke(serve_cli.serve, ["--data-folder", str(tmp_path / "data"), *flags])
        assert result.exit_code == 0, result.output
        assert seen["config"].endpoint_slots is expected, flags


def test_the_slot_the_engine_says_is_busy_is_told_busy_not_the_first_one():
    """With the engine's slots, each tells its own state (before, the first N were told busy for N busy requests,
    whichever slots ran them); fail_on_no_slot's 503 counts those busy slots."""
    from jan.server.dialects.llamacpp import slots as told

    class Info:
        def __init__(self, busy):
            self.is_processing, self.has_task = busy, False

    listed = told(2, 0, 64, False, [Info(False), Info(True)])
    assert [s["is_processing"] for s in listed] == [False, True]  # (the busy one is slot 1, not the first)


# -- a slot holding images --------------------------------------------------------------------------------------------
def test_a_slot_holding_an_image_saves_and_restores_as_llama_server_packs_it(vision_pair, test_image_path, tmp_path):
    """llama-server 0.3.36 saves a slot with images or audio (its tokens packed with each media chunk as libmtmd
    serializes it) and restores it; jan refused such a save (400). Now jan writes that packed state, and a restore
    brings the image back into the slot: the same prompt with the same image reuses it."""
    import struct

    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_parallel=1, n_threads=1, n_threads_batch=1,
                   cache_ram_mib=0) as m:
        prompt = f"<|im_start|>user\nWhat is this?\n{m.media_marker}<|im_end|>\n<|im_start|>assistant\n"
        first = m.generate(prompt, images=[test_image_path], max_tokens=4, temperature=0, ignore_eos=True)
        saved = m.slot_action("save", 0, tmp_path / "image.bin")
        held = first.usage.prompt_tokens + first.usage.completion_tokens - 1
        assert saved["n_tokens"] == held
        data = (tmp_path / "image.bin").read_bytes()
        _, _, n_packed = struct.unpack_from("<III", data)
        marker, version, n = struct.unpack_from("<iII", data, 12)
        assert (marker, version, n) == (-1, 1, held) and n_packed > n + 4  # (its media chunk follows its tokens)
        m.slot_action("erase", 0)
        cold = m.generate(prompt, images=[test_image_path], max_tokens=4, temperature=0, ignore_eos=True)
        assert cold.usage.cached_tokens == 0
        m.slot_action("erase", 0)
        assert m.slot_action("restore", 0, tmp_path / "image.bin")["n_tokens"] == held
        warm = m.generate(prompt, images=[test_image_path], max_tokens=4, temperature=0, ignore_eos=True)
        assert warm.usage.cached_tokens == first.usage.prompt_tokens - 1  # (all but the last prompt token)
        assert warm.token_ids == cold.token_ids
        # another image is no continuation of the restored one
        m.slot_action("restore", 0, tmp_path / "image.bin")
        from PIL import Image
        import io

        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (255, 0, 0)).save(buffer, format="PNG")
        other = m.generate(prompt, images=[buffer.getvalue()], max_tokens=4, temperature=0, ignore_eos=True)
        assert other.usage.cached_tokens < first.usage.prompt_tokens - 1


def test_a_slot_holding_an_image_is_no_restore_for_the_model_without_its_projector(vision_pair, test_image_path,
                                                                                  tmp_path):
    """A slot file holding an image restored into the same model loaded without a projector was restored silently
    (a cache no prompt of that model can continue); now it is a SlotFileError (400) that says so, the slot left
    empty. A text slot of the same model still restores there."""
    model_path, mmproj = vision_pair
    with jan.Model(model_path, mmproj=mmproj, n_ctx=512, n_parallel=1, n_threads=1, n_threads_batch=1,
                   cache_ram_mib=0) as m:
        prompt = f"<|im_start|>user\nWhat is this?\n{m.media_marker}<|im_end|>\n<|im_start|>assistant\n"
        m.generate(prompt, images=[test_image_path], max_tokens=2, temperature=0, ignore_eos=True)
        m.slot_action("save", 0, tmp_path / "image.bin")
        m.slot_action("erase", 0)
        m.generate("<|im_start|>user\nhello<|im_end|>\n", max_tokens=2, temperature=0, ignore_eos=True)
        m.slot_action("save", 0, tmp_path / "text.bin")
    with jan.Model(model_path, n_ctx=512, n_parallel=1, n_threads=1, n_threads_batch=1, cache_ram_mib=0) as plain:
        with pytest.raises(SlotFileError, match="without a projector") as caught:
            plain.slot_action("restore", 0, tmp_path / "image.bin")
        assert caught.value.param == "path"
        assert plain.slots_info()[0].n_cache_tokens == 0
        assert plain.slot_action("restore", 0, tmp_path / "text.bin")["n_tokens"] > 0


def test_fail_on_no_slot_counts_the_engines_busy_slots(server, monkeypatch):
    """The 503 comes when every slot the engine reads is processing (as llama-server counts its idle slots), whatever
    the status' count of active requests says."""
    from types import SimpleNamespace

    from jan.server.keys import MANAGER

    engine = server.app[MANAGER].get_inference("llama.cpp")
    busy = [True, True]

    async def infos(model_id):
        return [SimpleNamespace(is_processing=b, has_task=False) for b in busy]

    monkeypatch.setattr(engine, "slots_info", infos)
    response = slots(server, fail_on_no_slot="1")
    assert response.status_code == 503 and response.json()["error"]["message"] == "no slot available", response.text
    busy[1] = False
    listed = slots(server, fail_on_no_slot="1")
    assert listed.status_code == 200 and [s["is_processing"] for s in listed.json()] == [True, False]
