"""Every public member of the engine's façades over native handles (``jan.Model``, its requests, ``jan.ModelPool``)
after ``close()``: ModelClosedError, or the harmless answer it documents — never a call into a released engine,
and never a silent success (``Model.tokenize`` went on working after ``close()``).

The members are found by introspection: one added later fails :func:`test_every_member_is_classified` until it
is put in a table below, with what it must do on a closed model.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import threading

import pytest

import jan
from jan.engine.model import ModelInfo
from jan.engine.request import Request
from jan.engine.results import Completion


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def _enter(cm):
    with cm:
        pass


# -- jan.Model -------------------------------------------------------------------------------------------------
#: Uses of the engine: each raises ModelClosedError on a closed model (plausible arguments, for every kind of model).
MODEL_RAISES = {
    "tokenize": lambda m: m.tokenize("Once upon a time"),
    "detokenize": lambda m: m.detokenize([1, 2]),
    "spell": lambda m: m.spell([1, 2]),
    "token_to_piece": lambda m: m.token_to_piece(1),
    "token_to_bytes": lambda m: m.token_to_bytes(1),
    "control_texts": lambda m: m.control_texts(),
    "vocabulary": lambda m: m.vocabulary(),
    "is_eog": lambda m: m.is_eog(1),
    "add_bos": lambda m: m.add_bos,
    "media_inputs": lambda m: m.media_inputs([_png()]),
    "prepare_media": lambda m: m.prepare_media([_png()]),
    "media_prompt": lambda m: m.media_prompt("Describe it.", []),
    "encode_media": lambda m: m.encode_media(None),  # (the closed check comes before the prompt is looked at)
    "stream": lambda m: m.stream("Once", max_tokens=1),
    "submit": lambda m: m.submit("Once", max_tokens=1),
    "generate": lambda m: m.generate("Once", max_tokens=1),
    "agenerate": lambda m: asyncio.run(m.agenerate("Once", max_tokens=1)),
    # at once: a closed model never makes room (a wait of its whole timeout would pass the test's bound)
    "wait_for_room": lambda m: asyncio.run(asyncio.wait_for(m.wait_for_room(600), 120)),
    "require_generation": lambda m: m.require_generation(),
    "embed": lambda m: m.embed(["hello"]),
    "rerank": lambda m: m.rerank("a question", ["an answer"]),
    "n_ctx_embed": lambda m: m.n_ctx_embed,
    "hold": lambda m: _enter(m.hold()),
    "slot_action": lambda m: m.slot_action("erase", 0),
    "slots_info": lambda m: m.slots_info(),
}

#: What describes the model, and the status reads: answered on a closed model (``before``: the open model's).
MODEL_HARMLESS = {
    "close": lambda value, before: value is None,
    "info": lambda value, before: isinstance(value, ModelInfo) and value == before["info"],
    "metadata": lambda value, before: value == before["metadata"] and len(value) > 0,
    "chat_template": lambda value, before: value == before["chat_template"],
    "n_ctx": lambda value, before: value == 0,
    "kv_cache_bytes": lambda value, before: value == 0,
    "draft_kv_cache_bytes": lambda value, before: value == 0,
    "draft_memory_bytes": lambda value, before: value == 0,
    "lora_adapters": lambda value, before: value == [],  # (the adapters go with the model)
    "SLOT_ACTIONS": lambda value, before: value == ("save", "restore", "erase"),  # (a constant of the class)
    "n_parallel": lambda value, before: value == 0,
    "mmproj": lambda value, before: value is None,
    "pooling": lambda value, before: value is None,  # the load option (not given here)
    "capabilities": lambda value, before: value == {"vision": False, "audio": False},
    "media_marker": lambda value, before: value is None,
    "projector_memory_bytes": lambda value, before: value == 0,
    "metrics": lambda value, before: value == {"slots_total": 0, "slots_busy": 0, "queue_depth": 0},
    "activity": lambda value, before: value[1] is False,
    "busy": lambda value, before: value is False,
    "is_reranker": lambda value, before: value is before["is_reranker"] and value is False,
    "rerank_template": lambda value, before: value is None and before["rerank_template"] is None,
}


def _public(cls) -> list[str]:
    return sorted(name for name in dir(cls) if not name.startswith("_"))


def _read(obj, name):
    """The member's value (a property) or what calling it with no arguments gives (a method)."""
    value = getattr(obj, name)
    if not inspect.ismethod(value):
        return value
    result = value()
    return asyncio.run(result) if inspect.iscoroutine(result) else result


MODEL_KINDS = ("generation", "embedding", "vision")


@pytest.fixture(scope="module")
def closed_models(stories_path, minilm_path, request):
    """One closed model of each kind, with what its harmless members said while it was open."""
    out = {}
    for kind in MODEL_KINDS:
        if kind == "generation":
            model = jan.Model(stories_path, n_ctx=128, n_threads=1)
        elif kind == "embedding":
            model = jan.Model(minilm_path, n_threads=1)
            model.embed(["made before the close"])  # an embedder to let go of as well
        else:
            try:
                model_path, mmproj = request.getfixturevalue("vision_pair")
            except pytest.skip.Exception:
                continue
            model = jan.Model(model_path, mmproj=mmproj, n_ctx=256, n_threads=1, n_threads_batch=1)
        before = {name: getattr(model, name) for name in ("info", "metadata", "chat_template", "is_reranker",
                                                          "rerank_template")}
        data = dict(vars(model))
        model.close()
        out[kind] = (model, before, data)
    return out


@pytest.mark.parametrize("name", _public(jan.Model))
def test_every_member_is_classified(name):
    assert (name in MODEL_RAISES) != (name in MODEL_HARMLESS), (
        f"jan.Model.{name}: put it in MODEL_RAISES or MODEL_HARMLESS (what it does once the model is closed)")


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("name", _public(jan.Model))
def test_a_closed_model(closed_models, kind, name):
    if kind not in closed_models:
        pytest.skip("no vision model here (the gguf package or the phi-3 vocabulary is missing)")
    model, before, _ = closed_models[kind]
    if name in MODEL_RAISES:
        with pytest.raises(jan.ModelClosedError, match=rf"model '{model.id}' is closed"):
            MODEL_RAISES[name](model)
    else:
        assert MODEL_HARMLESS[name](_read(model, name), before), f"{name} on a closed {kind} model"


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_closed_model_keeps_its_plain_attributes(closed_models, kind):
    """``id``, ``path`` and the other settings it was loaded with are plain data: unchanged by the close."""
    if kind not in closed_models:
        pytest.skip("no vision model here")
    model, _, data = closed_models[kind]
    public = {name: value for name, value in data.items() if not name.startswith("_")}
    assert {"id", "path", "vocab_only", "embedding_only"} <= set(public)
    for name, value in public.items():
        assert getattr(model, name) == value, name
    assert repr(model) == f"<jan.Model {model.id!r} path={model.path!r} closed>"


def test_a_closed_model_lets_go_of_the_engine(closed_models):
    """Nothing native is left on a closed model to be called by mistake: a member that forgot to check would
    fail loudly, and the weights go with the last request handle that still reads its output."""
    for model, _, _ in closed_models.values():
        assert model._native is None and model._scheduler is None and model._embedder is None
        assert model._projector is None and model._piece_cache is None and model._native_draft is None


def test_with_a_closed_model_raises(stories_path):
    model = jan.Model(stories_path, n_ctx=64, n_threads=1)
    model.close()
    with pytest.raises(jan.ModelClosedError):
        with model:
            pass


def test_close_wakes_those_waiting_for_room(stories_path):
    """A task waiting for room in a closed model's queue hears of the close at once (then its submit raises
    ModelClosedError), rather than at the end of its wait."""
    model = jan.Model(stories_path, n_ctx=64, n_threads=1)

    async def scenario():
        waiter = asyncio.ensure_future(model.wait_for_room(600))
        while not model._room._waiters:  # registered: the close below finds it waiting
            await asyncio.sleep(0)
        await asyncio.to_thread(model.close)
        await asyncio.wait_for(waiter, 120)

    asyncio.run(scenario())
    with pytest.raises(jan.ModelClosedError):
        model.submit("Once", max_tokens=1)


def test_close_from_another_thread_mid_use_raises_model_closed_only(minilm_path):
    """Tokenizing and embedding in threads while the model closes: each call works or raises ModelClosedError
    (never an AttributeError on a reference the close dropped, never a crash)."""
    for _ in range(4):
        model = jan.Model(minilm_path, n_threads=1)
        started = threading.Barrier(3)
        errors: list[BaseException] = []

        def loop(call):
            started.wait(timeout=120)
            while True:
                try:
                    call()
                except jan.ModelClosedError:
                    return
                except BaseException as exc:  # noqa: BLE001 - the test reports any other
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=loop, args=(lambda: model.tokenize("a few words"),)),
                   threading.Thread(target=loop, args=(lambda: model.embed(["a few words"]),))]
        for t in threads:
            t.start()
        started.wait(timeout=120)
        model.close()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors


# -- the requests of a closed model ----------------------------------------------------------------------------
#: Everything on a request is harmless once its model closed: it ended (cancelled, or finished before), and its
#: output stays readable — logprobs named with the vocabulary the request kept, not the model's (let go of).
REQUEST_HARMLESS = {
    "cancel": lambda r: r.cancel() is None,
    "end_reasoning": lambda r: r.end_reasoning() is False,  # (ended: no thinking left to end)
    "result": lambda r: isinstance(r.result(), Completion),
    "aresult": lambda r: isinstance(asyncio.run(r.aresult()), Completion),
    "done": lambda r: (r.result(), r.done)[1] is True,
    "raise_for_error": lambda r: (r.result(), r.raise_for_error(r.final))[1] is None,
}


@pytest.mark.parametrize("name", _public(Request))
def test_a_request_of_a_closed_model(stories_path, name):
    assert name in REQUEST_HARMLESS, f"Request.{name}: put it in REQUEST_HARMLESS (what it does after a close)"
    model = jan.Model(stories_path, n_ctx=256, n_threads=1)
    request = model.stream("Once upon a time", max_tokens=200, ignore_eos=True, temperature=0, top_logprobs=2)
    first = next(request)  # some output read, the rest (with its logprobs) read only after the close
    model.close()
    assert REQUEST_HARMLESS[name](request)
    rest = list(request)
    assert request.done and request.final is not None
    assert request.final.finish_reason in ("cancelled", "length")
    for chunk in [first, *rest]:
        for lp in chunk.logprobs or []:
            assert isinstance(lp.token, str) and all(isinstance(t.token, str) for t in lp.top)


def test_a_closed_models_request_names_its_logprobs(stories_path):
    """Output read after the close has its logprobs' tokens named as the open model names them."""
    model = jan.Model(stories_path, n_ctx=256, n_threads=1)
    request = model.stream("Once upon a time", max_tokens=60, ignore_eos=True, temperature=0, top_logprobs=3)
    first = next(request)
    model.close()
    logprobs = [lp for chunk in [first, *request] for lp in chunk.logprobs or []]
    assert logprobs
    with jan.Model(stories_path, n_ctx=64, n_threads=1) as fresh:
        for lp in logprobs:
            assert lp.token == fresh.token_to_piece(lp.token_id, special=True)
            assert [t.token for t in lp.top] == [fresh.token_to_piece(t.token_id, special=True) for t in lp.top]


def test_a_vocabulary_taken_before_the_close_spells_the_rest_of_the_output(stories_path):
    """What a server does with a stream an unload cut off: its text, read after the close, is still spelled token
    by token (stop strings, reasoning tokens, ids shown with the text) through the vocabulary it took before."""
    model = jan.Model(stories_path, n_ctx=256, n_threads=1)
    vocab = model.vocabulary()
    request = model.stream("Once upon a time", max_tokens=200, ignore_eos=True, temperature=0)
    first = next(request)
    model.close()
    with pytest.raises(jan.ModelClosedError):
        model.vocabulary()
    chunks = [first, *request]
    ids = [t for c in chunks for t in c.token_ids]
    assert b"".join(vocab.token_to_bytes(t) for t in ids).decode("utf-8", "replace") == "".join(c.text for c in chunks)
    assert vocab.tokenize("Once", add_special=False)
    with pytest.raises(ValueError):
        vocab.token_to_bytes(vocab.n_vocab)
    # the reading half of the tokenizer, as the model had it: detokenize and token_to_piece were AttributeErrors
    fresh = jan.Model(stories_path, vocab_only=True)
    assert vocab.detokenize(ids) == fresh.detokenize(ids) and vocab.detokenize(ids).strip()
    fresh.close()
    assert vocab.detokenize([1, *ids[:3]], unparse_special=True).startswith("<s>")
    assert "".join(vocab.token_to_piece(t) for t in ids) == "".join(c.text for c in chunks)
    with pytest.raises(jan.BadRequestError, match=r"^tokens\[1\]"):
        vocab.detokenize([1, vocab.n_vocab])
    with pytest.raises(ValueError, match="^remove_special"):
        vocab.detokenize(ids, remove_special="no")


# -- jan.ModelPool ---------------------------------------------------------------------------------------------
POOL_RAISES = {
    "get": lambda p, path: p.get("m"),
    "load": lambda p, path: p.load("m", path),
    "using": lambda p, path: _enter(p.using("m", path)),
    "turn": lambda p, path: _enter(p.turn("m")),
    "set_keep_alive": lambda p, path: p.set_keep_alive("m", 1.0),
    "unload": lambda p, path: p.unload("m"),
    "unload_when_idle": lambda p, path: p.unload_when_idle("m"),
}
POOL_HARMLESS = {
    "close": lambda value: value is None,
    "is_loaded": None,  # takes a model id: see below
    "peek": None,  # takes a model id: see below
    "release_claim": None,  # takes a model id and a model: see below
    "loaded": lambda value: value == [],
    "status": lambda value: value == {},
    "reap_idle": lambda value: value == [],
}


@pytest.fixture(scope="module")
def closed_pool(stories_path):
    pool = jan.ModelPool(n_ctx=64, n_threads=1)
    model = pool.load("m", stories_path)
    pool.close()
    return pool, model


@pytest.mark.parametrize("name", _public(jan.ModelPool))
def test_a_closed_pool(closed_pool, stories_path, name):
    pool, model = closed_pool
    assert (name in POOL_RAISES) != (name in POOL_HARMLESS), (
        f"jan.ModelPool.{name}: put it in POOL_RAISES or POOL_HARMLESS (what it does once the pool is closed)")
    if name in POOL_RAISES:
        with pytest.raises(jan.ModelClosedError, match="the model pool is closed"):
            POOL_RAISES[name](pool, stories_path)
    elif name == "is_loaded":
        assert pool.is_loaded("m") is False
    elif name == "peek":
        assert pool.peek("m") is None  # (a closed pool holds no model: nothing to hand out)
    elif name == "release_claim":
        assert pool.release_claim("m", model) is None  # (a closed pool holds no model, so no claim to give back)
    else:
        assert POOL_HARMLESS[name](_read(pool, name))


def test_a_closed_pool_closed_its_models(closed_pool):
    _, model = closed_pool
    with pytest.raises(jan.ModelClosedError):
        model.tokenize("Once")
