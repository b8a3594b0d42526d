"""Big answers (thousands of embeddings, a tokenized book with its pieces, prompts scored with logprobs) are
built and encoded off the event loop, in pieces: the C JSON encoder holds the GIL for a whole call, so one call
for a whole big body on a worker thread still held the event loop (and every other request) until it ended.

Every call of the JSON writer is recorded: none of a big answer's is made on the event loop, and none encodes
more than :data:`jsonio.PIECE_VALUES` values. No timing is measured."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from api_helpers import post_json, running
from jan.server import jsonio
from jan.server.jsonio import PIECE_VALUES, encode_in_pieces, json_values
from jan.server.routes import ollama as ollama_routes

WAIT_S = 300  # a guard against a hung test, never a measure

EMBED = "all-MiniLM-L6-v2-f32"
COMPACT = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("answers") / "data", stories_path, minilm_path) as srv:
        yield srv


def post(server, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return post_json(server.base_url, path, body, timeout=WAIT_S)


class Recorder:
    """Wraps a JSON writer: each call's size in JSON values and whether it ran on the event loop."""

    def __init__(self, fn):
        self.fn = fn
        self.calls: list[tuple[int, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, obj: Any, *args: Any, **kw: Any) -> str:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        with self.lock:
            self.calls.append((json_values(obj), on_loop))
        return self.fn(obj, *args, **kw)


# -- the encoder -----------------------------------------------------------------------------------------------
SHAPES = [
    {"data": [{"index": i, "embedding": [i / 7] * 50} for i in range(40)], "usage": {"prompt_tokens": 3}},
    {"tokens": [{"id": i, "piece": "é" if i % 2 else " the"} for i in range(300)]},
    {"keys": {5: "int", None: "null", True: "bool", 1.5: "float", "é": ["x"]}, "empty": [], "none": {}},
    [[1, 2], [3], [], [[]], {}] * 30,
    ("a", ("b", ("c",))),
    [],
    {},
    "text",
    7,
    # long texts, written a slice at a time: escapes, non-ASCII and a character past the BMP at every cut
    "é\"\n\\ \u2028 \U0001F600 <s>" * 60,
    {"content": "a" * 500, "prompt": ["b\u00e9" * 300, "c"]},
]


@pytest.mark.parametrize("writer", [jsonio.dumps, COMPACT], ids=["default", "compact"])
@pytest.mark.parametrize("piece_values", [1, 2, 7, 100, 10**9])
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_pieces_make_the_same_text(writer, piece_values, shape):
    value = SHAPES[shape]
    assert encode_in_pieces(value, writer, piece_values=piece_values) == writer(value)


def test_no_piece_is_over_the_bound():
    rec = Recorder(COMPACT)
    value = {"embeddings": [[0.5] * 384 for _ in range(200)], "one_big": [1] * 500}
    assert encode_in_pieces(value, rec, piece_values=1000) == COMPACT(value)
    assert len(rec.calls) > 10
    assert max(size for size, _ in rec.calls) <= 1000


def test_pieces_stay_strict():
    """A NaN in a later piece is still refused (the writer's own strictness holds in every piece)."""
    with pytest.raises(ValueError):
        encode_in_pieces([1.0] * 50 + [math.nan], piece_values=10)


# -- the routes ----------------------------------------------------------------------------------------------
def _prompt_of(tokens: int) -> str:
    return " ".join(["the"] * tokens)


BIG_ANSWERS = {
    "openai embeddings": ("/v1/embeddings", {"model": EMBED, "input": [f"word {i}" for i in range(300)]},
                          jsonio, "dumps"),
    "ollama embed": ("/api/embed", {"model": EMBED, "input": [f"word {i}" for i in range(300)]},
                     ollama_routes, "_dumps"),
    "tokenize with pieces": ("/tokenize", {"model": "stories260K", "content": "hello " * 14_000,
                                           "with_pieces": True}, jsonio, "dumps"),
    "tokenize": ("/tokenize", {"model": "stories260K", "content": "hello " * 40_000}, jsonio, "dumps"),
    # 16 prompts of ~400 tokens scored with 20 alternatives each (an evaluation harness's request)
    "completions scored": ("/v1/completions", {"model": "stories260K", "prompt": [_prompt_of(400)] * 16,
                                               "max_tokens": 0, "echo": True, "logprobs": 20}, jsonio, "dumps"),
    "chat logprobs": ("/v1/chat/completions", {"model": "stories260K", "n": 4, "max_tokens": 200,
                                               "logprobs": True, "top_logprobs": 20, "temperature": 0,
                                               "messages": [{"role": "user", "content": "Once upon a time"}]},
                      jsonio, "dumps"),
}


@pytest.mark.parametrize("name", list(BIG_ANSWERS))
def test_big_answer_is_encoded_off_the_loop_in_pieces(server, monkeypatch, name):
    path, body, module, attr = BIG_ANSWERS[name]
    rec = Recorder(getattr(module, attr))
    monkeypatch.setattr(module, attr, rec)
    status, answer = post(server, path, body)
    assert status == 200, answer
    big = [(size, on_loop) for size, on_loop in rec.calls if size > 8]  # (not the separators' probes)
    assert len(big) > 1, f"{name}: the answer was not big enough to be written in pieces"
    assert not any(on_loop for _, on_loop in big), f"{name}: written on the event loop"
    assert max(size for size, _ in big) <= PIECE_VALUES
    assert json_values(answer) > jsonio.ENCODE_OFF_LOOP_VALUES  # (what the test means by big)
    if name.startswith("tokenize with"):
        assert {t["piece"] for t in answer["tokens"]} >= {"ll", "o"}
    if name.startswith("completions"):
        assert len(answer["choices"]) == 16 and all(len(c["logprobs"]["top_logprobs"]) > 300
                                                    for c in answer["choices"])


def test_small_answer_is_written_once_on_the_loop(server, monkeypatch):
    rec = Recorder(jsonio.dumps)
    monkeypatch.setattr(jsonio, "dumps", rec)
    status, answer = post(server, "/tokenize", {"model": "stories260K", "content": "hello", "with_pieces": True})
    assert status == 200 and answer["tokens"]
    assert [on_loop for _, on_loop in rec.calls] == [True]  # (a hop to a worker would cost more than it saves)


OLLAMA_WHOLE = {
    "ollama chat": ("/api/chat", {"messages": [{"role": "user", "content": "Once upon a time"}]}),
    "ollama generate": ("/api/generate", {"prompt": "Once upon a time"}),
    "ollama generate raw": ("/api/generate", {"prompt": "Once upon a time", "raw": True}),
}


@pytest.mark.parametrize("name", list(OLLAMA_WHOLE))
def test_a_long_ollama_reply_with_logprobs_is_encoded_off_the_loop_in_pieces(server, monkeypatch, name):
    # (the bounds made small, so that a short reply of a tiny model is "long"; the code path is the one a long
    # reply of a real model takes: each token's 20 alternatives, with their bytes, are hundreds of values)
    monkeypatch.setattr(jsonio, "ENCODE_OFF_LOOP_VALUES", 1_000)
    monkeypatch.setattr(jsonio, "PIECE_VALUES", 500)
    rec = Recorder(ollama_routes._dumps)
    monkeypatch.setattr(ollama_routes, "_dumps", rec)
    path, body = OLLAMA_WHOLE[name]
    status, answer = post(server, path, {"model": "stories260K", "stream": False, "logprobs": True,
                                         "top_logprobs": 20, "options": {"num_predict": 40, "temperature": 0},
                                         **body})
    assert status == 200 and answer["done"] is True, answer
    assert len(answer["logprobs"]) == answer["eval_count"] and len(answer["logprobs"][0]["top_logprobs"]) == 20
    big = [(size, on_loop) for size, on_loop in rec.calls if size > 8]
    assert len(big) > 1 and not any(on_loop for _, on_loop in big)
    assert max(size for size, _ in big) <= 500


def test_a_long_response_with_logprobs_is_encoded_off_the_loop_in_pieces(server, monkeypatch):
    """The Responses API's whole answer and a stored response read back, alike (bounds made small, as above)."""
    monkeypatch.setattr(jsonio, "ENCODE_OFF_LOOP_VALUES", 1_000)
    monkeypatch.setattr(jsonio, "PIECE_VALUES", 500)
    rec = Recorder(jsonio.dumps)
    monkeypatch.setattr(jsonio, "dumps", rec)
    status, answer = post(server, "/v1/responses", {"model": "stories260K", "input": "Once upon a time",
                                                    "max_output_tokens": 40, "temperature": 0, "top_logprobs": 20,
                                                    "include": ["message.output_text.logprobs"]})
    assert status == 200, answer
    logprobs = answer["output"][-1]["content"][0]["logprobs"]
    assert logprobs and len(logprobs[0]["top_logprobs"]) == 20
    with urllib.request.urlopen(f"{server.base_url}/v1/responses/{answer['id']}", timeout=WAIT_S) as resp:
        assert json.loads(resp.read())["output"] == answer["output"]
    big = [(size, on_loop) for size, on_loop in rec.calls if size > 8]
    assert len(big) > 2 and not any(on_loop for _, on_loop in big)
    assert max(size for size, _ in big) <= 500
