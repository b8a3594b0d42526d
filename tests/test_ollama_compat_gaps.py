"""Three places where jan's Ollama API now does what Ollama does:

* a model without a chat template of its own (a base model: stories260K) is prompted with Ollama's default
  template ``{{ .Prompt }}`` on ``/api/generate`` and ``/api/chat``: the turns' text as it is, system messages
  left out; the OpenAI routes keep ChatML;
* ``/api/create`` over an existing name replaces the model (Ollama writes its manifest over the old one), in one
  step, and a loaded copy of the old model is not served again;
* ``num_keep`` says how many tokens at the start of a ``/api/generate`` ``context`` a cut keeps (after the BOS;
  -1 all, default 4), as Ollama's runner keeps them; bad values are a 400 in Ollama's shape.

Real servers with the real stories260K (and llama-2-tiny-random), greedy decoding; the store and the cut's
arithmetic also on their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import ollama
import pytest

from jan.services.fit import DEFAULT_KEEP, context_room, fit_context, kept_start
from jan.services.types import ChatMessage, ChatRequest
from jan.store import AlreadyExistsError, DataFolder, InvalidArgumentError
from jan.templates import ChatTemplate
from server_helpers import start_server

STORY = "Once upon a time"
GREEDY = {"temperature": 0, "num_predict": 8}
TINY = "llama-2-tiny-random"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, tiny_random_path):
    srv = start_server(tmp_path_factory.mktemp("ollama-gaps"), [stories_path, tiny_random_path])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base_url, timeout=120)


def _post(server, path: str, body: dict, method: str = "POST") -> httpx.Response:
    return httpx.request(method, server.base_url + path, json=body, timeout=120)


def _done(server, path: str, body: dict) -> dict:
    """The done object of one /api/generate or /api/chat, not streamed."""
    response = _post(server, path, {"model": "stories260K", "stream": False, **body})
    assert response.status_code == 200, response.text
    return response.json()


def _tokens(server, text: str, model: str = "stories260K") -> list[int]:
    response = _post(server, "/v1/tokenize", {"model": model, "content": text, "add_special": False})
    assert response.status_code == 200, response.text
    return response.json()["tokens"]


def _error(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]
    return response.json()["error"]


# -- 1. a model without a chat template: Ollama's default template, {{ .Prompt }} -------------------------------
@pytest.mark.parametrize("messages, prompt", [
    ([("user", "P")], "P"),
    ([("system", "S"), ("user", "P")], "P"),  # the template has no .System: left out
    ([("system", "S"), ("user", "U1"), ("assistant", "A1"), ("user", "U2")], "U1U2"),  # replies never written
    ([("user", "U1"), ("user", "U2")], "U1\n\nU2"),  # consecutive messages of one role joined, as Ollama's collate
    ([("user", "U1"), ("assistant", "A1"), ("assistant", "A2")], "U1"),
    ([("user", "U1"), ("system", "S"), ("user", "U2")], "U1U2"),  # a system message writes the pending turn out
    ([("user", "U1"), ("tool", "T"), ("user", "U2")], "U2"),  # a tool message is left out; U1 is replaced
    ([("user", "U1"), ("assistant", "A1")], "U1"),  # nor a final one: the template has no .Response to cut at
])
def test_ollamas_default_template_renders_as_ollama(messages, prompt):
    template = ChatTemplate.ollama_default()
    conversation = [{"role": role, "content": text} for role, text in messages]
    assert template.render(conversation) == prompt
    assert template.render(conversation, add_generation_prompt=False) == prompt
    assert not template.supports_tools


def test_generate_gives_the_prompt_as_it_is(server):
    raw = _done(server, "/api/generate", {"prompt": STORY, "raw": True, "options": GREEDY})
    for body in ({"prompt": STORY}, {"prompt": STORY, "system": "Talk like a pirate."}):
        templated = _done(server, "/api/generate", {**body, "options": GREEDY})
        # BOS and the prompt's own tokens, nothing around them (no ChatML turn markers), the system left out
        assert templated["prompt_eval_count"] == raw["prompt_eval_count"] == 1 + len(_tokens(server, STORY))
        assert templated["response"] == raw["response"]
        assert templated["context"][1:templated["prompt_eval_count"]] == _tokens(server, STORY)


@pytest.mark.parametrize("messages, text", [
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Once upon"},
      {"role": "assistant", "content": " a time"}, {"role": "user", "content": " there was"}],
     "Once upon there was"),  # Ollama's {{ .Prompt }} writes the user turns only
    ([{"role": "user", "content": "Once upon"}, {"role": "assistant", "content": " a time"}],  # not continued
     "Once upon"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_chat_gives_the_turns_text_as_it_is(server, messages, text, stream):
    raw = _done(server, "/api/generate", {"prompt": text, "raw": True, "options": GREEDY})
    response = _post(server, "/api/chat", {"model": "stories260K", "messages": messages, "options": GREEDY,
                                           "stream": stream})
    assert response.status_code == 200, response.text
    objects = [json.loads(line) for line in response.text.splitlines() if line]
    assert objects[-1]["done"] is True
    assert objects[-1]["prompt_eval_count"] == raw["prompt_eval_count"]
    assert "".join(o["message"]["content"] for o in objects) == raw["response"]


def test_show_names_ollamas_default_template(client):
    shown = client.show("stories260K")
    assert shown.template == "{{ .Prompt }}" and 'TEMPLATE """{{ .Prompt }}"""' in shown.modelfile
    assert shown.capabilities == ["completion"]


def test_the_openai_routes_keep_chatml(server):
    # llama-server's chat endpoint prompts a model without a template in ChatML: OpenAI clients get that, as before
    messages = [{"role": "user", "content": STORY}]
    rendered = _post(server, "/v1/apply-template", {"model": "stories260K", "messages": messages}).json()["prompt"]
    assert "<|im_start|>user\n" + STORY in rendered
    completion = _post(server, "/v1/chat/completions", {"model": "stories260K", "messages": messages,
                                                        "max_tokens": 2, "temperature": 0}).json()
    assert completion["usage"]["prompt_tokens"] > 1 + len(_tokens(server, STORY))  # the turn markers too


def test_a_template_the_model_json_names_stays_on_ollamas_api(server, stories_path):
    # the user's prompt_template is a choice, not a stand-in: Ollama's API uses it too
    created = _post(server, "/v1/models", {"path": str(stories_path), "id": "stories-templated", "mode": "reference",
                                           "settings": {"prompt_template": "### User:\n{prompt}\n### Story:\n"}})
    assert created.status_code == 201, created.text
    try:
        reply = _done(server, "/api/generate", {"model": "stories-templated", "prompt": STORY, "options": GREEDY})
        assert reply["prompt_eval_count"] == 1 + len(_tokens(server, f"### User:\n{STORY}\n### Story:\n"))
    finally:
        assert _post(server, "/v1/models/stories-templated", {}, method="DELETE").status_code == 200


# -- 2. /api/create over an existing name replaces the model -----------------------------------------------------
def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push(server, path: Path) -> str:
    data = path.read_bytes()
    digest = _digest(data)
    assert _post_bytes(server, f"/api/blobs/{digest}", data).status_code in (200, 201)
    return digest


def _post_bytes(server, path: str, data: bytes) -> httpx.Response:
    return httpx.post(server.base_url + path, content=data, timeout=120)


def _loaded(server) -> set[str]:
    return {m["model"].removesuffix(":latest") for m in httpx.get(server.base_url + "/api/ps", timeout=60).json()["models"]}


def _wait_unloaded(server, model: str) -> None:
    """Until ``model`` is no longer loaded (an idle model goes at once; one a request was just finishing on, when
    it ends). Bounded."""
    deadline = time.monotonic() + 60
    while model in _loaded(server):
        assert time.monotonic() < deadline, f"{model} still loaded"
        time.sleep(0.05)


def _weights(server, model: str) -> list[Path]:
    folder = Path(server.config.data_folder) / "models" / model
    return sorted(p for p in folder.iterdir() if p.suffix == ".gguf")


def test_create_over_a_loaded_model_replaces_its_weights(server, stories_path, tiny_random_path):
    stories, tiny = _push(server, stories_path), _push(server, tiny_random_path)
    blobs = Path(server.config.data_folder) / "blobs"
    body = {"model": "swap", "files": {"model.gguf": stories}, "stream": False}
    assert _post(server, "/api/create", body).status_code == 200
    try:
        before = _done(server, "/api/generate", {"model": "swap", "prompt": STORY, "raw": True, "options": GREEDY})
        assert "swap" in _loaded(server)
        for blob in blobs.iterdir():  # (past the grace a blob just pushed has, so that prune may take it)
            if not blob.name.startswith("."):
                os.utime(blob, (blob.stat().st_mtime - 3600,) * 2)
        # the same name, other weights under the same file name: replaced, streamed as Ollama streams it
        response = _post(server, "/api/create", {**body, "files": {"model.gguf": tiny}, "stream": True})
        assert response.status_code == 200, response.text
        assert [json.loads(line)["status"] for line in response.text.splitlines()][-1] == "success"
        _wait_unloaded(server, "swap")  # the old model is not kept loaded
        assert httpx.post(server.base_url + "/api/show", json={"model": "swap"}, timeout=120).json()["details"][
            "parameter_size"] == httpx.post(server.base_url + "/api/show", json={"model": TINY}, timeout=120).json()["details"][
            "parameter_size"]
        # what answers is the new model: its greedy text, not the old one's
        after = _done(server, "/api/generate", {"model": "swap", "prompt": STORY, "raw": True, "options": GREEDY})
        expected = _done(server, "/api/generate", {"model": TINY, "prompt": STORY, "raw": True, "options": GREEDY})
        assert after["response"] == expected["response"] != before["response"]
        # one weights file in the folder, the new blob's; the old blob, which nothing uses now, is pruned
        (weights,) = _weights(server, "swap")
        assert os.path.samefile(weights, blobs / f"sha256-{tiny[7:]}")
        assert not (blobs / f"sha256-{stories[7:]}").exists()
        assert not [p for p in weights.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    finally:
        assert _post(server, "/api/delete", {"model": "swap"}, method="DELETE").status_code == 200


def test_create_over_itself_with_new_parameters_keeps_it_loaded(server, client):
    assert client.create(model="same", from_="stories260K", parameters={"num_predict": 6}).status == "success"
    try:
        assert client.generate(model="same", prompt=STORY, raw=True).eval_count == 6
        (weights,) = _weights(server, "same")
        inode = weights.stat().st_ino
        # Ollama's way to change a model's parameters: create it again from itself
        assert client.create(model="same", from_="same", parameters={"num_predict": 3}).status == "success"
        assert "same" in _loaded(server)  # the same weights and settings: nothing to load again
        assert [w.stat().st_ino for w in _weights(server, "same")] == [inode]
        reply = client.generate(model="same", prompt=STORY, raw=True)
        assert reply.eval_count == 3 and reply.done_reason == "length"  # the new parameters apply at once
    finally:
        client.delete("same")


def test_copy_onto_an_existing_name_replaces_that_model(server, client):
    """Ollama's CopyModel writes the destination's manifest over the old one (jan answered 409)."""
    assert client.create(model="copy-a", from_="stories260K", parameters={"num_predict": 5}).status == "success"
    assert client.create(model="copy-b", from_="stories260K", parameters={"num_predict": 2}).status == "success"
    try:
        assert client.generate(model="copy-b", prompt=STORY, raw=True).eval_count == 2
        assert "copy-b" in _loaded(server)
        client.copy("copy-a", "copy-b")
        # copy-b is copy-a now: its parameters answer, the copy of old settings is not served again
        assert client.generate(model="copy-b", prompt=STORY, raw=True).eval_count == 5
        assert len(_weights(server, "copy-b")) == 1
        assert client.generate(model="copy-a", prompt=STORY, raw=True).eval_count == 5  # the source stays
    finally:
        client.delete("copy-a")
        client.delete("copy-b")


def test_a_refused_create_leaves_the_model_as_it_was(server, client, stories_path):
    stories = _push(server, stories_path)
    assert _post(server, "/api/create", {"model": "kept", "files": {"model.gguf": stories},
                                         "parameters": {"num_predict": 2}, "stream": False}).status_code == 200
    try:
        model_json = Path(server.config.data_folder) / "models" / "kept" / "model.json"
        saved = model_json.read_bytes()
        junk = b"not a GGUF file" * 10
        assert _post_bytes(server, f"/api/blobs/{_digest(junk)}", junk).status_code in (200, 201)
        for body in ({"files": {"model.gguf": _digest(junk)}}, {"files": {"model.gguf": "sha256:" + "7" * 64}},
                     {"from": "no-such-model"}, {"from": "stories260K", "parameters": {"temperature": -1}},
                     {"from": "stories260K", "template": "{{ .Prompt }}"}):
            status = 404 if body.get("from") == "no-such-model" else 400
            _error(_post(server, "/api/create", {"model": "kept", **body}), status)
            assert model_json.read_bytes() == saved
        assert client.generate(model="kept", prompt=STORY, raw=True).eval_count == 2
    finally:
        client.delete("kept")


# -- the store: a model replaced in one step ------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    return DataFolder(tmp_path / "data")


def _gguf(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + payload)
    return path


def test_the_store_replaces_a_model_without_pairing_old_and_new(store, tmp_path):
    first = _gguf(tmp_path / "a" / "model.gguf", b"first" * 100)
    second = _gguf(tmp_path / "b" / "model.gguf", b"second" * 100)
    store.models.import_gguf(first, model_id="m", mode="link", parameters={"temperature": 0.1})
    with pytest.raises(AlreadyExistsError):
        store.models.import_gguf(second, model_id="m", mode="link")
    doc = store.models.import_gguf(second, model_id="m", mode="link", overwrite=True)
    # the name held other content: the new weights took a free one, so the old model.json never named them
    new = store.models.model_file("m")
    assert new.name != "model.gguf" and os.path.samefile(new, second)
    assert doc["settings"]["llama_model_path"] == new.name and doc["parameters"] == {}
    assert store.models.get("m") == doc
    folder = store.models.folder("m")
    assert sorted(p.name for p in folder.iterdir()) == sorted(["model.json", new.name])  # the old weights went
    # made again from the weights it has: the same file, under its name
    again = store.models.import_gguf(new, model_id="m", mode="link", overwrite=True)
    assert store.models.model_file("m") == new and os.path.samefile(new, second)
    assert again["settings"]["llama_model_path"] == new.name
    # a refused replacement (no GGUF) changes nothing
    saved = (folder / "model.json").read_bytes()
    with pytest.raises(InvalidArgumentError):
        store.models.import_gguf(tmp_path / "missing.gguf", model_id="m", overwrite=True)
    assert (folder / "model.json").read_bytes() == saved
    # and a model.json without weights over it: its weights, which it no longer names, go too
    store.models.create({"id": "m", "engine": "openai", "sources": []}, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json"] and second.exists()


# -- 3. num_keep: what a cut of a context keeps of its start ------------------------------------------------------
N_CTX = 512  # the module server's window
CONTEXT = (1, *(10 + i % 400 for i in range(600)))  # a BOS and 600 tokens: more than the window holds


def _cut(server, options: dict, model: str = "stories260K", **body) -> tuple[list[int], int]:
    """The prompt of a generate that continues CONTEXT (the new turn's ids left off) and the new turn's length."""
    reply = _done(server, "/api/generate", {"model": model, "prompt": STORY, "context": list(CONTEXT),
                                            "options": options, **body})
    turn = _tokens(server, STORY)
    prompt = reply["context"][:reply["prompt_eval_count"]]
    assert prompt[len(prompt) - len(turn):] == turn  # the new turn whole
    return prompt[:len(prompt) - len(turn)], len(turn)


@pytest.mark.parametrize("num_keep, kept", [(None, DEFAULT_KEEP), (0, 0), (20, 20)])
def test_num_keep_tokens_after_the_bos_stay(server, num_keep, kept):
    options = {**GREEDY, **({} if num_keep is None else {"num_keep": num_keep})}
    context, turn = _cut(server, options)
    assert len(context) + turn == N_CTX - GREEDY["num_predict"]  # the reply keeps its num_predict
    assert context[:1 + kept] == list(CONTEXT[:1 + kept])  # the BOS (not counted) and num_keep tokens
    newest = context[1 + kept:]
    assert newest and newest == list(CONTEXT[len(CONTEXT) - len(newest):])  # then the newest


@pytest.mark.parametrize("num_keep", [-1, 10_000])
def test_keeping_all_of_it_drops_the_newest_tokens(server, num_keep):
    context, turn = _cut(server, {**GREEDY, "num_keep": num_keep})
    assert context == list(CONTEXT[:N_CTX - GREEDY["num_predict"] - turn])  # the start, as much as fits


@pytest.mark.parametrize("num_keep", [0, 50])
def test_without_num_predict_the_reply_gets_half_of_what_the_kept_start_leaves(server, num_keep):
    context, turn = _cut(server, {"temperature": 0, "num_keep": num_keep})
    # Ollama's contextShiftPromptLimit: n_ctx - (n_ctx - num_keep) / 2 positions for the prompt (BOS counted)
    assert len(context) + turn == N_CTX - (N_CTX - (1 + num_keep)) // 2
    assert context[:1 + num_keep] == list(CONTEXT[:1 + num_keep])


def test_a_models_num_keep_applies_under_the_requests(server, client):
    assert client.create(model="keep12", from_="stories260K", parameters={"num_keep": 12}).status == "success"
    try:
        assert "num_keep" in client.show("keep12").parameters
        context, _ = _cut(server, GREEDY, model="keep12")
        assert context[:13] == list(CONTEXT[:13]) and context[13] != CONTEXT[13]
        context, _ = _cut(server, {**GREEDY, "num_keep": 2}, model="keep12")  # the request's own wins
        assert context[:3] == list(CONTEXT[:3]) and context[3] != CONTEXT[3]
        # a bad value is refused before it is stored, as Ollama refuses it
        patched = _post(server, "/v1/models/keep12", {"parameters": {"num_keep": -3}}, method="PATCH")
        assert patched.status_code == 400 and "parameters.num_keep" in patched.text
    finally:
        client.delete("keep12")


@pytest.mark.parametrize("path, body", [
    ("/api/generate", {"prompt": STORY, "context": list(CONTEXT)}),
    ("/api/generate", {"prompt": STORY}),
    ("/api/generate", {"prompt": STORY, "raw": True}),
    ("/api/chat", {"messages": [{"role": "user", "content": STORY}]}),
    ("/api/create", {"model": "bad-keep", "from": "stories260K"}),
])
@pytest.mark.parametrize("num_keep", [-2, "4", 2.5, True, 2**40])
def test_a_bad_num_keep_is_a_400_on_every_route(server, path, body, num_keep):
    key = "parameters" if path == "/api/create" else "options"
    error = _error(_post(server, path, {"model": "stories260K", **body, key: {"num_keep": num_keep}}))
    assert error.startswith(f"{key}.num_keep")
    assert "bad-keep" not in {m["model"].removesuffix(":latest") for m in httpx.get(server.base_url + "/api/tags", timeout=120).json()["models"]}


@pytest.mark.parametrize("path, body", [
    ("/api/chat", {"messages": [{"role": "user", "content": STORY}]}),
    ("/api/generate", {"prompt": STORY, "raw": True}),
])
def test_num_keep_where_nothing_is_cut_changes_nothing(server, path, body):
    # jan cuts no tokens there (a chat history loses whole turns; a raw prompt too long is a 400): as with Ollama
    # when the prompt fits, the option is checked and the reply is the same
    without = _done(server, path, {**body, "options": GREEDY})
    with_keep = _done(server, path, {**body, "options": {**GREEDY, "num_keep": 7}})
    assert with_keep["prompt_eval_count"] == without["prompt_eval_count"]
    assert with_keep["eval_count"] == without["eval_count"] == GREEDY["num_predict"]


# -- the cut's arithmetic on its own ------------------------------------------------------------------------------
def _local(n_ctx: int, bos: int | None = 1) -> SimpleNamespace:
    special = {} if bos is None else {"bos": bos}
    return SimpleNamespace(model=SimpleNamespace(n_ctx=n_ctx, info=SimpleNamespace(special_tokens=special)))


def _request(context: tuple[int, ...], keep: int | None = None, max_tokens: int | None = None) -> ChatRequest:
    from jan.services.types import SamplingOptions

    return ChatRequest(model="m", messages=(ChatMessage.of_text("user", "x"),), context=context,
                       context_keep=keep, sampling=SamplingOptions(max_tokens=max_tokens))


@pytest.mark.parametrize("keep, start", [(None, 5), (0, 1), (30, 31), (-1, 99), (500, 99)])
def test_kept_start_counts_as_ollamas_runner(keep, start):
    local = _local(100)
    context = (1, *range(2, 202))  # longer than the window: at most n_ctx - 1 kept
    assert kept_start(local, _request(context, keep)) == start
    # without a BOS to start it, num_keep counts from the first token
    assert kept_start(_local(100, bos=None), _request(context[1:], 3)) == 3


def test_fit_context_keeps_the_start_then_the_newest():
    local = _local(100)
    context = (1, *range(2, 202))
    request = _request(context, keep=10, max_tokens=20)
    tokens = [*context, 900, 901, 902]  # the new turn: three tokens
    room = context_room(local, request)
    assert room == 20
    fitted = fit_context(local, request, tokens, room).context
    assert len(fitted) + 3 + room == 100
    assert fitted[:11] == context[:11] and fitted[11:] == context[len(context) - (len(fitted) - 11):]
    # no max_tokens: half of what the kept start leaves (Ollama's contextShiftPromptLimit)
    assert context_room(local, _request(context, keep=10)) == (100 - 11) // 2
    # a kept start longer than what fits with the reply's room: the start is cut short, not the room
    fitted = fit_context(local, _request(context, keep=-1, max_tokens=20), tokens, 20).context
    assert fitted == context[:100 - 20 - 3]
    # a new turn that leaves nothing of the context: its BOS alone
    assert fit_context(local, request, [*context, *range(300, 400)], 20).context == (1,)


def test_a_bad_context_keep_is_refused_by_the_typed_request():
    with pytest.raises(ValueError, match="context_keep"):
        _request((1, 2), keep=-2)


def test_a_model_onto_itself_keeps_its_files(server, client, tiny_random_path):
    """``/api/copy`` to the source's own name (in any case), and ``/api/create`` FROM the model it makes (a new
    system prompt or parameters for it), change its model.json in place, as Ollama writes the manifest back over
    itself: they imported its weights again, so a file imported by reference became a link in the data folder
    (across file systems a copy of all its bytes), and ``jan serve -m <that file>`` no longer found its model."""
    made = _post(server, "/v1/models", {"path": str(tiny_random_path), "id": "by-reference", "mode": "reference"})
    assert made.status_code == 201, made.text
    model_json = Path(server.config.data_folder) / "models" / "by-reference" / "model.json"
    try:
        saved = model_json.read_bytes()
        for destination in ("by-reference", "BY-REFERENCE:latest"):
            client.copy("by-reference", destination)
            assert model_json.read_bytes() == saved  # a copy onto itself changes nothing
        assert client.create(model="by-reference", from_="by-reference", system="Be brief.",
                             parameters={"num_predict": 3}).status == "success"
        stored = json.loads(model_json.read_text())
        assert stored["settings"]["llama_model_path"] == str(tiny_random_path) and not _weights(server, "by-reference")
        assert stored["created"] == json.loads(saved)["created"]
        assert stored["system"] == "Be brief." and stored["parameters"]
        assert client.generate(model="by-reference", prompt=STORY, raw=True).eval_count == 3  # at once
        # and a copy to another name is still a model of its own, made from those files
        client.copy("by-reference", "its-copy")
        assert client.generate(model="its-copy", prompt=STORY, raw=True).eval_count == 3
    finally:
        for model in ("by-reference", "its-copy"):
            _post(server, f"/v1/models/{model}", {}, method="DELETE")
