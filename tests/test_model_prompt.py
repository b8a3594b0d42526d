"""A model's own system prompt and stored messages (model.json ``system``/``messages``: Ollama's Modelfile SYSTEM and
MESSAGE), made with ``/api/create`` as Ollama's README's Mario example does and applied by the one chat path every
front end shares (:mod:`jan.services.model_prompt`): the model's system prompt when a request has none of its own,
the stored turns before the request's. Each front end is checked on a real server with a model whose chat template
writes every message (ChatML): the prompt a request to the made model renders is the one the base model renders
for the messages written out by hand."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path

import httpx
import ollama
import pytest

from dialect_helpers import anthropic_prompt_tokens, tool_model
from jan.services.errors import RequestError
from jan.services.model_prompt import with_model_prompt
from jan.services.types import ChatMessage, ChatRequest
from run_helpers import wait_for_run_sync
from server_helpers import start_server

BASE = "tool-model"
MARIO = "mario"
SYSTEM = "You are Mario from Super Mario Bros."
STORED = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "It's-a me, Mario!"}]
OWN = "You are Luigi."
HI = "Hello there"


def _sys(text: str) -> dict:
    return {"role": "system", "content": text}


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


# -- the rule, on the service function -------------------------------------------------------------------------------
def _request(*messages: tuple[str, str], **kw) -> ChatRequest:
    return ChatRequest(None, tuple(ChatMessage.of_text(role, text) for role, text in messages), **kw)


def _turns(request: ChatRequest) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in request.messages]


MODEL = {"id": "m", "system": SYSTEM, "messages": STORED}


def test_the_models_system_prompt_and_messages_go_first():
    assert _turns(with_model_prompt(_request(("user", HI)), MODEL)) == [
        ("system", SYSTEM), ("user", "Who are you?"), ("assistant", "It's-a me, Mario!"), ("user", HI)]


@pytest.mark.parametrize("role", ["system", "developer"])
def test_a_requests_own_system_message_replaces_the_models(role):
    assert _turns(with_model_prompt(_request((role, OWN), ("user", HI)), MODEL)) == [
        (role, OWN), ("user", "Who are you?"), ("assistant", "It's-a me, Mario!"), ("user", HI)]
    # one later in the conversation is the request's own too: the model's is not added before it
    assert _turns(with_model_prompt(_request(("user", HI), ("system", OWN), ("user", HI)), MODEL))[0] == \
        ("user", "Who are you?")


def test_one_field_alone_and_none():
    assert _turns(with_model_prompt(_request(("user", HI)), {"system": SYSTEM})) == [("system", SYSTEM), ("user", HI)]
    assert _turns(with_model_prompt(_request(("user", HI)), {"messages": STORED[:1]})) == [
        ("user", "Who are you?"), ("user", HI)]
    plain = _request(("user", HI))
    assert with_model_prompt(plain, {"system": "", "messages": []}) is plain


def test_a_continued_exchange_holds_the_stored_messages_already():
    """Ollama's /api/generate with ``context``: the stored turns were in the first prompt; the system prompt is
    written again, as Ollama's GenerateHandler does."""
    continued = with_model_prompt(_request(("user", HI), context=(1, 2, 3)), MODEL)
    assert _turns(continued) == [("system", SYSTEM), ("user", HI)]


@pytest.mark.parametrize("model, param", [
    ({"system": 5}, "system"), ({"messages": {"role": "user"}}, "messages"), ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x", "images": []}]}, "messages[0].images"),
])
def test_a_hand_edited_model_json_of_another_shape_is_a_request_error(model, param):
    with pytest.raises(RequestError) as err:
        with_model_prompt(_request(("user", HI)), {"id": "m", "system": "s", **model})
    assert err.value.param == param and param in str(err.value)


# -- on a server -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_path(tmp_path_factory) -> Path:
    return tool_model(tmp_path_factory.mktemp("prompt-model"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, base_path):
    srv = start_server(tmp_path_factory.mktemp("model-prompt"), [base_path], n_ctx=1024)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base_url, timeout=120)


@pytest.fixture(scope="module")
def mario(client):
    """Ollama's README example, through the ``ollama`` package: FROM + PARAMETER + SYSTEM (+ MESSAGE, LICENSE)."""
    done = client.create(model=MARIO, from_=BASE, system=SYSTEM, messages=STORED, license="MIT License",
                         parameters={"temperature": 1, "num_predict": 1})
    assert done.status == "success"
    return MARIO


def _post(server, path: str, body: dict, method: str = "POST") -> httpx.Response:
    return httpx.request(method, server.base_url + path, json=body, timeout=120)


def _ok(server, path: str, body: dict) -> dict:
    response = _post(server, path, body)
    assert response.status_code == 200, response.text
    return response.json()


def _rendered(server, model: str, messages: list[dict]) -> str:
    return _ok(server, "/v1/apply-template", {"model": model, "messages": messages})["prompt"]


def _base_tokens(server, messages: list[dict]) -> int:
    """The prompt's size on the base model (no stored prompt), the messages written out."""
    return _ok(server, "/v1/chat/completions", {"model": BASE, "messages": messages, "max_tokens": 1})[
        "usage"]["prompt_tokens"]


def _written_out(*messages: dict, system: str = SYSTEM) -> list[dict]:
    return [_sys(system), *STORED, *messages]


def _show(server, model: str) -> dict:
    """``/api/show``'s whole answer (the ``ollama`` package's ShowResponse has no ``system`` nor ``messages``)."""
    return _ok(server, "/api/show", {"model": model})


def test_show_reports_them_as_ollama_does(client, server, mario):
    shown = _show(server, mario)
    assert shown["system"] == SYSTEM and shown["license"] == "MIT License" and shown["messages"] == STORED
    assert client.show(mario).license == "MIT License"
    modelfile = client.show(mario).modelfile
    assert f'SYSTEM """{SYSTEM}"""' in modelfile and 'LICENSE """MIT License"""' in modelfile
    assert 'MESSAGE user """Who are you?"""' in modelfile and "MESSAGE assistant \"\"\"It's-a me, Mario!\"\"\"" in modelfile
    assert "PARAMETER temperature" in modelfile
    stored = json.loads((Path(server.config.data_folder) / "models" / MARIO / "model.json").read_text())
    assert stored["system"] == SYSTEM and stored["messages"] == STORED and stored["license"] == "MIT License"
    assert not {"system", "messages", "license"} & set(_show(server, BASE))  # the model it was made from is as it was


def test_the_rendered_prompt(server, mario):
    assert _rendered(server, mario, [_user(HI)]) == _rendered(server, BASE, _written_out(_user(HI)))
    assert _rendered(server, mario, [_sys(OWN), _user(HI)]) == _rendered(server, BASE, _written_out(_user(HI), system=OWN))
    assert SYSTEM in _rendered(server, mario, [_user(HI)]) and SYSTEM not in _rendered(server, mario, [_sys(OWN), _user(HI)])


def test_every_front_end(server, mario):
    """What each front end's own chat path read (its usage), against the base model given the messages written out:
    the model's prompt without a system message of the request's own, the request's own in its place."""
    plain = _base_tokens(server, [_user(HI)])
    expected, own = _base_tokens(server, _written_out(_user(HI))), _base_tokens(server, _written_out(_user(HI), system=OWN))
    assert plain < expected and own != expected
    # OpenAI chat completions
    for messages, want in (([_user(HI)], expected), ([_sys(OWN), _user(HI)], own)):
        body = _ok(server, "/v1/chat/completions", {"model": mario, "messages": messages})
        assert body["usage"]["prompt_tokens"] == want and body["usage"]["completion_tokens"] == 1  # stored num_predict
    # Ollama /api/chat and /api/generate (its system field overrides)
    assert _ok(server, "/api/chat", {"model": mario, "messages": [_user(HI)], "stream": False})["prompt_eval_count"] == expected
    assert _ok(server, "/api/chat", {"model": mario, "messages": [_sys(OWN), _user(HI)],
                                     "stream": False})["prompt_eval_count"] == own
    assert _ok(server, "/api/generate", {"model": mario, "prompt": HI, "stream": False})["prompt_eval_count"] == expected
    assert _ok(server, "/api/generate", {"model": mario, "prompt": HI, "system": OWN,
                                         "stream": False})["prompt_eval_count"] == own
    # raw: no template, no system prompt, no stored turns
    raw = {"prompt": HI, "raw": True, "stream": False}
    assert _ok(server, "/api/generate", {"model": mario, **raw})["prompt_eval_count"] == \
        _ok(server, "/api/generate", {"model": BASE, **raw})["prompt_eval_count"]
    # Anthropic Messages (its top-level system overrides)
    for extra, want in (({}, expected), ({"system": OWN}, own)):
        body = _ok(server, "/v1/messages", {"model": mario, "max_tokens": 1, "messages": [_user(HI)], **extra})
        assert anthropic_prompt_tokens(body["usage"]) == want
        counted = _ok(server, "/v1/messages/count_tokens", {"model": mario, "messages": [_user(HI)], **extra})
        assert counted["input_tokens"] == want
    # Responses (instructions override)
    for extra, want in (({}, expected), ({"instructions": OWN}, own)):
        body = _ok(server, "/v1/responses", {"model": mario, "input": HI, "store": False, **extra})
        assert body["usage"]["input_tokens"] == want


def test_threads_and_runs(server, mario):
    """An assistant's instructions are the run's system message: they replace the model's; an assistant without
    instructions gets the model's."""
    expected, own = _base_tokens(server, _written_out(_user(HI))), _base_tokens(server, _written_out(_user(HI), system=OWN))
    for instructions, want in (("", expected), (OWN, own)):
        assistant = _ok(server, "/v1/assistants", {"model": mario, "instructions": instructions})
        run = _ok(server, "/v1/threads/runs", {"assistant_id": assistant["id"], "stream": False,
                                               "thread": {"messages": [_user(HI)]}})
        run = wait_for_run_sync(functools.partial(_ok_get, server), run)
        assert run["status"] in ("completed", "incomplete"), run  # (the stored num_predict: 1 token)
        assert run["usage"]["prompt_tokens"] == want


def _ok_get(server, path: str) -> dict:
    response = httpx.get(server.base_url + path, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_copy_keeps_them_and_create_from_files_stores_them(client, server, mario, base_path):
    client.copy(mario, "mario-copy")
    try:
        shown = _show(server, "mario-copy")
        assert shown["system"] == SYSTEM and shown["messages"] == STORED and shown["license"] == "MIT License"
        assert _rendered(server, "mario-copy", [_user(HI)]) == _rendered(server, mario, [_user(HI)])
    finally:
        client.delete("mario-copy")
    # a model made from it with a new system prompt keeps its messages and license (Ollama's layers); a license of
    # its own is added to the one it inherits, as Ollama appends licenses
    assert client.create(model="luigi", from_=mario, system=OWN).status == "success"
    try:
        shown = _show(server, "luigi")
        assert shown["system"] == OWN and shown["messages"] == STORED and shown["license"] == "MIT License"
        assert client.create(model="luigi", from_=mario, license="Luigi's").status == "success"
        shown = _show(server, "luigi")
        assert shown["system"] == SYSTEM and shown["license"] == "MIT License\nLuigi's"
    finally:
        client.delete("luigi")
    digest = client.create_blob(base_path)
    assert digest == "sha256:" + hashlib.sha256(base_path.read_bytes()).hexdigest()
    assert client.create(model="mario-file", files={"m.gguf": digest}, system=SYSTEM, messages=STORED,
                         license=["A", "B"]).status == "success"
    try:
        shown = _show(server, "mario-file")
        assert shown["system"] == SYSTEM and shown["messages"] == STORED and shown["license"] == "A\nB"
        assert _rendered(server, "mario-file", [_user(HI)]) == _rendered(server, BASE, _written_out(_user(HI)))
    finally:
        client.delete("mario-file")


@pytest.mark.parametrize("body, field", [
    ({"system": 5}, "system"), ({"messages": "hi"}, "messages"), ({"messages": [{"role": "tool", "content": "x"}]},
                                                                   "messages"),
    ({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, "images"), ({"license": {"a": 1}}, "license"),
    ({"adapters": {"a.gguf": "sha256:" + "0" * 64}}, "adapters: a.gguf: blob"),  # (a blob never pushed)
    ({"quantize": "q4_K_M"}, "quantize: not supported"), ({"template": "{{ .Prompt }}"}, "template: not supported"),
])
def test_create_refuses_bad_values_naming_the_field(server, body, field):
    response = _post(server, "/api/create", {"model": "bad", "from": BASE, **body})
    assert response.status_code == 400 and list(response.json()) == ["error"], response.text
    assert field in response.json()["error"]
    assert not (Path(server.config.data_folder) / "models" / "bad").exists()


def test_patch_and_post_models(server, base_path):
    """``/v1/models`` edits and adds them as other fields, checked as chats read them."""
    for bad, param in (({"system": 5}, "system"), ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content")):
        response = _post(server, "/v1/models", {"path": str(base_path), "id": "imported", "mode": "reference", **bad})
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text
    imported = _post(server, "/v1/models", {"path": str(base_path), "id": "imported", "mode": "reference",
                                            "system": SYSTEM, "messages": STORED})
    assert imported.status_code == 201 and imported.json()["messages"] == STORED, imported.text
    try:
        assert _rendered(server, "imported", [_user(HI)]) == _rendered(server, BASE, _written_out(_user(HI)))
    finally:
        _post(server, "/v1/models/imported", {}, method="DELETE")
    assert _post(server, "/v1/models", {"id": "pm", "engine": "llama.cpp",
                                        "settings": {"llama_model_path": "nowhere.gguf"},
                                        "messages": [{"role": "bot", "content": "x"}]}).json()["error"]["param"] == \
        "messages[0].role"
    models = Path(server.config.data_folder) / "models"
    assert not (models / "pm").exists()
    try:
        _ok(server, "/api/create", {"model": "patched", "from": BASE, "stream": False})
        for patch, param in (({"system": 5}, "system"), ({"system": None}, "system"),
                             ({"messages": [{"role": "user"}]}, "messages[0].content"),
                             ({"messages": [{"role": "user", "content": "x", "name": "y"}]}, "messages[0].name")):
            response = _post(server, "/v1/models/patched", patch, method="PATCH")
            assert response.status_code == 400 and response.json()["error"]["param"] == param, (patch, response.text)
        assert "system" not in json.loads((models / "patched" / "model.json").read_text())
        patched = _post(server, "/v1/models/patched", {"system": SYSTEM, "messages": STORED}, method="PATCH")
        assert patched.status_code == 200 and patched.json()["system"] == SYSTEM, patched.text
        assert _rendered(server, "patched", [_user(HI)]) == _rendered(server, BASE, _written_out(_user(HI)))
        # a model.json edited by hand into a shape no chat can use: a 400 naming the field, never a 500
        doc = json.loads((models / "patched" / "model.json").read_text())
        (models / "patched" / "model.json").write_text(json.dumps({**doc, "messages": [{"role": "user"}]}))
        response = _post(server, "/v1/chat/completions", {"model": "patched", "messages": [_user(HI)], "max_tokens": 1})
        assert response.status_code == 400 and response.json()["error"]["param"] == "messages[0].content", response.text
        response = _post(server, "/api/chat", {"model": "patched", "messages": [_user(HI)], "stream": False})
        assert response.status_code == 400 and "messages[0].content" in response.json()["error"]
    finally:
        httpx.request("DELETE", server.base_url + "/api/delete", json={"model": "patched"}, timeout=120)


def test_a_media_error_names_the_requests_own_message(client, server, vision_pair):
    """An image that fails only when the prompt is made (a PNG's signature, then junk) is said of the request's own
    field, not of its place after the model's added messages (front ends map the typed message's index back)."""
    model_path, mmproj_path = vision_pair
    files = {model_path.name: client.create_blob(model_path), mmproj_path.name: client.create_blob(mmproj_path)}
    assert client.create(model="seer", files=files, system=SYSTEM, messages=STORED).status == "success"
    junk = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    try:
        response = _post(server, "/api/chat", {"model": "seer", "stream": False, "messages": [
            {"role": "user", "content": HI, "images": [junk]}]})
        assert response.status_code == 400 and response.json()["error"].startswith("messages[0].images[0]"), \
            response.text
        response = _post(server, "/v1/chat/completions", {"model": "seer", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "text", "text": HI}, {"type": "image_url", "image_url": {
                "url": f"data:image/png;base64,{junk}"}}]}]})
        assert response.status_code == 400 and response.json()["error"]["param"].startswith("messages[0]"), \
            response.text
    finally:
        client.delete("seer")
