"""Hostile input never crashes the server, never stalls it, and ends in a 400 naming the field (issue 10:
items 1, 2, 9, 10, 11).

"Never stalls" is measured as the behaviour it is: while each hostile request is being handled, a
second client keeps asking ``/health``; the server must keep answering it. The assertion counts
answers during the hostile request instead of timing one call, so a busy machine cannot make it flaky.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from api_helpers import ServerProcess
from server_helpers import start_server

from jan.testing.gguf_models import PHI3_VOCAB, TINY_CHAT_CONFIG, vocab_path, write_llama_from_vocab, write_truncated_copy

DEEP_GRAMMAR = "root ::= " + "(" * 30000 + '"a"' + ")" * 30000

# Probes (tiny messages) pass; a long message makes it loop for ever (well past its render budget).
SLOW_TEMPLATE = ("{% for m in messages %}{% if m['content']|length > 500 %}{% for i in range(100000) %}"
                 "{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}"
                 "<|user|>{{ m['content'] }}{% endfor %}<|assistant|>")
HUGE_OUTPUT_TEMPLATE = ("{% for m in messages %}{% if m['content']|length > 500 %}{% for i in range(100000) %}"
                        "{{ m['content'] * 2 }}{% endfor %}{% endif %}<|user|>{{ m['content'] }}{% endfor %}")
RECURSIVE_MACRO_TEMPLATE = ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{% for m in messages %}"
                            "{% if m['content']|length > 500 %}{{ f(1) }}{% endif %}{{ m['content'] }}{% endfor %}")


def _model(tmp: Path, name: str, template: str) -> Path:
    vocab = vocab_path(PHI3_VOCAB)
    if not vocab.exists():
        pytest.skip(f"missing {vocab}")
    return write_llama_from_vocab(tmp / f"{name}.gguf", vocab, **TINY_CHAT_CONFIG, chat_template=template)


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("hostile")
    models = [stories_path, _model(tmp, "slow-template", SLOW_TEMPLATE),
              _model(tmp, "huge-template", HUGE_OUTPUT_TEMPLATE), _model(tmp, "macro-template", RECURSIVE_MACRO_TEMPLATE)]
    srv = start_server(tmp, models)
    yield srv
    srv.stop()


async def _while_handling(base_url: str, method: str, path: str, body: dict) -> tuple[int, dict, list[float]]:
    """Send one request; until it is answered, keep asking /health. Returns its status, its JSON body
    and one entry per /health answered meanwhile (behaviour: the server answers others while it works on
    the hostile request; no latency figure, which would not hold on a loaded machine)."""
    answered: list[int] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as hostile, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as health:
        async def send():
            async with hostile.request(method, base_url + path, data=json.dumps(body),
                                       headers={"Content-Type": "application/json"}) as resp:
                return resp.status, await resp.json()

        task = asyncio.create_task(send())
        while not task.done():
            async with health.get(base_url + "/health") as resp:
                assert resp.status == 200
                await resp.read()
            answered.append(resp.status)
            await asyncio.sleep(0.02)
        status, data = await task
    return status, data, answered


async def _while_running(base_url: str, run: dict) -> tuple[dict, list[int]]:
    """A run (answered at once) polled until it is no longer generating, /health asked between polls: the run as
    it ended and one entry per /health answered meanwhile."""
    answered: list[int] = []
    path = f"{base_url}/v1/threads/{run['thread_id']}/runs/{run['id']}"
    deadline = asyncio.get_running_loop().time() + 300
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while run["status"] in ("queued", "in_progress"):
            assert asyncio.get_running_loop().time() < deadline, run
            async with session.get(base_url + "/health") as resp:
                assert resp.status == 200
                answered.append(resp.status)
            await asyncio.sleep(0.02)
            async with session.get(path) as resp:
                run = await resp.json()
    return run, answered


def _error(data: dict) -> dict:
    assert "error" in data, data
    return data["error"]


# -- 1: a grammar nested 30,000 deep killed the process with SIGSEGV -------------------------------

async def test_deeply_nested_grammar_is_a_400_and_the_server_survives(tmp_path, stories_path):
    data = tmp_path / "data"
    data.mkdir()
    with ServerProcess(data, stories_path) as proc:
        body = {"model": "stories260K", "prompt": "Once", "max_tokens": 4, "grammar": DEEP_GRAMMAR}
        status, answer, answered = await _while_handling(proc.base_url, "POST", "/v1/completions", body)
        assert status == 400, answer
        assert _error(answer)["param"] == "grammar" and "nesting depth" in _error(answer)["message"]
        # the same grammar inside a chat request, and again: the process is still there and answers
        body = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                "grammar": DEEP_GRAMMAR}
        status, answer, _ = await _while_handling(proc.base_url, "POST", "/v1/chat/completions", body)
        assert status == 400 and _error(answer)["param"] == "grammar"
        assert proc.proc.poll() is None
        async with aiohttp.ClientSession() as s, s.get(proc.base_url + "/health") as resp:
            assert resp.status == 200


@pytest.mark.parametrize("grammar, why", [
    ("root ::= [\\uFFFF-\\u0000]", "empty character range"),          # accepted, then a 500 mid-generation
    ("root ::= " + " | ".join(f'"{i}"' for i in range(100_000)), "alternatives"),
    ("root ::= a0\n" + "".join(f'a{i} ::= a{i + 1} | a{i + 1} "x"\n' for i in range(40)) + 'a40 ::= "y"\n',
     "left-recursion check"),                                          # 2^40 calls in llama.cpp
    ('root ::= "a" b', "never defined"),
    ('root ::= root "a"', "left-recursive"),
    ("root ::= [\\x00]", "cannot write anything"),                     # valid, but no token can start it
    # no finite text: accepted, then generated until max_tokens, never finished
    ('root ::= "[" root "]"', "rule 'root' can never end"),
    ('root ::= "a" | x\nx ::= "(" x ")"', "rule 'x' can never end"),
    ('root ::= x+\nx ::= "a" x', "rule 'x' can never end"),
])
async def test_bad_grammars_are_a_400_naming_the_field(server, grammar, why):
    body = {"model": "stories260K", "prompt": "Once", "max_tokens": 4, "grammar": grammar}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/completions", body)
    assert status == 400, answer
    assert _error(answer)["param"] == "grammar" and why in _error(answer)["message"]


# -- 2 and 9: slow or endless work ends in a 400, and /health answers meanwhile ----------------------

async def test_a_template_that_loops_for_ever_is_a_400_and_health_answers_meanwhile(server):
    body = {"model": "slow-template", "messages": [{"role": "user", "content": "x" * 600}], "max_tokens": 2}
    status, answer, answered = await _while_handling(server.base_url, "POST", "/v1/chat/completions", body)
    assert status == 400, answer
    assert "budget" in _error(answer)["message"]
    # the render ran for its whole budget (seconds); the event loop kept answering all along
    assert len(answered) >= 5, answered
    # and a normal request to the same model still works
    ok = {"model": "slow-template", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/chat/completions", ok)
    assert status == 200, answer


async def test_a_template_writing_100m_characters_is_a_400(server):
    body = {"model": "huge-template", "messages": [{"role": "user", "content": "y" * 1000}], "max_tokens": 2}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/chat/completions", body)
    assert status == 400, answer
    assert "characters" in _error(answer)["message"] or "items" in _error(answer)["message"]


async def test_a_recursive_template_macro_is_a_400(server):
    body = {"model": "macro-template", "messages": [{"role": "user", "content": "z" * 600}], "max_tokens": 2}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/chat/completions", body)
    assert status == 400, answer
    assert "recursed" in _error(answer)["message"]


async def test_tokenizing_5_mb_does_not_stall_other_requests(server):
    text = "Once upon a time there was a dog. " * 150_000  # 5.1 MB: seconds of tokenizing
    status, answer, answered = await _while_handling(server.base_url, "POST", "/v1/tokenize",
                                                      {"model": "stories260K", "content": text})
    assert status == 200 and len(answer["tokens"]) > 1_000_000
    assert len(answered) >= 3, answered
    # as a prompt it cannot fit: a 400 after tokenizing, with /health answered meanwhile
    status, answer, answered = await _while_handling(server.base_url, "POST", "/v1/completions",
                                                      {"model": "stories260K", "prompt": text, "max_tokens": 1})
    assert status == 400 and _error(answer)["code"] == "context_length_exceeded"
    assert len(answered) >= 3, answered


def _message(data: dict) -> str:
    """The error message in any dialect's shape (OpenAI's, Anthropic's, Ollama's)."""
    error = _error(data)
    return error if isinstance(error, str) else error["message"]


LONG = [{"role": "user", "content": "x" * 600}]
ENUM_SCHEMA = {"enum": list(range(100_000))}


@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {"model": "slow-template", "max_tokens": 2, "messages": LONG}),
    ("/v1/messages/count_tokens", {"model": "slow-template", "messages": LONG}),
    ("/v1/responses", {"model": "slow-template", "max_output_tokens": 2, "store": False, "input": LONG}),
    ("/api/chat", {"model": "slow-template", "stream": False, "messages": LONG}),
    ("/v1/threads/{thread}/runs", {"model": "slow-template", "max_tokens": 2,
                                   "additional_messages": LONG}),
], ids=["anthropic", "anthropic-count", "responses", "ollama", "runs"])
async def test_an_endless_template_is_a_4xx_in_every_dialect_and_health_answers_meanwhile(server, path, body):
    """Item 2 by its kind: the same hostile template through every front end ends within its budget."""
    if "{thread}" in path:
        async with aiohttp.ClientSession() as s, s.post(server.base_url + "/v1/threads", json={}) as resp:
            path = path.replace("{thread}", (await resp.json())["id"])
    status, answer, answered = await _while_handling(server.base_url, "POST", path, body)
    if path.endswith("/runs"):  # a run is accepted at once, then fails with the reason recorded
        assert status == 200, answer
        answer, more = await _while_running(server.base_url, answer)
        answered += more
        assert answer["status"] == "failed" and "budget" in answer["last_error"]["message"], answer
    else:
        assert status == 400, answer
        assert "budget" in _message(answer)
    assert len(answered) >= 3, answered


@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}],
                      "output_config": {"format": {"type": "json_schema", "schema": ENUM_SCHEMA}}}),
    ("/v1/responses", {"model": "stories260K", "max_output_tokens": 2, "store": False, "input": "x",
                       "text": {"format": {"type": "json_schema", "name": "e", "schema": ENUM_SCHEMA}}}),
    ("/api/chat", {"model": "stories260K", "stream": False, "messages": [{"role": "user", "content": "x"}],
                   "format": ENUM_SCHEMA}),
    ("/api/generate", {"model": "stories260K", "stream": False, "prompt": "x", "raw": True, "format": ENUM_SCHEMA}),
], ids=["anthropic", "responses", "ollama-chat", "ollama-generate"])
async def test_a_hostile_json_schema_is_a_400_in_every_dialect(server, path, body):
    status, answer, _ = await _while_handling(server.base_url, "POST", path, body)
    assert status == 400, answer
    assert "100,000 values" in _message(answer)


@pytest.mark.parametrize("schema, why", [
    ({"enum": list(range(100_000))}, "100,000 values"),
    ({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}, "nests more than"),
    ({"type": "object", "properties": {"s": {"type": "string", "pattern": "(" * 300 + "a" + ")" * 300}}},
     "pattern nests"),
])
async def test_hostile_json_schemas_are_a_400_naming_the_field(server, schema, why):
    body = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/chat/completions", body)
    assert status == 400, answer
    assert _error(answer)["param"] == "response_format.json_schema.schema"
    assert why in _error(answer)["message"]


# -- 10: chat_template_kwargs may not re-set what the request says --------------------------------

@pytest.mark.parametrize("key", ["messages", "add_generation_prompt", "tools"])
async def test_chat_template_kwargs_cannot_override_the_request(server, key):
    body = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            "chat_template_kwargs": {key: [] if key != "add_generation_prompt" else False}}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/chat/completions", body)
    assert status == 400, answer
    assert _error(answer)["param"] == f"chat_template_kwargs.{key}"
    # other variables still reach the template
    body["chat_template_kwargs"] = {"enable_thinking": False}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/chat/completions", body)
    assert status == 200, answer


# -- 11: a model whose file is gone or damaged is the model's problem (4xx), not a server error -----

async def test_missing_or_damaged_weights_are_a_4xx(server, stories_path, tmp_path):
    base = server.base_url
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/v1/models", json={"id": "no-weights", "name": "no weights"}) as resp:
            assert resp.status == 201, await resp.text()
        damaged = write_truncated_copy(stories_path, tmp_path / "damaged.gguf", 0.5)
        async with s.post(base + "/v1/models", json={"path": str(damaged), "id": "damaged", "mode": "reference"}) as resp:
            imported = resp.status
        if imported != 201:  # the import already refuses it; damage a file after a good import instead
            good = tmp_path / "good.gguf"
            good.write_bytes(Path(stories_path).read_bytes())
            async with s.post(base + "/v1/models", json={"path": str(good), "id": "damaged", "mode": "reference"}) as resp:
                assert resp.status == 201, await resp.text()
            good.write_bytes(Path(stories_path).read_bytes()[: good.stat().st_size // 2])
        for model in ("no-weights", "damaged"):
            for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
                               ("/v1/tokenize", {"content": "Hi"}),
                               (f"/v1/models/{model}/start", None)):
                kwargs = {"json": {"model": model, **body} if body is not None else {}}
                async with s.post(base + path, **kwargs) as resp:
                    answer = await resp.json()
                    assert resp.status == 400, (model, path, answer)
                    assert answer["error"]["code"] == "invalid_model_file" and answer["error"]["param"] == "model"


async def test_a_request_larger_than_slots_plus_queue_is_a_400(server):
    # --parallel 4 with a queue of 64: 69 prompts can never be served at once, even on an idle server
    body = {"model": "stories260K", "prompt": ["Once"] * 69, "max_tokens": 1}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/completions", body)
    assert status == 400, answer
    assert _error(answer)["param"] == "prompt" and "can ever hold" in _error(answer)["message"]
    body = {"model": "stories260K", "prompt": ["Once"] * 4, "max_tokens": 1}
    status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/completions", body)
    assert status == 200, answer


# -- a lone UTF-16 surrogate ("\ud800" in JSON) is not text: a 400 naming the field, never a 500 -----

LONE = "Hi \ud800"  # json.dumps writes it as the escape "\ud800", as a hostile client would
_LONE_CHAT = [{"role": "user", "content": LONE}]


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2, "messages": _LONE_CHAT}, "messages[0].content"),
    ("/v1/completions", {"model": "stories260K", "max_tokens": 2, "prompt": LONE}, "prompt"),
    ("/v1/completions", {"model": "stories260K", "max_tokens": 2, "prompt": "Hi", "stop": ["a", "\udfff"]}, "stop[1]"),
    ("/v1/embeddings", {"model": "stories260K", "input": ["a", LONE]}, "input[1]"),
    ("/tokenize", {"model": "stories260K", "content": LONE}, "content"),
    ("/v1/tokenize", {"model": "stories260K", "content": LONE}, "content"),
    ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": _LONE_CHAT}, "messages.0.content"),
    ("/v1/messages/count_tokens", {"model": "stories260K", "messages": _LONE_CHAT}, "messages.0.content"),
    ("/v1/responses", {"model": "stories260K", "max_output_tokens": 2, "store": False, "input": LONE}, "input"),
    ("/api/generate", {"model": "stories260K", "stream": False, "prompt": LONE}, "prompt"),
    ("/api/chat", {"model": "stories260K", "stream": False, "messages": _LONE_CHAT}, "messages[0].content"),
    ("/api/embed", {"model": "stories260K", "input": LONE}, "input"),
    ("/v1/threads", {"metadata": {"note": LONE}}, "metadata.note"),
], ids=["chat", "completions", "completions-stop", "embeddings", "tokenize", "v1-tokenize", "anthropic",
        "anthropic-count", "responses", "ollama-generate", "ollama-chat", "ollama-embed", "threads"])
async def test_a_lone_surrogate_is_a_400_naming_the_field_in_every_dialect(server, path, body, field):
    raw = json.dumps(body)
    assert "\\ud" in raw  # the escape itself goes over the wire
    async with aiohttp.ClientSession() as s, \
            s.post(server.base_url + path, data=raw, headers={"Content-Type": "application/json"}) as resp:
        status, answer = resp.status, await resp.json()
    assert status == 400, answer
    assert _message(answer).startswith(f"{field}: ") and "surrogate" in _message(answer)
    if path.startswith("/api/"):
        assert isinstance(answer["error"], str)  # Ollama's shape
    elif path.startswith("/v1/messages"):
        assert answer["type"] == "error"  # Anthropic's shape
    elif path == "/tokenize":
        assert answer["error"]["code"] == 400 and "param" not in answer["error"]  # llama-server's shape
    else:
        assert answer["error"]["param"] == field and answer["error"]["code"] == "invalid_unicode"


def _assert_invalid_json_shape(path: str, answer: dict) -> None:
    """``answer`` is the refusal of a body that is no JSON in the shape of ``path``'s dialect."""
    if path.startswith("/api/"):
        assert isinstance(answer["error"], str)  # Ollama's shape
    elif path.startswith("/v1/messages"):
        assert answer["type"] == "error"  # Anthropic's shape
    else:
        assert answer["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32-le"])
@pytest.mark.parametrize("path, body", [
    ("/v1/threads", {"metadata": {"note": LONE}}),
    ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2, "messages": _LONE_CHAT}),
    ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": _LONE_CHAT}),
    ("/api/copy", {"source": "stories260K", "destination": LONE}),
], ids=["threads", "chat", "anthropic", "ollama-copy"])
async def test_a_body_that_is_not_utf8_is_a_400_saying_so_in_every_dialect(server, path, body, encoding):
    """JSON comes as UTF-8. A body in UTF-16 or UTF-32 was parsed (Python's parser guesses them), past the check for
    lone surrogate escapes, which reads the bytes as UTF-8: the stores then failed on the text with the codec's
    words ("'utf-8' codec can't encode character"), no code, no field."""
    raw = json.dumps(body).encode(encoding)
    async with aiohttp.ClientSession() as s, \
            s.post(server.base_url + path, data=raw, headers={"Content-Type": "application/json"}) as resp:
        status, answer = resp.status, await resp.json()
    assert status == 400, answer
    assert "not UTF-8" in _message(answer) and "codec" not in _message(answer), answer
    _assert_invalid_json_shape(path, answer)


@pytest.mark.parametrize("path, body", [
    ("/v1/threads", {"metadata": {"note": "café"}}),
    ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "café"}]}),
    ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "café"}]}),
    ("/api/chat", {"model": "stories260K", "messages": [{"role": "user", "content": "café"}]}),
], ids=["threads", "chat", "anthropic", "ollama"])
async def test_a_latin1_body_is_a_400_saying_it_is_not_utf8(server, path, body):
    """A body in another 8-bit charset (``charset=latin-1``: é is the one byte 0xe9) was a 400 quoting Python's codec
    ("'utf-8' codec can't decode byte 0xe9 in position ..."); it says the body is not UTF-8 and where."""
    raw = json.dumps(body, ensure_ascii=False).encode("latin-1")
    async with aiohttp.ClientSession() as s, \
            s.post(server.base_url + path, data=raw, headers={"Content-Type": "application/json; charset=latin-1"}) as resp:
        status, answer = resp.status, await resp.json()
    assert status == 400, answer
    message = _message(answer)
    assert "not UTF-8" in message and "0xe9" in message and "codec" not in message, answer
    _assert_invalid_json_shape(path, answer)


async def test_a_lone_surrogate_in_a_key_is_a_400_naming_its_object(server):
    raw = json.dumps({"model": "stories260K", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}],
                      "metadata": {"\udc80": "x"}})
    async with aiohttp.ClientSession() as s, \
            s.post(server.base_url + "/v1/chat/completions", data=raw,
                   headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "metadata"


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2,
                              "messages": [{"role": "user", "content": "Hi \U0001F600"}]}),
    ("/api/generate", {"model": "stories260K", "stream": False, "prompt": "Hi \U0001F600",
                       "options": {"num_predict": 2}}),
], ids=["chat", "ollama-generate"])
async def test_a_surrogate_pair_escape_is_one_character_and_works(server, path, body):
    raw = json.dumps(body)
    assert "\\ud83d\\ude00" in raw  # json.dumps writes an emoji as a surrogate pair escape
    async with aiohttp.ClientSession() as s, \
            s.post(server.base_url + path, data=raw, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()


# -- a schema's grammar over llama.cpp's bounds: said of the schema's field, in every dialect ---------------------

#: Three enums of 4,000 values (each within the enum bound): a grammar of 12,000 alternatives, over llama.cpp's
#: 10,000. Each was a 400 naming ``grammar``, a field none of these bodies sent.
ALTERNATIVES_SCHEMA = {"type": "object", "required": ["p0", "p1", "p2"],
                       "properties": {f"p{i}": {"enum": [f"v{i}-{k}" for k in range(4000)]} for i in range(3)}}
#: 5,000 optional properties (a 100 KB body): each position of an object's optional properties spells the rest, a
#: grammar of 325 MB built in full (seconds of the GIL held, gigabytes) before its size was refused as ``grammar``.
OPTIONAL_SCHEMA = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5000)}}
_X = [{"role": "user", "content": "x"}]


def _schema_bodies(schema: dict) -> list:
    """(path, body, the field the error must name) for each place a body gives a schema a grammar is made of."""
    chat = {"model": "stories260K", "max_tokens": 2, "messages": _X}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    return [
        ("/v1/chat/completions", {**chat, "response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": schema}}}, "response_format.json_schema.schema"),
        ("/v1/chat/completions", {**chat, "json_schema": schema}, "json_schema"),
        ("/v1/chat/completions", {**chat, "tools": [tool], "tool_choice": "required"}, "tools"),
        ("/v1/chat/completions", {**chat, "tools": [tool]}, "tools"),
        ("/v1/completions", {"model": "stories260K", "max_tokens": 2, "prompt": "x", "json_schema": schema},
         "json_schema"),
        ("/v1/messages", {**chat, "output_config": {"format": {"type": "json_schema", "schema": schema}}},
         "output_config.format.schema"),
        ("/v1/messages", {**chat, "tools": [{"name": "f", "input_schema": schema}], "tool_choice": {"type": "any"}},
         "tools"),
        ("/v1/responses", {"model": "stories260K", "max_output_tokens": 16, "store": False, "input": "x",
                           "text": {"format": {"type": "json_schema", "name": "x", "schema": schema}}},
         "text.format.schema"),
        ("/v1/responses", {"model": "stories260K", "max_output_tokens": 16, "store": False, "input": "x",
                           "tools": [{"type": "function", "name": "f", "parameters": schema}],
                           "tool_choice": "required"}, "tools"),
    ]


_SCHEMA_IDS = ["chat-format", "chat-json_schema", "chat-tools-required", "chat-tools-auto", "completions",
               "anthropic-format", "anthropic-tools", "responses-format", "responses-tools"]
#: each over-bound schema with the words its 400 says: the alternatives' count, or the grammar's size, refused as
#: it grows (before it is built in full)
_OVER_BOUND = [(ALTERNATIVES_SCHEMA, "number of alternatives", "alternatives"),
               (OPTIONAL_SCHEMA, "grows past the limit of 1,048,576 bytes", "optional-properties")]


@pytest.mark.parametrize("path, body, field, words", [
    (path, body, field, words) for schema, words, _ in _OVER_BOUND for path, body, field in _schema_bodies(schema)
], ids=[f"{kind}-{body}" for _, _, kind in _OVER_BOUND for body in _SCHEMA_IDS])
async def test_a_schema_over_the_grammar_bounds_is_a_400_naming_its_field(server, path, body, field, words):
    status, answer, _ = await _while_handling(server.base_url, "POST", path, body)
    assert status == 400, answer
    message = _message(answer)
    # a tool's schema may be named to the tool (tools[0]...): a field inside tools, never ``grammar``
    assert message.startswith(field), answer
    assert words in message, answer
    if path != "/v1/messages":  # (Anthropic's errors have no param)
        assert _error(answer)["param"].startswith(field), answer


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "stories260K", "max_tokens": 2, "messages": _X, "tool_choice": "required",
                              "tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(20000)]}),
    ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": _X,
                      "tools": [{"name": f"f{i}", "input_schema": {"type": "object"}} for i in range(20000)]}),
    ("/v1/responses", {"model": "stories260K", "max_output_tokens": 16, "store": False, "input": "x",
                       "tools": [{"type": "function", "name": f"f{i}"} for i in range(20000)]}),
], ids=["chat", "anthropic", "responses"])
async def test_the_grammar_of_many_tools_is_refused_naming_tools(server, path, body):
    """20,000 tools, each fine: their calls' grammar together passes the bound, which is no one tool's fault."""
    status, answer, _ = await _while_handling(server.base_url, "POST", path, body)
    assert status == 400, answer
    assert _message(answer).startswith("tools: the grammar grows past the limit"), answer
    if path != "/v1/messages":
        assert _error(answer)["param"] == "tools"


# -- stop strings: each is matched against every token, so a list has a bound where the API names none ------------

@pytest.mark.parametrize("path, body, field", [
    ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": _X}, "stop_sequences"),
    ("/api/chat", {"model": "stories260K", "stream": False, "messages": _X, "options": {}}, "stop"),
    ("/api/generate", {"model": "stories260K", "stream": False, "prompt": "x", "options": {}}, "stop"),
    ("/completion", {"model": "stories260K", "prompt": "x", "n_predict": 2}, "stop"),  # (llama-server's)
], ids=["anthropic", "ollama-chat", "ollama-generate", "llama-server"])
async def test_stop_lists_are_bounded_in_every_dialect(server, path, body, field):
    """A million stop strings (a 14 MB body) were taken, and matched against every token (on the event loop, for a
    reply its chat format parses): every other request waited seconds. 256 are taken (OpenAI's ``stop`` has 16)."""
    from jan.server.schemas import MAX_STOP_STRINGS

    def with_stops(n: int) -> dict:
        stops = [f"never-{i}" for i in range(n)]
        if "options" in body:
            return {**body, "options": {"stop": stops, "num_predict": 2}}
        return {**body, field: stops}

    async with aiohttp.ClientSession() as s:
        async with s.post(server.base_url + path, json=with_stops(MAX_STOP_STRINGS)) as resp:
            assert resp.status == 200, await resp.text()
        async with s.post(server.base_url + path, json=with_stops(MAX_STOP_STRINGS + 1)) as resp:
            assert resp.status == 400, await resp.text()
            message = _message(await resp.json())
    assert field in message and "at most 256" in message, message


# -- a request's walk before a load: a long one runs on a worker thread -------------------------------------------

async def test_a_long_logit_bias_is_judged_off_the_event_loop(server, monkeypatch):
    """What the model cannot take is judged before a load (:func:`jan.services.abilities.refusal`), walking the
    request: a ``logit_bias`` of 400,000 entries (a 6 MB body) was read on the event loop, 2.5 s during which no
    other request was answered. A long walk runs on a worker thread; a short one stays on the loop (no hop)."""
    import threading

    import jan.services.models as models
    from jan.services.abilities import REFUSAL_ON_LOOP_ITEMS

    where: list[str] = []
    judge = models.refusal

    def recorded(*args, **kw):
        where.append(threading.current_thread().name)
        return judge(*args, **kw)

    monkeypatch.setattr(models, "refusal", recorded)
    long_bias = {str(i): 1.0 for i in range(REFUSAL_ON_LOOP_ITEMS + 1)}  # (ids past stories260K's 512: refused)
    for bias in ({"1": 1.0}, long_bias):
        body = {"model": "stories260K", "messages": _X, "max_tokens": 2, "logit_bias": bias}
        status, answer, _ = await _while_handling(server.base_url, "POST", "/v1/chat/completions", body)
        assert status == (200 if len(bias) == 1 else 400), answer
    assert where[0] == "jan-test-server", where  # (the server's event loop thread: testing.server.ServerThread)
    assert len(where) == 2 and where[1] != "jan-test-server", where
    assert "outside the vocabulary" in _message(answer) and _error(answer)["param"] == "logit_bias"
