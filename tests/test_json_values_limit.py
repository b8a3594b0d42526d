"""A JSON body holding more values than the server's ``max_json_values`` is a 413 in its route's dialect, refused
before it is parsed (jan.server.validation.check_json_values): Python's JSON parser and pydantic's validator hold
the GIL for the whole of a body, on a worker thread too, and 16 MiB of tiny values held every other request for
seconds. A legit large body (a 128k-token prompt as token ids, a big base64 image) stays within the default."""

from __future__ import annotations

import json

import httpx
import pytest

from jan.server.config import DEFAULT_MAX_JSON_VALUES, ServerConfig
from jan.server.validation import check_json_values, json_values_in
from server_helpers import start_server

LIMIT = 200
#: More values than LIMIT, fewer bytes than any max_body_bytes: token ids as the prompt.
MANY = list(range(1, LIMIT + 50))


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("values"), [stories_path], max_json_values=LIMIT)
    yield srv
    srv.stop()


def _post(server, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.base_url + path, content=json.dumps(body).encode(), timeout=120,
                      headers={"Content-Type": "application/json", **(headers or {})})


def _says_the_limit(message: str) -> bool:
    return f"{LIMIT:,}" in message and "max_json_values" in message and "--max-json-values" in message


ANTHROPIC = {"anthropic-version": "2023-06-01"}
_parts = [{"type": "text", "text": "a"}] * LIMIT
#: One route of each family, a body over LIMIT values for it, and how its dialect's error says the refusal (the
#: tokenizer's and template's routes, which OpenAI-style clients share, answer in OpenAI's shape as their other errors).
ROUTES = {
    "openai chat": ("/v1/chat/completions", {"model": "stories260K", "messages": [{"role": "user", "content": _parts}]},
                    {}, lambda b: b["error"]["code"] == "too_many_json_values" and _says_the_limit(b["error"]["message"])),
    "openai completions": ("/v1/completions", {"model": "stories260K", "prompt": MANY}, {},
                           lambda b: b["error"]["code"] == "too_many_json_values"),
    "openai embeddings": ("/v1/embeddings", {"model": "stories260K", "input": MANY}, {},
                          lambda b: b["error"]["code"] == "too_many_json_values"),
    "responses": ("/v1/responses", {"model": "stories260K", "input": [{"role": "user", "content": "a"}] * LIMIT}, {},
                  lambda b: b["error"]["code"] == "too_many_json_values"),
    "anthropic messages": ("/v1/messages", {"model": "stories260K", "max_tokens": 1,
                                            "messages": [{"role": "user", "content": _parts}]}, ANTHROPIC,
                           lambda b: b["type"] == "error" and b["error"]["type"] == "request_too_large"
                           and _says_the_limit(b["error"]["message"])),
    "anthropic count_tokens": ("/v1/messages/count_tokens", {"model": "stories260K",
                                                             "messages": [{"role": "user", "content": _parts}]},
                               ANTHROPIC, lambda b: b["error"]["type"] == "request_too_large"),
    "ollama chat": ("/api/chat", {"model": "stories260K", "messages": [{"role": "user", "content": ""}] * LIMIT}, {},
                    lambda b: set(b) == {"error"} and _says_the_limit(b["error"])),
    "ollama generate": ("/api/generate", {"model": "stories260K", "prompt": "a", "context": MANY}, {},
                        lambda b: set(b) == {"error"} and _says_the_limit(b["error"])),
    "ollama embed": ("/api/embed", {"model": "stories260K", "input": ["a"] * LIMIT}, {},
                     lambda b: set(b) == {"error"} and _says_the_limit(b["error"])),
    "llama-server completion": ("/completion", {"prompt": MANY}, {},
                                lambda b: b["error"]["code"] == 413 and _says_the_limit(b["error"]["message"])),
    "llama-server tokenize": ("/tokenize", {"content": ["a"] * LIMIT}, {},
                              lambda b: b["error"]["code"] == 413 and _says_the_limit(b["error"]["message"])),
    "llama-server detokenize": ("/detokenize", {"tokens": MANY}, {},
                                lambda b: b["error"]["code"] == 413 and _says_the_limit(b["error"]["message"])),
    "llama-server apply-template": ("/apply-template", {"messages": [{"role": "user", "content": ""}] * LIMIT}, {},
                                    lambda b: b["error"]["code"] == 413 and _says_the_limit(b["error"]["message"])),
    "jan detokenize": ("/v1/detokenize", {"tokens": MANY}, {}, lambda b: b["error"]["code"] == "too_many_json_values"),
    "llama-server infill": ("/infill", {"input_prefix": "a", "input_extra": [{"filename": "", "text": ""}] * LIMIT},
                            {}, lambda b: b["error"]["code"] == 413),
    "threads": ("/v1/threads", {"messages": [{"role": "user", "content": ""}] * LIMIT}, {},
                lambda b: b["error"]["code"] == "too_many_json_values"),
}


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_over_max_json_values_is_a_413_in_its_dialects_shape(server, route):
    path, body, headers, says = ROUTES[route]
    assert json_values_in(json.dumps(body).encode()) > LIMIT
    response = _post(server, path, body, headers)
    assert response.status_code == 413, response.text
    assert says(response.json()), response.text


@pytest.mark.parametrize("path,dialect", [("/v1/completions", "openai"), ("/api/generate", "ollama"),
                                          ("/completion", "llama-server")])
def test_the_count_refuses_before_the_body_is_parsed(server, monkeypatch, path, dialect):
    """(the mechanism: the parser never sees the refused body, so it never holds the GIL for it)"""
    seen: list[bytes] = []
    loads = json.loads

    def spy(text, *args, **kw):
        if isinstance(text, (bytes, bytearray)) and b'"stop-marker"' in text:
            seen.append(bytes(text))
        return loads(text, *args, **kw)

    monkeypatch.setattr(json, "loads", spy)
    over = {"model": "stories260K", "prompt": MANY, "context": MANY, "stop": ["stop-marker"]}
    assert _post(server, path, over).status_code == 413
    assert seen == []
    within = {"/v1/completions": {"model": "stories260K", "prompt": MANY[:20], "max_tokens": 1, "stop": ["stop-marker"]},
              "/api/generate": {"model": "stories260K", "prompt": "a", "context": MANY[:20], "stream": False,
                                "options": {"num_predict": 1, "stop": ["stop-marker"]}},
              "/completion": {"prompt": MANY[:20], "n_predict": 1, "stop": ["stop-marker"]}}[path]
    assert _post(server, path, within).status_code == 200
    assert seen  # (the spy does see a body it lets through)


def test_a_body_within_the_limit_is_answered(server):
    response = _post(server, "/v1/completions", {"model": "stories260K", "prompt": MANY[:LIMIT // 2], "max_tokens": 1})
    assert response.status_code == 200, response.text
    response = _post(server, "/api/chat", {"model": "stories260K", "stream": False, "options": {"num_predict": 1},
                                           "messages": [{"role": "user", "content": "hi, there"}] * 10})
    assert response.status_code == 200, response.text


def test_legit_large_bodies_are_within_the_default():
    """A 128k-token prompt as token ids, a 16 MiB base64 image and a long conversation of prose are all under the
    default limit (refused only by the count past it)."""
    prompt = json.dumps({"model": "m", "prompt": list(range(131_072))}).encode()
    image = json.dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "QUJD" * (4 * 1024 * 1024)}}]}]}).encode()
    prose = "Once upon a time, in a land far away, there lived a cat, a dog and a fox. " * 20
    chat = json.dumps({"model": "m", "messages": [{"role": "user" if i % 2 else "assistant", "content": prose}
                                                  for i in range(2000)]}).encode()
    # the largest embedding request OpenAI's caps admit, as token ids: 300,000 tokens in all in 2,048 lists (256 Ki
    # refused it, a 413 before the request's own token cap could answer)
    from jan.services.types import MAX_EMBEDDING_INPUTS, MAX_EMBEDDING_TOKENS

    per_list = MAX_EMBEDDING_TOKENS // MAX_EMBEDDING_INPUTS + 1
    embeddings = json.dumps({"model": "m", "input": [[1037] * per_list] * MAX_EMBEDDING_INPUTS}).encode()
    assert per_list * MAX_EMBEDDING_INPUTS > MAX_EMBEDDING_TOKENS
    for body in (prompt, image, chat, embeddings):
        check_json_values(body, DEFAULT_MAX_JSON_VALUES)
    with pytest.raises(Exception) as refused:
        check_json_values(json.dumps({"prompt": [[1]] * DEFAULT_MAX_JSON_VALUES}).encode(), DEFAULT_MAX_JSON_VALUES)
    assert getattr(refused.value, "status", None) == 413


def test_the_limit_is_a_positive_integer(tmp_path):
    with pytest.raises(ValueError, match="max_json_values"):
        ServerConfig(data_folder=tmp_path, max_json_values=0)


def test_jan_serve_takes_the_limit(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from jan.cli import serve as serve_cli
    from jan.cli import main

    given: list[ServerConfig] = []

    async def run_server(config):  # (the config the command built; nothing starts)
        given.append(config)

    monkeypatch.setattr(serve_cli, "run_server", run_server)
    result = CliRunner().invoke(main, ["serve", "--data-folder", str(tmp_path), "--max-json-values", "1000"])
    assert result.exit_code == 0, result.output
    assert given[0].max_json_values == 1000
    refused = CliRunner().invoke(main, ["serve", "--data-folder", str(tmp_path), "--max-json-values", "0"])
    assert refused.exit_code == 2 and "--max-json-values" in refused.output


def test_a_big_body_is_parsed_with_hooks_where_other_threads_run(monkeypatch):
    """The C parser holds the GIL for a whole call; a big body's objects and integers go through Python hooks, where
    the interpreter lets other threads (the event loop) run. The mechanism, and the same value as a plain parse."""
    from jan.server import validation

    kinds: list[set[str]] = []
    loads = json.loads

    def spy(text, *args, **kw):
        kinds.append(set(kw))
        return loads(text, *args, **kw)

    monkeypatch.setattr(validation.json, "loads", spy)
    item = {"role": "user", "content": [{"type": "text", "text": "a"}], "n": 12}
    big = ("[" + ",".join(['{"k": 1, "k": 2, "v": [1, 2.5, -3, "x", null, true]}'] * 20_000) + "]").encode()
    assert len(big) > validation.PARSE_OFF_LOOP_BYTES
    small = json.dumps(item).encode()
    assert validation.loads_bounded(big) == loads(big) and validation.loads_bounded(small) == loads(small)
    assert {"object_pairs_hook", "parse_int"} <= kinds[0] and not {"object_pairs_hook", "parse_int"} & kinds[1]


def test_commas_and_brackets_in_a_strings_text_are_no_values(server):
    """A string's commas and brackets are its text: counted as values, a pasted CSV or source file of 1.5 MB sent as
    one message was a 413 ("send a prompt as text rather than token ids" — which it was). The count now skips
    strings, escaped quotes and backslashes included; values outside strings still count."""
    csv = "name,age,city\n" + "ann,31,[oslo]{x}\n" * (LIMIT * 3) + 'a quote \\" and, a backslash \\\\'
    body = {"model": "stories260K", "prompt": csv, "max_tokens": 1}
    raw = json.dumps(body).encode()
    assert raw.count(b",") > LIMIT * 3
    assert json_values_in(raw) == 3  # the object's bracket and its two commas
    # [ , [ , , { — the string "a\\" ends at its quote (the backslash is escaped), "b\"," at its second
    assert json_values_in(b'["a\\\\",[1,2],{"b\\",":1}]') == 6
    assert json_values_in(b'{"never closed, [') == 1  # (counted as far as it goes: the parser refuses it)
    # parsed and read as the request it is: past this model's small context, the context's own 400 answers
    response = _post(server, "/v1/completions", body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded", response.text
    chat = {"model": "stories260K", "max_tokens": 1, "messages": [{"role": "user", "content": csv}]}
    response = _post(server, "/v1/messages", chat, ANTHROPIC)
    assert response.status_code == 400 and "too_many_json_values" not in response.text, response.text
    assert "context" in response.json()["error"]["message"], response.text
    short = {"model": "stories260K", "prompt": ",[{" * (LIMIT // 2), "max_tokens": 1}
    assert sum(json.dumps(short).encode().count(c) for c in (b",", b"[", b"{")) > LIMIT  # (the count before)
    assert _post(server, "/v1/completions", short).status_code == 200
    over = {"model": "stories260K", "prompt": [csv] + MANY, "max_tokens": 1}
    assert _post(server, "/v1/completions", over).status_code == 413
