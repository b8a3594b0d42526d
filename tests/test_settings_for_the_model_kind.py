"""A setting that cannot apply to the model at hand is refused, naming it, where it is given — never stored (or
taken) and left without effect. On a model that embeds only (``settings.embedding`` true): the generation settings
(speculative decoding, a draft model, KV cache types, LoRA, templates, thinking) and any sampling ``parameters``,
in a model.json PATCH, in a hand-edited model.json (its load), and ``jan serve -m``'s server-wide flags when every
model it loads embeds only. A chat model's ``pooling`` does apply (it embeds too: ``/v1/embeddings``), so it
stays accepted."""

from __future__ import annotations

import json

import pytest
from api_helpers import running
from extension_helpers import call
from test_cli_helpers import cli_env, fails, jan

EMBED = "all-MiniLM-L6-v2-f32"
CHAT = "stories260K"
WAIT_S = 300

#: (model.json field, value): each is read only by text generation.
GENERATION_ONLY = [
    ("settings", "speculative", "ngram"),
    ("settings", "draft_max", 8),
    ("settings", "draft_min", 1),
    ("settings", "ngram", 4),
    ("settings", "draft_p_min", 0.5),
    ("settings", "cache_type_k", "q8_0"),
    ("settings", "cache_type_v", "f32"),
    ("settings", "cache_ram_mib", 16),
    ("settings", "kv_unified", True),
    ("settings", "chat_template", "chatml"),
    ("settings", "reasoning_format", "none"),
    ("parameters", "temperature", 0.5),
    ("parameters", "max_tokens", 16),
    ("parameters", "draft_max", 3),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("kind") / "data", stories_path, minilm_path) as srv:
        yield srv


def _refused(status, answer, param: str) -> None:
    assert status == 400, answer
    assert answer["error"]["param"] == param, answer
    assert answer["error"]["message"].startswith(f"{param}: "), answer
    assert "applies to text generation only" in answer["error"]["message"] or \
        "apply to text generation only" in answer["error"]["message"], answer


@pytest.mark.parametrize("field,key,value", GENERATION_ONLY, ids=[f"{f}.{k}" for f, k, _ in GENERATION_ONLY])
def test_a_generation_setting_on_an_embedding_model_is_refused_where_it_is_set(server, field, key, value):
    status, answer = call(server, "PATCH", f"/v1/models/{EMBED}", {field: {key: value}}, timeout=WAIT_S)
    _refused(status, answer, f"{field}.{key}")
    status, model = call(server, "GET", f"/v1/models/{EMBED}", timeout=WAIT_S)
    assert status == 200 and key not in (model.get(field) or {}), model  # nothing stored


@pytest.mark.parametrize("field,key,value", GENERATION_ONLY[:3] + GENERATION_ONLY[-1:],
                         ids=[f"{f}.{k}" for f, k, _ in GENERATION_ONLY[:3] + GENERATION_ONLY[-1:]])
def test_making_a_model_embed_only_is_refused_while_it_has_generation_settings(server, field, key, value):
    status, answer = call(server, "PATCH", f"/v1/models/{CHAT}", {field: {key: value}}, timeout=WAIT_S)
    assert status == 200, answer
    try:
        status, answer = call(server, "PATCH", f"/v1/models/{CHAT}", {"settings": {"embedding": True}},
                              timeout=WAIT_S)
        _refused(status, answer, f"{field}.{key}")
    finally:
        call(server, "PATCH", f"/v1/models/{CHAT}", {field: {key: None}}, timeout=WAIT_S)


@pytest.mark.parametrize("body", [{"settings": {"speculative": "none"}}, {"settings": {"draft_model": ""}},
                                  {"settings": {"ctx_len": 256}}, {"settings": {"pooling": "cls"}}],
                         ids=["speculative none", "no draft model", "ctx_len", "pooling"])
def test_what_an_embedding_model_reads_or_an_opt_out_stays_accepted(server, body):
    status, answer = call(server, "PATCH", f"/v1/models/{EMBED}", body, timeout=WAIT_S)
    assert status == 200, answer
    call(server, "PATCH", f"/v1/models/{EMBED}", {"settings": {k: None for k in body["settings"]}}, timeout=WAIT_S)


def test_a_chat_model_takes_pooling(server):
    """(it embeds too: the setting is read)"""
    status, answer = call(server, "PATCH", f"/v1/models/{CHAT}", {"settings": {"pooling": "cls"}}, timeout=WAIT_S)
    assert status == 200, answer
    call(server, "PATCH", f"/v1/models/{CHAT}", {"settings": {"pooling": None}}, timeout=WAIT_S)


@pytest.mark.parametrize("field,key,value", [GENERATION_ONLY[1], GENERATION_ONLY[-3]],
                         ids=["settings.draft_max", "parameters.temperature"])
def test_a_hand_edited_generation_setting_is_refused_at_load(server, field, key, value):
    path = server.config.data_folder / "models" / EMBED / "model.json"
    before = path.read_text()
    doc = json.loads(before)
    doc.setdefault(field, {})[key] = value
    call(server, "POST", f"/v1/models/{EMBED}/stop", timeout=WAIT_S)
    path.write_text(json.dumps(doc))
    try:
        status, answer = call(server, "POST", "/v1/embeddings", {"model": EMBED, "input": "hi"}, timeout=WAIT_S)
        _refused(status, answer, f"{field}.{key}")
    finally:
        path.write_text(before)
    status, answer = call(server, "POST", "/v1/embeddings", {"model": EMBED, "input": "hi"}, timeout=WAIT_S)
    assert status == 200, answer


@pytest.mark.parametrize("flags,named", [(["--spec-type", "ngram"], "--speculative ngram"),
                                         (["--draft-max", "4"], "--draft-max 4"),
                                         (["-ctk", "q8_0"], "-ctk/--cache-type-k q8_0")],
                         ids=["spec-type", "draft-max", "cache-type-k"])
def test_jan_serve_refuses_generation_flags_when_every_model_embeds_only(tmp_path, minilm_path, flags, named):
    env = cli_env(tmp_path / "jan")
    result = jan("serve", "--port", "0", "-m", str(minilm_path), *flags, env=env, timeout=WAIT_S)
    fails(result, named, "embeds only", "text generation only")


@pytest.mark.parametrize("field,key,value", [GENERATION_ONLY[0], GENERATION_ONLY[-3]],
                         ids=["settings.speculative", "parameters.temperature"])
def test_importing_an_embedding_gguf_with_a_generation_setting_is_refused(server, minilm_path, field, key, value):
    status, answer = call(server, "POST", "/v1/models", {"path": str(minilm_path), "id": "imported",
                                                        field: {key: value}}, timeout=WAIT_S)
    _refused(status, answer, f"{field}.{key}")
    status, answer = call(server, "GET", "/v1/models/imported", timeout=WAIT_S)
    assert status == 404, answer  # nothing left behind


@pytest.mark.parametrize("option,value", [("speculative", "ngram"), ("draft_max", 4), ("draft_min", 1), ("ngram", 3),
                                          ("draft_p_min", 0.5)])
def test_the_library_refuses_speculative_options_for_an_embedding_model(minilm_path, stories_path, option, value):
    import jan
    from jan.errors import ModelSettingError

    # (draft_p_min needs a draft model to be read at all: given one, the model's kind is what refuses it)
    given = {option: value, **({"draft_model": stories_path} if option == "draft_p_min" else {})}
    with pytest.raises(ModelSettingError, match=f"^{option}: .* is an embedding model") as info:
        jan.Model(minilm_path, n_threads=1, **given)
    assert info.value.param == option
    with pytest.raises(ModelSettingError, match=f"^{option}: "):  # (embedding=True: the same)
        jan.Model(stories_path, n_threads=1, embedding=True, **given)
    jan.Model(minilm_path, n_threads=1, speculative="none").close()  # (asks for nothing)


def test_server_wide_speculative_flags_stay_defaults_for_the_models_that_generate(tmp_path, stories_path,
                                                                                   minilm_path):
    """A server with a model that generates beside one that embeds: --spec-type/--draft-max are for the first (a
    default, left out for the embedding model, which jan.Model now refuses them for)."""
    with running(tmp_path / "data", stories_path, minilm_path, speculative="ngram", draft_max=4) as srv:
        status, answer = call(srv, "POST", "/v1/embeddings", {"model": EMBED, "input": "hi"}, timeout=WAIT_S)
        assert status == 200, answer
        status, answer = call(srv, "POST", "/v1/chat/completions", {"model": CHAT, "max_tokens": 2,
                                                                    "messages": [{"role": "user", "content": "hi"}]},
                              timeout=WAIT_S)
        assert status == 200, answer
