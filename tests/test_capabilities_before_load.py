"""The ``thinking`` capability of a model whose files cannot be read yet (a download still running), and that no route
works a template out on the event loop.

Without a readable GGUF, ``capabilities`` guessed thinking from words in the template (``<think>``,
``enable_thinking``, ``reasoning_content``): gpt-oss (Harmony's analysis channel), Solar Open (``<|think|>``) and
templates that keep their markers in variables were listed as models that cannot think, and an Ollama client that
reads the list never asked them to. It now reads the format a load detects (``ChatFormat.thinks``). Detecting a
format may render the template (its learned markers), so the model lists do it on a worker thread: a compile or a
render seen on the event loop thread fails the test.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from jan.services.models import capabilities
from jan.testing.gguf_models import templates_dir

from loop_helpers import note_on_loop
from server_helpers import start_server


def _source(name: str) -> str:
    path = templates_dir() / f"{name}.jinja"
    if not path.is_file():
        pytest.skip(f"template {path} missing")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "thinks"), [("openai-gpt-oss-120b", True), ("upstage-Solar-Open-100B", True),
                                              ("Qwen-Qwen2.5-7B-Instruct", False)])
def test_thinking_is_the_detected_format_s_before_the_file_is_read(name, thinks):
    source = _source(name)
    assert ("thinking" in capabilities({"settings": {"chat_template": source}})) is thinks
    assert ("thinking" in capabilities({}, chat_template=source)) is thinks  # (the GGUF header's template)


def test_every_template_lists_the_same_tools_and_thinking_before_and_after_a_load():
    """Before a load (no readable GGUF), ``tools`` was the word "tools" in the template's source: Command R+'s
    (whose tools go to its tool_use variant) and llama.cpp's R1 template (which names them only in a comment) were
    listed with tools that an Ollama request was then refused once the model loaded. Before a load the listing now
    judges the template a load resolves as the loaded model's is judged, so both agree for every real template."""
    from jan.services.abilities import Abilities
    from jan.templates import ChatTemplate, TemplateError

    checked = 0
    for path in sorted(templates_dir().glob("*.jinja")):
        source = path.read_text(encoding="utf-8")
        try:
            template = ChatTemplate(source)
        except TemplateError:
            continue
        loaded = capabilities({}, Abilities(template=template, fim=False, projector=False, vision=False, audio=False,
                                            embedding=False))
        assert capabilities({"settings": {"chat_template": source}}) == loaded, path.stem
        assert capabilities({}, chat_template=source) == loaded, path.stem  # (the GGUF header's template)
        checked += 1
    assert checked > 40


def test_markers_kept_in_variables_are_thinking_too():
    # no <think>, no enable_thinking, no reasoning_content: its markers are only what it renders
    source = ("{% set open = '<seed:' ~ 'think>' %}{% set close = '</seed:' ~ 'think>' %}"
              "{% for m in messages %}{{ m.role }}: {% if m.thinking is defined and m.thinking %}"
              "{{ open }}{{ m.thinking }}{{ close }}{% endif %}{{ m.content }}\n{% endfor %}")
    assert "thinking" in capabilities({"settings": {"chat_template": source}})


@pytest.fixture()
def loop_watch(monkeypatch):
    """Every template compile or budgeted render, noted where it ran on an event loop's thread."""
    from jan.templates import jinja_env

    return note_on_loop(monkeypatch, ((jinja_env, "compile_template"), (jinja_env, "render_budgeted")))


def test_model_lists_detect_formats_off_the_event_loop(tmp_path, stories_path, loop_watch):
    # a source no earlier test detected (the detection is kept per source): this one must render, and not on the loop
    source = _source("upstage-Solar-Open-100B") + "{# " + uuid.uuid4().hex + " #}"
    server = start_server(tmp_path, [stories_path])
    try:
        folder = tmp_path / "data" / "models" / "solar-later"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.json").write_text(json.dumps({
            "id": "solar-later", "object": "model", "name": "solar-later", "engine": "llama.cpp", "format": "gguf",
            "sources": [{"filename": "solar-later.gguf", "url": "https://example.invalid/solar-later.gguf"}],
            "settings": {"chat_template": source, "llama_model_path": "solar-later.gguf"}}))
        listed = httpx.get(server.base_url + "/v1/models", timeout=120).json()["data"]
        caps = {m["id"]: m.get("capabilities") for m in listed}
        assert "solar-later" in caps, caps
        assert "thinking" in caps["solar-later"]
        shown = httpx.post(server.base_url + "/api/show", json={"model": "solar-later"}, timeout=120)
        assert shown.status_code == 200 and "thinking" in shown.json()["capabilities"], shown.text
        assert "thinking" not in caps["stories260K"]
    finally:
        server.stop()
    assert loop_watch == [], loop_watch


def test_refusals_before_a_load_find_the_format_detected(tmp_path, loop_watch):
    # think asked of a model not loaded yet is judged before the load (require_thinking, on the event loop) from the
    # format of its template: detected with its abilities, on a worker, never on the loop
    from conftest import require_model
    from jan.testing.gguf_models import vocab_path, write_llama_from_vocab

    require_model("vocab/ggml-vocab-qwen2.gguf")
    source = _source("upstage-Solar-Open-100B") + "{# " + uuid.uuid4().hex + " #}"
    path = write_llama_from_vocab(tmp_path / "solar-fresh.gguf", vocab_path("qwen2"), n_embd=16, n_layer=1, n_head=2,
                                  n_ff=32, n_ctx=512, chat_template=source)
    server = start_server(tmp_path, [path])
    try:
        answer = httpx.post(server.base_url + "/api/generate", timeout=120, json={
            "model": "solar-fresh", "prompt": "hi", "raw": True, "think": True, "stream": False,
            "options": {"num_predict": 1, "temperature": 0}})
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
    assert loop_watch == [], loop_watch


def test_a_template_not_resolved_keeps_what_the_file_told():
    """A read file whose template cannot be resolved (a model.json template it cannot use) is judged by its texts
    for tools and thinking only: its FIM tokens and projector encoders still list ``insert`` and ``vision``/
    ``audio`` (they went with the template, and ``insert`` then hung on the caller's own header read)."""
    from jan.services.abilities import Abilities

    read = Abilities(template=None, fim=True, projector=True, vision=True, audio=False, embedding=False)
    assert capabilities({}, read) == ["completion", "vision", "insert"]
    assert capabilities({}, Abilities(template=None, fim=False, projector=False), fim=True) == ["completion"]
