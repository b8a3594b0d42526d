"""Jan's Ollama answers as Ollama's own (its newest release's ``api/types.go``, ``server/routes.go``, ``sched.go``):

- ``keep_alive``: each request sets its model's keep-alive, and one that names none the server's default
  (``jan serve --keep-alive``; Ollama's ``OLLAMA_KEEP_ALIVE``), on every Ollama route that loads a model (chat,
  generate, embed, embeddings; a ``_debug_render_only`` one too) — jan kept the last request's value, so one
  ``keep_alive: -1`` kept a model loaded for good through every later request; the OpenAI dialect, which has no
  ``keep_alive``, leaves it as it is;
- ``/api/version`` names the Ollama release whose fields jan serves (it said 0.12.0, which had neither
  ``/api/tags``' ``capabilities`` nor ``details`` lengths);
- ``/api/ps`` entries carry exactly ``ProcessModelResponse``'s fields: no ``remote_model``/``remote_host``, and
  ``details.parent_model`` empty, as Ollama's ``PsHandler`` fills it (its ``/api/tags`` and ``/api/show`` name it);
- (a guard, sound already) a request without ``think`` to a model that can think thinks, as Ollama turns ``think``
  on for a model with the ``thinking`` capability, also in a template that thinks only when asked (DeepSeek-V3.1's);
- ``capabilities`` come in Ollama's order for a model that chats in its GGUF's chat template: the template's
  (``tools``, ``thinking``) before ``completion``, then ``vision``/``audio``, then ``insert``.

Real servers (stories260K and the MiniLM embedding model), the ``ollama`` client and raw HTTP; the expiry is read
from ``/api/ps`` and bounded from above only (a busy machine only makes it nearer), never timed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from api_helpers import running
from jan.server.dialects import ollama_models
from jan.server.routes.ollama import OLLAMA_VERSION
from jan.services.abilities import Abilities
from jan.testing.gguf_models import TINY_CHAT_CONFIG, models_dir, vocab_path, write_llama_from_vocab

import ollama

WAIT_S = 300
DEFAULT_S = 600  # the server's --keep-alive
STORIES, MINILM, ASKED = "stories260K", "all-MiniLM-L6-v2-f32", "thinks-when-asked"
# a request on each Ollama route that loads a model, without keep_alive
ROUTES = [
    ("/api/chat", {"model": STORIES, "messages": [{"role": "user", "content": "Hi"}], "options": {"num_predict": 1}}),
    ("/api/generate", {"model": STORIES, "prompt": "Once", "options": {"num_predict": 1}}),
    ("/api/chat", {"model": STORIES}),  # load only
    ("/api/generate", {"model": STORIES}),  # load only
    # nothing generated, the model loaded for it (as Ollama schedules it before it renders)
    ("/api/chat", {"model": STORIES, "messages": [{"role": "user", "content": "Hi"}], "_debug_render_only": True}),
    ("/api/generate", {"model": STORIES, "prompt": "Once", "_debug_render_only": True}),
    ("/api/generate", {"model": STORIES, "prompt": "Once", "raw": True, "_debug_render_only": True}),
    ("/api/embed", {"model": MINILM, "input": "Hi"}),
    ("/api/embeddings", {"model": MINILM, "prompt": "Hi"}),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    tmp = tmp_path_factory.mktemp("parity")
    # a tiny llama in DeepSeek-V3.1's template, which thinks only when asked (its `thinking` defaults to false)
    template = (models_dir().parent / "templates" / "deepseek-ai-DeepSeek-V3.1.jinja").read_text(encoding="utf-8")
    asked = write_llama_from_vocab(tmp / f"{ASKED}.gguf", vocab_path("ggml-vocab-qwen2.gguf"), **TINY_CHAT_CONFIG,
                                   dtype="f32", chat_template=template)
    with running(tmp / "data", stories_path, minilm_path, asked, keep_alive=DEFAULT_S) as srv:
        yield srv


def _post(server, path: str, body: dict) -> dict:
    got = httpx.post(server.base_url + path, json={**body, "stream": False}, timeout=WAIT_S)
    assert got.status_code == 200, got.text
    return got.json()


def _ps(server) -> dict[str, dict]:
    return {m["name"]: m for m in httpx.get(server.base_url + "/api/ps", timeout=WAIT_S).json()["models"]}


def _seconds_left(server, model: str) -> float:
    expires = _ps(server)[f"{model}:latest"]["expires_at"]
    return (datetime.fromisoformat(expires.replace("Z", "+00:00")) - datetime.now(timezone.utc)).total_seconds()


@pytest.mark.parametrize("path, body", ROUTES)
def test_a_request_without_keep_alive_takes_the_server_s_default(server, path, body):
    model = body["model"]
    for kept in (-1, "2h"):
        _post(server, path, {**body, "keep_alive": kept})
        assert _seconds_left(server, model) > DEFAULT_S * 3, kept  # (forever is Ollama's: 2^63 ns ahead)
        _post(server, path, body)  # no keep_alive: the default again, not the last request's
        assert _seconds_left(server, model) <= DEFAULT_S + 1, (path, kept)
    _post(server, path, {**body, "keep_alive": None})  # null is no keep_alive, as Go's nil *Duration
    assert _seconds_left(server, model) <= DEFAULT_S + 1


def test_other_dialects_leave_the_model_s_keep_alive(server):
    _post(server, "/api/generate", {"model": STORIES, "keep_alive": -1})
    got = httpx.post(server.base_url + "/v1/chat/completions", timeout=WAIT_S, json={
        "model": STORIES, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
    assert got.status_code == 200, got.text
    assert _seconds_left(server, STORIES) > DEFAULT_S * 3  # (the OpenAI dialect has no keep_alive to apply)
    _post(server, "/api/generate", {"model": STORIES})


def test_without_a_server_default_a_request_without_keep_alive_keeps_the_model_until_unloaded(tmp_path, stories_path):
    with running(tmp_path / "data", stories_path) as srv:  # no --keep-alive: loaded until unloaded
        _post(srv, "/api/generate", {"model": STORIES, "keep_alive": "5m"})
        assert _seconds_left(srv, STORIES) <= 301
        _post(srv, "/api/generate", {"model": STORIES})
        assert _seconds_left(srv, STORIES) > 3600 * 24 * 365


def test_forever_is_ollamas_longest_duration(server):
    _post(server, "/api/generate", {"model": STORIES, "keep_alive": -1})
    expires = datetime.fromisoformat(_ps(server)[f"{STORIES}:latest"]["expires_at"].replace("Z", "+00:00"))
    ahead = (expires - datetime.now(timezone.utc)).total_seconds()
    assert 2 ** 63 / 1e9 - 3600 < ahead <= 2 ** 63 / 1e9, expires  # Go's time.Duration(math.MaxInt64), ~292 years
    _post(server, "/api/generate", {"model": STORIES})


def test_version_names_the_ollama_release_served():
    assert OLLAMA_VERSION == "0.32.15"
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"`{OLLAMA_VERSION}`" in readme


def test_version_route(server):
    assert httpx.get(server.base_url + "/api/version", timeout=WAIT_S).json()["version"] == OLLAMA_VERSION


# Ollama's structs (api/types.go): the keys a JSON answer has, those without omitempty always
PS_KEYS = {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}
DETAILS_KEYS = {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}


def test_ps_has_ollamas_fields_only(server):
    client = ollama.Client(host=server.base_url, timeout=WAIT_S)
    client.create(model="kid", from_=STORIES, system="You are a cat.")
    client.generate(model="kid")
    entry = _ps(server)["kid:latest"]
    assert set(entry) == PS_KEYS, entry
    assert set(entry["details"]) == DETAILS_KEYS, entry["details"]
    assert entry["details"]["parent_model"] == ""  # as Ollama's PsHandler fills details
    assert client.show("kid").details.parent_model == f"{STORIES}:latest"  # (show and tags name it)
    listed = {m["name"]: m for m in httpx.get(server.base_url + "/api/tags", timeout=WAIT_S).json()["models"]}
    assert listed["kid:latest"]["details"]["parent_model"] == f"{STORIES}:latest"
    assert DETAILS_KEYS <= set(listed["kid:latest"]["details"])
    client.generate(model="kid", keep_alive=0)


def test_a_remote_model_s_ps_entry_has_no_remote_fields():
    remote = {"id": "cloudy", "engine": "openai", "format": "api",
              "settings": {"model": "gpt-x", "base_url": "https://api.example.com/v1"}}
    assert ollama_models.remote_fields(remote)  # (named in /api/tags and /api/show)
    entry = ollama_models.running_entry(remote, None, {"expires_in": 60})
    assert set(entry) == PS_KEYS and set(entry["details"]) == DETAILS_KEYS, entry


def test_capabilities_come_in_ollamas_order():
    from jan.services.models import capabilities
    from jan.templates import ChatTemplate

    template = ChatTemplate((models_dir().parent / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8"))
    can = Abilities(template=template, fim=True, projector=True, vision=True, audio=True, embedding=False)
    assert capabilities({}, can) == ["tools", "thinking", "completion", "vision", "audio", "insert"]
    can = Abilities(template=template, fim=False, projector=True, vision=True, audio=False, embedding=False)
    assert capabilities({}, can) == ["tools", "thinking", "completion", "vision"]


def test_show_takes_the_request_s_system_and_options(server):
    """Ollama's ShowRequest has ``system`` (shown as the model's) and ``options`` (the Modelfile's PARAMETER lines
    over the model's own; ``parameters`` stays the model's); jan ignored both, and took ``options: 5``."""
    got = _post(server, "/api/show", {"model": STORIES, "system": "Be brief.",
                                      "options": {"temperature": 0.5, "stop": ["a", "b"]}})
    assert got["system"] == "Be brief." and 'SYSTEM """Be brief."""' in got["modelfile"], got
    assert "PARAMETER temperature" in got["modelfile"] and got["modelfile"].count("PARAMETER stop") == 2, got
    assert "parameters" not in got  # (the model has none of its own: left out, as Go's omitempty)
    plain = _post(server, "/api/show", {"model": STORIES})
    assert "system" not in plain and "PARAMETER" not in plain["modelfile"], plain
    for bad in ({"options": 5}, {"system": 5}, {"options": ["temperature"]}):
        refused = httpx.post(server.base_url + "/api/show", json={"model": STORIES, **bad}, timeout=WAIT_S)
        assert refused.status_code == 400 and list(refused.json()) == ["error"], refused.text


def test_a_model_that_can_think_thinks_when_think_is_left_out(server):
    assert "thinking" in _post(server, "/api/show", {"model": ASKED})["capabilities"]
    chat = {"model": ASKED, "messages": [{"role": "user", "content": "Hi"}], "_debug_render_only": True}

    def rendered(path: str, body: dict) -> str:
        return _post(server, path, body)["_debug_info"]["rendered_template"]

    for path, body in (("/api/chat", chat), ("/api/generate", {"model": ASKED, "prompt": "Hi",
                                                               "_debug_render_only": True})):
        left_out, on, off = (rendered(path, {**body, **think}) for think in ({}, {"think": True}, {"think": False}))
        assert left_out == on != off, (path, left_out, off)
        assert left_out.endswith("<think>") and off.endswith("</think>"), (left_out, off)
    # a model that cannot think is asked nothing: no 400, as without think
    assert _post(server, "/api/chat", {"model": STORIES, "messages": [{"role": "user", "content": "Hi"}],
                                       "options": {"num_predict": 1}})["done"]
