"""A load option that needs something the model loads without (:data:`jan.engine.model.LOAD_PREREQUISITES`:
``image_min_tokens`` a projector, ``draft_p_min`` a draft model, ``lora_init_without_apply`` LoRA adapters) is
refused where it is given — ``jan.Model``, a model.json PATCH, a hand-edited model.json at its load, ``jan serve``'s
flags when no model it may load reads them — never taken and left without effect. A value that asks for nothing
(False, the default) stays accepted. Beside them: ``LoadOptions`` refuses an out-of-range field where it is made,
``jan serve --default-model`` a model that embeds only, and the model service an id that is no string."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from api_helpers import running
from extension_helpers import call
from test_cli_helpers import cli_env, fails, jan

import jan.errors as jan_errors
from jan.engine.media import DEFAULT_LIMITS, MediaLimits
from jan.engine.model import LOAD_PREREQUISITES, LOAD_RANGES, check_load_options
from jan.errors import BadRequestError
from jan.services.errors import RequestError
from jan.services.models import check_prerequisites, unread_server_defaults
from jan.services.types import LoadOptions

CHAT = "stories260K"
WAIT_S = 300

#: A value of each option in the table that asks for something, and one that has what it needs.
ASKS = {"image_min_tokens": 64, "image_max_tokens": 256, "draft_p_min": 0.5, "lora_init_without_apply": True,
        "media_limits": MediaLimits(max_items=2)}
HAS = {"mmproj": "/nowhere/mmproj.gguf", "draft_model": "/nowhere/draft.gguf", "lora": (("/nowhere/a.gguf", 1.0),)}
#: ``jan serve``'s flag for each (its own spelling, as it names it in its error).
FLAGS = {"image_min_tokens": ["--image-min-tokens", "64"], "image_max_tokens": ["--image-max-tokens", "256"],
         "draft_p_min": ["--draft-p-min", "0.5"], "lora_init_without_apply": ["--lora-init-without-apply"]}
OPTIONS = sorted(LOAD_PREREQUISITES)
#: Options of jan.Model's alone (no model.json setting, no flag): what one request's media may be.
LIBRARY_ONLY = ("media_limits",)
SETTINGS = [option for option in OPTIONS if option not in LIBRARY_ONLY]


def test_every_option_of_the_table_is_a_model_json_setting_and_a_serve_flag():
    assert sorted(ASKS) == OPTIONS and sorted(FLAGS) == SETTINGS  # (a new entry gets its case in every test below)
    for option, (needed, _) in LOAD_PREREQUISITES.items():
        assert option in LIBRARY_ONLY or LoadOptions.MODEL_JSON_KEYS[option] == option
        assert needed in HAS


@pytest.mark.parametrize("option", OPTIONS)
def test_the_engine_refuses_an_option_without_what_it_needs(option):
    needed = LOAD_PREREQUISITES[option][0]
    with pytest.raises(BadRequestError, match=f"^{option}: needs .*; give one as {needed}, or leave it out$") as info:
        check_load_options({option: ASKS[option]})
    assert (info.value.param, info.value.code) == (option, "missing_prerequisite")
    check_load_options({option: ASKS[option], needed: HAS[needed]})


@pytest.mark.parametrize("option,value", [("lora_init_without_apply", False), ("draft_p_min", 0.75),
                                          ("draft_p_min", 0.0), ("image_min_tokens", None),
                                          ("media_limits", DEFAULT_LIMITS)])
def test_a_value_that_asks_for_nothing_stays_accepted(option, value):
    check_load_options({option: value})
    if option != "media_limits":
        check_prerequisites({"settings": {option: value}})


@pytest.mark.parametrize("option", OPTIONS)
def test_jan_model_refuses_it_before_reading_the_weights(stories_path, option):
    import jan

    with pytest.raises(BadRequestError, match=f"^{option}: needs ") as info:
        jan.Model(stories_path, n_threads=1, **{option: ASKS[option]})
    assert info.value.param == option


@pytest.mark.parametrize("option", SETTINGS)
def test_a_model_json_setting_without_what_it_needs_is_refused(option):
    needed = LOAD_PREREQUISITES[option][0]
    advice = f"; give one as settings.{needed}, or leave it out$"
    with pytest.raises(RequestError, match=f"^settings.{option}: needs .*{advice}") as info:
        check_prerequisites({"settings": {option: ASKS[option]}})
    assert (info.value.param, info.value.code) == (f"settings.{option}", "missing_prerequisite")
    check_prerequisites({"settings": {option: ASKS[option], needed: HAS[needed]}})
    # what the model service resolved counts too: a projector beside a GGUF given by path, which no setting names
    resolved = {"mmproj": "mmproj_path", "draft_model": "draft_model_path", "lora": "lora_paths"}[needed]
    check_prerequisites({"settings": {option: ASKS[option]}, resolved: HAS[needed]})
    if needed != "mmproj":  # the server's draft model and adapters are every model's that names none of its own
        check_prerequisites({"settings": {option: ASKS[option]}}, None, {needed: HAS[needed]})
        with pytest.raises(RequestError):  # (an empty one of its own opts out of the server's)
            check_prerequisites({"settings": {option: ASKS[option], needed: ""}}, None, {needed: HAS[needed]})
    # a PATCH of something else leaves a stored value alone; one of the prerequisite judges it again
    check_prerequisites({"settings": {option: ASKS[option]}}, ["settings.ctx_len"])
    with pytest.raises(RequestError):
        check_prerequisites({"settings": {option: ASKS[option]}}, [f"settings.{needed}"])


@pytest.mark.parametrize("option", SETTINGS)
def test_server_flags_no_model_reads_are_refused(option):
    needed = LOAD_PREREQUISITES[option][0]
    plain, has = {"id": "a", "settings": {}}, {"id": "b", "settings": {needed: "x.gguf"}}
    error = unread_server_defaults([plain], {option: ASKS[option]})
    assert error is not None and error.code == "missing_prerequisite" and "would have no effect" in str(error)
    assert error.given_by_server.option == option
    assert unread_server_defaults([plain, has], {option: ASKS[option]}) is None  # a default for the one that has it
    assert unread_server_defaults([plain], {option: ASKS[option], needed: HAS[needed]}) is None


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("prereq") / "data", stories_path) as srv:
        yield srv


@pytest.mark.parametrize("option", SETTINGS)
def test_a_patch_setting_it_without_what_it_needs_is_a_400(server, option):
    status, answer = call(server, "PATCH", f"/v1/models/{CHAT}", {"settings": {option: ASKS[option]}},
                          timeout=WAIT_S)
    assert status == 400, answer
    assert answer["error"]["param"] == f"settings.{option}", answer
    assert answer["error"]["code"] == "missing_prerequisite", answer
    status, model = call(server, "GET", f"/v1/models/{CHAT}", timeout=WAIT_S)
    assert status == 200 and option not in model.get("settings", {}), model  # nothing stored


@pytest.mark.parametrize("option", SETTINGS)
def test_a_hand_edited_model_json_is_refused_at_load(server, option):
    path = server.config.data_folder / "models" / CHAT / "model.json"
    before = path.read_text()
    doc = json.loads(before)
    doc["settings"][option] = ASKS[option]
    call(server, "POST", f"/v1/models/{CHAT}/stop", timeout=WAIT_S)
    path.write_text(json.dumps(doc))
    body = {"model": CHAT, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    try:
        status, answer = call(server, "POST", "/v1/chat/completions", body, timeout=WAIT_S)
        assert status == 400, answer
        assert answer["error"]["param"] == f"settings.{option}", answer
    finally:
        path.write_text(before)
    status, answer = call(server, "POST", "/v1/chat/completions", body, timeout=WAIT_S)
    assert status == 200, answer


@pytest.mark.parametrize("option", SETTINGS)
def test_jan_serve_refuses_a_flag_its_models_cannot_read(tmp_path, stories_path, option):
    result = jan("serve", "--port", "0", "-m", str(stories_path), *FLAGS[option], env=cli_env(tmp_path / "jan"),
                 timeout=WAIT_S)
    fails(result, FLAGS[option][0], "would have no effect")


#: ``jan run``'s flags of the table (a model loaded in this process), and how it names what each needs.
RUN_FLAGS = [(["--image-min-tokens", "64"], "settings.mmproj"), (["--image-max-tokens", "64"], "settings.mmproj"),
             (["--draft-p-min", "0.5"], "-md/--model-draft")]


@pytest.mark.parametrize("flags,needed", RUN_FLAGS, ids=[f[0] for f, _ in RUN_FLAGS])
def test_jan_run_refuses_a_flag_the_model_cannot_read_naming_the_flags(tmp_path, stories_path, flags, needed):
    env = cli_env(tmp_path / "jan")
    result = jan("run", str(stories_path), "hi", "-n", "1", *flags, env=env, timeout=WAIT_S)
    message = fails(result, f"{flags[0]}: needs ", f"give one as {needed}")
    assert "model.json" not in message  # (the flag gave it)


def test_jan_serve_and_the_services_refuse_a_default_model_that_embeds_only(tmp_path, minilm_path, stories_path):
    env = cli_env(tmp_path / "jan")
    result = jan("models", "import", str(minilm_path), "--id", "embedder", env=env, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr
    result = jan("serve", "--port", "0", "--default-model", "embedder", env=env, timeout=WAIT_S)
    fails(result, "--default-model 'embedder' embeds only")

    # the same default given to the services built in Python (it was taken: every chat naming no model went to it)
    from jan.services import open_services

    async def default_of(default: str) -> str:
        async with open_services(tmp_path / "jan") as services:
            services.models.default_model = default
            return await services.models.default_model_id()

    with pytest.raises(jan_errors.BadRequestError, match="^default_model: model 'embedder' embeds only") as info:
        asyncio.run(default_of("embedder"))
    assert (info.value.param, info.value.code) == ("default_model", "model_not_supported")
    result = jan("models", "import", str(stories_path), "--id", "writer", env=env, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr
    assert asyncio.run(default_of("writer")) == "writer"


@pytest.mark.parametrize("default", [5, True, b"stories260K", ["stories260K"]])
def test_the_model_service_refuses_a_default_model_that_is_no_id(default):
    from jan.services.models import ModelService

    with pytest.raises(jan_errors.BadRequestTypeError, match="^default_model: expected a model id") as info:
        ModelService(manager=None, default_model=default)
    assert isinstance(info.value, TypeError) and info.value.param == "default_model"


#: Each numeric field of LoadOptions with engine bounds, and a value below them.
BELOW = [(name, LOAD_RANGES[name].ge - 1) for name in sorted(f.name for f in dataclasses.fields(LoadOptions))
         if name in LOAD_RANGES and LOAD_RANGES[name].ge is not None]


@pytest.mark.parametrize("name,value", BELOW, ids=[n for n, _ in BELOW])
def test_load_options_refuse_an_out_of_range_field_when_made(name, value):
    with pytest.raises(ValueError, match=f"^{name}: ") as info:
        LoadOptions(**{name: value})
    assert info.value.param == name


@pytest.mark.parametrize("name,value", [("n_ctx", "big"), ("flash_attn", "yes"), ("cache_type_k", "q9"),
                                        ("speculative", "sometimes"), ("draft_p_min", 2.0), ("lora", "a.gguf")])
def test_load_options_refuse_a_value_of_the_wrong_kind_when_made(name, value):
    with pytest.raises((TypeError, ValueError), match=f"^{name}"):
        LoadOptions(**{name: value})


def _typed(kind: str, **fields):
    from jan.services.types import ChatMessage, ChatRequest, CompletionRequest, ReasoningOptions, SamplingOptions

    made = {"chat": lambda: ChatRequest(model="m", messages=(ChatMessage.of_text("user", "hi"),), **fields),
            "completion": lambda: CompletionRequest(model="m", prompts=("hi",), **fields),
            "reasoning": lambda: ReasoningOptions(**fields), "sampling": lambda: SamplingOptions(**fields)}
    return made[kind]()


#: (typed struct, field, a value out of the engine's range): each refused only where the engine read it, after the
#: model loaded, before.
OUT_OF_RANGE = [("chat", "top_logprobs", -1), ("chat", "top_logprobs", 21), ("completion", "logprobs", -1),
                ("completion", "logprobs", 21), ("reasoning", "budget_tokens", -2), ("sampling", "id_slot", -2),
                ("sampling", "id_slot", 2**40)]


@pytest.mark.parametrize("kind,name,value", OUT_OF_RANGE, ids=[f"{k}.{n}={v}" for k, n, v in OUT_OF_RANGE])
def test_typed_requests_refuse_an_out_of_range_field_when_made(kind, name, value):
    with pytest.raises(RequestError, match=f"^{name}: must be ") as info:
        _typed(kind, **{name: value})
    assert info.value.param == name


@pytest.mark.parametrize("kind,name,value", [("chat", "top_logprobs", 0), ("completion", "logprobs", 0),
                                             ("reasoning", "budget_tokens", -1), ("sampling", "id_slot", -1)])
def test_typed_requests_take_the_values_that_mean_none_or_any(kind, name, value):
    assert getattr(_typed(kind, **{name: value}), name) == value


def test_load_options_take_what_means_the_default():
    assert LoadOptions(n_ctx=0).n_ctx == 0  # the model's own context
    assert LoadOptions(n_gpu_layers="auto", n_threads=-1).given() == {"n_gpu_layers": "auto", "n_threads": -1}


@pytest.mark.parametrize("method", ["get", "resolve", "resolve_generating", "delete_leftover", "unload_unlisted",
                                    "name_model"])
def test_model_service_methods_refuse_an_id_that_is_no_string(method):
    """(it was a "model not found" for an id no model could have; each checks before it looks anything up)"""
    from jan.services.models import ModelService

    async def call_it() -> None:
        answer = getattr(ModelService(manager=None), method)(5)
        if asyncio.iscoroutine(answer):
            await answer

    with pytest.raises(TypeError, match="^model_id: expected a model id") as info:
        asyncio.run(call_it())
    assert isinstance(info.value, BadRequestError) and info.value.param == "model_id"


def test_relative_file_names_in_a_model_json_are_the_model_folders_never_the_working_directorys(
        tmp_path, monkeypatch, stories_path):
    """Every file a model.json names (weights, projector, draft model, adapters) by a relative name is a file of the
    model's folder, as jan writes them, whatever the working directory holds by that name."""
    from jan.store import DataFolder

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name in ("w.gguf", "p.gguf", "d.gguf", "a.gguf"):
        (cwd / name).symlink_to(stories_path)
    monkeypatch.chdir(cwd)
    store = DataFolder(tmp_path / "data")
    store.models.create({"id": "m", "settings": {"llama_model_path": "w.gguf", "mmproj": "p.gguf",
                                                 "draft_model": "d.gguf", "lora": ["a.gguf"]}})
    folder = store.models_dir / "m"
    assert store.models.model_file("m") is None and store.models.mmproj_file("m") is None  # (none in the folder)
    assert store.models.draft_model_file("m") == folder / "d.gguf"
    assert store.models.lora_files("m") == [{"path": str(folder / "a.gguf")}]
    (folder / "w.gguf").symlink_to(stories_path)
    assert store.models.model_file("m") == folder / "w.gguf"


def test_a_server_flag_stays_a_default_for_the_models_that_can_read_it(tmp_path, stories_path, qwen2vl_pair):
    """``jan serve --image-max-tokens`` with a model that has a projector beside one that has none: the flag is the
    first one's default, left out for the other (which jan.Model now refuses it for), so both answer."""
    model, _mmproj = qwen2vl_pair  # (its mmproj-<name> beside it: imported with it)
    with running(tmp_path / "data", stories_path, model, image_max_tokens=64) as srv:
        body = {"model": CHAT, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        status, answer = call(srv, "POST", "/v1/chat/completions", body, timeout=WAIT_S)
        assert status == 200, answer
        status, answer = call(srv, "POST", "/v1/chat/completions", {**body, "model": model.stem}, timeout=WAIT_S)
        assert status == 200, answer
        status, system = call(srv, "GET", "/v1/system", timeout=WAIT_S)
        shown = {m["id"]: m.get("image_max_tokens") for m in system["models"]}
        assert shown == {CHAT: None, model.stem: 64}, system
