"""A model.json edited by hand whose companion file (``settings.draft_model``, ``settings.mmproj``,
``settings.lora``) is missing or a directory: the 400 names the field and whose model.json it is, "(in the
model.json of model 'm')", as every other hand-edited setting's does, and says "is a directory" for a directory, as
jan.Model says it (it said "no file at '/x'" of a folder that is there, and named no model)."""

from __future__ import annotations

import json

import pytest
from api_helpers import post_json, running

from jan.services.companions import companion_problem, lora_problem, weights_problem
from jan.store import DataFolder

WHOSE = "(in the model.json of model 'm')"


def cut_copy(src, dst) -> tuple[int, int]:
    """A copy of the GGUF ``src`` at ``dst`` cut short (a partial download): (bytes missing, its whole size)."""
    whole = open(src, "rb").read()
    kept = len(whole) * 2 // 3
    open(dst, "wb").write(whole[:kept])
    return len(whole) - kept, len(whole)


@pytest.fixture(scope="module")
def served(tmp_path_factory, stories_path, vision_pair):
    from jan.testing.gguf_models import write_lora_adapter

    root = tmp_path_factory.mktemp("companions")
    DataFolder(root / "data").models.import_gguf(stories_path, model_id="m", mode="reference")
    (root / "folder").mkdir()
    (root / "data" / "models" / "m" / "sub").mkdir()  # a folder inside the model's folder
    cut_copy(stories_path, root / "cut.gguf")
    cut_copy(vision_pair[1], root / "cut-mmproj.gguf")
    cut_copy(write_lora_adapter(root / "lora.gguf", stories_path), root / "cut-lora.gguf")
    with running(root / "data") as srv:
        yield srv, root


def _with_setting(root, key, value) -> None:
    stored = root / "data" / "models" / "m" / "model.json"
    doc = json.loads(stored.read_text())
    doc["settings"] = {**{k: v for k, v in doc["settings"].items() if k not in ("draft_model", "mmproj", "lora")},
                       key: value}
    stored.write_text(json.dumps(doc))


@pytest.mark.parametrize(("key", "value", "says"), [
    ("draft_model", "{root}/folder", "draft model file '{root}/folder' is a directory"),
    ("draft_model", "{root}/none.gguf", "no file at '{root}/none.gguf'"),
    ("mmproj", "{root}/folder", "projector file '{root}/folder' is a directory"),
    ("mmproj", "none.gguf", "no file at 'none.gguf'"),
    ("mmproj", "../../x.gguf", "climbs out"),
    ("lora", ["{root}/folder"], "LoRA adapter file '{root}/folder' is a directory"),
    ("lora", ["{root}/none.gguf"], "not found: '{root}/none.gguf'"),
    # a relative name that resolves to a folder in the model's folder: "is a directory" too, not "no file"
    ("draft_model", "sub", "draft model file '{root}/data/models/m/sub' is a directory"),
    ("mmproj", "sub", "projector file '{root}/data/models/m/sub' is a directory"),
    ("lora", ["sub"], "LoRA adapter file '{root}/data/models/m/sub' is a directory"),
    # a partial download: said with the bytes missing, before the model's weights load (llama.cpp told it after)
    ("draft_model", "{root}/cut.gguf", "draft model file '{root}/cut.gguf' is cut short: "),
    ("mmproj", "{root}/cut-mmproj.gguf", "projector file '{root}/cut-mmproj.gguf' is cut short: "),
    ("lora", ["{root}/cut-lora.gguf"], "LoRA adapter file '{root}/cut-lora.gguf' is cut short: "),
])
def test_a_companion_file_names_its_field_and_model(served, key, value, says):
    srv, root = served
    value = [v.format(root=root) for v in value] if isinstance(value, list) else value.format(root=root)
    _with_setting(root, key, value)
    says = says.format(root=root)
    status, body = post_json(srv.base_url, "/v1/chat/completions",
                             {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and body["error"]["param"] == f"settings.{key}", body
    message = body["error"]["message"]
    assert message.startswith(f"settings.{key}") and says in message and message.endswith(WHOSE), message
    status, body = post_json(srv.base_url, "/api/chat", {"model": "m", "stream": False,
                                                         "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and body == {"error": message}, body  # (Ollama's shape, the same words)
    # the model shows its model.json's fields, nothing of how the load check found the file
    import urllib.request

    shown = json.loads(urllib.request.urlopen(f"{srv.base_url}/v1/models/m", timeout=120).read())
    assert "mmproj_named" not in shown and shown["settings"][key] == value


def test_a_directory_is_said_so_where_a_file_is_judged(tmp_path):
    # PATCH / POST /v1/models and the CLI's --lora judge the same files with these: "no file" of a folder misled
    for why in (companion_problem("draft_model", str(tmp_path)), companion_problem("mmproj", str(tmp_path)),
                lora_problem(str(tmp_path)), weights_problem(str(tmp_path))):
        assert why is not None and f"'{tmp_path}' is a directory" in why, why
    assert companion_problem("draft_model", str(tmp_path / "none")) == f"no file at '{tmp_path / 'none'}'"


def test_a_companion_cut_short_is_told_before_any_weights_load(tmp_path, stories_path, vision_pair, monkeypatch):
    """jan.Model and a pool's check (jan.engine.preflight) read each companion's header first: a draft model or
    projector whose tensor data is cut short names the file and the bytes missing, and no weights were read."""
    import jan
    import jan.engine.model as engine_model
    from jan.engine.preflight import check_load

    draft, projector = tmp_path / "draft.gguf", tmp_path / "mmproj.gguf"
    draft_missing, draft_size = cut_copy(stories_path, draft)
    projector_missing, projector_size = cut_copy(vision_pair[1], projector)
    loaded = []
    monkeypatch.setattr(engine_model, "load_weights", lambda *a, **k: loaded.append(a) or pytest.fail("weights read"))
    for model, option, path, says in (
            (stories_path, "draft_model", draft,
             f"draft_model: draft model file '{draft}' is cut short: {draft_missing} of its {draft_size} bytes are "
             "missing"),
            (vision_pair[0], "mmproj", projector,
             f"mmproj: projector file '{projector}' is cut short: {projector_missing} of its {projector_size} bytes "
             "are missing")):
        for attempt in (lambda: jan.Model(model, **{option: path}), lambda: check_load(model, {option: path})):
            with pytest.raises(jan.ModelFileError) as caught:
                attempt()
            assert str(caught.value).startswith(says), caught.value
    assert loaded == []


@pytest.mark.parametrize(("key", "value", "says"), [
    ("draft_model", "sub", "draft model file '{root}/data/models/m/sub' is a directory"),
    ("mmproj", "sub", "projector file '{root}/data/models/m/sub' is a directory"),
    ("lora", ["sub"], "LoRA adapter file '{root}/data/models/m/sub' is a directory"),
    ("mmproj", "{root}/folder", "projector file '{root}/folder' is a directory"),
])
def test_a_patch_naming_a_folder_says_it_is_one(served, key, value, says):
    """The request field that names a companion (PATCH /v1/models settings) says it of a relative name as of an
    absolute one, in the load's words."""
    import urllib.error
    import urllib.request

    srv, root = served
    _with_setting(root, "ctx_len", 256)  # (no companion stored: the PATCH's own value is judged)
    value = [v.format(root=root) for v in value] if isinstance(value, list) else value.format(root=root)
    req = urllib.request.Request(f"{srv.base_url}/v1/models/m", method="PATCH",
                                 data=json.dumps({"settings": {key: value}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=120)
    body = json.loads(caught.value.read())
    assert caught.value.code == 400 and body["error"]["param"] == f"settings.{key}", body
    assert says.format(root=root) in body["error"]["message"], body


@pytest.mark.parametrize("key", ["mmproj", "draft_model"])
def test_jan_run_says_a_relative_companion_is_a_directory(tmp_path, stories_path, key):
    """In-process (`jan run`, a model given transient settings) the same words as the server's: the projector's
    relative name was "no file at 'sub', nor in the model's folder" of the folder that is there."""
    from test_cli_helpers import cli_env, fails, jan

    data = tmp_path / "data"
    DataFolder(data).models.import_gguf(stories_path, model_id="m", mode="reference")
    (data / "models" / "m" / "sub").mkdir()
    stored = data / "models" / "m" / "model.json"
    doc = json.loads(stored.read_text())
    doc["settings"] = {**doc["settings"], key: "sub"}
    stored.write_text(json.dumps(doc))
    what = {"mmproj": "projector file", "draft_model": "draft model file"}[key]
    fails(jan("run", "m", "hi", "-n", "2", env=cli_env(data)),
          f"settings.{key}: {what} '{data}/models/m/sub' is a directory, not a GGUF file", WHOSE)
