"""What llama-server 0.3.36 tells of its model besides the generation settings, as jan tells it (checked against its
binary on stories260K and, for the template capabilities, with each template below as its --chat-template-file):
``/props``' ``model_ftype`` and ``chat_template_caps``, and the ``meta`` of each ``/v1/models`` (and ``/models``)
entry. Before, jan told none of them: a KeyError for the clients that read them."""

from __future__ import annotations

import httpx
import pytest

from jan.engine.header import read_info
from jan.server.dialects.ollama_models import GGUFDetails, gguf_details, llama_meta
from jan.templates import ChatTemplate
from jan.testing.gguf_models import models_dir, vocab_path, write_llama_from_vocab
from server_helpers import start_server

CAPS = ("supports_object_arguments", "supports_parallel_tool_calls", "supports_preserve_reasoning",
        "supports_reasoning_effort", "supports_string_content", "supports_system_role", "supports_tool_calls",
        "supports_tools", "supports_typed_content")
# llama-server 0.3.36's /props chat_template_caps with each template (--jinja --chat-template-file), the caps it
# tells true; the others false
LLAMA_SERVER_CAPS = {
    "Qwen-Qwen3-0.6B": {"supports_object_arguments", "supports_parallel_tool_calls", "supports_string_content",
                        "supports_system_role", "supports_tool_calls", "supports_tools"},
    "google-gemma-2-2b-it": {"supports_string_content"},
    "Mistral-Small-3.2-24B-Instruct-2506": {"supports_object_arguments", "supports_parallel_tool_calls",
                                            "supports_string_content", "supports_system_role", "supports_tool_calls",
                                            "supports_tools", "supports_typed_content"},
    "GLM-4.7-Flash": {"supports_object_arguments", "supports_parallel_tool_calls", "supports_preserve_reasoning",
                      "supports_string_content", "supports_system_role", "supports_tool_calls", "supports_tools",
                      "supports_typed_content"},
    "openai-gpt-oss-120b": {"supports_object_arguments", "supports_reasoning_effort", "supports_string_content",
                            "supports_system_role", "supports_tool_calls", "supports_tools"},
    "meta-llama-Llama-3.1-8B-Instruct": {"supports_object_arguments", "supports_string_content",
                                         "supports_system_role", "supports_tool_calls", "supports_tools"},
    "deepseek-ai-DeepSeek-V3.1": {"supports_object_arguments", "supports_parallel_tool_calls",
                                  "supports_string_content", "supports_system_role", "supports_tool_calls"},
}
# llama-server 0.3.36's meta of stories260K loaded with -c 256 -np 1 (its n_ctx: the slot's context)
STORIES_META = {"vocab_type": 1, "n_vocab": 512, "n_ctx_train": 2048, "n_embd": 64, "n_params": 292800,
                "size": 1171200, "ftype": "(guessed) all F32"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("meta"), [stories_path], n_ctx=256, n_parallel=1)
    yield srv
    srv.stop()


@pytest.mark.parametrize("name", sorted(LLAMA_SERVER_CAPS))
def test_template_caps_are_llama_servers(name):
    path = models_dir().parent / "templates" / f"{name}.jinja"
    if not path.exists():
        pytest.skip(f"{path} not found")
    caps = ChatTemplate(path.read_text(encoding="utf-8"), "<s>", "</s>").llama_caps
    assert set(caps) == set(CAPS), caps
    assert {k for k, v in caps.items() if v} == LLAMA_SERVER_CAPS[name], caps


def test_props_tell_the_weights_type_and_the_templates_caps(server):
    props = httpx.get(server.base_url + "/props", params={"model": "stories260K"}, timeout=120).json()
    # (stories260K has no general.file_type: llama.cpp guesses it from its tensors at the load, as llama-server says)
    assert props["model_ftype"] == "(guessed) all F32", props
    caps = props["chat_template_caps"]
    assert set(caps) == set(CAPS) and all(isinstance(v, bool) for v in caps.values()), caps
    # (the model has no template: jan's ChatML with tools stands in, which renders tools, calls and a system turn)
    assert caps["supports_tools"] and caps["supports_tool_calls"] and caps["supports_system_role"], caps
    assert props["ui_settings"] == {} and props["cors_proxy_enabled"] is False, props
    assert props["ui"] is True, props  # (jan's chat page at /)


@pytest.mark.parametrize("path", ["/v1/models", "/models"])
def test_model_entries_carry_llama_servers_meta(server, path):
    entry = next(m for m in httpx.get(server.base_url + path, timeout=120).json()["data"] if m["id"] == "stories260K")
    assert entry["meta"] == STORIES_META | {"n_ctx": 256}, entry["meta"]
    one = httpx.get(server.base_url + "/v1/models/stories260K", timeout=120).json()
    assert one["meta"] == entry["meta"], one


def test_meta_of_a_model_not_loaded_is_its_headers(stories_path):
    # the header's sizes (a vocab-only read has none of its own: llama.cpp reads these keys at a load), the context
    # it was trained with, and the type a load names (stories260K has no general.file_type: llama.cpp's guess from
    # its tensors, made from the header as a load makes it; it said "" until a load)
    meta = llama_meta(gguf_details(str(stories_path)))
    assert meta == STORIES_META | {"n_ctx": 2048, "ftype": "(guessed) all F32"}, meta
    assert read_info(stories_path).vocab_type == 1
    # a model without a GGUF (a remote one) has no meta
    assert llama_meta(GGUFDetails()) is None


def test_a_header_file_type_is_named_as_llama_cpp_names_it(tmp_path):
    # a header read loads no tensor, so llama.cpp's type of it is its default: the header's general.file_type is named
    # instead (what a load of a file that has one tells too)
    path = write_llama_from_vocab(tmp_path / "typed.gguf", vocab_path("llama-spm"), n_embd=16, n_layer=1, n_head=2,
                                  n_ff=32, extra_kv={"general.file_type": 15})  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert read_info(path).ftype == "Q4_K - Medium"
    assert llama_meta(gguf_details(str(path)))["ftype"] == "Q4_K - Medium"


def test_metrics_count_the_decode_calls_as_llama_server_names_them(server):
    # llama-server's llamacpp:n_decode_total (its dashboards read it): the slots' text steps, as it counts them
    def decodes() -> float:
        text = httpx.get(server.base_url + "/metrics", timeout=120).text
        assert "# TYPE llamacpp:n_decode_total counter" in text, text
        return next(float(line.split(" ")[1]) for line in text.splitlines()
                    if line.startswith('llamacpp:n_decode_total{model="stories260K"}'))

    before = decodes()
    response = httpx.post(server.base_url + "/completion", timeout=120, json={
        "model": "stories260K", "prompt": "Once upon a time", "n_predict": 3, "temperature": 0, "cache_prompt": False})
    assert response.status_code == 200, response.text
    assert decodes() >= before + 3  # (the prompt's batch, then one per generated token but the last at least)


def test_the_caps_of_a_template_with_a_tool_use_variant_are_the_variants():
    # (llama-server tells the more expressive tool_use template's, where the GGUF has one)
    templates = models_dir().parent / "templates"
    plain, tools = templates / "google-gemma-2-2b-it.jinja", templates / "Qwen-Qwen3-0.6B.jinja"
    if not (plain.exists() and tools.exists()):
        pytest.skip("shared templates missing")
    variant = ChatTemplate(tools.read_text(encoding="utf-8"))
    template = ChatTemplate(plain.read_text(encoding="utf-8"), "<s>", "</s>", tool_use=variant)
    assert template.llama_caps == variant.llama_caps
    assert {k for k, v in template.llama_caps.items() if v} == LLAMA_SERVER_CAPS["Qwen-Qwen3-0.6B"]


def test_a_caps_probe_past_the_render_budget_tells_no(monkeypatch):
    # (/props must answer, never a 500: a probe the budget stops is a capability not seen)
    from jan.templates.chat import TemplateBudgetError

    template = ChatTemplate.chatml()

    def over(*args, **kwargs):
        raise TemplateBudgetError("over budget")

    monkeypatch.setattr(template, "_try", over)
    caps = template.llama_caps
    assert not caps["supports_parallel_tool_calls"] and not caps["supports_preserve_reasoning"], caps
    assert not caps["supports_string_content"], caps
