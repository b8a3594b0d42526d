"""Every model.json setting and parameter a request reads is checked as requests read it — on PATCH, on
POST /v1/models (create and import) and when a hand-edited one is read at load — with a 400 naming the field;
companion files (draft_model, mmproj, lora) must be GGUFs of their kind, judged before the main weights are read.
A server-wide draft model (``--model-draft``) is a default: a model it cannot draft for loads without it, and a
model opts out with ``speculative: "none"`` or an empty/null ``draft_model``."""

from __future__ import annotations

import json

import pytest
from api_helpers import Client, running

import jan
from jan.testing import gguf_models

STORY = "Once upon a time"
HELLO = [{"role": "user", "content": STORY}]


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory, vocab_dir):
    """A tiny chat model with the phi-3 vocabulary: stories260K (a llama SPM vocab of 512 tokens) cannot draft for it."""
    return gguf_models.write_phi3_chat_model(tmp_path_factory.mktemp("phi3") / "phi3.gguf")


@pytest.fixture
def loads(monkeypatch):
    """The files every load of the engine's pool reads (main weights), in order."""
    seen: list[str] = []
    real = jan.ModelPool.load

    def load(self, model_id, path, *args, **kwargs):
        seen.append(str(path))
        return real(self, model_id, path, *args, **kwargs)

    monkeypatch.setattr(jan.ModelPool, "load", load)
    return seen


def model_json(data, model_id: str) -> dict:
    return json.loads((data / "models" / model_id / "model.json").read_text())


async def chat(api: Client, model: str, **extra) -> tuple[int, dict]:
    return await api.post("/v1/chat/completions", {"model": model, "max_tokens": 4, "messages": HELLO, **extra})


def bad_values(tmp_path, stories_path) -> list[tuple[dict, str, str]]:
    """(body fields, the param named, a word of the message): one of each kind a request would fail on."""
    text = tmp_path / "notes.gguf"
    text.write_text("not a gguf at all\n")
    return [
        ({"settings": {"draft_model": "/nope.gguf"}}, "settings.draft_model", "no file"),
        ({"settings": {"draft_model": str(text)}}, "settings.draft_model", "not a GGUF"),
        ({"settings": {"draft_model": "../../elsewhere.gguf"}}, "settings.draft_model", "climbs out"),
        ({"settings": {"mmproj": "/nope.gguf"}}, "settings.mmproj", "no file"),
        # the weights themselves (a name that climbs out was stored and then ignored: the old weights went on)
        ({"settings": {"llama_model_path": "../other/w.gguf"}}, "settings.llama_model_path", "climbs out"),
        ({"settings": {"llama_model_path": "/nope.gguf"}}, "settings.llama_model_path", "no file"),
        ({"settings": {"llama_model_path": str(text)}}, "settings.llama_model_path", "not a GGUF"),
        ({"settings": {"mmproj": str(stories_path)}}, "settings.mmproj", "projector"),
        ({"settings": {"reasoning_budget": "lots"}}, "settings.reasoning_budget", "integer"),
        ({"settings": {"reasoning_budget": -5}}, "settings.reasoning_budget", "-1"),
        ({"settings": {"reasoning_effort": "ultra"}}, "settings.reasoning_effort", "high"),
        ({"settings": {"reasoning_format": "xml"}}, "settings.reasoning_format", "deepseek"),
        ({"settings": {"speculative": "turbo"}}, "settings.speculative", "none, ngram, draft"),
        ({"settings": {"speculative": "draft", "draft_model": ""}}, "settings.speculative", "needs a draft model"),
        ({"settings": {"lora": "style.gguf"}}, "settings.lora", "expected a list"),
        ({"settings": {"lora": [{"path": "style.gguf", "scale": "big"}]}}, "settings.lora", "scale: expected a number"),
        ({"settings": {"lora": [{"file": "style.gguf"}]}}, "settings.lora", "expected"),
        # the files it names, as draft_model's and mmproj's (stored, every request to the model was a 400)
        ({"settings": {"lora": ["/nope.gguf"]}}, "settings.lora", "no file"),
        ({"settings": {"lora": [{"path": str(text), "scale": 0.5}]}}, "settings.lora", "not a GGUF"),
        ({"settings": {"lora": [[str(stories_path), 1]]}}, "settings.lora", "not a LoRA adapter"),
        ({"settings": {"lora": ["../../elsewhere.gguf"]}}, "settings.lora", "climbs out"),
        ({"parameters": {"reasoning_budget": "lots"}}, "parameters.reasoning_budget", "integer"),
        ({"parameters": {"speculative": "turbo"}}, "parameters.speculative", "none, ngram, draft"),
    ]


async def test_patch_and_post_refuse_every_setting_a_request_would_fail_on(server, tmp_path, gguf_copy, stories_path):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "m"}, 201)
        before = model_json(data, "m")
        for fields, param, word in bad_values(tmp_path, stories_path):
            status, err = await api.patch("/v1/models/m", fields)
            assert status == 400, (fields, status, err)
            assert err["error"]["param"] == param and err["error"]["message"].startswith(param), (fields, err)
            assert word in err["error"]["message"], (fields, err)
            assert model_json(data, "m") == before  # nothing stored
            for body in ({"id": "new", "engine": "llama.cpp", **fields}, {"path": str(gguf_copy), "id": "imp", **fields},
                         {"path": str(gguf_copy), **fields}):
                status, err = await api.post("/v1/models", body)
                assert status == 400 and err["error"]["param"] == param, (body, status, err)
        assert not (data / "models" / "new").exists() and not (data / "models" / "imp").exists()
        assert [m["id"] for m in (await api.ok("GET", "/v1/models"))["data"]] == ["m"]
        status, reply = await chat(api, "m")
        assert status == 200, reply


async def test_good_values_are_taken_and_used(server, tmp_path, gguf_copy, stories_path):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "m"}, 201)
        await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "drafter"}, 201)
        # a file in the model's folder whose name is no model id
        (data / "models" / "m" / "my draft.gguf").write_bytes(stories_path.read_bytes())
        for settings in ({"draft_model": "drafter"}, {"draft_model": "my draft.gguf"}, {"draft_model": str(stories_path), "speculative": "DRAFT"},
                         {"draft_model": "", "speculative": "ngram"}, {"reasoning_budget": -1, "reasoning_effort": "xhigh",
                                               "reasoning_format": "none"}, {"reasoning_budget": 64}):
            patched = await api.ok("PATCH", "/v1/models/m", {"settings": settings})
            # (a word setting is kept in the spelling it is used in: "DRAFT" as draft)
            assert all(patched["settings"][k] == (v.lower() if k == "speculative" else v)
                       for k, v in settings.items()), patched
            status, reply = await chat(api, "m")
            assert status == 200, (settings, reply)
        assert model_json(data, "m")["settings"]["reasoning_budget"] == 64


async def test_a_hand_edited_model_json_names_its_bad_field_in_every_dialect(server, tmp_path, gguf_copy, loads):
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "m"}, 201)
        for key, value, word in [("reasoning_budget", "lots", "integer"), ("reasoning_effort", "ultra", "high"),
                                 ("reasoning_format", "xml", "deepseek"), ("draft_model", "/nope.gguf", "no file"),
                                 # a path that climbs out of the model folder (its 400 had no param nor code)
                                 ("draft_model", "../../elsewhere.gguf", "climbs out"),
                                 ("lora", ["../../elsewhere.gguf"], "climbs out"),
                                 ("mmproj", "missing-mmproj.gguf", "no file"),
                                 # wrong types and ranges a hand edit makes (were a 500, and an option the client
                                 # never sent, ``n_ctx``)
                                 ("chat_template", 5, "string"), ("prompt_template", ["x"], "string"),
                                 ("ctx_len", -5, ">= 8"), ("ngl", [1], "integer"), ("embedding", "yes", "true or false")]:
            stored = model_json(data, "m")
            stored["settings"] = {**stored["settings"], key: value}
            (data / "models" / "m" / "model.json").write_text(json.dumps(stored))
            await api.call("POST", "/v1/models/m/stop")
            loads.clear()
            param = f"settings.{key}"
            for path, body in [
                ("/v1/chat/completions", {"model": "m", "max_tokens": 2, "messages": HELLO}),
                ("/v1/responses", {"model": "m", "max_output_tokens": 2, "input": STORY}),
                ("/v1/messages", {"model": "m", "max_tokens": 2, "messages": HELLO}),
                ("/api/chat", {"model": "m", "stream": False, "messages": HELLO}),  # Ollama's error: a string
            ]:
                status, err = await api.post(path, body)
                assert status == 400, (key, path, status, err)
                error = err["error"]
                message = error["message"] if isinstance(error, dict) else error
                assert param in message and word in message, (key, path, err)
                if isinstance(error, dict):
                    assert error.get("param", param) == param, (key, path, err)
                if key not in ("draft_model", "mmproj"):  # (a missing file names its own path)
                    assert "model 'm'" in message, (key, path, err)  # whose model.json it is
            if key in ("draft_model", "mmproj"):
                assert loads == [], loads  # refused before the main weights were read
            stored["settings"].pop(key)
            (data / "models" / "m" / "model.json").write_text(json.dumps(stored))
        assert (await chat(api, "m"))[0] == 200


async def test_a_hand_edited_parameter_is_named_as_the_model_json_s_in_every_dialect(server, tmp_path, gguf_copy):
    """A request default edited by hand into a value no request can use (model.json ``parameters``) is every
    request's 400 naming it where it lives, ``parameters.temperature`` of model 'm': it was said as the request's own
    ``temperature``, which the request never sent."""
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "m"}, 201)
        for key, value, word in [("temperature", 5, "<= 2"), ("top_k", "40", "integer"), ("top_p", -1, ">= 0"),
                                 ("stop", 7, "string")]:
            stored = model_json(data, "m")
            stored["parameters"] = {key: value}
            (data / "models" / "m" / "model.json").write_text(json.dumps(stored))
            param = f"parameters.{key}"
            for path, body in [
                ("/v1/chat/completions", {"model": "m", "max_tokens": 2, "messages": HELLO}),
                ("/v1/completions", {"model": "m", "max_tokens": 2, "prompt": STORY}),
                ("/v1/responses", {"model": "m", "max_output_tokens": 2, "input": STORY}),
                ("/v1/messages", {"model": "m", "max_tokens": 2, "messages": HELLO}),
                ("/api/chat", {"model": "m", "stream": False, "messages": HELLO}),  # Ollama's error: a string
                ("/api/generate", {"model": "m", "stream": False, "prompt": STORY}),
                ("/completion", {"model": "m", "n_predict": 2, "prompt": STORY}),
                ("/v1/threads/runs", {"assistant_id": "jan", "model": "m", "max_completion_tokens": 2,
                                      "thread": {"messages": HELLO}}),
            ]:
                status, err = await api.post(path, body)
                assert status == 400, (key, path, status, err)
                error = err["error"]
                message = error["message"] if isinstance(error, dict) else error
                assert param in message and word in message and "model 'm'" in message, (key, path, err)
                if isinstance(error, dict) and "param" in error:
                    assert error["param"] == param, (key, path, err)
        stored["parameters"] = {}
        (data / "models" / "m" / "model.json").write_text(json.dumps(stored))
        assert (await chat(api, "m"))[0] == 200


async def test_a_cut_draft_model_is_named_as_the_model_json_field(server, tmp_path, gguf_copy, stories_path, loads):
    # a GGUF whose header reads but whose tensors are cut off (a partial download): once only llama.cpp's load
    # found it, told as the model's own file (param "model") under the engine's option name ("draft_model: ...");
    # its header now tells the bytes missing (jan.gguf_extent), on PATCH and, hand-edited, before any weights load
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(stories_path.read_bytes()[:600_000])
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "m"}, 201)
        status, err = await api.patch("/v1/models/m", {"settings": {"draft_model": str(cut)}})
        assert status == 400, (status, err)
        assert err["error"]["param"] == "settings.draft_model", err
        assert "cut.gguf" in err["error"]["message"] and "missing" in err["error"]["message"], err
        stored = model_json(data, "m")
        stored["settings"] = {**stored["settings"], "draft_model": str(cut)}
        (data / "models" / "m" / "model.json").write_text(json.dumps(stored))
        await api.call("POST", "/v1/models/m/stop")
        loads.clear()
        for path, body in [("/v1/chat/completions", {"model": "m", "max_tokens": 2, "messages": HELLO}),
                           ("/v1/messages", {"model": "m", "max_tokens": 2, "messages": HELLO}),
                           ("/api/chat", {"model": "m", "stream": False, "messages": HELLO})]:
            status, err = await api.post(path, body)
            assert status == 400, (path, status, err)
            error = err["error"]
            message = error["message"] if isinstance(error, dict) else error
            assert "settings.draft_model" in message and "cut.gguf" in message and "missing" in message, (path, err)
            if path == "/v1/chat/completions":
                assert error["param"] == "settings.draft_model", err
        assert loads == [], loads  # refused before the main weights were read
        await api.patch("/v1/models/m", {"settings": {"draft_model": None}})
        assert (await chat(api, "m"))[0] == 200


async def test_the_speculative_value_has_one_message_everywhere(server, tmp_path, gguf_copy):
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "m"}, 201)
        messages = []
        for path, body in [("/v1/chat/completions", {"model": "m", "max_tokens": 2, "messages": HELLO}),
                           ("/v1/completions", {"model": "m", "max_tokens": 2, "prompt": STORY})]:
            status, err = await api.post(path, {**body, "speculative": "turbo"})
            assert status == 400 and err["error"]["param"] == "speculative", (path, err)
            messages.append(err["error"]["message"])
        status, err = await api.patch("/v1/models/m", {"settings": {"speculative": "turbo"}})
        assert status == 400
        messages.append(err["error"]["message"].removeprefix("settings."))
        assert all("expected one of none, ngram, draft" in m and "'turbo'" in m for m in messages), messages
        for ok in ("NGRAM", True, False, "none"):
            assert (await chat(api, "m", speculative=ok))[0] == 200, ok


# -- a server-wide draft model is a default ---------------------------------------------------------------------
async def test_a_server_draft_model_is_left_out_where_it_cannot_draft(tmp_path, stories_path, other_vocab, loads,
                                                                      caplog):
    data = tmp_path / "data"
    # (--speculative draft too: the server's default speculation goes where its draft model goes)
    with running(data, stories_path, other_vocab, draft_model=str(stories_path), speculative="draft") as srv:
        async with Client(srv.base_url) as api:
            info = await api.ok("GET", "/v1/models/stories260K")
            assert info["draft_model_in_use"] == str(stories_path), info  # it drafts where it can
            await api.ok("POST", "/v1/models", {"path": str(other_vocab), "id": "r1"}, 201)
            for _ in range(2):
                status, reply = await chat(api, "r1")
                assert status == 200, reply
            info = await api.ok("GET", "/v1/models/r1")
            assert "draft_model_in_use" not in info and "cannot draft" in info["draft_model_skipped"], info
            # the preloaded model of the same file (jan serve -m) started without it as well
            assert "cannot draft" in (await api.ok("GET", "/v1/models/phi3"))["draft_model_skipped"]
            # a model's own opt-out: no draft model loaded at all
            for i, settings in enumerate(({"speculative": "none"}, {"draft_model": ""}, {"draft_model": None})):
                body = {"id": f"own{i}", "engine": "llama.cpp", "settings": {"llama_model_path": str(stories_path),
                                                                              **settings}}
                await api.ok("POST", "/v1/models", body, 201)
                assert (await chat(api, f"own{i}"))[0] == 200
                info = await api.ok("GET", f"/v1/models/own{i}")
                assert "draft_model_in_use" not in info and "draft_model_skipped" not in info, info
            # a model's own draft model that cannot draft for it stays a clear 400; the engine's verdict on this pair
            # of files is known by now, so no request reads the weights only to fail again
            await api.ok("POST", "/v1/models", {"path": str(other_vocab), "id": "mine",
                                                "settings": {"draft_model": str(stories_path)}}, 201)
            loads.clear()
            for _ in range(2):
                status, err = await chat(api, "mine")
                assert status == 400 and err["error"]["param"] == "settings.draft_model", err
                assert "cannot draft for" in err["error"]["message"], err
            assert loads == [], loads
    warned = [r for r in caplog.records if "without the server's draft model" in r.getMessage()]
    assert len(warned) == 2, [r.getMessage() for r in warned]  # once for each model id, not per request


async def test_a_draft_model_for_an_embedding_model_is_one_that_cannot_draft(tmp_path, stories_path, minilm_path):
    """A draft model given to a model that only embeds was dropped without a word (a LoRA adapter is refused): the
    library loaded the model and said nothing, a model.json's own draft_model stayed stored and seemingly in force,
    and jan serve's --model-draft told no draft_model_skipped for the embedding model. It is a draft that cannot
    draft for the model: a ValueError naming draft_model, the server's default left out as for another vocabulary
    (said in draft_model_skipped), and a model.json's own a 400 naming settings.draft_model."""
    with pytest.raises(ValueError, match=r"^draft_model: .* cannot draft for .*: it is an embedding model"):
        jan.Model(minilm_path, draft_model=stories_path, n_threads=1)
    with pytest.raises(ValueError, match=r"^draft_model: .* it is an embedding model"):  # (embedding=True: the same)
        jan.Model(stories_path, draft_model=stories_path, embedding=True, n_threads=1)
    # (a server with a model that generates too: --model-draft is a default for it; with none, jan serve refuses the
    # flag: tests/test_settings_for_the_model_kind.py)
    with running(tmp_path / "data", minilm_path, stories_path, draft_model=str(stories_path)) as srv:
        async with Client(srv.base_url) as api:
            status, reply = await api.post("/v1/embeddings", {"model": "all-MiniLM-L6-v2-f32", "input": "hi"})
            assert status == 200, reply
            info = await api.ok("GET", "/v1/models/all-MiniLM-L6-v2-f32")
            assert "draft_model_in_use" not in info and "embedding model" in info["draft_model_skipped"], info
            # a model.json's own is refused where it is given (it was stored, and every request then a 400)
            status, err = await api.post("/v1/models", {"path": str(minilm_path), "id": "mine",
                                                        "settings": {"draft_model": str(stories_path)}})
            assert status == 400 and err["error"]["param"] == "settings.draft_model", err
            assert "embeds only" in err["error"]["message"], err
            await api.ok("POST", "/v1/models", {"path": str(minilm_path), "id": "mine"}, 201)
            status, reply = await api.post("/v1/embeddings", {"model": "mine", "input": "hi"})
            assert status == 200, reply


async def test_every_list_of_models_survives_a_hand_edited_model_json(server, tmp_path, gguf_copy):
    """One model.json's nonsense (a ``created`` that is no time, a template that is no text, ...) is that model's
    problem, refused when it loads: every list and description of models still answers, in every dialect (a
    ``"created": "x"`` failed ``GET /v1/models`` with a 400, a ``"chat_template": 5`` with a 500)."""
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "m"}, 201)
        await api.ok("POST", "/v1/models", {"path": str(gguf_copy), "id": "fine"}, 201)
        good = model_json(data, "m")
        edits = [{"created": "x"}, {"created": 1.5e300}, {"created": -7}, {"created": True}, {"name": 5},
                 {"settings": {**good["settings"], "chat_template": 5, "prompt_template": ["x"]}},
                 {"settings": {**good["settings"], "ctx_len": "big", "mmproj": 5}},
                 {"metadata": {**good["metadata"], "size": "huge", "tags": "x", "author": 5}}]
        for edit in edits:
            (data / "models" / "m" / "model.json").write_text(json.dumps({**good, **edit}))
            listed = await api.ok("GET", "/v1/models")
            assert {m["id"] for m in listed["data"]} == {"m", "fine"}, (edit, listed)
            assert all(isinstance(m["created"], int) and m["created"] >= 0 for m in listed["data"]), (edit, listed)
            one = await api.ok("GET", "/v1/models/m")
            assert "completion" in one["capabilities"], (edit, one)
            for method, path, body in [("GET", "/api/tags", None), ("POST", "/api/show", {"model": "m"}),
                                       ("GET", "/api/ps", None)]:
                status, reply = await api.call(method, path, body)
                assert status == 200, (edit, path, status, reply)
            async with api.session.get(f"{api.base}/v1/models", headers={"anthropic-version": "2023-06-01"}) as resp:
                reply = await resp.json()
                assert resp.status == 200 and {m["id"] for m in reply["data"]} == {"m", "fine"}, (edit, reply)
        assert (await chat(api, "fine"))[0] == 200


def test_ollama_dates_of_a_model_without_its_file_survive_any_created():
    """``/api/tags``' ``modified_at`` falls back to ``created`` where the weights are missing: a year past Python's
    dates (a hand edit) or a value that is no number reads as unknown, not as an OverflowError (a 500)."""
    from jan.server.dialects.ollama_models import _modified_at

    for created in (1.5e300, "x", True, -5, None):
        assert _modified_at({"created": created}, None).startswith("1970-01-01"), created


@pytest.fixture(scope="module")
def wide_and_narrow(tmp_path_factory, vocab_dir):
    """Two models of one vocabulary: the target's heads are 32 values wide (a q8_0 KV cache fits them), the
    draft's 8 (no quantized cache does). A draft's own cache has the target's types (cpp/draft_model.cpp)."""
    folder = tmp_path_factory.mktemp("heads")
    vocab = gguf_models.vocab_path("ggml-vocab-llama-spm.gguf")
    wide = gguf_models.write_llama_from_vocab(folder / "wide.gguf", vocab, n_embd=64, n_layer=1, n_head=2, n_ff=64,
                                              n_ctx=512)
    narrow = gguf_models.write_llama_from_vocab(folder / "narrow.gguf", vocab, n_embd=32, n_layer=1, n_head=4,
                                                n_ff=64, n_ctx=512, seed=3)
    return wide, narrow


async def test_a_draft_model_whose_heads_cannot_hold_the_cache_types_is_a_draft_that_cannot_draft(
        tmp_path, wide_and_narrow):
    """The draft model is judged against the model's KV cache types wherever it comes from: the server's default
    (--model-draft) is left out of a model whose quantized cache it cannot hold, as one of another vocabulary is
    (the model failed to load at all, a 400 naming settings.cache_type_k), and a model.json's own draft_model set
    by PATCH is refused naming it (it was stored, and every later load failed)."""
    wide, narrow = wide_and_narrow
    data = tmp_path / "data"
    with running(data, draft_model=str(narrow)) as srv:
        async with Client(srv.base_url) as api:
            for model_id, settings in (("plain", {}), ("q8", {"cache_type_k": "q8_0", "cache_type_v": "q8_0"})):
                await api.ok("POST", "/v1/models", {"path": str(wide), "id": model_id, "settings": settings}, 201)
            for model_id in ("plain", "q8"):
                status, reply = await api.post("/v1/completions", {"model": model_id, "prompt": STORY,
                                                                   "max_tokens": 4, "temperature": 0})
                assert status == 200, (model_id, reply)
            assert (await api.ok("GET", "/v1/models/plain"))["draft_model_in_use"] == str(narrow)
            info = await api.ok("GET", "/v1/models/q8")
            assert "draft_model_in_use" not in info and "q8_0" in info["draft_model_skipped"], info
            # the model's own draft model, set by PATCH: judged against the cache types it would have
            status, err = await api.patch("/v1/models/q8", {"settings": {"draft_model": str(narrow)}})
            assert status == 400 and err["error"]["param"] == "settings.draft_model", err
            assert "draft model" in err["error"]["message"] and "q8_0" in err["error"]["message"], err
            assert "draft_model" not in model_json(data, "q8")["settings"]
            # and the cache types set on a model whose own draft cannot hold them, as before
            await api.ok("PATCH", "/v1/models/plain", {"settings": {"draft_model": str(narrow)}})
            status, err = await api.patch("/v1/models/plain", {"settings": {"cache_type_k": "q8_0"}})
            assert status == 400 and err["error"]["param"] == "settings.cache_type_k", err


async def test_speculative_draft_without_any_draft_model_is_named_where_it_was_set(tmp_path, stories_path):
    """``settings.speculative: "draft"`` with no draft model anywhere (none in the model.json, none given to the
    server) is refused when stored, naming it; a hand-edited one fails its load naming ``settings.speculative`` (it
    was a 400 naming the request's ``speculative``, which the request never sent). With the server's draft model the
    same setting is fine."""
    data = tmp_path / "data"
    with running(data) as srv:
        async with Client(srv.base_url) as api:
            await api.ok("POST", "/v1/models", {"path": str(stories_path), "id": "m", "mode": "reference"}, 201)
            status, err = await api.patch("/v1/models/m", {"settings": {"speculative": "draft"}})
            assert status == 400 and err["error"]["param"] == "settings.speculative", err
            assert "speculative" not in model_json(data, "m")["settings"]
            edited = model_json(data, "m")
            edited["settings"]["speculative"] = "draft"
            (data / "models" / "m" / "model.json").write_text(json.dumps(edited))
            status, err = await chat(api, "m")
            assert status == 400 and err["error"]["param"] == "settings.speculative", err
            # a draft model of its own makes it fine
            await api.ok("PATCH", "/v1/models/m", {"settings": {"draft_model": str(stories_path)}})
            assert (await chat(api, "m"))[0] == 200
    with running(data, draft_model=str(stories_path)) as srv:  # the server's draft model: fine as well
        async with Client(srv.base_url) as api:
            await api.ok("PATCH", "/v1/models/m", {"settings": {"draft_model": None}})
            await api.ok("PATCH", "/v1/models/m", {"settings": {"speculative": "draft"}})
            status, reply = await chat(api, "m")
            assert status == 200, reply


async def test_a_remote_models_settings_are_checked_when_stored_and_a_400_when_hand_edited(server, tmp_path):
    """A remote model (engine openai) whose settings no load can use (a base_url that is no http(s) URL, none at
    all, headers that are no object) was stored as given, and every request to it was then a 500
    ``model_load_failed``; so was a hand-edited one, and one whose api_key_env is not set. Now POST and PATCH refuse
    them naming the field, and a model.json that holds one anyway is each dialect's 400 naming it."""
    data = tmp_path / "data"
    async with Client(server.base_url) as api:
        for settings, param, word in [({"base_url": "ftp://example"}, "settings.base_url", "http(s) URL"),
                                      ({}, "settings.base_url", "no upstream"),
                                      ({"base_url": "http://127.0.0.1:9/v1", "headers": [1]}, "settings.headers",
                                       "object")]:
            status, err = await api.post("/v1/models", {"id": "far", "engine": "openai", "settings": settings})
            assert status == 400 and err["error"]["param"] == param and word in err["error"]["message"], err
            assert not (data / "models" / "far").exists()
        # the key's variable is the serving process's to have: stored, and said when a request needs it
        good = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "JAN_TEST_NO_SUCH_VARIABLE"}
        await api.ok("POST", "/v1/models", {"id": "far", "engine": "openai", "settings": good}, 201)
        status, err = await api.patch("/v1/models/far", {"settings": {"base_url": "not a url"}})
        assert status == 400 and err["error"]["param"] == "settings.base_url", err
        for settings, param, word in [(good, "settings.api_key_env", "JAN_TEST_NO_SUCH_VARIABLE"),
                                      ({"base_url": "ftp://example"}, "settings.base_url", "http(s) URL")]:
            stored = model_json(data, "far")
            stored["settings"] = settings
            (data / "models" / "far" / "model.json").write_text(json.dumps(stored))
            for path, body in [
                ("/v1/chat/completions", {"model": "far", "max_tokens": 2, "messages": HELLO}),
                ("/v1/responses", {"model": "far", "max_output_tokens": 2, "input": STORY}),
                ("/v1/messages", {"model": "far", "max_tokens": 2, "messages": HELLO}),
                ("/api/chat", {"model": "far", "stream": False, "messages": HELLO}),
                ("/v1/models/far/start", None),
            ]:
                status, err = await (api.post(path, body) if body is not None else api.call("POST", path))
                assert status == 400, (settings, path, status, err)
                error = err["error"]
                message = error["message"] if isinstance(error, dict) else error
                assert word in message and "model 'far'" in message, (path, err)
                if isinstance(error, dict) and "param" in error:
                    assert error["param"] == param, (path, err)
