"""Model names as Ollama's clients send them, on every route that names a model.

Ollama fills in what a name leaves out (``llama3`` is ``registry.ollama.ai/library/llama3:latest``) and finds a
model whatever the case of its name. jan's ids have no tag, namespace or host, so:

* a name that differs from a jan id only by Ollama's defaults (the tag ``latest``, the namespace ``library``, the
  host ``registry.ollama.ai``) or by case finds that model (by Ollama's defaults: in every dialect, as listed);
* any other name (``llama3.2:3b``, ``hf.co/owner/repo:Q4_K_M``) is a model jan does not have: 404 ``model '...' not
  found`` as Ollama answers (clients offer a pull on it), never a 400 about the name's characters — and the same
  in every dialect (OpenAI's ``model_not_found``, Anthropic's ``not_found_error``); a Hugging Face name finds a
  model pulled from that repository (tests/test_pull_mmproj.py), none here;
* a new model's name (``/api/create``, ``/api/copy``) that jan cannot store is a 400 naming the field.
"""

from __future__ import annotations

import re

import pytest
from api_helpers import Client, running
from jan.server.dialects import ollama_requests

FOREIGN = ["stories260K:v2", "llama3.2:3b", "library/nope:7b", "hf.co/owner/repo:Q4_K_M", "someone/stories260K",
           "localhost:5000/x/stories260K", "../stories260K"]
#: Names of one model, as templates of its id (``{}``, upper-cased ``{U}``).
SAME = ["{}", "{}:latest", "{U}:Latest", "library/{}", "registry.ollama.ai/library/{}:latest",
        "Registry.Ollama.AI/Library/{U}"]


@pytest.mark.parametrize("name, jan_id", [
    ("llama3:latest", "llama3"), ("llama3:LATEST", "llama3"), ("library/llama3", "llama3"),
    ("registry.ollama.ai/library/llama3:latest", "llama3"), ("Library/llama3", "llama3"),
    ("a:b", "a:b"), ("someone/llama3", "someone/llama3"), ("registry.ollama.ai/someone/llama3", "someone/llama3"),
    ("localhost:5000/library/llama3", "localhost:5000/library/llama3"),  # another host is another model
    ("localhost:5000/x", "localhost:5000/x"),  # ":5000/x" is no tag
    ("latest", "latest"),
])
def test_ollamas_defaults_are_dropped_and_nothing_else(name, jan_id):
    assert ollama_requests.model_id(name) == jan_id


@pytest.fixture(scope="module")
def models(tmp_path_factory, stories_path, minilm_path):
    with running(tmp_path_factory.mktemp("ollama-names") / "data", stories_path, minilm_path) as srv:
        yield srv


def _lookups(name: str) -> list[tuple[str, str, dict]]:
    """Every Ollama route that looks a model up, with a body that would succeed for a model that is there."""
    opts = {"num_predict": 1}
    return [("POST", "/api/generate", {"model": name, "prompt": "Once", "raw": True, "stream": False, "options": opts}),
            ("POST", "/api/chat", {"model": name, "messages": [{"role": "user", "content": "Hi"}], "stream": False,
                                   "options": opts}),
            ("POST", "/api/generate", {"model": name}),  # a load with nothing to generate
            ("POST", "/api/show", {"model": name}),
            ("POST", "/api/embed", {"model": name, "input": "Hi"}),
            ("POST", "/api/embeddings", {"model": name, "prompt": "Hi"}),
            ("POST", "/api/copy", {"source": name, "destination": "copied"})]


@pytest.mark.parametrize("name", FOREIGN)
async def test_a_name_jan_has_no_model_for_is_not_found(models, name):
    async with Client(models.base_url) as api:
        for method, path, body in [*_lookups(name), ("DELETE", "/api/delete", {"model": name})]:
            status, got = await api.call(method, path, body)
            assert (status, got) == (404, {"error": f"model '{name}' not found"}), (path, got)
        if name.startswith("hf.co/"):
            return  # (a pull of it is a pull of that repository: tests/test_pull_mmproj.py, against a fake hub)
        status, got = await api.post("/api/pull", {"model": name, "stream": False})
        assert status == 404 and list(got) == ["error"] and "neither a jan model id" in got["error"], got


@pytest.mark.parametrize("template", SAME)
async def test_ollamas_default_parts_and_case_find_the_model(models, template):
    def named(model_id: str) -> str:
        return template.format(model_id, U=model_id.upper())

    name = named("stories260K")
    async with Client(models.base_url) as api:
        for method, path, body in _lookups(name):
            status, got = await api.call(method, path, body)
            assert status == 200, (path, got)
            if path in ("/api/generate", "/api/chat"):
                assert got["model"] == name and got["done"] is True  # Ollama echoes the name it was sent
        status, got = await api.post("/api/pull", {"model": name, "stream": False})
        assert (status, got) == (200, {"status": "success"})
        # deleting by such a name deletes the model it means
        assert (await api.post("/api/copy", {"source": "stories260K", "destination": "to-delete"}))[0] == 200
        assert (await api.call("DELETE", "/api/delete", {"model": named("to-delete")}))[0] == 200
        assert (await api.post("/api/show", {"model": "to-delete"}))[0] == 404


@pytest.mark.parametrize("path, field, body", [
    ("/api/create", "model", {"model": "made:v1", "from": "stories260K", "stream": False}),
    ("/api/create", "model", {"model": "someone/made", "from": "stories260K", "stream": False}),
    ("/api/copy", "destination", {"source": "stories260K", "destination": "made:v1"}),
    ("/api/copy", "destination", {"source": "stories260K", "destination": "hf.co/a/b"}),
])
async def test_a_new_model_name_jan_cannot_store_is_a_400_naming_the_field(models, path, field, body):
    async with Client(models.base_url) as api:
        status, got = await api.post(path, body)
        assert status == 400 and list(got) == ["error"], got
        assert got["error"].startswith(f"{field}: invalid model name") and "tag" in got["error"], got


async def test_a_new_model_name_with_ollamas_defaults_is_the_plain_id(models):
    async with Client(models.base_url) as api:
        status, _ = await api.post("/api/copy", {"source": "stories260K", "destination": "library/plain:latest"})
        assert status == 200
        status, got = await api.post("/api/create", {"model": "registry.ollama.ai/library/made:latest",
                                                     "from": "plain", "stream": False})
        assert (status, got) == (200, {"status": "success"})
        tags = {m["model"] for m in (await api.get("/api/tags"))[1]["models"]}
        assert {"plain:latest", "made:latest"} <= tags
        for name in ("plain", "made"):
            assert (await api.call("DELETE", "/api/delete", {"model": name}))[0] == 200


@pytest.mark.parametrize("name", ["llama3.2:3b", "openai/gpt-4o", "../stories260K"])
async def test_every_dialect_says_not_found_for_a_name_no_model_can_have(models, name):
    """The service's one rule: a name that no stored id can be is a model that is not there, not a malformed id."""
    user = [{"role": "user", "content": "Hi"}]
    async with Client(models.base_url) as api:
        for path, body in [("/v1/chat/completions", {"model": name, "messages": user, "max_tokens": 1}),
                           ("/v1/completions", {"model": name, "prompt": "Hi", "max_tokens": 1}),
                           ("/v1/embeddings", {"model": name, "input": "Hi"}),
                           ("/v1/responses", {"model": name, "input": "Hi", "max_output_tokens": 16})]:
            status, got = await api.post(path, body)
            assert status == 404 and got["error"]["code"] == "model_not_found", (path, got)
            # not found (with the model a near name meant: `../stories260K`), never "invalid id"
            assert re.fullmatch(rf"model {re.escape(repr(name))} not found(: did you mean '[^']+'\? \(model ids are "
                                r"exact\))?", got["error"]["message"]), got
        status, got = await api.post("/v1/messages", {"model": name, "messages": user, "max_tokens": 1})
        assert status == 404 and got["error"]["type"] == "not_found_error", got


async def test_listed_names_carry_ollamas_tag_and_find_their_model(models):
    """Ollama lists ``llama3:latest``; clients match a name the user gave against that (LangChain's
    ``validate_model_on_init``: ``name == listed or listed.startswith(name + ":")``) and send the listed name back."""
    async with Client(models.base_url) as api:
        listed = [m["model"] for m in (await api.get("/api/tags"))[1]["models"]]
        assert {"all-MiniLM-L6-v2-f32:latest", "stories260K:latest"} <= set(listed)
        assert all(name.endswith(":latest") for name in listed), listed
        for wanted in ("stories260K", "stories260K:latest"):
            assert any(wanted == m or m.startswith(f"{wanted}:") for m in listed)
        status, got = await api.post("/api/generate", {"model": "stories260K:latest", "keep_alive": "5m"})
        assert status == 200 and got["done_reason"] == "load"
        running = (await api.get("/api/ps"))[1]["models"]
        assert {(m["name"], m["model"]) for m in running} >= {("stories260K:latest", "stories260K:latest")}


def test_a_name_as_ollama_lists_it_finds_the_model_through_every_sdk(models):
    """An app that lists models with Ollama's client (``stories260K:latest``) and asks through another dialect on the
    same server — an "Ollama" provider speaking OpenAI's ``/v1/chat/completions``, as Ollama itself serves it — got
    404 ``model 'stories260K:latest' not found`` from every route but Ollama's. Every SDK's calls take it now; a tag
    other than Ollama's default is still a model jan does not have."""
    import anthropic
    import ollama
    import openai

    from dialect_helpers import anthropic_client, openai_client

    listed = {m.model for m in ollama.Client(host=models.base_url, timeout=120).list().models}
    chat, embedder = "stories260K:latest", "all-MiniLM-L6-v2-f32:latest"
    assert {chat, embedder} <= listed, listed
    oai, claude, user = openai_client(models), anthropic_client(models), [{"role": "user", "content": "Hi"}]
    assert oai.chat.completions.create(model=chat, messages=user, max_tokens=1).model == "stories260K"
    streamed = oai.chat.completions.create(model=chat, messages=user, max_tokens=1, stream=True)
    assert {chunk.model for chunk in streamed} == {"stories260K"}
    assert oai.completions.create(model=f"library/{chat}", prompt="Once", max_tokens=1).model == "stories260K"
    assert oai.responses.create(model=chat, input="Hi", max_output_tokens=16).model == "stories260K"
    assert len(oai.embeddings.create(model=embedder, input="Hi").data[0].embedding) == 384
    assert oai.models.retrieve(chat).id == "stories260K"
    assert claude.messages.create(model=chat, max_tokens=1, messages=user).model == "stories260K"
    assert claude.messages.count_tokens(model=chat, messages=user).input_tokens > 0
    assert claude.models.retrieve(chat).id == "stories260K"
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="stories260K:v2", messages=user, max_tokens=1)
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="stories260K:v2", max_tokens=1, messages=user)


async def test_a_model_whose_model_json_is_damaged_is_told_so_on_every_ollama_lookup(tmp_path, stories_path):
    """A model whose model.json is damaged (left in place to mend) was "model 'x' not found" on Ollama's routes, where
    every other dialect says it is damaged and what to repair or remove: now Ollama's too (still its 404)."""
    from test_cli_helpers import cli_env, jan, ok

    data = tmp_path / "data"
    ok(jan("models", "import", str(stories_path), env=cli_env(data)))
    (data / "models" / "stories260K" / "model.json").write_text("{not json")
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            for name in ("stories260K", "stories260K:latest"):
                for method, path, body in _lookups(name):
                    status, got = await api.call(method, path, body)
                    assert status == 404 and list(got) == ["error"], (path, got)
                    assert "is damaged" in got["error"] and "repair or remove models/stories260K/model.json" in \
                        got["error"], (path, got)
    assert (data / "models" / "stories260K" / "model.json").read_text() == "{not json"
