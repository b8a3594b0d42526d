"""Ollama's API on a real jan server, driven by the official ``ollama`` Python client."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest

import jan
import jan.server.keys
from jan.testing.gguf_models import TINY_CHAT_CONFIG, models_dir, vocab_path, write_llama_from_vocab
from jan.testing.server import free_port
from api_helpers import http_serving
from dialect_helpers import reasoning_model
from server_helpers import start_server

STORY = "Once upon a time"
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(16)).decode()
QWEN = "qwen3-tools"
FIM = "fim-coder"
MINILM = "all-MiniLM-L6-v2-f32"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# Ollama has no tool_choice: a client forces a call by constraining the output to the call's JSON,
# which the chat service reads as a tool call (output that starts with {"name": ..., "arguments": ...}).
FORCE_WEATHER_CALL = {"type": "object", "properties": {
    "name": {"enum": ["get_weather"]},
    "arguments": {"type": "object", "properties": {"city": {"enum": ["Paris"]}}, "required": ["city"]}},
    "required": ["name", "arguments"]}


def write_qwen3_model(path: Path) -> Path:
    """Tiny random llama with the qwen2 vocabulary and Qwen3's real chat template (tools, thinking)."""
    template = (models_dir().parent / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    return write_llama_from_vocab(path, vocab_path("qwen2"), **TINY_CHAT_CONFIG, chat_template=template,
                                  extra_kv={"tokenizer.ggml.eos_token_id": 151645})  # <|im_end|>


def write_fim_model(path: Path) -> Path:
    """Tiny random llama with the phi-3 vocabulary plus fill-in-the-middle tokens."""
    from jan.testing.gguf_models import _read_tokenizer_kv

    n = len(_read_tokenizer_kv(vocab_path("phi-3"))["tokenizer.ggml.tokens"].value)
    return write_llama_from_vocab(path, vocab_path("phi-3"), **TINY_CHAT_CONFIG,
                                  extra_special_tokens=("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
                                  extra_kv={"tokenizer.ggml.fim_pre_token_id": n,
                                            "tokenizer.ggml.fim_suf_token_id": n + 1,
                                            "tokenizer.ggml.fim_mid_token_id": n + 2})


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    tmp = tmp_path_factory.mktemp("ollama")
    models = [stories_path, minilm_path, write_qwen3_model(tmp / f"{QWEN}.gguf"), write_fim_model(tmp / f"{FIM}.gguf"),
              reasoning_model(tmp)]
    srv = start_server(tmp, models)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base_url, timeout=120)


def _post(server, path: str, body, method: str = "POST") -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.request(method, server.base_url + path, content=data, timeout=120)


def _ndjson(response: httpx.Response) -> list[dict]:
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines() if line]


# -- discovery ------------------------------------------------------------------------------------
def test_version_and_is_running(server):
    version = httpx.get(server.base_url + "/api/version", timeout=120).json()
    assert version["version"] and version["jan_version"] == jan.__version__
    assert httpx.head(server.base_url + "/").status_code == 200  # Ollama clients probe HEAD /
    assert httpx.head(server.base_url + "/api/tags").status_code == 200


def test_tags_list_the_same_models_as_v1_models(server, client):
    tags = client.list().models
    v1 = openai.OpenAI(base_url=server.base_url + "/v1", api_key="-").models.list()
    # each with Ollama's default tag, as Ollama lists names (clients match them so); name and model alike
    assert sorted(m.model for m in tags) == sorted(f"{m.id}:latest" for m in v1)
    assert all(m["name"] == m["model"] for m in httpx.get(server.base_url + "/api/tags", timeout=120).json()["models"])
    stories = next(m for m in tags if m.model == "stories260K:latest")
    assert stories.size == os.path.getsize(models_dir() / "stories260K.gguf")
    assert stories.details.format == "gguf" and stories.details.family == "llama"
    assert stories.details.parameter_size == "292.8K"
    minilm = next(m for m in tags if m.model == f"{MINILM}:latest")
    assert minilm.details.family == "bert" and minilm.details.quantization_level == "F32"
    assert len(stories.digest) == 64 and stories.modified_at is not None


def test_show(client):
    shown = client.show("stories260K")
    assert shown.details.family == "llama" and shown.capabilities == ["completion"]
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 2048
    assert set(client.show(QWEN).capabilities) == {"completion", "tools", "thinking"}
    assert "<|im_start|>" in client.show(QWEN).template
    assert client.show(MINILM).capabilities == ["embedding"]
    assert "insert" in client.show(FIM).capabilities
    assert client.show("stories260K:latest").details.family == "llama"  # Ollama's default tag is accepted
    with pytest.raises(ollama.ResponseError) as err:
        client.show("no-such-model")
    assert err.value.status_code == 404 and "not found" in err.value.error


# -- generate --------------------------------------------------------------------------------------
def test_raw_generate_is_the_engines_greedy_text(client, stories_path):
    result = client.generate(model="stories260K", prompt=STORY, raw=True, options={"temperature": 0, "num_predict": 20})
    with jan.Model(stories_path, n_ctx=512, n_threads=1) as m:
        expected = m.generate(STORY, max_tokens=20, temperature=0).text
    assert result.response == expected
    assert result.done and result.done_reason == "length"
    assert result.eval_count == 20 and result.prompt_eval_count == 5
    assert result.total_duration > 0 and result.eval_duration > 0 and result.prompt_eval_duration > 0
    assert result.total_duration >= result.load_duration


def test_generate_streams_the_same_text(client):
    kwargs = dict(model="stories260K", prompt=STORY, raw=True, options={"temperature": 0, "num_predict": 15})
    whole = client.generate(**kwargs)
    parts = list(client.generate(**kwargs, stream=True))
    assert "".join(p.response for p in parts) == whole.response
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].response == ""
    assert parts[-1].eval_count == 15 and parts[-1].done_reason == "length"


def test_generate_uses_the_chat_template(client):
    result = client.generate(model=QWEN, prompt="Hello", system="Be brief.", options={"temperature": 0, "num_predict": 4})
    assert result.done and result.eval_count == 4
    # the template's turn markers are part of the prompt: more tokens than the words alone
    assert result.prompt_eval_count > 8


def test_suffix_fills_in_the_middle_or_says_why_not(client):
    result = client.generate(model=FIM, prompt="def add(a, b):", suffix="    return c",
                             options={"temperature": 0, "num_predict": 5})
    assert result.done and result.eval_count == 5
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(model="stories260K", prompt="x", suffix="y")
    assert err.value.status_code == 400 and "fill-in-the-middle" in err.value.error


def test_openai_completions_fill_in_the_middle_as_ollamas_generate(server, client):
    # OpenAI's legacy completions take a suffix too (what code-completion clients send): the same fill-in-the-middle
    # prompt as Ollama's /api/generate, through the one completion service (it was a 400 "not supported")
    api = openai.OpenAI(base_url=server.base_url + "/v1", api_key="-", max_retries=0)
    ollama_result = client.generate(model=FIM, prompt="def add(a, b):", suffix="    return c",
                                    options={"temperature": 0, "num_predict": 5})
    result = api.completions.create(model=FIM, prompt="def add(a, b):", suffix="    return c", max_tokens=5,
                                    temperature=0)
    assert result.choices[0].text == ollama_result.response
    assert result.usage.prompt_tokens == ollama_result.prompt_eval_count
    streamed = api.completions.create(model=FIM, prompt=["def add(a, b):", "def sub(a, b):"], suffix="    return c",
                                      max_tokens=5, temperature=0, stream=True)
    texts = ["", ""]
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts[0] == ollama_result.response and texts[1]
    assert api.completions.create(model="stories260K", prompt="Once", suffix="", max_tokens=2).choices[0].text
    for body, says in ((dict(model="stories260K", prompt="x", suffix="y"), "fill-in-the-middle"),
                       (dict(model=FIM, prompt=[1, 2, 3], suffix="y"), "text prompt"),
                       (dict(model=FIM, prompt="x", suffix="y", echo=True), "echo")):
        with pytest.raises(openai.BadRequestError) as err:
            api.completions.create(max_tokens=2, **body)
        error = err.value.body
        assert error["param"] == "suffix" and says in error["message"], (body, error)


# -- chat ------------------------------------------------------------------------------------------
def test_chat_whole_and_streamed_agree(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    options = {"temperature": 0, "num_predict": 8}
    whole = client.chat(model=QWEN, messages=messages, options=options)
    assert whole.message.role == "assistant" and whole.done and whole.eval_count == 8
    parts = list(client.chat(model=QWEN, messages=messages, options=options, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].done_reason == "length" and parts[-1].eval_count == 8


def test_format_with_a_json_schema(client):
    schema = {"type": "object", "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
              "required": ["age", "available"]}
    result = client.chat(model=QWEN, messages=[{"role": "user", "content": "Age?"}], format=schema,
                         options={"temperature": 0, "num_predict": 60})
    data = json.loads(result.message.content)
    assert isinstance(data["age"], int) and isinstance(data["available"], bool)
    result = client.generate(model="stories260K", prompt=STORY, raw=True, format="json",
                             options={"temperature": 0, "num_predict": 40})
    assert result.response.lstrip().startswith("{")


def test_tool_call_and_round_trip(client):
    result = client.chat(model=QWEN, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
                         format=FORCE_WEATHER_CALL, options={"temperature": 0, "num_predict": 60})
    call = result.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    assert result.done_reason == "stop" and result.message.content == ""
    follow_up = client.chat(model=QWEN, tools=[WEATHER], options={"temperature": 0, "num_predict": 3}, messages=[
        {"role": "user", "content": "Weather in Paris?"}, result.message,
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
    assert follow_up.done and follow_up.prompt_eval_count > result.prompt_eval_count


def test_golden_streams_on_the_server(server):
    """The exact objects of a streamed text answer and a streamed tool call (times and durations aside)."""
    def normalized(body: dict) -> list[dict]:
        lines = _ndjson(_post(server, "/api/chat", body))
        for line in lines:
            assert datetime.strptime(line.pop("created_at"), "%Y-%m-%dT%H:%M:%S.%fZ")
            for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
                if line.get("done"):
                    assert line.pop(key) > 0 or key == "load_duration"
        return lines

    text = normalized({"model": QWEN, "messages": [{"role": "user", "content": "Hi"}],
                       "options": {"temperature": 0, "num_predict": 3}})
    pieces = [line["message"]["content"] for line in text[:-1]]
    # pieces the engine had ready together come as one line: 1 to 3 lines for 3 tokens, none empty
    assert 1 <= len(pieces) <= 3 and all(pieces)
    assert [list(line) for line in text[:-1]] == [["model", "message", "done"]] * len(pieces)
    assert text[:-1] == [{"model": QWEN, "message": {"role": "assistant", "content": p}, "done": False} for p in pieces]
    assert list(text[-1]) == ["model", "message", "done", "done_reason", "prompt_eval_count", "eval_count"]
    assert text[-1] == {"model": QWEN, "message": {"role": "assistant", "content": ""}, "done": True,
                        "done_reason": "length", "prompt_eval_count": text[-1]["prompt_eval_count"], "eval_count": 3}

    tool = normalized({"model": QWEN, "messages": [{"role": "user", "content": "Weather?"}], "tools": [WEATHER],
                       "format": FORCE_WEATHER_CALL, "options": {"temperature": 0, "num_predict": 60}})
    call_id = tool[0]["message"]["tool_calls"][0]["id"]
    assert call_id.startswith("call_")
    assert tool == [
        {"model": QWEN, "message": {"role": "assistant", "content": "", "tool_calls": [
            {"id": call_id, "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}]},
         "done": False},
        {"model": QWEN, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
         "prompt_eval_count": tool[1]["prompt_eval_count"], "eval_count": tool[1]["eval_count"]},
    ]


THINK = {"model": "qwq-tiny", "messages": [{"role": "user", "content": "Hi"}],
         "options": {"temperature": 0, "num_predict": 12}}


def _budget_of_4(server) -> None:
    """A 4-token thinking budget in the model's settings: the engine closes the thinking block of this random model."""
    status = httpx.patch(server.base_url + "/v1/models/qwq-tiny", json={"settings": {"reasoning_budget": 4}},
                         timeout=120)
    assert status.status_code == 200, status.text


def _check_thinking_stream(pieces: list, whole) -> None:
    """The streamed lines tell what the whole answer does: its thinking, then its answer. The line where the answer
    begins may end the thinking too (as Ollama's own lines may: it sets a chunk's ``thinking`` and ``content``
    from the same piece of output): tokens the engine had ready together, which a busy machine reads at once."""
    assert "".join(p.message.thinking or "" for p in pieces) == whole.message.thinking
    assert "".join(p.message.content for p in pieces) == whole.message.content
    first_content = next(i for i, p in enumerate(pieces) if p.message.content)
    assert not any(p.message.thinking for p in pieces[first_content + 1:])  # no thinking after the answer began


def test_think_puts_the_thinking_in_message_thinking(server, client):
    """``think`` switches the template's thinking; what the model thinks comes back as ``message.thinking``
    (streamed and whole alike), the answer as ``content``."""
    _budget_of_4(server)
    whole = client.chat(**THINK, think=True)
    assert whole.message.thinking and whole.message.content
    assert "<think>" not in whole.message.content and "</think>" not in whole.message.content
    _check_thinking_stream(list(client.chat(**THINK, think=True, stream=True)), whole)
    off = client.chat(**THINK, think=False)
    assert not off.message.thinking and off.message.content
    generated = client.generate(model="qwq-tiny", prompt="Hi", think=True, options={"temperature": 0, "num_predict": 12})
    assert generated.thinking == whole.message.thinking and generated.response == whole.message.content


@pytest.fixture
def loop_behind_the_engine(monkeypatch):
    """The server's first read of each engine request waits for its whole output (which then comes as one piece):
    what a loop that falls behind the engine reads, as on a busy machine, where the pieces a stream's lines
    carry are the tokens the engine had ready together."""
    from jan.engine.request import Request

    read = Request.__anext__

    async def behind(self):
        if not self._done:
            self._accept(self._native.wait_final(120.0, self._logprobs))  # (blocks the loop, as a busy one is)
        return await read(self)

    monkeypatch.setattr(Request, "__anext__", behind)


def test_think_streamed_in_one_piece_puts_the_end_of_the_thinking_and_the_answer_in_one_line(server, client,
                                                                                              loop_behind_the_engine):
    """A piece of output that ends the thinking and begins the answer is one line with both ``thinking`` and
    ``content``, as Ollama sends it; the test above failed on a busy machine for expecting a line to hold one."""
    _budget_of_4(server)
    whole = client.chat(**THINK, think=True)
    pieces = list(client.chat(**THINK, think=True, stream=True))
    _check_thinking_stream(pieces, whole)
    assert pieces[0].message.thinking == whole.message.thinking and pieces[0].message.content == whole.message.content


# -- embeddings ----------------------------------------------------------------------------------------
def test_embed_matches_v1_embeddings(server, client):
    result = client.embed(model=MINILM, input=["The sky is blue", "Grass is green"])
    assert len(result.embeddings) == 2 and all(len(v) == 384 for v in result.embeddings)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-3 for v in result.embeddings)
    assert result.prompt_eval_count > 4
    v1 = openai.OpenAI(base_url=server.base_url + "/v1", api_key="-").embeddings.create(
        model=MINILM, input=["The sky is blue"])
    assert np.allclose(result.embeddings[0], v1.data[0].embedding, atol=1e-5)
    short = client.embed(model=MINILM, input="The sky is blue", dimensions=64)
    assert len(short.embeddings[0]) == 64 and abs(np.linalg.norm(short.embeddings[0]) - 1) < 1e-3
    # the legacy route answers the pooled vector unnormalized, as Ollama's (its direction is the same)
    legacy = np.asarray(client.embeddings(model=MINILM, prompt="The sky is blue").embedding)
    assert abs(np.linalg.norm(legacy) - 1) > 1e-2
    assert np.allclose(legacy / np.linalg.norm(legacy), result.embeddings[0], atol=1e-5)
    assert client.embed(model=MINILM, input=[]).embeddings == []


def test_embed_truncates_long_inputs_unless_told_not_to(client):
    long = "word " * 3000
    result = client.embed(model=MINILM, input=[long, "short"])
    assert len(result.embeddings) == 2 and result.prompt_eval_count > 512  # 512 for the long one, cut to fit
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model=MINILM, input=long, truncate=False)
    assert err.value.status_code == 400 and "512" in err.value.error


# -- loaded models and keep_alive --------------------------------------------------------------------------
def _ps(client) -> dict:
    return {m.model.removesuffix(":latest"): m for m in client.ps().models}


def test_ps_and_keep_alive(client):
    client.generate(model="stories260K", prompt=STORY, raw=True, options={"num_predict": 1}, keep_alive="10m")
    running = _ps(client)["stories260K"]
    expires = running.expires_at - datetime.now(timezone.utc)
    assert timedelta(minutes=9) < expires <= timedelta(minutes=10, seconds=1)
    assert running.size > 0 and running.context_length == 512 and running.details.family == "llama"
    client.generate(model="stories260K", keep_alive=-1)  # no prompt: load, and stay loaded for good
    assert _ps(client)["stories260K"].expires_at - datetime.now(timezone.utc) > timedelta(days=365)

    unloaded = client.generate(model="stories260K", keep_alive=0)  # no prompt and 0: unload now
    assert unloaded.done and unloaded.done_reason == "unload"
    assert "stories260K" not in _ps(client)
    loaded = client.chat(model="stories260K", messages=[])  # no messages: load
    assert loaded.done_reason == "load" and "stories260K" in _ps(client)

    # keep_alive 0 with a prompt: answered, then unloaded once idle
    client.generate(model="stories260K", prompt=STORY, raw=True, options={"num_predict": 2}, keep_alive=0)
    deadline = time.monotonic() + 30
    while "stories260K" in _ps(client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "stories260K" not in _ps(client)


# -- pull, copy, delete ---------------------------------------------------------------------------------------
class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files in 64 KiB pieces, so a download reports progress more than once."""

    def copyfile(self, source, outputfile):
        while chunk := source.read(65536):
            outputfile.write(chunk)
            outputfile.flush()
            time.sleep(0.005)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def file_server(tmp_path_factory, stories_path):
    root = tmp_path_factory.mktemp("files")
    shutil.copy(stories_path, root / "pulled-stories.gguf")
    with http_serving(functools.partial(_SlowHandler, directory=str(root))) as url:
        yield url


def test_pull_with_progress_then_copy_and_delete(client, file_server, stories_path):
    size = os.path.getsize(stories_path)
    events = list(client.pull(f"{file_server}/pulled-stories.gguf", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    progress = [e for e in events if e.total]
    assert progress and all(e.total == size for e in progress)
    done = [e.completed or 0 for e in progress]
    assert done == sorted(done) and done[-1] == size and progress[-1].status == "pulling pulled-stories.gguf"
    assert not any(e.digest for e in events)  # Ollama's digest is a sha256:..., unknown here: left out, no file name
    assert "pulled-stories" in {m.model.removesuffix(":latest") for m in client.list().models}
    text = client.generate(model="pulled-stories", prompt=STORY, raw=True, options={"temperature": 0, "num_predict": 5})
    assert text.eval_count == 5

    assert client.pull("pulled-stories").status == "success"  # already there: nothing to download
    client.copy("pulled-stories", "stories-copy")
    assert client.show("stories-copy").details.family == "llama"
    assert client.delete("pulled-stories").status == "success"
    names = {m.model.removesuffix(":latest") for m in client.list().models}
    assert "pulled-stories" not in names and "stories-copy" in names
    assert client.generate(model="stories-copy", prompt=STORY, raw=True, options={"num_predict": 2}).eval_count == 2
    client.delete("stories-copy")
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("stories-copy")
    assert err.value.status_code == 404


def test_create_from_a_model_with_its_own_parameters(client):
    """Ollama's /api/create (the official client's create(from_=...)): a new model whose model.json
    parameters are the Ollama options given, which its requests then use."""
    done = client.create(model="stories-short", from_="stories260K:latest",
                         parameters={"num_predict": 3, "temperature": 0, "num_ctx": 64})  # num_ctx: load-time, ignored
    assert done.status == "success"
    try:
        assert "stories-short" in {m.model.removesuffix(":latest") for m in client.list().models}
        # shown in Ollama's Modelfile names and quoting, so the modelfile can go back to `ollama create`
        shown = client.show("stories-short")
        assert "num_predict" in shown.parameters and "max_tokens" not in shown.parameters
        assert "PARAMETER num_predict" in shown.modelfile
        reply = client.generate(model="stories-short", prompt=STORY, raw=True)
        assert reply.eval_count == 3 and reply.done_reason == "length"  # the stored num_predict applies
        assert reply.response == client.generate(model="stories260K", prompt=STORY, raw=True,
                                                 options={"num_predict": 3, "temperature": 0}).response
        streamed = [e.status for e in client.create(model="stories-short-2", from_="stories-short", stream=True)]
        assert streamed[-1] == "success"
        client.delete("stories-short-2")
        # made again over an existing name: replaced, as Ollama's create writes the manifest over the old one
        assert client.create(model="stories-short", from_="stories260K").status == "success"
        assert not client.show("stories-short").parameters  # the old model's num_predict went with it
    finally:
        client.delete("stories-short")


@pytest.mark.parametrize("body, message", [
    ({"model": "x", "from": "stories260K", "template": "{{ .Prompt }}"}, "template: not supported"),
    ({"model": "x", "from": "stories260K", "system": 5}, "system"),
    ({"model": "x", "from": "stories260K", "messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ({"model": "x", "files": {"m.gguf": "sha256:" + "0" * 64}}, "not found"),  # no such blob (tests/test_ollama_blobs.py)
    # (LoRA adapters are kept: tests/test_server_lora.py; one whose blob is not there is refused)
    ({"model": "x", "from": "stories260K", "adapters": {"a.gguf": "sha256:" + "0" * 64}}, "adapters: a.gguf: blob"),
    ({"model": "x"}, "from: required"),
    ({"from": "stories260K"}, "model is required"),
    ({"model": "x", "from": "stories260K", "parameters": {"temperature": -1}}, "parameters.temperature"),
])
def test_create_refuses_what_it_cannot_keep(server, body, message):
    response = _post(server, "/api/create", body)
    assert response.status_code == 400 and list(response.json()) == ["error"]
    assert message in response.json()["error"]
    assert _post(server, "/api/create", {"model": "x", "from": "no-such-model"}).status_code == 404
    assert "x" not in {m["model"].removesuffix(":latest") for m in httpx.get(server.base_url + "/api/tags", timeout=120).json()["models"]}


def test_pull_errors(client, file_server):
    with pytest.raises(ollama.ResponseError) as err:
        list(client.pull(f"{file_server}/missing.gguf", stream=True))
    assert "404" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("llama3.2")  # an Ollama library name is no jan model and no URL
    assert err.value.status_code == 404 and "hf://" in err.value.error


# -- errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, status, message", [
    ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "model 'nope' not found"),
    ("/api/generate", {"prompt": "x"}, 400, "model is required"),
    ("/api/generate", {"model": "stories260K", "prompt": "x", "keep_alive": "soon"}, 400, "keep_alive"),
    ("/api/chat", {"model": "stories260K", "think": "hard"}, 400, "think"),
    ("/api/chat", b"{not json", 400, "invalid JSON"),
    ("/api/chat", b"", 400, "missing request body"),
    ("/api/embed", {"model": "stories260K", "input": 5}, 400, "input"),
    ("/api/generate", {"model": "stories260K", "prompt": "x", "template": "{{ .Prompt }}"}, 400, "template"),
    # Ollama's own 400: a raw prompt has no template to put the system prompt in (never silently dropped)
    ("/api/generate", {"model": "stories260K", "prompt": "x", "raw": True, "system": "S"}, 400,
     "raw mode does not support template, system, or context"),
    # the field by its name in the body, not pydantic's union members (think.bool, format.literal[...])
    ("/api/chat", {"model": "stories260K", "think": "hardest"}, 400, "think: invalid think value \"hardest\""),
    ("/api/generate", {"model": "stories260K", "prompt": "x", "format": "xml"}, 400, "format: invalid format \"xml\""),
    ("/api/generate", {"model": "stories260K", "keep_alive": "nan"}, 400, "keep_alive: invalid duration \"nan\""),
    ("/api/generate", {"model": "stories260K", "keep_alive": True}, 400, "keep_alive: invalid duration true"),
    ("/api/embeddings", {"model": "stories260K", "keep_alive": {"m": 5}}, 400, "keep_alive: invalid duration"),
    ("/api/chat", {"model": "stories260K", "keep_alive": ["5m"]}, 400, "keep_alive: invalid duration"),
    ("/api/embed", {"model": "stories260K", "input": [1]}, 400,
     "input: Input should be a string or an array of strings; input[0] is a number"),  # (what the union takes)
    ("/api/show", {"model": ""}, 400, "model is required"),
    ("/api/chat", {"model": "stories260K", "messages": [{"role": "user", "content": "x", "images": [JPEG]}]}, 400,
     "image"),  # images reach the chat service, which knows this model cannot see
    ("/api/chat", {"model": "stories260K", "messages": [{"role": "user", "images": ["not base64!"]}]}, 400, "base64"),
    # Ollama's own 400 for thinking asked of a model whose template cannot think (never silently answered without)
    ("/api/chat", {"model": "stories260K", "messages": [{"role": "user", "content": "x"}], "think": True}, 400,
     '"stories260K" does not support thinking'),
    ("/api/chat", {"model": "stories260K", "messages": [{"role": "user", "content": "x"}], "think": "low",
                   "stream": True}, 400, "does not support thinking"),
    ("/api/generate", {"model": "stories260K", "prompt": "x", "think": True}, 400, "does not support thinking"),
    # and for tools given to a model whose template has none (the OpenAI dialect writes them in generically)
    ("/api/chat", {"model": "stories260K", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}, 400,
     '"stories260K" does not support tools'),
])
def test_errors_in_ollamas_shape(server, path, body, status, message):
    response = _post(server, path, body)
    assert response.status_code == status
    assert list(response.json()) == ["error"] and message in response.json()["error"]


def test_a_client_that_goes_away_cancels_its_generation(server, client):
    # qwen3-tools (a 151k-token vocabulary) takes seconds to fill its 512-token context, so the
    # generation is still running when the client leaves
    cancelled = _metric(server, QWEN, "requests_cancelled")
    body = {"model": QWEN, "prompt": STORY, "raw": True, "options": {"num_predict": 100_000}}
    with httpx.stream("POST", server.base_url + "/api/generate", json=body, timeout=60) as response:
        assert json.loads(next(response.iter_lines()))["done"] is False
    deadline = time.monotonic() + 60
    while _metric(server, QWEN, "requests_cancelled") == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(server, QWEN, "requests_cancelled") == cancelled + 1
    assert client.generate(model=QWEN, prompt=STORY, raw=True, options={"num_predict": 3}).eval_count == 3


def _metric(server, model_id: str, name: str) -> float:
    async def read():
        engine = server.app[jan.server.keys.MANAGER].get_inference("llama.cpp")
        return (await engine.model_status(model_id)).get("metrics", {}).get(name, 0)
    return server.call(read())


def test_context_overflow_is_a_400(server):
    response = _post(server, "/api/generate", {"model": "stories260K", "prompt": "word " * 2000, "raw": True,
                                                "stream": True})
    assert response.status_code == 400 and "error" in response.json()


def test_serve_listens_on_the_ollama_port_too(tmp_path):
    port, ollama_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jan.cli", "serve", "--port", str(port), "--ollama-port", str(ollama_port),
                             "--data-folder", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                version = httpx.get(f"http://127.0.0.1:{ollama_port}/api/version", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        assert version.status_code == 200 and version.json()["version"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/tags", timeout=120).json() == {"models": []}
        # GET / is jan's chat page on jan's port, and what Ollama answers on Ollama's
        assert httpx.get(f"http://127.0.0.1:{ollama_port}/", timeout=120).text == "Ollama is running"
        assert "<html" in httpx.get(f"http://127.0.0.1:{port}/", timeout=120).text.lower()
    finally:
        proc.terminate()
        proc.wait(30)
