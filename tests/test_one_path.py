"""Issue 11: one path from a chat request to the engine, whatever the front end.

The same chat request is sent three ways — ``POST /v1/chat/completions``, ``jan run`` without a
server, and the Python API (:func:`jan.services.open_services`) — to a tiny model with Qwen's real
chat template whose model.json also carries a Jan ``prompt_template``. The prompt token ids that
reach the engine and the greedy answers must be identical. The structural rules of the layering
are checked too.
"""

from __future__ import annotations

import ast
import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import jan
from jan.engine.model import Model
from jan.services.types import ChatMessage, ChatRequest, SamplingOptions
from jan.store import DataFolder
from jan.testing.gguf_models import write_qwen2_chat_model

PACKAGE = Path(jan.__file__).resolve().parent
SYSTEM = "You are terse."
QUESTION = "Name a colour."
MAX_TOKENS = 12
# Jan's model.json field: only a fallback for a GGUF without a template (this one has Qwen's).
PROMPT_TEMPLATE = "{system_message}\n### Question: {prompt}\n### Answer:"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one-path")
    weights = write_qwen2_chat_model(tmp / "qwen-tiny.gguf")
    folder = tmp / "data"
    store = DataFolder(folder)
    store.models.import_gguf(weights, model_id="qwen-tiny", mode="reference",
                             settings={"prompt_template": PROMPT_TEMPLATE, "ctx_len": 1024})
    return folder


@pytest.fixture
def submitted(monkeypatch):
    """The prompt token ids of every generation submitted to the engine in this process."""
    seen: list[list[int]] = []
    original = Model.stream

    def stream(self, prompt, **kw):
        seen.append(list(prompt) if not isinstance(prompt, str) else self.tokenize(prompt))
        return original(self, prompt, **kw)

    monkeypatch.setattr(Model, "stream", stream)
    return seen


def via_http(data: Path) -> str:
    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    with ServerThread(ServerConfig(data_folder=data, n_threads=1)) as srv:
        body = {"model": "qwen-tiny", "temperature": 0, "max_tokens": MAX_TOKENS,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]}
        req = urllib.request.Request(srv.base_url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.load(resp)["choices"][0]["message"]["content"]


def via_cli(data: Path) -> str:
    from jan.cli import main

    result = CliRunner().invoke(main, ["run", "qwen-tiny", QUESTION, "--system", SYSTEM, "--temperature", "0",
                                       "--max-tokens", str(MAX_TOKENS), "--local", "--data-folder", str(data),
                                       "--threads", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.endswith("\n")
    return result.output[:-1]


def via_python(data: Path) -> str:
    from jan.services import open_services

    async def main() -> str:
        async with open_services(data) as services:
            result = await services.chat.complete(ChatRequest(
                model="qwen-tiny",
                messages=(ChatMessage.of_text("system", SYSTEM), ChatMessage.of_text("user", QUESTION)),
                sampling=SamplingOptions(temperature=0, max_tokens=MAX_TOKENS)))
            return result.choices[0].message.text

    return asyncio.run(main())


def test_the_same_request_three_ways_gives_the_same_prompt_and_answer(data, submitted):
    answers = {}
    prompts = {}
    for name, way in (("http", via_http), ("cli", via_cli), ("python", via_python)):
        before = len(submitted)
        answers[name] = way(data)
        assert len(submitted) == before + 1, name
        prompts[name] = submitted[-1]
    assert prompts["http"] == prompts["cli"] == prompts["python"]
    assert answers["http"] == answers["cli"] == answers["python"]
    assert answers["http"], "the greedy answer is empty"

    # and it is Qwen's template from the GGUF, not the model.json prompt_template fallback
    probe = Model(str(DataFolder(data).models.model_file("qwen-tiny")), vocab_only=True)
    text = probe.detokenize(prompts["http"], unparse_special=True)
    assert "<|im_start|>system\nYou are terse.<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert "### Question" not in text


# -- the layering ---------------------------------------------------------------------------------
def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_core_and_services_import_no_aiohttp():
    for package in ("core", "services"):
        for path in (PACKAGE / package).rglob("*.py"):
            assert not any(n.split(".")[0] == "aiohttp" for n in _imports(path)), f"{package}/{path.name}"


def test_no_cli_module_renders_templates_or_writes_threads():
    for path in (PACKAGE / "cli").rglob("*.py"):
        source = path.read_text()
        assert not any(n.startswith("jan.templates") for n in _imports(path)), path.name
        for call in ("threads.create(", "messages.create(", "messages.append(", "threads.update(", ".render("):
            assert f"store.{call}" not in source and f"store(){'.' + call}" not in source, (path.name, call)


def test_the_runs_route_holds_http_concerns_only():
    path = PACKAGE / "server" / "routes" / "runs.py"
    source = path.read_text()
    imports = _imports(path)
    assert not any(n.startswith(("jan.core", "jan.store", "jan.templates", "jan.extensions")) for n in imports)
    for domain in ("def history_messages", "def title_from", "update_message", "create_message",
                   "merge_options", "list_messages", "MessageUpdate"):
        assert domain not in source, domain


def test_every_json_body_is_written_by_the_strict_writer():
    """Every JSON body jan answers with is RFC 8259 JSON (``jan.server.jsonio``): aiohttp's own
    ``web.json_response`` writes ``NaN``/``Infinity`` (Python's ``json.dumps`` default), which no browser's or other
    language's parser reads — an Anthropic reply whose tool input held 1e999 was written ``"input": {"city":
    Infinity}``. A call of it must pass jan's strict ``dumps``; routes use ``jsonio.json_response``."""
    loose = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "json_response" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "web" and not any(k.arg == "dumps" for k in node.keywords)):
                loose.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not loose, loose
