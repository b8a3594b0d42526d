"""Big request bodies (hundreds of KiB to 16 MB of messages) never hold the event loop, and nothing done with a
conversation grows with the square of its length.

Each work step on a big body (parsing and validating it, walking it for images and documents, converting it to
the typed request) is held at a gate inside the step while another request is sent: that request is answered
while the big one is still held, so the step did not run on the event loop. No timing is measured anywhere."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from api_helpers import get_json, post_form, post_json, running
from jan.server import (
    body_size,
    document_inputs,
    jsonio,
    media_fetch,
    openai_wire,
    validation,
)
from jan.server.dialects import anthropic as anthropic_wire
from jan.server.dialects import ollama_requests
from jan.server.dialects import responses as responses_wire
from jan.server.routes import ollama as ollama_routes
from jan.services import fit, kept_items
from jan.services.types import ChatMessage
from jan.templates.chat import (
    MANY_MESSAGES,
    ChatTemplate,
    RenderBudget,
    TemplateBudgetError,
)

WAIT_S = 300  # a guard against a hung test, never a measure: every wait ends on an event first

# 5,000 messages of 50 letters: ~350 KB, over the 256 KiB past which body work leaves the event loop
N_BIG = 5000
BIG_MESSAGES = [{"role": "user", "content": "a" * 50}] * N_BIG
assert len(json.dumps(BIG_MESSAGES)) > body_size.PARSE_OFF_LOOP_BYTES

BIG_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("/v1/chat/completions", {"model": "stories260K", "messages": BIG_MESSAGES, "max_tokens": 2}),
    "anthropic": ("/v1/messages", {"model": "stories260K", "messages": BIG_MESSAGES, "max_tokens": 2}),
    "responses": ("/v1/responses", {"model": "stories260K", "input": BIG_MESSAGES, "max_output_tokens": 2,
                                    "store": False}),
    "ollama": ("/api/chat", {"model": "stories260K", "messages": BIG_MESSAGES, "stream": False,
                             "options": {"num_predict": 2}}),
    "completions": ("/v1/completions", {"model": "stories260K", "prompt": ["a" * 50] * N_BIG, "max_tokens": 1}),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("big") / "data", stories_path, minilm_path) as srv:
        yield srv


def post(server, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return post_json(server.base_url, path, body, timeout=WAIT_S)


def get_version(server) -> int:
    with urllib.request.urlopen(server.base_url + "/api/version", timeout=WAIT_S) as resp:
        return resp.status


@dataclass
class Gate:
    """Wraps a body step: its first call waits for :attr:`release` (after setting :attr:`entered`), unless it was
    made on the event loop, where waiting would freeze the server: that call is noted (:attr:`on_loop`) and goes
    on."""

    fn: Callable[..., Any]
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    on_loop: bool | None = None

    def __get__(self, obj: Any, owner: type) -> Any:  # (set on a class: a method of its instances)
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if self.on_loop is None:
            try:
                asyncio.get_running_loop()
                self.on_loop = True
            except RuntimeError:  # a worker thread: no loop runs here
                self.on_loop = False
            self.entered.set()
            if not self.on_loop:
                assert self.release.wait(WAIT_S)
        return self.fn(*args, **kw)


def held_while_answered(server, monkeypatch, target: Any, name: str, path: str, body: dict[str, Any] | None,
                        method: str = "POST"):
    """Send ``body`` with ``target.name`` gated; while the big request is held in it, another request is answered.
    Returns the big request's answer. ``method``: the big request's (a GET sends no ``body``)."""
    gate = Gate(getattr(target, name))
    monkeypatch.setattr(target, name, gate)
    answer: list[tuple[int, Any]] = []

    def send() -> tuple[int, Any]:
        if method == "GET":
            return get_json(server.base_url, path, timeout=WAIT_S)
        return post_json(server.base_url, path, body, timeout=WAIT_S, method=method)
    big = threading.Thread(target=lambda: answer.append(send()))
    big.start()
    try:
        assert gate.entered.wait(WAIT_S), f"{name} was never called"
        assert gate.on_loop is False, f"{name} ran on the event loop for a big body"
        assert get_version(server) == 200  # answered while the big request is still held in the step
        assert not answer  # (still held: the gate is not released yet)
    finally:
        gate.release.set()
        big.join(WAIT_S)
    assert answer, "the big request never ended"
    return answer[0]


def _too_long(status: int, body: Any) -> None:
    assert status == 400
    assert "context holds 512" in json.dumps(body)


# -- each dialect's steps on a big body run off the event loop ---------------------------------------------
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "responses", "completions"])
def test_big_body_validates_off_the_loop(server, monkeypatch, dialect):
    path, body = BIG_BODIES[dialect]
    status, answer = held_while_answered(server, monkeypatch, validation, "validate_json", path, body)
    if dialect == "completions":  # 5,000 prompts at once: more than the model can ever hold (the same 400 as ever)
        assert status == 400 and "generations at once" in json.dumps(answer)
    else:
        _too_long(status, answer)


def test_big_ollama_body_validates_and_converts_off_the_loop(server, monkeypatch):
    path, body = BIG_BODIES["ollama"]
    status, answer = held_while_answered(server, monkeypatch, ollama_routes, "_decoded", path, body)
    assert status == 200 and answer["done"] is True  # the oldest turns dropped to fit, as before
    status, answer = held_while_answered(server, monkeypatch, ollama_requests, "chat_request", path, body)
    assert status == 200 and answer["done"] is True


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_big_body_is_counted_off_the_loop(server, monkeypatch, dialect):
    """(its JSON values counted against max_json_values before it is parsed: tens of milliseconds over 16 MiB)"""
    path, body = BIG_BODIES[dialect]
    status, answer = held_while_answered(server, monkeypatch, ollama_routes if dialect == "ollama" else validation,
                                         "check_json_values", path, body)
    if dialect == "ollama":
        assert status == 200 and answer["done"] is True
    else:
        _too_long(status, answer)


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "responses"])
def test_big_body_walks_off_the_loop(server, monkeypatch, dialect):
    path, body = BIG_BODIES[dialect]
    _too_long(*held_while_answered(server, monkeypatch, media_fetch, "_image_urls", path, body))
    _too_long(*held_while_answered(server, monkeypatch, document_inputs, "_document_inputs", path, body))


@pytest.mark.parametrize(("dialect", "target", "name"), [
    ("openai", openai_wire, "chat_request"),
    ("anthropic", anthropic_wire, "to_chat_request"),
    ("responses", responses_wire, "input_messages"),
    ("responses", responses_wire, "to_chat_request"),
    ("completions", openai_wire, "completion_request"),
])
def test_big_body_converts_off_the_loop(server, monkeypatch, dialect, target, name):
    path, body = BIG_BODIES[dialect]
    status, _ = held_while_answered(server, monkeypatch, target, name, path, body)
    assert status == 400


# 3,000 empty messages: ~90 KB, under the bytes past which body work leaves the loop, but 9,000 values
DENSE_MESSAGES = [{"role": "user", "content": ""}] * 3000
assert len(json.dumps(DENSE_MESSAGES)) < body_size.PARSE_OFF_LOOP_BYTES
assert validation.json_values_in(json.dumps(DENSE_MESSAGES).encode()) > body_size.PARSE_OFF_LOOP_VALUES


@pytest.mark.parametrize(("path", "target", "name"), [
    ("/v1/chat/completions", validation, "validate_json"),
    ("/api/chat", ollama_routes, "_decoded"),
])
def test_small_body_of_many_values_validates_off_the_loop(server, monkeypatch, path, target, name):
    """The work on a body grows with its values: a dense body of few bytes goes off the loop too."""
    body = {"model": "stories260K", "messages": DENSE_MESSAGES, "max_tokens": 1, "stream": False}
    status, _ = held_while_answered(server, monkeypatch, target, name, path, body)
    assert status in (200, 400)


def test_small_body_stays_on_the_loop(server, monkeypatch):
    """A small body's steps are not worth a hop to a worker thread."""
    gate = Gate(validation.validate_json)
    monkeypatch.setattr(validation, "validate_json", gate)
    status, _ = post(server, "/v1/chat/completions", {"model": "stories260K", "max_tokens": 1,
                                                      "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and gate.on_loop is True


def test_big_embeddings_answer_is_encoded_off_the_loop(server, monkeypatch):
    """300 embeddings of 384 floats: a body of 115,200 numbers, built and encoded off the event loop."""
    inputs = [f"word {i}" for i in range(300)]
    status, answer = held_while_answered(server, monkeypatch, jsonio, "dumps", "/v1/embeddings",
                                         {"model": "all-MiniLM-L6-v2-f32", "input": inputs})
    assert status == 200
    assert [d["index"] for d in answer["data"]] == list(range(300))
    assert {len(d["embedding"]) for d in answer["data"]} == {384}


def test_big_ollama_embed_answer_is_encoded_off_the_loop(server, monkeypatch):
    """Ollama's /api/embed alike (its compact JSON writer)."""
    from jan.server.routes import ollama

    inputs = [f"word {i}" for i in range(300)]
    status, answer = held_while_answered(server, monkeypatch, ollama, "_dumps", "/api/embed",
                                         {"model": "all-MiniLM-L6-v2-f32", "input": inputs})
    assert status == 200
    assert len(answer["embeddings"]) == 300 and {len(v) for v in answer["embeddings"]} == {384}


# -- the same answers on and off the loop --------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/chat/completions", {"model": "stories260K", "messages": BIG_MESSAGES + [{"role": "bogus", "content": "a"}]},
     f"messages[{N_BIG}].role"),
    ("/v1/messages", {"model": "stories260K", "max_tokens": 2, "messages": BIG_MESSAGES + [{"role": "bogus"}]},
     f"messages.{N_BIG}"),
    ("/api/chat", {"model": "stories260K", "messages": BIG_MESSAGES + [{"role": "user", "content": 5}]},
     f"messages[{N_BIG}].content"),
])
def test_errors_are_the_same_off_the_loop(server, monkeypatch, path, body, field):
    """A bad field deep in a big body is the same 400, naming it, whether the body is worked on the loop or off."""
    off = post(server, path, body)
    monkeypatch.setattr(body_size, "PARSE_OFF_LOOP_BYTES", 1 << 30)  # every body small: all on the loop
    on = post(server, path, body)
    for _status, answer in (off, on):  # (each answer's own request id, in Anthropic's body: not the error's words)
        answer.pop("request_id", None)
    assert off == on
    assert off[0] == 400 and field in json.dumps(off[1])


def test_big_body_answers_are_the_same_off_the_loop(server, monkeypatch):
    path, body = BIG_BODIES["openai"]
    off = post(server, path, body)
    monkeypatch.setattr(body_size, "PARSE_OFF_LOOP_BYTES", 1 << 30)
    assert post(server, path, body) == off
    _too_long(*off)


# -- nothing quadratic in the number of messages ---------------------------------------------------------------
def test_history_fitting_reads_few_candidates(server, monkeypatch):
    """Dropping the oldest turns of a 3,000-turn conversation to fit (Ollama's /api/chat does) makes the
    shortened conversations it tries only: O(log n) of them, each O(n), never all n of them."""
    made = []
    original = fit._Candidates.__getitem__
    monkeypatch.setattr(fit._Candidates, "__getitem__", lambda self, k: made.append(k) or original(self, k))
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "a b c"} for i in range(3001)]
    status, answer = post(server, "/api/chat", {"model": "stories260K", "messages": messages, "stream": False,
                                                "options": {"num_predict": 2}})
    assert status == 200 and answer["done"] is True
    # a binary search over the ~1,500 candidates reads a few dozen of them at most (making them all read each one)
    assert 0 < len(made) < 100


def test_candidates_are_made_when_read():
    messages = tuple(ChatMessage.of_text("user" if i % 2 == 0 else "assistant", "a") for i in range(20001))
    messages = (ChatMessage.of_text("system", "s"),) + messages
    candidates = fit._candidates(messages)
    assert len(candidates) == 10000  # a candidate from each user turn but the first
    assert candidates.made == 0
    assert candidates[0] == [0, *range(3, 20002)]  # the system message, then from the second user turn
    assert candidates[-1] == [0, 20001]
    assert candidates.made == 2


# -- a huge conversation past the template's budget says what to do --------------------------------------------
def test_template_budget_error_says_send_fewer_messages():
    template = ChatTemplate.builtin("chatml")
    many = [{"role": "user", "content": "a"}] * MANY_MESSAGES
    with pytest.raises(TemplateBudgetError, match=f"rendering {MANY_MESSAGES:,} messages; send fewer"):
        template.render(many, budget=RenderBudget(seconds=-1.0))
    with pytest.raises(TemplateBudgetError) as err:
        template.render(many[:2], budget=RenderBudget(seconds=-1.0))
    assert "rendering 2 messages" in str(err.value) and "send fewer" not in str(err.value)


# -- big answers and long lists are written off the event loop -------------------------------------------------
#: The bound past which an answer is written off the loop, lowered for these tests: each route's answer is sized by
#: what it holds (a text by its length), and one of a test's size counts as big.
SMALL_BOUND = 1000

TEXT_ANSWERS: dict[str, tuple[str, dict[str, Any], Any, str]] = {
    "detokenize": ("/detokenize", {"model": "stories260K", "tokens": [300] * 40_000}, jsonio, "dumps"),
    "apply-template": ("/apply-template", {"model": "stories260K", "messages": BIG_MESSAGES[:2000]}, jsonio, "dumps"),
    # (not Ollama's chat: its history is cut to fit the model's context first)
    "ollama raw render": ("/api/generate", {"model": "stories260K", "prompt": "a " * 40_000, "raw": True,
                                            "stream": False, "_debug_render_only": True}, ollama_routes, "_dumps"),
}


def _text_of(answer: dict[str, Any]) -> str:
    return answer.get("content") or answer.get("prompt") or answer["_debug_info"]["rendered_template"]


@pytest.mark.parametrize("name", list(TEXT_ANSWERS))
def test_long_text_answer_is_written_off_the_loop(server, monkeypatch, name):
    """A detokenized list of ids, a rendered prompt: one long text, written (in slices) off the event loop."""
    path, body, module, writer = TEXT_ANSWERS[name]
    monkeypatch.setattr(jsonio, "ENCODE_OFF_LOOP_VALUES", SMALL_BOUND)
    status, answer = held_while_answered(server, monkeypatch, module, writer, path, body)
    assert status == 200, answer
    assert jsonio.text_values(_text_of(answer)) > SMALL_BOUND  # (what the test means by long)


def test_long_model_list_is_written_off_the_loop(server, monkeypatch):
    from jan.server.routes import models as models_routes

    # (each model counts as a big answer's worth: two of them are a data folder of thousands)
    monkeypatch.setattr(models_routes, "MODEL_VALUES", jsonio.ENCODE_OFF_LOOP_VALUES)
    status, answer = held_while_answered(server, monkeypatch, jsonio, "dumps", "/v1/models", None, method="GET")
    assert status == 200 and {m["id"] for m in answer["data"]} >= {"stories260K", "all-MiniLM-L6-v2-f32"}


def test_long_file_list_is_written_off_the_loop(server, monkeypatch):
    from jan.server.routes import files as files_routes

    status, file = post_form(server.base_url, {"purpose": "assistants"}, filename="a.txt", content=b"hello")
    assert status == 200, file
    monkeypatch.setattr(files_routes, "FILE_VALUES", jsonio.ENCODE_OFF_LOOP_VALUES + 1)  # (one file counts as many)
    status, answer = held_while_answered(server, monkeypatch, jsonio, "dumps", "/v1/files", None, method="GET")
    assert status == 200 and file["id"] in {f["id"] for f in answer["data"]}


FIVE = [{"role": "user", "content": f"m{i}"} for i in range(5)]


def _long_list(server, kind: str) -> tuple[str, Any, str]:
    """A list of five messages of ``kind``: (its page's path, the module whose cut is gated, the cut's name)."""
    from jan.server.routes import conversations as conversations_routes
    from jan.server.routes import responses as responses_routes
    from jan.server.routes import threads as threads_routes

    if kind == "thread":
        status, made = post(server, "/v1/threads", {"messages": FIVE})
        return f"/v1/threads/{made['id']}/messages", threads_routes, "page_of"
    if kind == "conversation":
        status, made = post(server, "/v1/conversations", {"items": FIVE})
        return f"/v1/conversations/{made['id']}/items", conversations_routes, "item_page"
    status, made = post(server, "/v1/responses", {"model": "stories260K", "input": FIVE, "max_output_tokens": 2})
    assert status == 200, made
    return f"/v1/responses/{made['id']}/input_items", responses_routes, "item_page"


@pytest.mark.parametrize("kind", ["thread", "conversation", "response"])
def test_long_list_is_cut_off_the_loop(server, monkeypatch, kind):
    """A page of a long thread's, conversation's or response's messages is cut (its messages filtered, sorted,
    searched for the cursor) in a worker thread."""
    path, module, cut = _long_list(server, kind)
    monkeypatch.setattr(kept_items, "MANY_MESSAGES", 2)  # (a list of 5 counts as long)
    status, answer = held_while_answered(server, monkeypatch, module, cut, path + "?limit=2&order=asc", None,
                                         method="GET")
    assert status == 200
    texts = [json.dumps(m["content"]) for m in answer["data"]]
    assert len(texts) == 2 and "m0" in texts[0] and "m1" in texts[1] and answer["has_more"] is True


def test_short_thread_is_cut_on_the_loop(server, monkeypatch):
    from jan.server.routes import threads as threads_routes

    status, thread = post(server, "/v1/threads", {"messages": [{"role": "user", "content": "hi"}]})
    gate = Gate(threads_routes.page_of)
    monkeypatch.setattr(threads_routes, "page_of", gate)
    status, answer = get_json(server.base_url, f"/v1/threads/{thread['id']}/messages", timeout=WAIT_S)
    assert status == 200 and len(answer["data"]) == 1 and gate.on_loop is True


# -- big bodies of the routes that validate what they read themselves ------------------------------------------
def test_big_model_body_validates_off_the_loop(server, monkeypatch):
    from jan.server.routes import model_admin

    status, answer = held_while_answered(server, monkeypatch, model_admin.ImportModelRequest, "model_validate",
                                         "/v1/models", {"path": "/nowhere/model.gguf", "messages": BIG_MESSAGES})
    assert status == 400, answer


@pytest.mark.parametrize(("schema", "method", "path", "body"), [
    # (each refused after it is dumped: a context of -5 tokens, a model that is not there)
    ("ModelJsonRequest", "POST", "/v1/models", {"id": "big-one", "settings": {"ctx_len": -5}, "messages": BIG_MESSAGES}),
    ("ModelPatch", "PATCH", "/v1/models/no-such-model", {"messages": BIG_MESSAGES}),
])
def test_big_model_body_is_dumped_off_the_loop(server, monkeypatch, schema, method, path, body):
    from jan.server.routes import model_admin

    status, answer = held_while_answered(server, monkeypatch, getattr(model_admin, schema), "model_dump", path, body,
                                         method=method)
    assert status in (400, 404), answer


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/threads", {"messages": BIG_MESSAGES}),
    ("/v1/threads/runs", {"assistant_id": "no-such-assistant", "thread": {"messages": BIG_MESSAGES}}),
])
def test_big_thread_body_is_made_off_the_loop(server, monkeypatch, path, body):
    """A new thread's thousands of messages are made into the store's fields off the loop, as they were validated."""
    from jan.server.routes import threads as threads_routes

    status, answer = held_while_answered(server, monkeypatch, threads_routes, "message_fields", path, body)
    assert status in (200, 404), answer


def test_big_settings_body_validates_off_the_loop(server, monkeypatch):
    from jan.core.settings import ExtensionSettings

    status, answer = held_while_answered(server, monkeypatch, ExtensionSettings, "validate",
                                         "/v1/extensions/llamacpp/settings", {"n_parallel": [1] * 100_000},
                                         method="PATCH")
    assert status == 400 and answer["error"]["param"] == "n_parallel", answer
