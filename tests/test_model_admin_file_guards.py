"""Settings whose validity depends on the model's own file — a KV cache type its attention heads cannot
hold, a quantized V cache without flash attention, a chat template that is neither a built-in, one of
the file's variants nor a template that compiles — are refused when a PATCH or a new model.json sets
them (a 400 naming the field, nothing stored), judged against the GGUF header; and a model.json that
already holds one (edited by hand) fails its load with a typed error naming the same field, in the
server and in the CLI."""

from __future__ import annotations

import json

import pytest
from api_helpers import Client
from conftest import require_model

import jan
from jan.engine.kv_cache import cache_type_problem, head_sizes

pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")

STORY = "Once upon a time"
#: A variant the head-32 model's file carries (``tokenizer.chat_template.rag``): a name only it knows.
RAG = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"


def _llama(path, n_embd: int, n_head: int, **kw):
    from jan.testing import gguf_models as gm

    vocab = require_model("vocab", "ggml-vocab-llama-spm.gguf")  # no chat template of its own
    return gm.write_llama_from_vocab(path, vocab, n_embd=n_embd, n_layer=1, n_head=n_head, n_ff=64, n_ctx=512, **kw)


@pytest.fixture(scope="module")
def head48(tmp_path_factory):
    """Heads 48 values wide: not a whole number of q4_0/q8_0 blocks (32 values)."""
    return _llama(tmp_path_factory.mktemp("h48") / "head48.gguf", n_embd=96, n_head=2)


@pytest.fixture(scope="module")
def head32(tmp_path_factory):
    """Heads 32 values wide (quantized caches fit), with a named chat template variant "rag"."""
    return _llama(tmp_path_factory.mktemp("h32") / "head32.gguf", n_embd=64, n_head=2,
                  extra_kv={"tokenizer.chat_template.rag": RAG})


def model_json(data, model_id: str) -> dict:
    return json.loads((data / "models" / model_id / "model.json").read_text())


async def chat(api: Client, model: str) -> tuple[int, dict]:
    return await api.post("/v1/chat/completions", {
        "model": model, "max_tokens": 2, "messages": [{"role": "user", "content": STORY}]})


# (settings, the field named, words of the reason) — each is wrong only for head48's file
REFUSED = [
    ({"cache_type_k": "q4_0"}, "settings.cache_type_k", "head size 48"),
    ({"cache_type_v": "q8_0"}, "settings.cache_type_v", "head size 48"),
    ({"cache_type_k": "iq4_nl", "cache_type_v": "f16"}, "settings.cache_type_k", "blocks of 32"),
    ({"cache_type_v": "q4_0", "flash_attn": False}, "settings.cache_type_v", "needs flash attention"),
    ({"chat_template": "rag"}, "settings.chat_template", "unknown chat template 'rag'"),  # head32's variant
    ({"chat_template": "{% if %}"}, "settings.chat_template", "does not compile"),
    # head48 has no chat template: a prompt_template is what it would chat with
    ({"prompt_template": "nonsense"}, "settings.prompt_template", "unknown chat template 'nonsense'"),
]


@pytest.mark.parametrize("settings, param, reason", REFUSED)
async def test_patch_and_post_refuse_settings_the_model_file_cannot_use(server, tmp_path, head48, settings, param,
                                                                         reason):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(head48), "id": "m"}, 201)
        before = model_json(data, "m")
        status, err = await api.patch("/v1/models/m", {"settings": settings})
        assert status == 400, (settings, status, err)
        assert err["error"]["param"] == param and err["error"]["message"].startswith(param + ": "), err
        assert reason in err["error"]["message"], err
        assert model_json(data, "m") == before  # nothing stored: the model still chats
        status, answer = await chat(api, "m")
        assert status == 200 and answer["choices"][0]["finish_reason"] in ("stop", "length"), answer

        # a new model: an import of the file, or a model.json naming it by absolute path
        for body in ({"path": str(head48), "id": "i", "settings": settings},
                     {"id": "j", "sources": [{"url": str(head48)}], "settings": settings}):
            status, err = await api.post("/v1/models", body)
            assert status == 400 and err["error"]["param"] == param and reason in err["error"]["message"], (body, err)
        assert not (data / "models" / "i").exists() and not (data / "models" / "j").exists()


async def test_settings_the_model_file_can_use_are_still_taken(server, tmp_path, head32, head48):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(head32), "id": "q"}, 201)
        # the settings head48 refuses, on a model whose heads hold whole blocks and whose file has "rag"
        for settings in ({"cache_type_k": "iq4_nl", "cache_type_v": "q4_0"}, {"cache_type_k": "q8_0"},
                         {"cache_type_v": "q5_1", "flash_attn": True}, {"chat_template": "chatml"},
                         {"chat_template": RAG}, {"prompt_template": "nonsense"}, {"chat_template": "rag"}):
            patched = await api.ok("PATCH", "/v1/models/q", {"settings": settings})
            assert all(patched["settings"][k] == v for k, v in settings.items()), patched
        stored = model_json(data, "q")["settings"]
        assert (stored["cache_type_k"], stored["cache_type_v"], stored["chat_template"]) == ("q8_0", "q5_1", "rag")
        status, answer = await chat(api, "q")  # loads with q8_0 K, q5_1 V and the file's own "rag" template
        assert status == 200, answer
        assert (await api.ok("GET", "/v1/models/q"))["chat_template_in_use"]["name"] == "rag"
        await api.ok("POST", "/v1/models", {"path": str(head32), "id": "q2", "settings": {
            "cache_type_k": "q8_0", "cache_type_v": "q8_0", "chat_template": "rag"}}, 201)

        # head48: float caches fit any head; the prompt_template it chats with compiles
        await api.ok("POST", "/v1/models", {"path": str(head48), "id": "f", "settings": {
            "cache_type_k": "f32", "cache_type_v": "bf16", "prompt_template": "{system_message}\n{prompt}\n"}}, 201)
        await api.ok("PATCH", "/v1/models/f", {"settings": {"cache_type_k": "f16", "flash_attn": False}})
        assert (await chat(api, "f"))[0] == 200


async def test_without_weights_on_disk_only_what_needs_no_file_is_judged(server, tmp_path):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        # a name may be one of the variants of a file still to come; a quantized cache may fit its heads
        await api.ok("POST", "/v1/models", {"id": "later", "settings": {
            "chat_template": "rag", "cache_type_k": "q4_0", "cache_type_v": "q8_0"}}, 201)
        # but template source that does not compile, or a quantized V without flash attention, never works
        for settings, param in (({"chat_template": "{% for %}"}, "settings.chat_template"),
                                ({"cache_type_v": "q8_0", "flash_attn": False}, "settings.cache_type_v")):
            status, err = await api.post("/v1/models", {"id": "never", "settings": settings})
            assert status == 400 and err["error"]["param"] == param, err
            status, err = await api.patch("/v1/models/later", {"settings": settings})
            assert status == 400 and err["error"]["param"] == param, err
        # the field at fault is the one the PATCH set: here flash attention, against the stored V type
        status, err = await api.patch("/v1/models/later", {"settings": {"flash_attn": False}})
        assert status == 400 and err["error"]["param"] == "settings.flash_attn", err
        assert not (data / "models" / "never").exists()


async def test_a_stored_bad_setting_fails_its_load_with_the_field_named(server, tmp_path, head48):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(head48), "id": "m"}, 201)
        path = data / "models" / "m" / "model.json"
        for bad, param in (({"cache_type_k": "q4_0"}, "settings.cache_type_k"),
                           ({"chat_template": "nosuch"}, "settings.chat_template")):
            stored = model_json(data, "m")
            path.write_text(json.dumps({**stored, "settings": {**stored["settings"], **bad}}))  # by hand
            status, err = await chat(api, "m")
            assert status == 400 and err["error"]["param"] == param, err
            assert param in err["error"]["message"], err
            # a PATCH that leaves the bad value is not blamed for it; one that removes it mends the model
            assert (await api.patch("/v1/models/m", {"description": "d"}))[0] == 200
            await api.ok("PATCH", "/v1/models/m", {"settings": {key: None for key in bad}})
            assert (await chat(api, "m"))[0] == 200


def test_the_cli_says_which_stored_setting_the_model_cannot_use(env, data, head48):
    from test_cli_helpers import fails, jan as run_jan, ok

    ok(run_jan("models", "import", head48, "--id", "m", "--mode", "reference", env=env))
    path = data / "models" / "m" / "model.json"
    stored = json.loads(path.read_text())
    for bad, needle in (({"cache_type_v": "q8_0"}, "cache_type_v: q8_0 stores blocks of 32 values"),
                        ({"chat_template": "nosuch"}, "settings.chat_template: unknown chat template 'nosuch'")):
        path.write_text(json.dumps({**stored, "settings": {**stored["settings"], **bad}}))
        fails(run_jan("run", "m", STORY, env=env), needle)


# -- the rules themselves, and the engine's load --------------------------------------------------------------------
def test_the_engine_refuses_cache_types_the_file_cannot_hold_before_making_a_context(head48):
    with pytest.raises(jan.errors.ModelSettingError, match="head size 48") as caught:
        jan.Model(head48, n_ctx=64, n_threads=1, cache_type_v="q8_0")
    assert caught.value.param == "cache_type_v" and isinstance(caught.value, ValueError)
    with pytest.raises(jan.errors.ModelSettingError, match="flash attention"):
        jan.Model(head48, n_ctx=64, n_threads=1, cache_type_v="q4_0", flash_attn=False)


def _meta(arch: str, **kv) -> dict[str, str]:
    return {"general.architecture": arch, **{f"{arch}.{k.replace('__', '.')}": str(v) for k, v in kv.items()}}


def test_cache_type_rules_follow_the_header():
    llama = _meta("llama", embedding_length=4096, attention__head_count=32)
    assert head_sizes(llama) == ((128,), (128,))
    assert cache_type_problem(llama, "q4_0", "q8_0") is None
    # explicit key/value lengths win over embedding_length / head_count, and sliding-window layers count too
    odd = {**llama, "llama.attention.key_length": "80", "llama.attention.value_length": "96"}
    assert cache_type_problem(odd, "q8_0", "f16").option == "cache_type_k"
    assert cache_type_problem(odd, "f16", "q8_0") is None
    swa = {**llama, "llama.attention.key_length_swa": "48"}
    assert "head size 48" in cache_type_problem(swa, "q8_0", "f16").reason
    # latent attention (DeepSeek 2 style): K and V of one type
    mla = _meta("deepseek2", embedding_length=2048, attention__head_count=16, attention__key_length=192,
                attention__value_length=128, attention__key_length_mla=192, attention__value_length_mla=128)
    problem = cache_type_problem(mla, "q8_0", "f16")
    assert problem.option == "cache_type_v" and "latent attention" in problem.reason and "cache_type_k" in problem.related
    assert cache_type_problem(mla, "q8_0", "q8_0") is None
    # Grok runs without flash attention, which a quantized V needs; a quantized K is fine
    grok = _meta("grok", embedding_length=6144, attention__head_count=48)
    assert "grok" in cache_type_problem(grok, "f16", "q8_0").reason
    assert cache_type_problem(grok, "q8_0", "f16") is None
    # what the header does not say for sure is not judged: no attention, or a head count per layer (an array)
    assert cache_type_problem(_meta("mamba", embedding_length=768, attention__head_count=0), "q4_0", "q4_0") is None
    assert cache_type_problem(_meta("jamba", embedding_length=4096), "q4_0", "q4_0") is None
    # with no file at all only flash attention is judged; unknown names are left to the option's own check
    assert cache_type_problem({}, "q4_0", "q8_0") is None
    assert cache_type_problem({}, "f16", "q8_0", flash_attn=False).related == ("flash_attn",)
    assert cache_type_problem(llama, "f8", "q3_k") is None
