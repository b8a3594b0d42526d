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


@pytest.fixture(scope="module")
def served(tmp_path_factory, stories_path):
    root = tmp_path_factory.mktemp("companions")
    DataFolder(root / "data").models.import_gguf(stories_path, model_id="m", mode="reference")
    (root / "folder").mkdir()
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


def test_a_directory_is_said_so_where_a_file_is_judged(tmp_path):
    # PATCH / POST /v1/models and the CLI's --lora judge the same files with these: "no file" of a folder misled
    for why in (companion_problem("draft_model", str(tmp_path)), companion_problem("mmproj", str(tmp_path)),
                lora_problem(str(tmp_path)), weights_problem(str(tmp_path))):
        assert why is not None and f"'{tmp_path}' is a directory" in why, why
    assert companion_problem("draft_model", str(tmp_path / "none")) == f"no file at '{tmp_path / 'none'}'"
