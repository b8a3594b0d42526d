"""What a local model can do, answered from its files before anything loads it.

A request may insist on something its model cannot do: thinking (Ollama's ``think: true``) from a model whose chat
format has no thinking, tools (Ollama) from one whose template knows none, images or audio without a projector for
them, fill-in-the-middle (``suffix``) without FIM tokens. Loading a model (seconds, gigabytes, and perhaps another
model evicted to make room) only to refuse such a request is waste, so it is refused before, from what the files
say: the GGUF header (its chat template, its special tokens, as a vocab-only read gives them:
:func:`jan.engine.header.read_info`), the projector's header (its encoders: ``clip.has_vision_encoder``,
``clip.has_audio_encoder``; a key it lacks is an encoder it has not, as libmtmd reads them) and the model.json
(which projector, which template overrides the file's).

:func:`model_abilities` reads them (blocking; kept per file version and per model.json template setting), and
:func:`chat_refusal` / :func:`fill_in_refusal` say what a request is refused with. A fact the files do not settle
(no readable header yet, a projector named but not found, a damaged projector) is ``None`` here:
the checks after the load (:func:`jan.services.local.chat_plan`, the engine's ``prepare_media``, the infill
prompt) stay the authority then, and they use the same refusals.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jan.engine.fill_in import FIM_TOKENS
from jan.engine.fill_in import fill_in_refusal as engine_fill_in_refusal
from jan.engine.header import read_info
from jan.file_stamps import FileVersion, file_version
from jan.engine.kv_cache import is_embedding_metadata
from jan.engine.model import IS_A_RERANKER, NOT_A_RERANKER, RANK_POOLING
from jan.engine.params import logit_bias_ids
from jan.errors import JanError, MediaError
from jan.extensions.models.gguf_info import gguf_scalars
from jan.services.errors import RequestError
from jan.services.types import (AudioPart, ChatRequest, CompletionRequest, EmbeddingRequest, ImagePart, MediaText,
                                place_item)
from jan.templates import ChatTemplate, TemplateError, resolve_template
from jan.templates.formats import format_for_template

__all__ = ["Abilities", "asks_abilities", "chat_refusal", "context_media_refusal", "context_refusal",
           "dimensions_refusal", "fan_out_refusal", "fill_in_refusal", "generations", "listed_ability", "media_count",
           "model_abilities", "pooling_none_refusal", "refusal", "request_template", "reranker_refusal",
           "template_abilities", "template_refusal", "thinking_refusal"]

log = logging.getLogger(__name__)

#: A projector header's keys for its encoders (libmtmd's ``clip.has_vision_encoder``, ``clip.has_audio_encoder``).
_ENCODER_KEYS = {"vision": "clip.has_vision_encoder", "audio": "clip.has_audio_encoder"}


@dataclass(frozen=True)
class Abilities:
    """What a local model can do, as its files say before a load; ``None``: not known until it is loaded.

    ``template``: the chat template it chats in (model.json's ``chat_template`` over the file's own, then its
    ``prompt_template``, then ChatML, as a load resolves it); ``fim``: it has fill-in-the-middle tokens;
    ``projector``: it has a multimodal projector, and ``vision``/``audio`` its encoders; ``embedding``: the file
    is an embedding model (no text generation); ``n_vocab``: its vocabulary's size (token ids a request may
    give); ``n_embd``: the size of its embeddings; ``reranker``: its pooling is rank (it scores documents against
    a query, and has no embedding vectors)."""

    template: ChatTemplate | None = field(default=None, compare=False)
    fim: bool | None = None
    projector: bool | None = None
    vision: bool | None = None
    audio: bool | None = None
    embedding: bool | None = None
    n_vocab: int | None = None
    n_embd: int | None = None
    reranker: bool | None = None


def _identity(path: Any) -> FileVersion | None:
    """A file's version (:func:`jan.file_stamps.file_version`): what a cached answer is kept under; None when there
    is none."""
    if not isinstance(path, (str, os.PathLike)) or not path:
        return None
    try:
        return file_version(path)
    except (OSError, ValueError):
        return None


def _text(settings: Mapping[str, Any], key: str) -> str | None:
    value = settings.get(key)
    return value if isinstance(value, str) and value.strip() else None


def model_abilities(model: Mapping[str, Any]) -> Abilities:
    """What the model.json ``model`` (with ``file_path`` and ``mmproj_path`` as the model service resolves them)
    can do: read from the weights' and the projector's headers, kept per file version and template settings.
    Blocking (a first read of a header is a vocab-only load): call it off the event loop."""
    settings = model.get("settings")
    settings = settings if isinstance(settings, Mapping) else {}
    return _abilities(_identity(model.get("file_path")), _identity(model.get("mmproj_path")),
                      bool(_text(settings, "mmproj")), _text(settings, "chat_template"),
                      _text(settings, "prompt_template"))


def template_abilities(override: str | None, source: str | None = None,
                       fallback: str | None = None) -> Abilities | None:
    """What a model whose GGUF cannot be read (a download still running, a remote model) can do as its template texts
    say: the model.json's ``chat_template`` (``override``), the GGUF header's template (``source``) and its
    ``prompt_template`` (``fallback``), resolved as a load resolves them (:func:`_abilities`), so that what is listed
    before a load (:func:`listed_ability`) is what is listed after it. Only ``template`` is known; None where there
    is no template text, or none a load could use. Blocking (compiles and probes the template, detects its formats:
    kept per texts): call it off the event loop."""
    override, source, fallback = (t if isinstance(t, str) and t.strip() else None for t in (override, source, fallback))
    if override is None and source is None and fallback is None:
        return None
    return _template_abilities(override, source, fallback)


@functools.lru_cache(maxsize=64)
def _template_abilities(override: str | None, source: str | None, fallback: str | None) -> Abilities | None:
    try:
        template = resolve_template({"tokenizer.chat_template": source} if source else {}, override, fallback=fallback)
    except TemplateError:
        return None  # the load names the setting
    _read_formats(template)
    return Abilities(template=template)


@functools.lru_cache(maxsize=64)
def _abilities(weights: FileVersion | None, mmproj: FileVersion | None, named_projector: bool,
               override: str | None, fallback: str | None) -> Abilities:
    template, fim, embedding, n_vocab, n_embd, reranker = None, None, None, None, None, None
    if weights is not None:
        try:
            info = read_info(weights[0])
        except (OSError, JanError, ValueError):
            info = None  # a file llama.cpp cannot read: its load says so with its own error
        if info is not None:
            fim = all(k in info.special_tokens for k in FIM_TOKENS)
            embedding = is_embedding_metadata(info.metadata)
            n_vocab, n_embd = info.n_vocab or None, _embedding_size(info.metadata)
            arch = info.metadata.get("general.architecture") or ""
            reranker = str(info.metadata.get(f"{arch}.pooling_type") or "").strip() == str(RANK_POOLING)
            try:  # as the engine resolves it at a load, with the vocabulary's BOS/EOS text (/props tells them)
                template = resolve_template(info.metadata, override, fallback=fallback,
                                            bos_token=info.special_texts.get("bos", ""),
                                            eos_token=info.special_texts.get("eos", ""))
            except TemplateError:
                template = None  # a model.json template that cannot be used: the load names the setting
    if mmproj is not None:
        projector, vision, audio = True, None, None
        try:
            keys = gguf_scalars(mmproj[0], frozenset(_ENCODER_KEYS.values()))
        except (OSError, ValueError):
            pass  # not known: the load reports a damaged projector
        else:  # as libmtmd reads them: a key the header lacks is an encoder it does not have
            vision, audio = (bool(keys.get(_ENCODER_KEYS[kind], False)) for kind in ("vision", "audio"))
    elif named_projector:
        projector, vision, audio = None, None, None  # named but not found: the load says what is wrong with it
    else:
        projector, vision, audio = False, False, False
    if template is not None:
        _read_formats(template)
    return Abilities(template=template, fim=fim, projector=projector, vision=vision, audio=audio, embedding=embedding,
                     n_vocab=n_vocab, n_embd=n_embd, reranker=reranker)


def _read_formats(template: ChatTemplate) -> None:
    """Detect the chat formats a refusal before a load and the listed capabilities read (:func:`_thinks`, with and
    without tools, of the model's template and of the Ollama default standing in for a missing one), here off the
    event loop: a first detection may render the template (learned markers), and those callers run on the loop.
    Each is kept on its template (:func:`~jan.templates.formats.plan.format_for_template`)."""
    for candidate in (template, _ollama_default(template.fallback) if template.fallback else None):
        if candidate is not None:
            for with_tools in (False, True):
                format_for_template(candidate, with_tools)


def _embedding_size(metadata: Mapping[str, str]) -> int | None:
    """The size of the model's vectors, as a load tells it (``n_embd``; a vocab-only read has no sizes: the
    header's ``<arch>.embedding_length``). None where the header has an output size of its own
    (``embedding_length_out``): which one the vectors have is then the loaded model's to say."""
    arch = metadata.get("general.architecture") or ""
    if metadata.get(f"{arch}.embedding_length_out"):
        return None
    try:
        return int(metadata.get(f"{arch}.embedding_length") or 0) or None
    except ValueError:
        return None


# -- what a request asks ---------------------------------------------------------------------------------------
def _insists_on_thinking(request: ChatRequest) -> bool:
    r = request.reasoning
    return r is not None and r.required and bool(r.enabled)


def _insists_on_tools(request: ChatRequest) -> bool:
    return bool(request.tools) and request.tools_need_template


def _has_media(request: ChatRequest) -> bool:
    return any(isinstance(p, (ImagePart, AudioPart)) for m in request.messages for p in m.content)


def asks_abilities(request: ChatRequest | CompletionRequest | EmbeddingRequest) -> bool:
    """Whether ``request`` asks anything of its model that :func:`refusal` judges (most ask nothing: no header is
    read for them)."""
    if isinstance(request, ChatRequest):
        return (_insists_on_thinking(request) or _insists_on_tools(request) or _has_media(request)
                or bool(request.context) or bool(request.sampling.logit_bias))
    if isinstance(request, EmbeddingRequest) and request.dimensions is not None and not request.dimensions_capped:
        return True  # (a capped one is never refused for its size)
    if isinstance(request, CompletionRequest) and request.sampling.logit_bias:
        return True
    prompts = request.prompts if isinstance(request, CompletionRequest) else request.inputs
    return any(not isinstance(p, str) for p in prompts)


# -- the refusals (the same words before and after a load) -----------------------------------------------------
def request_template(template: ChatTemplate, request: ChatRequest) -> ChatTemplate:
    """The chat template ``request`` is prompted in, for a model whose own is ``template``: that one, except that a
    model with none (ChatML stands in: ``template.fallback``) gets Ollama's default template when the request asks
    (``ChatRequest.fallback_template``: Ollama's API). A template the model.json names is the user's choice and
    stays on every front end."""
    if request.fallback_template == "ollama" and template.fallback:
        return _ollama_default(template.fallback)
    return template


@functools.lru_cache(maxsize=8)
def _ollama_default(why: str) -> ChatTemplate:
    # compiled once per reason, not per request; it still says why it stands in (no tools were trained for it)
    template = ChatTemplate.ollama_default()
    template.fallback = why
    return template


def template_refusal(template: ChatTemplate, request: ChatRequest, model_id: str) -> RequestError | None:
    """Ollama's 400s for what ``request`` insists on that a model prompted in ``template`` (as
    :func:`request_template` chose it) cannot do: thinking its chat format has no place for (``think``; gpt-oss
    thinks on Harmony's analysis channel, with no marker pair: the format's ``thinks`` says it), tools its template
    does not render or that a stand-in template (ChatML for a model without its own) was never trained on
    (``tools``). None when it can."""
    if _insists_on_thinking(request) and not _thinks(template, bool(request.tools)):
        return thinking_refusal(model_id)
    if _insists_on_tools(request) and not _takes_tools(template):
        return RequestError(f'"{model_id}" does not support tools', param="tools", code="not_supported")
    return None


def thinking_refusal(model_id: str) -> RequestError:
    """Ollama's 400 for ``think`` asked of a model that cannot think."""
    return RequestError(f'"{model_id}" does not support thinking', param="think", code="not_supported")


def _thinks(template: ChatTemplate, with_tools: bool) -> bool:
    return format_for_template(template, with_tools).thinks


def _takes_tools(template: ChatTemplate) -> bool:
    # (a stand-in template, ChatML for a model without its own, is no tool support the model was trained on;
    # renders_tools, not supports_tools: firefunction-v2 reads them from `functions`, Hermes 2 Pro from its
    # tool_use variant, and a request's tools reach their prompts as they do through `tools`)
    return template.renders_tools and not template.fallback


def listed_ability(abilities: Abilities, kind: str) -> bool | None:
    """Whether a model lists ``kind`` (``"thinking"``, ``"tools"``) among its capabilities: whether an Ollama
    request insisting on it would pass :func:`template_refusal` (in the template Ollama's API prompts it in), so
    that a client reading the list is never refused what it offers. None when its template is not known."""
    if abilities.template is None:
        return None
    template = abilities.template
    if template.fallback:  # Ollama's API prompts a model without a template of its own in Ollama's default
        template = _ollama_default(template.fallback)
    return _thinks(template, False) if kind == "thinking" else _takes_tools(template)


def no_projector_text(kinds: "list[str] | tuple[str, ...]", model_id: str = "") -> str:
    """What a chat's image or audio parts (``kinds``: ``image``, ``audio``) for a model without a projector are
    refused with, naming the model (``model_id``; "this model" without one) and what it lacks: said alike before a
    load (:func:`chat_refusal`) and after one (:func:`jan.services.local.template_messages`), in every dialect."""
    model = f"model '{model_id}'" if model_id else "this model"
    return (f"content parts of type {', '.join(kinds)} are not supported by {model} (it has no projector, mmproj: "
            "load it with one to send images or audio)")


def _media_refusal(abilities: Abilities, request: ChatRequest, model_id: str) -> MediaError | None:
    """The refusal of the first image or audio part the model has no projector (or no encoder) for, said of that
    message (no projector at all, as the prompt's rendering says it) or part (no encoder of its kind, as the
    engine says it); None when the files do not settle it. A tool's image that jan ran the tool for is no refusal:
    nobody asked for it, and the chat service shows such a model its note (:mod:`jan.services.tool_images`)."""
    from jan.services.tool_images import ToolImagePart

    for i, message in enumerate(request.messages):
        media = [(j, p) for j, p in enumerate(message.content)
                 if isinstance(p, (ImagePart, AudioPart)) and not isinstance(p, ToolImagePart)]
        if media and abilities.projector is False:
            kinds = sorted({p.type for _, p in media})
            return MediaError(f"messages[{i}]: {no_projector_text(kinds, model_id)}", reason="no_projector",
                              param="messages", message_index=i)
        for j, part in media:
            kind = "audio" if isinstance(part, AudioPart) else "vision"
            if getattr(abilities, kind) is False:
                where = f"messages[{i}].content[{j}]"
                what = "audio" if kind == "audio" else "images"
                return MediaError(f"{where}: model '{model_id}' does not accept {what} (no {kind} projector loaded)",
                                  reason="no_projector", param=where, message_index=i, part_index=j)
    return None


def _prompt_media_refusal(abilities: Abilities, prompt: MediaText, index: int, model_id: str) -> MediaError | None:
    """A completion prompt's images or audio that the model has no projector (or no encoder) for, in the words
    the engine says it with after a load (:func:`jan.services.local.completion_media_prompt`): ``message_index``
    the prompt, ``part_index`` the item where one is at fault."""
    if not prompt.media:
        return None
    if abilities.projector is False:
        return MediaError(f"model '{model_id}' does not support multimodal requests (it has no projector, mmproj)",
                          reason="no_projector", message_index=index)
    for j, part in enumerate(prompt.media):
        kind = "audio" if isinstance(part, AudioPart) else "vision"
        if getattr(abilities, kind) is False:
            what = "audio" if kind == "audio" else "images"
            return MediaError(f"model '{model_id}' does not accept {what} (no {kind} projector loaded)",
                              reason="no_projector", message_index=index, part_index=j)
    return None


def chat_refusal(abilities: Abilities, request: ChatRequest, model_id: str) -> JanError | None:
    """What ``request`` is refused with, before a load, for asking ``model_id`` (which can do ``abilities``)
    what it cannot do: :func:`template_refusal` (a :class:`RequestError`), a :class:`MediaError`
    (``no_projector``) naming the message or part, a ``context`` id outside its vocabulary
    (:func:`context_refusal`); None when it can, or when only a load can tell."""
    if abilities.template is not None:
        problem = template_refusal(request_template(abilities.template, request), request, model_id)
        if problem is not None:
            return problem
    return _media_refusal(abilities, request, model_id) or context_refusal(abilities, request.context,
                                                                           media_count(request))


#: Items of a request (``logit_bias`` entries, messages, token ids) past which :func:`refusal`'s walk of it runs on a
#: worker thread (:func:`refusal_walks_long`): a ``logit_bias`` of 400,000 entries, each read as the engine reads it,
#: was 2.5 s of the event loop, every other request waiting. A few thousand take a few milliseconds, less than the
#: hop would cost a short request.
REFUSAL_ON_LOOP_ITEMS = 4_096


def refusal_walks_long(request: ChatRequest | CompletionRequest | EmbeddingRequest) -> bool:
    """Whether :func:`refusal` of ``request`` walks more than :data:`REFUSAL_ON_LOOP_ITEMS` items (a count, made
    without walking them)."""
    size = 0 if isinstance(request, EmbeddingRequest) else len(request.sampling.logit_bias or ())
    if isinstance(request, ChatRequest):
        size += len(request.messages) + len(request.context or ())
    else:
        prompts = request.prompts if isinstance(request, CompletionRequest) else request.inputs
        size += len(prompts)
        for prompt in prompts:
            if size > REFUSAL_ON_LOOP_ITEMS:
                break
            if not isinstance(prompt, (str, MediaText)):
                size += len(prompt)
    return size > REFUSAL_ON_LOOP_ITEMS


def refusal(abilities: Abilities, request: ChatRequest | CompletionRequest | EmbeddingRequest,
            model_id: str) -> JanError | None:
    """:func:`chat_refusal` for a chat; for a completion or embeddings, a prompt or input of token ids outside the
    vocabulary (as the engine's check words it, said of the prompt or input), and embeddings' ``dimensions`` above
    the model's (:func:`dimensions_refusal`)."""
    if not isinstance(request, EmbeddingRequest):
        problem = _bias_refusal(abilities, request.sampling.logit_bias)
        if problem is not None:
            return problem
    if not isinstance(request, EmbeddingRequest) and abilities.n_vocab is not None:
        for token in request.grammar_trigger_tokens:  # (a lazy grammar's token triggers: their text is searched)
            if not 0 <= token < abilities.n_vocab:
                return RequestError(f"grammar_triggers: token id {token} is outside the model's vocabulary "
                                    f"(0..{abilities.n_vocab - 1})", param="grammar_triggers", code="invalid_value")
    if isinstance(request, ChatRequest):
        return chat_refusal(abilities, request, model_id)
    if isinstance(request, EmbeddingRequest):
        if abilities.reranker:
            return reranker_refusal(model_id, True)
        if abilities.n_embd is not None:
            problem = dimensions_refusal(request, abilities.n_embd)
            if problem is not None:
                return problem
        prompts = request.inputs
    else:
        prompts = request.prompts
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, MediaText):
            problem = _prompt_media_refusal(abilities, prompt, i, model_id)
            if problem is not None:
                return problem
        elif not isinstance(prompt, str):
            problem = token_ids_refusal(abilities, prompt, request.prompt_name(i))
            if problem is not None:
                return problem
    return None


def _bias_refusal(abilities: Abilities, bias: Any) -> RequestError | None:
    """A ``logit_bias`` naming a token outside the vocabulary, in the engine's words for it (a bias it cannot even
    read is the engine's own error, said as it reads it)."""
    if not bias or abilities.n_vocab is None:
        return None
    try:
        ids = logit_bias_ids(bias)
    except ValueError:
        return None
    for token in ids:
        if token >= abilities.n_vocab:
            return RequestError(f"logit_bias: token id {token} is outside the vocabulary", param="logit_bias",
                                code="invalid_value")
    return None


def media_count(request: ChatRequest) -> int:
    """How many images and audio clips the request's messages send: the items a ``context``'s places may name."""
    return sum(isinstance(p, (ImagePart, AudioPart)) for m in request.messages for p in m.content)


def context_refusal(abilities: Abilities, context: Sequence[int], n_media: int = 0) -> RequestError | None:
    """A ``context`` (Ollama's: an earlier exchange's token ids) holding the place of an image or clip its request
    does not send (:func:`context_media_refusal`; ``n_media``: how many its messages send) or an id outside the
    vocabulary, in the words of :func:`jan.services.local.check_context` (which says it after a load where the header
    could not)."""
    # (the places left are bound to the request's items: no token ids, not looked up in the vocabulary)
    return context_media_refusal(context, n_media) or token_ids_refusal(
        abilities, [token if token >= 0 else "" for token in context], "context")


def context_media_refusal(context: Sequence[int], n_media: int = 0) -> RequestError | None:
    """A ``context`` holding the place of an image or audio clip of the exchange it continues (a reply's ids tell
    one there, :attr:`~jan.services.types.ChatDelta.prompt_token_ids`: :func:`~jan.services.types.media_place`) whose
    item its request does not send again (``n_media``: the items its messages send; the place names one by its
    index, as Ollama's ``[img-n]`` tag). No token id holds the item, so the context cannot carry it; continued
    without it, the model answered about a picture it no longer had. Refused, saying how to go on with it."""
    for i, token in enumerate(context):
        item = place_item(token)
        if item is not None and item >= n_media:
            sent = f"it sends {n_media}" if n_media else "it sends none"
            return RequestError(f"context[{i}]: stands for image {item + 1} of the exchange this context continues "
                                f"(an image or audio clip, which token ids cannot carry), and {sent}; send the "
                                "exchange's images again with it (images, in the same order), or continue that "
                                "conversation through the chat API (/api/chat) with the image in its messages",
                                param=f"context[{i}]", code="invalid_value")
    return None


def token_ids_refusal(abilities: Abilities, ids: Sequence[int | str], name: str) -> RequestError | None:
    """The first token id of ``ids`` (the body's field ``name``; a text piece among them is no id) outside the
    vocabulary, named and ``param``-ed as the element that holds it, ``name[i]``: a client told ``input`` or
    ``input[2]`` of an ``[[1, 2, 99999]]`` could not find it."""
    n_vocab = abilities.n_vocab
    if n_vocab is None:
        return None
    for i, token in enumerate(ids):
        if isinstance(token, int) and not 0 <= token < n_vocab:
            where = f"{name}[{i}]"
            return RequestError(f"{where}: token id {token} is outside the model's vocabulary (0..{n_vocab - 1})",
                                param=where, code="invalid_value")
    return None


def dimensions_refusal(request: EmbeddingRequest, n_embd: int) -> RequestError | None:
    """Embeddings asked in more ``dimensions`` than the model's ``n_embd`` (a cut keeps at most all of them), the same
    words before a load (from the header) and after it; none where the request takes the whole vector for them
    (``dimensions_capped``: Ollama's)."""
    if request.dimensions is None or request.dimensions <= n_embd or request.dimensions_capped:
        return None
    return RequestError(f"dimensions: this model returns {n_embd}-dimensional embeddings; dimensions may be 1 to "
                        f"{n_embd} (the first N components, normalized again), got {request.dimensions}",
                        param="dimensions", code="invalid_value")


def reranker_refusal(model_id: str, reranker: bool) -> RequestError:
    """Embeddings from a reranker (``reranker``), or a rerank by a model that is no reranker, in the engine's words
    (:meth:`jan.Model.embed`, :meth:`jan.Model.rerank`), judged from the header's pooling before a load."""
    return RequestError((IS_A_RERANKER if reranker else NOT_A_RERANKER).format(model=model_id), param="model",
                        code="model_not_supported")


def fill_in_refusal(model_id: str) -> RequestError:
    """The refusal of a ``suffix`` (fill-in-the-middle) for a model without FIM tokens (:attr:`Abilities.fim`
    before a load; the loaded vocabulary's after one): the engine's (:func:`jan.engine.fill_in.fill_in_refusal`, the
    library's) as the services' error."""
    refusal = engine_fill_in_refusal(model_id)
    return RequestError(str(refusal), param=refusal.param, code=refusal.code)


def generations(request: ChatRequest | CompletionRequest | EmbeddingRequest) -> tuple[int, str]:
    """How many generations ``request`` needs at once, and the field that asks them (``n``; a completion's
    ``prompt`` when it has several)."""
    if isinstance(request, ChatRequest):
        return request.n, "n"
    if isinstance(request, CompletionRequest):
        return len(request.prompts) * request.n, "prompt" if len(request.prompts) > 1 else "n"
    return 0, "input"  # (an embedding is no generation)


def fan_out_refusal(count: int, n_parallel: int, max_queue: int, param: str) -> RequestError | None:
    """A request needing more generations at once than a model with ``n_parallel`` slots and ``max_queue`` queued
    requests can ever hold, even on an idle server: the request's fault (400), not a 503. Judged from the load
    options before a load (:meth:`jan.services.models.ModelService.require_able`), and by the loaded model's own
    after it."""
    if count <= n_parallel + max_queue:
        return None
    return RequestError(f"{param}: this request needs {count} generations at once, more than the model can ever hold "
                        f"({n_parallel} slots + {max_queue} queued)", param=param, code="too_many_generations")


#: llama-server's words for an OpenAI embeddings request to a model with pooling none (jan adds which model).
POOLING_NONE_REFUSED = "Pooling type 'none' is not OAI compatible. Please use a different pooling type"


def pooling_none_refusal(model_id: str) -> RequestError:
    """Embeddings (one vector per input) from a model loaded with pooling ``none`` (a vector per token): judged from
    its load options before a load, and by the loaded model's after it."""
    return RequestError(POOLING_NONE_REFUSED + f" (model '{model_id}' is loaded with pooling 'none', a vector per "
                        "token; these embeddings are one vector per input)", param="model", code="invalid_value")
