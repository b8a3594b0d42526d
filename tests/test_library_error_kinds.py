"""One rule for every bad argument of the library: a :class:`jan.BadRequestError` (a ``ValueError``) whose ``param``
names the argument as the call takes it and whose message begins with that name; one of the wrong type is a
:class:`jan.BadRequestTypeError`, also a ``TypeError``, so ``except TypeError`` and ``except jan.BadRequestError``
both catch it.

Before, ``tokenize(5)``, ``detokenize("abc")``, ``generate(5)``, ``embed(b"x")``, ``jan.Model(5)`` and an unknown
sampling option were bare TypeErrors (no ``param``, missed by ``except jan.BadRequestError``, a 500 on the server)
while ``max_tokens="5"`` or ``seed=True`` were BadRequestErrors that ``except TypeError`` missed; a bad ``grammar``
was a GrammarError, a media item a MediaError, neither a BadRequestError; and ``Model.embed`` named its inputs
``input[i]``, the server's field, not its own ``inputs``.
"""

from __future__ import annotations

import math

import pytest

import jan
from jan.errors import MediaError
from jan.services.errors import PrefillGrammarError, RequestError, RequestTypeError
from jan.templates.grammar import GrammarError, GrammarTypeError
from jan.templates.lark_gbnf import LarkGrammarError

LONE = "a\ud800"  # (a lone UTF-16 surrogate: no Unicode character, no UTF-8)
T, V = "type", "value"  # the kind of fault: the wrong type (also a TypeError), or a bad value of the right type

# (call on the generation model, the argument it names, the kind of fault)
GENERATION = [
    (lambda m: m.tokenize(5), "text", T),
    (lambda m: m.tokenize(b"Once"), "text", T),
    (lambda m: m.tokenize(None), "text", T),
    (lambda m: m.tokenize("a\ud800"), "text", V),
    (lambda m: m.tokenize("Once", add_special=1), "add_special", T),
    (lambda m: m.vocabulary().tokenize(5), "text", T),
    (lambda m: m.detokenize("abc"), "tokens", T),  # (a string is no list of ids, not read character by character)
    (lambda m: m.detokenize(b"ab"), "tokens", T),
    (lambda m: m.detokenize([True]), "tokens[0]", T),  # (True is an int in Python, no token id)
    (lambda m: m.detokenize([1.5]), "tokens[0]", T),
    (lambda m: m.detokenize([2**70]), "tokens[0]", V),
    (lambda m: m.vocabulary().detokenize("ab"), "tokens", T),
    (lambda m: m.spell("ab"), "tokens", T),
    (lambda m: m.token_to_piece("a"), "token", T),
    (lambda m: m.token_to_piece(True), "token", T),
    (lambda m: m.token_to_piece(-1), "token", V),
    (lambda m: m.token_to_bytes(None), "token", T),
    (lambda m: m.is_eog("a"), "token", T),
    (lambda m: m.generate(5), "prompt", T),
    (lambda m: m.generate(None), "prompt", T),
    (lambda m: m.generate(b"Once"), "prompt", T),
    (lambda m: m.generate([True]), "prompt[0]", T),
    (lambda m: m.generate("a\ud800"), "prompt", V),
    (lambda m: m.stream(5), "prompt", T),
    (lambda m: m.submit(5), "prompt", T),
    (lambda m: m.generate("Once", max_tokens=True), "max_tokens", T),
    (lambda m: m.generate("Once", max_tokens="5"), "max_tokens", T),
    (lambda m: m.generate("Once", max_tokens=2**70), "max_tokens", V),
    (lambda m: m.generate("Once", max_tokens=-1), "max_tokens", V),
    (lambda m: m.generate("Once", temperature=math.inf), "temperature", V),
    (lambda m: m.generate("Once", temperature=math.nan), "temperature", V),
    (lambda m: m.generate("Once", temperature=True), "temperature", T),
    (lambda m: m.generate("Once", seed=True), "seed", T),
    (lambda m: m.generate("Once", seed="1"), "seed", T),
    (lambda m: m.generate("Once", stop=b"ab"), "stop", T),
    (lambda m: m.generate("Once", stop=["\ud800"]), "stop[0]", V),
    (lambda m: m.generate("Once", logit_bias={True: 1}), "logit_bias", T),
    (lambda m: m.generate("Once", logprobs="y"), "logprobs", T),
    (lambda m: m.generate("Once", grammar_prefix=5), "grammar_prefix", T),
    (lambda m: m.generate("Once", suffix=5), "suffix", T),
    (lambda m: m.generate("Once", json_schema={}), "json_schema", T),  # (no option of generate: a mistyped keyword)
    (lambda m: m.generate("Once", images=5), "images", T),
    (lambda m: m.generate("Once", lora=5), "lora", T),
    (lambda m: m.generate("Once", grammar="not gbnf"), "grammar", V),
    (lambda m: m.generate("Once", grammar=5), "grammar", T),  # (a GrammarError too: every grammar fault is one)
    (lambda m: m.generate("Once", grammar=b'root ::= "a"'), "grammar", T),
    # hold() is a context manager: its argument refused at the call, not only when a ``with`` enters it
    (lambda m: m.hold(begins="x"), "begins", T),
    (lambda m: m.hold(begins=1), "begins", T),
    # slot_action: llama-server's wording after the argument's name ("id_slot: Invalid slot ID: 9 (...)"), and the
    # file the call's ``path``, not the server body's ``filename``
    (lambda m: m.slot_action("x", 0), "action", V),
    (lambda m: m.slot_action(5, 0), "action", T),
    (lambda m: m.slot_action("erase", 9), "id_slot", V),
    (lambda m: m.slot_action("erase", -1), "id_slot", V),
    (lambda m: m.slot_action("erase", "0"), "id_slot", T),
    (lambda m: m.slot_action("erase", True), "id_slot", T),
    (lambda m: m.slot_action("save", 0, None), "path", V),
    (lambda m: m.slot_action("save", 0, ""), "path", V),
    (lambda m: m.slot_action("save", 0, "/tmp"), "path", V),  # (a folder, no slot file)
    (lambda m: m.slot_action("save", 0, "a.bin..lora"), "path", V),
    (lambda m: m.slot_action("restore", 0, "/nonexistent/slot.bin"), "path", V),  # (a SlotFileError: the engine's)
    (lambda m: m.slot_action("save", 0, 5), "path", T),
    (lambda m: jan.Vocabulary(5), "native", T),  # (made by Model.vocabulary(), not by a caller: said so)
    (lambda m: jan.Vocabulary("model.gguf"), "native", T),
]


def _ids(table):
    return [f"{i}-{name}-{kind}" for i, (_, name, kind) in enumerate(table)]


def _assert_names(exc: BaseException, name: str, kind: str) -> None:
    assert isinstance(exc, jan.BadRequestError) and isinstance(exc, ValueError), repr(exc)
    assert isinstance(exc, TypeError) == (kind == T), repr(exc)
    assert isinstance(exc, jan.BadRequestTypeError) == (kind == T), repr(exc)
    assert isinstance(exc, RequestTypeError) == (kind == T and isinstance(exc, RequestError)), repr(exc)
    assert exc.param == name, exc
    # (a keyword the call does not take is named in the list of unknown ones)
    assert str(exc).startswith(f"{name}: ") or "unknown " in str(exc) and name in str(exc), exc


@pytest.fixture(scope="module")
def stories(stories_path):
    model = jan.Model(stories_path, n_ctx=256)
    yield model
    model.close()


@pytest.fixture(scope="module")
def minilm(minilm_path):
    model = jan.Model(minilm_path, n_threads=1)
    yield model
    model.close()


@pytest.mark.parametrize("call, name, kind", GENERATION, ids=_ids(GENERATION))
def test_a_bad_argument_is_one_kind_of_error_naming_it(stories, call, name, kind):
    with pytest.raises(jan.BadRequestError) as caught:
        call(stories)
    _assert_names(caught.value, name, kind)
    assert isinstance(caught.value, GrammarError) == (name == "grammar")
    if kind == T:  # (the same call caught as Python's convention for a wrong type says)
        with pytest.raises(TypeError):
            call(stories)
    assert stories.generate("Once", max_tokens=1).finish_reason == "length"  # (nothing left running or broken)


def test_agenerate_refuses_as_generate_does(stories):
    import asyncio

    for call, name, kind in [(lambda: stories.agenerate(5), "prompt", T),
                             (lambda: stories.agenerate("Once", top_k=-1), "top_k", V)]:
        with pytest.raises(jan.BadRequestError) as caught:
            asyncio.run(call())
        _assert_names(caught.value, name, kind)


EMBED = [
    (lambda m: m.embed(5), "inputs", T),
    (lambda m: m.embed(None), "inputs", T),
    (lambda m: m.embed(b"Once"), "inputs", T),
    (lambda m: m.embed([5]), "inputs[0]", T),
    (lambda m: m.embed([[1.5]]), "inputs[0][0]", T),
    (lambda m: m.embed([]), "inputs", V),
    (lambda m: m.embed(""), "inputs[0]", V),
    (lambda m: m.embed(["a", ""]), "inputs[1]", V),
    (lambda m: m.embed([[]]), "inputs[0]", V),
    (lambda m: m.embed([[99999]]), "inputs[0][0]", V),
    (lambda m: m.embed(["a\ud800"]), "inputs[0]", V),
    (lambda m: m.embed(["a"], cancel=5), "cancel", T),
    (lambda m: m.embed(["a"], normalize=1), "normalize", T),
    (lambda m: m.embed(["a"], pooling="max"), "pooling", V),
    (lambda m: m.embed(["a"], field=5), "field", T),
]


@pytest.mark.parametrize("call, name, kind", EMBED, ids=_ids(EMBED))
def test_embed_names_its_own_arguments(minilm, call, name, kind):
    with pytest.raises(jan.BadRequestError) as caught:
        call(minilm)
    _assert_names(caught.value, name, kind)


def test_the_server_names_its_body_field_through_embed(minilm):
    """The embedding service passes its body's field name (``input``), so its 400s name what the client sent."""
    with pytest.raises(jan.BadRequestError) as caught:
        minilm.embed([[101, 102], []], field="input")
    assert caught.value.param == "input[1]" and str(caught.value).startswith("input[1]: ")


LOAD = [
    (lambda p: jan.Model(5), "path", T),
    (lambda p: jan.Model(p, n_ctx=True), "n_ctx", T),
    (lambda p: jan.Model(p, n_ctx=1.5), "n_ctx", T),
    (lambda p: jan.Model(p, n_ctx=-1), "n_ctx", V),
    (lambda p: jan.Model(p, n_parallel="2"), "n_parallel", T),
    (lambda p: jan.Model(p, use_mmap="no"), "use_mmap", T),
    (lambda p: jan.Model(p, model_id=5), "model_id", T),
    (lambda p: jan.Model(p, draft_p_min=math.nan), "draft_p_min", V),
    (lambda p: jan.ModelPool(max_loaded=0), "max_loaded", V),
    (lambda p: jan.ModelPool(keep_alive=math.nan), "keep_alive", V),
    (lambda p: jan.ModelPool(room_timeout=-1), "room_timeout", V),
    (lambda p: jan.ModelPool(n_ctx="x"), "n_ctx", T),
    (lambda p: jan.ModelPool(n_ctxx=512), "n_ctxx", T),  # (an unknown keyword: a TypeError, and a bad argument)
    (lambda p: jan.ModelPool().load(5, p), "model_id", T),
    (lambda p: jan.ModelPool().load("m", 5), "path", T),
    (lambda p: jan.ModelPool().get(5), "model_id", T),
    (lambda p: jan.ModelPool().set_keep_alive("m", "y"), "keep_alive", T),
]


@pytest.mark.parametrize("call, name, kind", LOAD, ids=_ids(LOAD))
def test_load_and_pool_arguments_are_named_alike(stories_path, call, name, kind):
    with pytest.raises(jan.BadRequestError) as caught:
        call(stories_path)
    _assert_names(caught.value, name, kind)


def _services_table():
    from jan.services.types import (ChatMessage, ChatRequest, CompletionRequest, EmbeddingRequest, InfillChunk,
                                    NamedToolChoice, RerankRequest, ResponseFormat, SamplingOptions, TextPart, ToolCall,
                                    ToolSpec)

    hi = (ChatMessage.of_text("user", "hi"),)
    return [
        (lambda: SamplingOptions(temperature="hot"), "temperature", T),
        (lambda: SamplingOptions(max_tokens=True), "max_tokens", T),
        (lambda: SamplingOptions(temperature=math.nan), "temperature", V),
        (lambda: SamplingOptions(top_k=-1), "top_k", V),
        (lambda: ChatRequest(model=5, messages=hi), "model", T),
        (lambda: ChatRequest(model="m", messages="hi"), "messages", T),  # (a string is no tuple of messages)
        (lambda: ChatRequest(model="m", messages=()), "messages", V),
        (lambda: ChatRequest(model="m", messages=hi, response_format={"type": "json_object"}), "response_format", T),
        (lambda: ChatMessage.of_text("user", b"hi"), "text", T),
        (lambda: ChatMessage.of_text("bogus", "hi"), "role", V),
        (lambda: ResponseFormat(type="x"), "type", V),
        (lambda: CompletionRequest(model="m", prompts="hi"), "prompts", T),
        (lambda: EmbeddingRequest(model="m", inputs=5), "inputs", T),
        (lambda: EmbeddingRequest(model="m", inputs=()), "inputs", V),
        (lambda: EmbeddingRequest(model="m", inputs=("a",), dimensions=True), "dimensions", T),
        # a lone surrogate in any text a caller builds a request of: refused as it is built, naming the field (it
        # was refused only by the tokenizer, after the model loaded, or never: a tool's name, an id)
        (lambda: ChatMessage.of_text("user", LONE), "text", V),
        (lambda: ChatMessage.of_text("user", "hi", name=LONE), "name", V),
        (lambda: ChatMessage.of_text("assistant", "hi", reasoning=LONE), "reasoning", V),
        (lambda: ChatMessage.of_text("tool", "hi", tool_call_id=LONE), "tool_call_id", V),
        (lambda: TextPart(LONE), "text", V),
        (lambda: ToolCall(id="c", name=LONE, arguments="{}"), "name", V),
        (lambda: ToolCall(id="c", name="f", arguments=LONE), "arguments", V),
        (lambda: ToolSpec(name=LONE), "name", V),
        (lambda: ToolSpec(name="f", description=LONE), "description", V),
        (lambda: NamedToolChoice(name=LONE), "name", V),
        (lambda: ChatRequest(model=LONE, messages=hi), "model", V),
        (lambda: ChatRequest(model="m", messages=hi, grammar=LONE), "grammar", V),
        (lambda: SamplingOptions(stop=("a", LONE)), "stop[1]", V),
        (lambda: CompletionRequest(model="m", prompts=("a", LONE)), "prompts[1]", V),
        (lambda: EmbeddingRequest(model="m", inputs=(LONE,)), "inputs[0]", V),
        (lambda: RerankRequest(model="m", query=LONE, documents=("a",)), "query", V),
        (lambda: RerankRequest(model="m", query="q", documents=("a", LONE)), "documents[1]", V),
        (lambda: InfillChunk(text="x", filename=LONE), "filename", V),
    ]


SERVICES = _services_table()


@pytest.mark.parametrize("call, name, kind", SERVICES, ids=_ids(SERVICES))
def test_the_services_typed_requests_refuse_alike(call, name, kind):
    """The services' typed requests check their fields where they are made: a RequestError (a BadRequestError),
    a RequestTypeError (also a TypeError) for a field of the wrong type."""
    with pytest.raises(RequestError) as caught:
        call()
    _assert_names(caught.value, name, kind)


@pytest.mark.parametrize("kind", [GrammarError, LarkGrammarError, PrefillGrammarError, MediaError, RequestError,
                                  RequestTypeError, GrammarTypeError, jan.BadRequestTypeError])
def test_every_kind_of_bad_request_is_a_bad_request_error(kind):
    assert issubclass(kind, jan.BadRequestError) and issubclass(kind, ValueError)
    assert issubclass(jan.BadRequestTypeError, TypeError)


def test_a_grammar_error_keeps_its_own_param_and_code():
    """A GrammarError made a BadRequestError keeps what the server maps (``param``, ``code``) as it was."""
    plain = GrammarError("bad")
    assert (plain.param, plain.code, str(plain)) == (None, None, "bad")
    coded = GrammarError("bad", code="invalid_schema").said_of("response_format")
    assert (coded.param, coded.code) == ("response_format", "invalid_schema")
    lark = LarkGrammarError("no start rule", "invalid_grammar")
    assert (lark.param, lark.code) == (None, "invalid_grammar")
    media = MediaError("too big", reason="too_large", param="images")
    assert (media.param, media.code, media.reason) == ("images", "too_large", "too_large")


def test_a_service_given_anything_but_its_typed_request_names_the_argument():
    from jan.services.types import ChatRequest, require_request

    for wrong in (None, {"model": "m", "messages": []}, "hi"):
        with pytest.raises(jan.BadRequestTypeError, match=r"^request: the chat service takes a "
                                                          r"jan\.services\.types\.ChatRequest") as caught:
            require_request(wrong, ChatRequest, "chat")
        assert isinstance(caught.value, TypeError) and caught.value.param == "request"


def _file_errors(p, tmp):
    """(call, the argument it names, whether the message begins with it) for every file a load reads."""
    text = tmp / "notes.gguf"
    text.write_text("no GGUF here\n")
    return [
        (lambda: jan.Model(""), "path", True),
        (lambda: jan.Model(str(tmp / "missing.gguf")), "path", False),  # (its words: "model file not found: ...")
        (lambda: jan.Model(str(tmp)), "path", False),
        (lambda: jan.Model(str(text)), "path", False),
        (lambda: jan.Model(str(tmp / "a\udcff.gguf")), "path", False),
        (lambda: jan.Model(p, mmproj=str(tmp / "missing.gguf")), "mmproj", True),
        (lambda: jan.Model(p, mmproj=str(text)), "mmproj", True),
        (lambda: jan.Model(p, draft_model=str(tmp / "missing.gguf")), "draft_model", True),
        (lambda: jan.Model(p, draft_model=str(text)), "draft_model", True),
        (lambda: jan.Model(p, lora=[str(tmp / "missing.gguf")]), "lora[0]", True),
        (lambda: jan.Model(p, lora=[p, (str(text), 0.5)]), "lora[1]", True),  # (the item at fault, not the first)
        (lambda: jan.Model(p, n_ctx=64, lora=[p]), "lora[0]", True),  # (a GGUF that is no adapter: llama.cpp's)
        (lambda: jan.ModelPool().load("m", str(tmp / "missing.gguf")), "path", False),
        (lambda: jan.ModelPool().load("m", p, draft_model=str(text)), "draft_model", True),
    ]


def test_a_file_error_names_the_argument_that_gave_the_file(stories_path, tmp_path):
    """Every file a load reads that cannot be used is a ModelFileError (a LoraAdapterError for an adapter) whose
    ``param`` is the argument that named it: the weights' ``path``, ``mmproj``, ``draft_model``, ``lora[i]``. Before,
    none had a ``param``; the companions' messages already began with their argument, and still do."""
    for i, (call, name, named) in enumerate(_file_errors(str(stories_path), tmp_path)):
        with pytest.raises(jan.ModelFileError) as caught:
            call()
        assert caught.value.param == name, (i, caught.value)
        assert isinstance(caught.value, jan.LoraAdapterError) == name.startswith("lora"), (i, caught.value)
        assert str(caught.value).startswith(f"{name}: ") == named, (i, caught.value)
