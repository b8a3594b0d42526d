"""Fill-in-the-middle on a model with Qwen2.5-Coder's tokenizer, in every dialect that asks for it.

The model (:func:`jan.testing.gguf_models.write_qwen25_coder_model`) has the FIM and repository tokens at their real
ids and the GGUF keys a converted Qwen2.5-Coder file has; a copy without a chat template stands for a base coder
model, and a phi-3 one with FIM tokens for a model whose vocabulary wants a BOS. Each prompt is checked token by
token against the layout llama-server's ``/infill`` gives (its ``format_prompt_infill``), and Ollama's ``suffix``
against what its ``/api/generate`` does.
"""

from __future__ import annotations

import json

import httpx
import pytest

from jan.testing.gguf_models import QWEN25_CODER_TOKENS, write_qwen25_coder_model

from server_helpers import start_server
from test_cli_helpers import cli_env, jan, ok as cli_ok
from test_llamacpp_native import write_fim_model

CODER, BASE, BOS_FIM = "coder", "coder-base", "fim-bos"
ID = {text: i for i, text in QWEN25_CODER_TOKENS.items()}
EOS, EOT = 151643, 151645  # <|endoftext|>, <|im_end|>
GENEROUS_S = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("coder")
    srv = start_server(tmp, [stories_path, write_qwen25_coder_model(tmp / f"{CODER}.gguf"),
                             write_qwen25_coder_model(tmp / f"{BASE}.gguf", chat_template=False),
                             write_fim_model(tmp / f"{BOS_FIM}.gguf", repo=True)], n_ctx=1024)
    yield srv
    srv.stop()


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=GENEROUS_S)


def ok(server, path: str, body: dict) -> dict:
    reply = post(server, path, body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def tokens(server, model: str, text: str) -> list[int]:
    return ok(server, "/tokenize", {"model": model, "content": text})["tokens"]


def test_infill_prompt_is_llama_servers_token_by_token(server):
    """``/infill`` with extra files: ``<|repo_name|>myproject\\n``, ``<|file_sep|>name\\ntext`` per file (``tmp``
    for one without a name), ``<|file_sep|>filename\\n``, then ``<|fim_prefix|>prefix prompt<|fim_suffix|>suffix
    <|fim_middle|>``; no BOS (Qwen's vocabulary adds none)."""
    body = {"model": CODER, "input_prefix": "def add(a, b):\n    ", "input_suffix": "\n\nprint(add(1, 2))\n",
            "prompt": "return", "input_extra": [{"filename": "util.py", "text": "X = 1\n"}, {"text": "Y = 2\n"}],
            "n_predict": 1, "temperature": 0}
    got = ok(server, "/infill", body)
    t = lambda text: tokens(server, CODER, text)  # noqa: E731
    want = [ID["<|repo_name|>"], *t("myproject\n"), ID["<|file_sep|>"], *t("util.py\n"), *t("X = 1\n"),
            ID["<|file_sep|>"], *t("tmp\n"), *t("Y = 2\n"), ID["<|file_sep|>"], *t("filename\n"),
            ID["<|fim_prefix|>"], *t(body["input_prefix"]), *t("return"), ID["<|fim_suffix|>"],
            *t(body["input_suffix"]), ID["<|fim_middle|>"]]
    # as many tokens, spelled as these (the text tokenized whole would merge differently at the seams)
    assert got["tokens_evaluated"] == len(want)
    assert ok(server, "/detokenize", {"model": CODER, "tokens": want})["content"] == got["prompt"]


def test_every_dialect_s_suffix_is_the_same_fim_prompt(server):
    """``/v1/completions``' and ``/api/generate``'s ``suffix`` give the plain ``<|fim_prefix|>prefix<|fim_suffix|>
    suffix<|fim_middle|>`` (no repository frame: that is llama-server's /infill's), as many prompt tokens."""
    prefix, suffix = "def f(x):\n    ", "\n    return y\n"
    want = [ID["<|fim_prefix|>"], *tokens(server, CODER, prefix), ID["<|fim_suffix|>"],
            *tokens(server, CODER, suffix), ID["<|fim_middle|>"]]
    generated = ok(server, "/api/generate", {"model": CODER, "prompt": prefix, "suffix": suffix, "stream": False,
                                             "options": {"num_predict": 2, "temperature": 0}})
    assert generated["context"][:len(want)] == want and generated["prompt_eval_count"] == len(want)
    completed = ok(server, "/v1/completions", {"model": CODER, "prompt": prefix, "suffix": suffix, "max_tokens": 2,
                                               "temperature": 0})
    assert completed["usage"]["prompt_tokens"] == len(want)
    assert completed["choices"][0]["text"] == generated["response"]  # (greedy: the same prompt, the same middle)


def test_ollama_raw_sends_the_prompt_as_is_with_a_suffix(server):
    """Ollama's ``raw`` is no formatting, the FIM frame too: the prompt goes as is, the suffix is not sent (jan
    framed it with the FIM tokens); a model that cannot insert is still refused, as Ollama refuses it."""
    raw = ok(server, "/api/generate", {"model": CODER, "prompt": "def f():", "suffix": "\n", "raw": True,
                                       "stream": False, "options": {"num_predict": 1}})
    assert raw["prompt_eval_count"] == len(tokens(server, CODER, "def f():"))
    rendered = ok(server, "/api/generate", {"model": CODER, "prompt": "def f():", "suffix": "\n", "raw": True,
                                            "_debug_render_only": True})  # (the raw prompt, rendered as it is)
    assert rendered["_debug_info"]["rendered_template"] == "def f():", rendered
    refused = post(server, "/api/generate", {"model": "stories260K", "prompt": "Once", "suffix": "x", "raw": True,
                                             "stream": False})
    assert refused.status_code == 400 and "fill-in-the-middle" in refused.json()["error"]


@pytest.mark.parametrize("token", [ID["<|fim_pad|>"], EOT, EOS], ids=["fim_pad", "eot", "eos"])
def test_the_middle_ends_at_fim_pad_eot_and_eos(server, token):
    """The model's end-of-generation tokens end a middle (made its only choice by a logit bias): a stop, no text."""
    infill = ok(server, "/infill", {"model": CODER, "input_prefix": "a", "input_suffix": "b", "n_predict": 4,
                                    "logit_bias": [[token, 100]]})
    assert (infill["content"], infill["stop_type"], infill["tokens_predicted"]) == ("", "eos", 0)
    completed = ok(server, "/v1/completions", {"model": CODER, "prompt": "a", "suffix": "b", "max_tokens": 4,
                                               "logit_bias": {str(token): 100}})
    assert (completed["choices"][0]["text"], completed["choices"][0]["finish_reason"]) == ("", "stop")


def test_insert_is_listed_exactly_for_the_models_that_can_fill(server):
    """``insert`` for both coder models, the one without a chat template too, and not for stories260K, in
    ``/v1/models``, ``/api/tags`` and ``/api/show``."""
    can = {CODER: True, BASE: True, BOS_FIM: True, "stories260K": False}
    listed = {m["id"]: m["capabilities"] for m in httpx.get(server.base_url + "/v1/models",
                                                            timeout=GENEROUS_S).json()["data"]}
    tags = {m["name"].removesuffix(":latest"): m["capabilities"]
            for m in httpx.get(server.base_url + "/api/tags", timeout=GENEROUS_S).json()["models"]}
    for model, fills in can.items():
        shown = ok(server, "/api/show", {"model": model})["capabilities"]
        for caps in (listed[model], tags[model], shown):
            assert ("insert" in caps) is fills, (model, caps)


def test_a_model_without_fim_tokens_is_refused_in_each_dialect_s_shape(server):
    openai = post(server, "/v1/completions", {"model": "stories260K", "prompt": "a", "suffix": "b"})
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "suffix"
    ollama = post(server, "/api/generate", {"model": "stories260K", "prompt": "a", "suffix": "b", "stream": False})
    assert ollama.status_code == 400 and isinstance(ollama.json()["error"], str)
    native = post(server, "/infill", {"model": "stories260K", "input_prefix": "a", "input_suffix": "b"})
    assert native.status_code == 400 and native.json()["error"]["code"] == 400


def test_jan_run_raw_suffix_through_the_server_is_the_completions_suffix(server, tmp_path):
    """``jan run --raw --suffix`` with a server sends ``/v1/completions``' ``suffix``: the same FIM prompt and, greedy,
    the same middle (in process it reads the library's, tests/test_library_fill_in.py)."""
    prefix, suffix = "def f(x):\n    ", "\n    return y\n"
    completed = ok(server, "/v1/completions", {"model": CODER, "prompt": prefix, "suffix": suffix, "max_tokens": 3,
                                               "temperature": 0})
    env = cli_env(tmp_path / "data", local=False, JAN_API_URL=server.base_url)
    answered = json.loads(cli_ok(jan("run", CODER, "--raw", prefix, "--suffix", suffix, "--temp", "0", "-n", "3",
                                     "--json", env=env)).stdout)
    assert answered["usage"]["prompt_tokens"] == completed["usage"]["prompt_tokens"]
    assert answered["choices"][0]["text"] == completed["choices"][0]["text"]
