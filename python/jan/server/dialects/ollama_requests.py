"""Ollama request bodies -> the typed requests of :mod:`jan.services`.

Only translation lives here: names, units and shapes. Defaults, prompt building
and sampling precedence belong to the services.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from jan.errors import MediaError
from jan.image_types import base64_media, sniff_image
from jan.near_names import without_ollama_defaults
from jan.server.dialects import ollama_schemas as wire
from jan.templates import JSON_OBJECT_GRAMMAR, json_schema_to_grammar
from jan.services.types import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImagePart,
    Part,
    ReasoningOptions,
    ResponseFormat,
    SamplingOptions,
    TextPart,
    ToolCall,
    ToolSpec,
    Truncation,
    ends_in_prefill,
)

__all__ = ["OllamaRequestError", "chat_request", "check_completion", "completion_request", "embedding_request",
           "format_grammar", "generate_chat_request", "insists_on_thinking", "media_error", "model_id",
           "model_parameters", "model_settings", "sampling", "truncation"]


class OllamaRequestError(ValueError):
    """The body is well-formed JSON but asks for something this server cannot do (a 400)."""


def model_id(name: str) -> str:
    """The jan model id an Ollama model name means (:func:`jan.near_names.without_ollama_defaults`:
    ``library/llama3:latest`` is ``llama3``). Any other tag, namespace or host is kept: no jan model has that name
    (a lookup says not found, a new model's name is refused)."""
    return without_ollama_defaults(name)


def sampling(options: wire.OllamaOptions | None) -> SamplingOptions:
    """Ollama ``options`` as a sampling layer. ``num_predict`` -1 (no limit) and -2 (fill the context), ``seed`` -1
    (a random one) and an empty ``stop`` list say so over the model's own parameters (``cleared``), as Ollama lays a
    request's options over its Modelfile's; ``num_predict`` 0 (Go's zero value) is not given. Another negative seed
    is a seed, folded into 32 bits as every dialect's is (:func:`jan.engine.params.engine_seed`)."""
    if options is None:
        return SamplingOptions()
    o = options
    cleared = [name for name, off in (("max_tokens", o.num_predict is not None and o.num_predict < 0),
                                      ("seed", o.seed == -1), ("stop", o.stop == [])) if off]
    shared = {name: getattr(o, name) for name in wire.SHARED_SAMPLING}
    # Ollama's "off" values as jan's (wire.OLLAMA_BOUNDS): top_k <= 0 (llama.cpp's own reading) is 0, typical_p 0
    # is 1; said explicitly, so that they turn off a model.json default too
    if o.top_k is not None and o.top_k < 0:
        shared["top_k"] = 0
    if o.typical_p == 0:
        shared["typical_p"] = 1.0
    # draft_num_predict is a load-time option in Ollama, but jan's draft_max is a request's own: applied, where it
    # was ignored as the other load-time ones are (0 drafted on)
    if o.draft_num_predict is not None:
        shared["draft_max"] = o.draft_num_predict
    return SamplingOptions(
        max_tokens=o.num_predict if o.num_predict is not None and o.num_predict > 0 else None,
        seed=o.seed if o.seed != -1 else None,
        stop=tuple(o.stop) if o.stop else None,
        cleared=tuple(cleared),
        **shared,
    )


def model_parameters(options: wire.OllamaOptions | None) -> dict[str, Any]:
    """``/api/create``'s ``parameters`` as a model.json's: the sampling layer's (:func:`sampling`), and
    ``num_keep`` by its own name (the chat service reads it for a context's cut, under a request's own)."""
    if options is None:
        return {}
    parameters = sampling(options).given()
    parameters.pop("draft_max", None)  # (draft_num_predict is the model's settings.draft_max: model_settings)
    if options.num_keep is not None:
        parameters["num_keep"] = options.num_keep
    return parameters


def model_settings(parameters: wire.OllamaCreateParameters | None) -> dict[str, Any]:
    """``/api/create``'s load-time ``parameters`` (``num_ctx``, ``num_gpu``, ...) as the new model.json's
    ``settings`` (:data:`~jan.server.dialects.ollama_schemas.LOAD_PARAMETERS`); the values that leave the choice to
    the server (``num_gpu`` -1, ``num_thread`` 0) are left out, so jan's own choice stands."""
    if parameters is None:
        return {}
    settings: dict[str, Any] = {}
    for name, key in wire.LOAD_PARAMETERS.items():
        value = getattr(parameters, name)
        if value is None or (name == "num_gpu" and value == -1) or (name == "num_thread" and value == 0):
            continue
        settings[key] = value
    return settings


def response_format(fmt: wire.Format) -> ResponseFormat | None:
    """``"json"`` -> any JSON object; a JSON schema object -> output matching it; ``""``/absent -> free text."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return ResponseFormat(type="json_object")
    return ResponseFormat(type="json_schema", schema=fmt)


def format_grammar(fmt: wire.Format) -> str | None:
    """The grammar for ``format`` on a raw prompt, which no chat template wraps (blocking: compiles
    the schema)."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return JSON_OBJECT_GRAMMAR
    try:
        return json_schema_to_grammar(fmt, param="format")
    except ValueError as exc:
        raise OllamaRequestError(str(exc)) from None


def reasoning(think: wire.Think) -> ReasoningOptions | None:
    """``think``: ``true``/``false`` turns thinking on/off; a level (:data:`~jan.templates.formats.plan.THINK_LEVELS`)
    also sets the effort, kept as asked: the one table (``EFFORT_LEVELS``) says what a template makes of it (``max``
    is the highest, ``high``) and a remote upstream gets it as is."""
    if think is None:
        return None
    # Ollama refuses thinking asked of a model that cannot think (400 "... does not support thinking")
    if isinstance(think, bool):
        return ReasoningOptions(enabled=think, required=think)
    return ReasoningOptions(enabled=True, effort=think, required=True)


def insists_on_thinking(think: wire.Think) -> bool:
    """Whether ``think`` asks for thinking (``true`` or a level), which a model that cannot think refuses."""
    options = reasoning(think)
    return options is not None and options.required and bool(options.enabled)


def image_part(data: str, where: str) -> ImagePart:
    """A base64 image (Ollama sends bare base64; some clients send a base64 data: URL anyway) as typed bytes with
    its MIME type."""
    try:
        # line breaks skipped, as Ollama's Go decoder does; a data: URL read as llama-server's multimodal_data
        # reads one (jan.image_types, the one decoding of both)
        raw, _ = base64_media(data)
    except ValueError as exc:
        why = "invalid base64 image data" if str(exc) == "not valid base64" else str(exc)
        raise OllamaRequestError(f"{where}: {why}") from None
    if not raw:  # ("" or a data: URL with nothing after the comma: said as empty, as the other dialects say it)
        raise OllamaRequestError(f"{where}: no data (the image is empty)")
    mime = sniff_image(raw)  # the formats every front end takes (jan.image_types)
    if mime is None:
        raise OllamaRequestError(f"{where}: unsupported image format (expected PNG, JPEG, WebP or GIF)")
    return ImagePart(raw, mime)


def _content(text: str | None, images: list[str] | None, where: str) -> tuple[Part, ...]:
    """A message's parts: its images (``where``: their field, e.g. ``messages[0].images``), then its text."""
    parts: list[Part] = [image_part(img, f"{where}[{i}]") for i, img in enumerate(images or ())]
    if text:
        parts.append(TextPart(text))
    return tuple(parts)


def _messages(messages: list[wire.OllamaMessage]) -> tuple[ChatMessage, ...]:
    """Ollama messages; a tool result names its tool (``tool_name``) rather than a call id, so it is
    matched to the earliest unanswered call of that tool (templates that need ids get them)."""
    out: list[ChatMessage] = []
    unanswered = _OpenCalls(())
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role == "assistant":
            calls = tuple(
                ToolCall(id=c.id or f"call_{i}_{k}", name=c.function.name,
                         arguments=json.dumps(c.function.arguments, ensure_ascii=False))
                for k, c in enumerate(m.tool_calls or ()))
            unanswered = _OpenCalls(calls)
            out.append(ChatMessage("assistant", _content(m.content, m.images, f"{where}.images"), tool_calls=calls,
                                   reasoning=m.thinking or None))
        elif m.role == "tool":
            call_id = m.tool_call_id
            match = unanswered.answer(call_id, m.tool_name)
            if match is not None:
                call_id = call_id or match.id
            # a tool's images (a screenshot tool's) go to the model as any message's do: Ollama renders every
            # message's images, whatever its role
            out.append(ChatMessage("tool", _content(m.content, m.images, f"{where}.images"), tool_call_id=call_id,
                                   name=m.tool_name or (match.name if match else None)))
        else:
            out.append(ChatMessage(m.role, _content(m.content, m.images, f"{where}.images")))
    return tuple(out)


class _OpenCalls:
    """The calls of the last assistant message not answered yet, found by id or tool name without a search through
    them: a list searched for each result took n^2/2 steps for n calls and their results (10,000 of each, a 1 MB
    body, held a worker for seconds)."""

    def __init__(self, calls: tuple[ToolCall, ...]):
        self._open = dict(enumerate(calls))  # (in order: the earliest first)
        self._by_id: dict[str, deque[int]] = {}
        self._by_name: dict[str, deque[int]] = {}
        for k, call in self._open.items():
            self._by_id.setdefault(call.id, deque()).append(k)
            self._by_name.setdefault(call.name, deque()).append(k)

    def _first(self, index: dict[str, deque[int]], key: str | None) -> int | None:
        positions = index.get(key) if key is not None else None
        while positions and positions[0] not in self._open:
            positions.popleft()  # (answered already)
        return positions[0] if positions else None

    def answer(self, call_id: str | None, tool_name: str | None) -> ToolCall | None:
        """The earliest open call a result answers, now answered: the one with its ``call_id``; without one, the
        one of its ``tool_name``; with neither, the earliest; None when there is no such call."""
        if call_id:
            k = self._first(self._by_id, call_id)
        else:
            k = self._first(self._by_name, tool_name)
            if k is None and not tool_name:
                k = next(iter(self._open), None)
        return self._open.pop(k) if k is not None else None


def chat_request(body: wire.OllamaChatRequest, model: str) -> ChatRequest:
    """``/api/chat`` as a typed chat request for ``model`` (a jan model id)."""
    tools = tuple(ToolSpec(name=t.function.name, description=t.function.description,
                           parameters=t.function.parameters) for t in body.tools or ())
    messages = _messages(body.messages)
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        response_format=response_format(body.format),
        sampling=sampling(body.options),
        logprobs=body.logprobs,
        top_logprobs=body.top_logprobs if body.logprobs else 0,
        reasoning=reasoning(body.think),
        # a final assistant message is continued, as Ollama's templates leave the last assistant turn open
        continue_final_message=ends_in_prefill(messages),
        truncation=truncation(body.truncate),
        tools_need_template=True,  # Ollama refuses tools for a model whose template has none
        fallback_template="ollama",  # and writes a model without one the turns' text as it is ({{ .Prompt }})
    )


def truncation(truncate: bool | None) -> Truncation:
    """Ollama truncates a chat history longer than the context unless told ``truncate: false``."""
    return "disabled" if truncate is False else "auto"


def generate_chat_request(body: wire.OllamaGenerateRequest, model: str) -> ChatRequest:
    """``/api/generate`` without ``raw``: the prompt is one user turn (after ``system``) in the model's template,
    after ``context`` (an earlier reply's token ids) when given."""
    _refuse_template(body)
    messages: list[ChatMessage] = []
    if body.system:
        messages.append(ChatMessage.of_text("system", body.system))
    messages.append(ChatMessage("user", _content(body.prompt, body.images, "images")))  # (a top-level field)
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        response_format=response_format(body.format),
        sampling=sampling(body.options),
        logprobs=body.logprobs,
        top_logprobs=body.top_logprobs if body.logprobs else 0,
        reasoning=reasoning(body.think),
        truncation=truncation(body.truncate),
        # (each image's place in it, -1 - n, is bound by the service to images[n]: Ollama's [img-n] binding)
        context=tuple(body.context or ()),
        context_keep=body.options.num_keep if body.options else None,
        fallback_template="ollama",  # a model without a template: its prompt as it is, as Ollama's {{ .Prompt }}
        token_ids=True,  # the reply's context
    )


def media_error(exc: MediaError, body: wire.OllamaChatRequest | wire.OllamaGenerateRequest) -> OllamaRequestError | None:
    """A typed chat request's refusal of its media, said of the field of ``body`` that sent it -- not the typed
    messages' content parts, which no Ollama body has. Each typed message is its images, then its text: on
    ``/api/chat`` message ``i`` is ``messages[i]`` (one for one), its part ``j`` ``messages[i].images[j]`` or its
    ``messages[i].content``; on ``/api/generate`` the prompt's one user turn (after ``system``) is ``images[j]`` or
    ``prompt``. A model without a projector is said of the message's ``images``. ``None`` for an error that names
    no message (the exception says it as it is)."""
    index, part = exc.message_index, exc.part_index
    if index is None:
        return None
    if isinstance(body, wire.OllamaChatRequest):
        if index >= len(body.messages):
            return None
        images, prefix, text = body.messages[index].images or [], f"messages[{index}].", f"messages[{index}].content"
    elif body.system and index == 0:
        images, prefix, text = [], "", "system"
    else:
        images, prefix, text = body.images or [], "", "prompt"
    if exc.reason == "no_projector":
        return OllamaRequestError(f"{prefix}images: model '{body.model}' cannot take images (it has no projector, "
                                  "mmproj: load it with one to send images)")
    if part is None:
        field = text if not images else f"{prefix}images"
    else:
        field = f"{prefix}images[{part}]" if part < len(images) else text
    _, sep, why = str(exc).partition(": ")
    return OllamaRequestError(f"{field}: {why if sep else exc}")


def completion_request(body: wire.OllamaGenerateRequest, model: str, grammar: str | None = None) -> CompletionRequest:
    """``/api/generate`` with ``raw`` (the prompt goes to the model as is), or with a ``suffix`` (fill in the
    middle, continuing ``context``: the service frames them with the model's FIM tokens). With both, the prompt goes
    as is and the suffix is not sent, as Ollama does: raw is no formatting, the FIM frame included (Ollama still
    asks the model to be able to insert, which the route checks)."""
    check_completion(body)
    suffix = None if body.raw else body.suffix or None
    return CompletionRequest(model=model, prompts=(body.prompt,), listed=False, sampling=sampling(body.options),
                             logprobs=body.top_logprobs if body.logprobs else None, grammar=grammar,
                             token_ids=not body.raw,  # (a raw reply has no context)
                             suffix=suffix, infill_context=tuple(body.context or ()) if suffix else ())


def check_completion(body: wire.OllamaGenerateRequest) -> None:
    """The refusals of an ``/api/generate`` body that :func:`completion_request` makes (``raw``, or a ``suffix``),
    said before its model loads: nothing of them depends on it."""
    # Ollama's own 400: no template wraps a raw prompt, so a template or system prompt would be lost, and a raw reply
    # has no context to give back either (an empty list is no context, as Ollama counts it)
    if body.raw and body.template:
        raise OllamaRequestError("raw mode does not support template, system, or context (a raw prompt goes to the "
                                 "model as is: write the template's text into it)")
    _refuse_template(body)
    if body.images:  # said of the field that made the prompt one no template wraps
        how = "with raw: true (a raw prompt" if body.raw else "with a suffix (a fill-in-the-middle prompt"
        raise OllamaRequestError(f"images cannot be sent {how} has no place for them)")
    if body.raw and body.system:
        raise OllamaRequestError("raw mode does not support template, system, or context (a raw prompt goes to the "
                                 "model as is: write the system prompt into it)")
    if body.raw and body.context:
        raise OllamaRequestError("raw mode does not support template, system, or context (a raw prompt goes to the "
                                 "model as is: send the conversation's text in it, or drop raw)")


def _refuse_template(body: wire.OllamaGenerateRequest) -> None:
    if body.template:
        raise OllamaRequestError("template: Ollama's Go templates are not supported; jan uses the model's own "
                                 "chat template (send raw: true with a prompt you formatted yourself)")


def embedding_request(model: str, inputs: list[str], truncate: bool | None = None, *,
                      normalize: bool = True, dimensions: int | None = None, listed: bool = True,
                      field: str = "input") -> EmbeddingRequest:
    """Ollama truncates over-long inputs unless told ``truncate: false``. ``normalize``: ``/api/embed`` answers unit
    vectors, the legacy ``/api/embeddings`` the model's pooled vectors as they are (Ollama's server/routes.go:
    EmbedHandler normalizes, EmbeddingsHandler does not). ``dimensions`` (``/api/embed``'s; 0 already read as not
    given) is the service's cut, capped: Ollama cuts only below the model's size, and answers the whole vector for
    more. ``listed``: whether the body's ``input`` was a list (errors name ``input[i]``), not one text; ``field``: the
    body's field that holds the inputs (the legacy route's ``prompt``)."""
    return EmbeddingRequest(model=model, inputs=tuple(inputs), truncate=truncate is not False, normalize=normalize,
                            dimensions=dimensions, dimensions_capped=True, listed=listed, field=field)
