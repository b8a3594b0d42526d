"""OpenAI's wire format over the typed path: request bodies to typed requests, typed deltas to chunks.

The one adapter between ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``
and :mod:`jan.services`. Other dialects (Anthropic Messages, Responses, Ollama) are
siblings of this module over the same types.
"""

from __future__ import annotations

import base64
import codecs
import math
import time
import uuid
from collections.abc import Iterable
from typing import Any

import jan
from jan.engine.media import AUDIO_FORMATS
from jan.errors import ContextOverflowError, DocumentError, MediaError
from jan.image_types import base64_media, data_url_media
from jan.server import schemas
from jan.server.dialects.llamacpp_extras import client_grammar
from jan.server.document_inputs import data_url_bytes
from jan.server.errors import APIError
from jan.services.errors import RequestError
from jan.services.tool_pairs import ToolPairError, check_tool_pairs
from jan.services.token_counts import token_counts
from jan.services.types import (
    AudioPart,
    allowed_tools,
    ChatDelta,
    ChatMessage,
    ChatRequest,
    ChatResult,
    CompletionDelta,
    CompletionRequest,
    LineRules,
    DocumentPart,
    EmbeddingRequest,
    EmbeddingResult,
    ImagePart,
    MediaText,
    NamedToolChoice,
    Part,
    ReasoningOptions,
    RerankRequest,
    RerankResult,
    ResponseFormat,
    SamplingOptions,
    TextPart,
    TokenLogprob,
    ToolCall,
    ToolSpec,
    Usage,
    ends_in_prefill,
    thought_prefill,
)

__all__ = [
    "ChatChunkEncoder",
    "CompletionChunkEncoder",
    "chat_completion",
    "chat_request",
    "completion_request",
    "embedding_request",
    "embeddings_response",
    "media_error",
    "message_from_openai",
    "pieces_in",
    "response_format_of",
    "tool_pair_error",
    "timings_dict",
    "timings_of",
    "usage_dict",
]


# -- requests ------------------------------------------------------------------------------
def _data_url(url: str, what: str) -> tuple[bytes, str]:
    return data_url_media(url, what)  # (the parsing and decoding every dialect shares: jan.image_types)


def _parts(content: Any, where: str) -> tuple[Part, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (TextPart(content),)
    parts: list[Part] = []
    for i, part in enumerate(content):
        if isinstance(part, schemas.TextPart):
            parts.append(TextPart(part.text))
        elif isinstance(part, schemas.RefusalPart):  # (an assistant's) what the model said: the turn's text
            parts.append(TextPart(part.refusal))
        elif isinstance(part, schemas.ImagePart):
            data, mime = _data_url(str(part.image_url.get("url", "")), f"{where}.content[{i}].image_url.url")
            parts.append(ImagePart(data, mime))
        elif isinstance(part, schemas.InputAudioPart):
            parts.append(_audio(part.input_audio, f"{where}.content[{i}].input_audio"))
        elif isinstance(part, schemas.FilePart):
            parts.append(_document(part, f"{where}.content[{i}].file"))
    return tuple(parts)


def _audio(audio: dict[str, Any], where: str) -> AudioPart:
    """An ``input_audio`` object (at ``where``) as an audio part: ``data`` (base64 of the file) and ``format``. The
    format is one jan decodes (OpenAI's ``wav`` and ``mp3``, as llama-server takes, and ``flac``), or a 400 naming it;
    the decoder goes by the bytes themselves, so a clip in another of those formats still plays."""
    data, fmt = audio.get("data"), audio.get("format")
    if not isinstance(data, str) or not data:
        raise MediaError(f"{where}.data: the audio is missing (give its file as base64)", reason="unsupported_format",
                         param=f"{where}.data")
    if fmt not in AUDIO_FORMATS:
        raise MediaError(f"{where}.format: {fmt!r} is not one of " + ", ".join(map(repr, AUDIO_FORMATS)),
                         reason="unsupported_format", param=f"{where}.format")
    try:
        # bare base64, or a base64 data: URL as llama-server's multimodal_data and Ollama's images take one (the
        # decoding every dialect shares: jan.image_types)
        return AudioPart(base64_media(data)[0], fmt)
    except ValueError as exc:
        raise MediaError(f"{where}.data: {exc}", reason="unsupported_format", param=f"{where}.data") from None


def _document(part: schemas.FilePart, where: str) -> DocumentPart:
    """A ``file`` part (at ``where``) as a document: ``file_data`` (a base64 ``data:`` URL, or bare base64, as
    the SDKs send it), or the upload ``file_id`` names (read by the route first:
    :func:`jan.server.document_inputs.read_body_documents`)."""
    file = part.file
    if file.file_data is not None:
        data, media_type = data_url_bytes(file.file_data, f"{where}.file_data", raw_base64=True)
        return DocumentPart(data, media_type, title=file.filename)
    if part._file is None:  # (a caller that did not read the uploads first)
        raise DocumentError(f"{where}.file_id: the file was not read; send the file as file_data",
                            reason="not_allowed", param=f"{where}.file_id")
    data, media_type, filename = part._file
    return DocumentPart(data, media_type, title=file.filename or filename)


def message_from_openai(message: schemas.Message, where: str = "messages") -> ChatMessage:
    """One OpenAI chat message as a typed :class:`ChatMessage`; an assistant's ``refusal`` is text it said,
    after its content (an OpenAI reply has one or the other)."""
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ())
    parts = _parts(message.content, where)
    if message.refusal:
        parts += (TextPart(message.refusal),)
    return ChatMessage(message.role, parts, tool_calls=calls,
                       tool_call_id=message.tool_call_id, name=message.name,
                       reasoning=message.reasoning_content or None)


def media_error(exc: MediaError, body: schemas.ChatCompletionRequest | None = None) -> MediaError:
    """A refusal of a chat request's media (a model without a projector, an image that does not decode, a media
    marker in the text) naming the field: the typed messages are the body's, one for one, so typed message ``i``
    is ``messages[i].content``, and its part ``j`` (where the error names one) ``messages[i].content[j]`` when that
    content is a list of parts (one for one too; a string is the one text part); a document's, the field that held
    it (``messages[i].content[j].file.file_data`` or ``.file_id``)."""
    if exc.message_index is None:
        return exc
    field = f"messages[{exc.message_index}].content"
    messages = body.messages if body is not None else []
    if exc.part_index is not None and exc.message_index < len(messages) \
            and isinstance(messages[exc.message_index].content, list):
        field += f"[{exc.part_index}]"
        content = messages[exc.message_index].content
        part = content[exc.part_index] if exc.part_index < len(content) else None
        if isinstance(part, schemas.FilePart):  # a document that cannot be read: the field that held it
            field += ".file.file_data" if part.file.file_data is not None else ".file.file_id"
    _, sep, why = str(exc).partition(": ")
    return MediaError(f"{field}: {why if sep else exc}", reason=exc.reason, param=field)


def tool_pair_error(exc: ToolPairError) -> RequestError:
    """Tool calls and results that do not pair up, in OpenAI's words (clients and agent frameworks match them, the
    misspelt "preceeding" included) and fields: the typed messages are the body's, one for one. The ``param`` of
    unanswered calls is the role of the message that came where their results belong (none: the conversation
    ends with them)."""
    if exc.kind == "duplicate":  # (worded as OpenAI words a repeated tool message's id)
        return RequestError(f"Invalid parameter: Duplicate value for 'id' of '{exc.ids[0]}' in "
                            f"messages[{exc.index}].tool_calls.",
                            param=f"messages.[{exc.index}].tool_calls.[{exc.call_index}].id", code=exc.code)
    if exc.kind == "unexpected":
        return RequestError("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                            "message with 'tool_calls'.", param=f"messages.[{exc.index}].role", code=exc.code)
    return RequestError("An assistant message with 'tool_calls' must be followed by tool messages responding to "
                        "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                        + ", ".join(exc.ids),
                        param="messages" if exc.next_index is None else f"messages.[{exc.next_index}].role",
                        code=exc.code)


def reasoning_of(body: schemas.ChatCompletionRequest) -> ReasoningOptions | None:
    """The thinking controls of a request, as llama-server, Ollama and Anthropic spell them, read by the one reader
    of them (:func:`jan.templates.formats.plan.request_reasoning`); None when it gives none (the model's defaults
    then hold). A budget of -1 stays: it asks for no cap, over the model's own."""
    from jan.templates.formats.plan import REASONING_FIELDS, request_reasoning

    given = request_reasoning({name: getattr(body, name) for name in REASONING_FIELDS})
    return ReasoningOptions(**given) if given else None


def response_format_of(fmt: schemas.ResponseFormat | None) -> ResponseFormat | None:
    if fmt is None:
        return None
    if fmt.type == "json_schema" and fmt.json_schema is not None:
        js = fmt.json_schema
        return ResponseFormat("json_schema", schema=js.schema_ or None, name=js.name, strict=js.strict)
    return ResponseFormat(fmt.type, schema=fmt.schema_ or None)


def _format_of(body: schemas.ChatCompletionRequest) -> ResponseFormat | None:
    """The chat's ``response_format``, or llama-server's ``json_schema`` as the JSON object it asks for (a lazy
    one's grammar is the request's ``grammar``: :func:`chat_request`)."""
    if body.json_schema is not None and body.response_format is not None:
        raise RequestError("json_schema: cannot be used with response_format (both constrain the output); give one "
                           "of them", param="json_schema", code="invalid_value")
    if body.json_schema is None or body.grammar_lazy:
        return response_format_of(body.response_format)
    from jan.templates import json_schema_to_grammar

    # checked here, so that a schema it cannot follow is said of json_schema, the field the body sent
    json_schema_to_grammar(body.json_schema or {"type": "object"}, param="json_schema")
    return ResponseFormat("json_object", schema=body.json_schema or None)


def sampling_of(body: Any) -> SamplingOptions:
    """The sampling fields of a request body (OpenAI's plus llama.cpp's extras; ``samplers`` turns off the samplers
    it leaves out, as on llama-server's ``/completion``: a ValueError naming it for a name or order jan cannot
    apply)."""
    fields = body.model_dump(exclude_none=True)
    samplers = fields.pop("samplers", None)
    if samplers is not None:
        from jan.server.dialects.llamacpp import off_samplers

        fields.update(off_samplers(samplers))
    return SamplingOptions.from_mapping(fields)


def chat_request(body: schemas.ChatCompletionRequest, render_only: bool = False) -> ChatRequest:
    """``POST /v1/chat/completions`` as a typed :class:`ChatRequest`; ``render_only``: for a prompt rendered and
    not run (``/apply-template``), which may end without the generation prompt (``add_generation_prompt: false``,
    :attr:`ChatRequest.generation_prompt`)."""
    choice: Any = body.tool_choice
    tools = tuple(ToolSpec(t.function.name, t.function.description, t.function.parameters, t.function.strict)
                  for t in body.tools or ())
    if isinstance(choice, schemas.NamedToolChoice):
        choice = NamedToolChoice(choice.function.name)
    elif isinstance(choice, schemas.AllowedToolsChoice):
        allowed = choice.allowed_tools
        tools = allowed_tools(tools, [t.function.name for t in allowed.tools],
                              param="tool_choice.allowed_tools.tools[{i}].function.name",
                              schema_field=lambda i: f"tools[{i}].function.parameters")
        choice = allowed.mode
    messages = tuple(message_from_openai(m, f"messages[{i}]") for i, m in enumerate(body.messages))
    try:
        check_tool_pairs(messages)
    except ToolPairError as exc:
        raise tool_pair_error(exc) from None
    prefill = ends_in_prefill(messages)
    # (llama-server renders a conversation closed after its last turn when asked: a prompt to read, not one jan runs)
    closed = render_only and body.add_generation_prompt is False and not prefill \
        and body.continue_final_message in (None, False)
    if not closed:
        _check_continuation(body, prefill, bool(thought_prefill(messages)))
    # llama-server's grammar fields, read as /completion reads them: a lazy grammar (or json_schema) holds from its
    # trigger on; one that is not lazy holds the whole output (json_schema then the JSON response format it asks for)
    grammar, patterns, tokens = client_grammar(body.grammar, body.json_schema if body.grammar_lazy else None,
                                               body.grammar_lazy, body.grammar_triggers)
    return ChatRequest(
        model=body.model,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        # the deprecated functions make one call at most: their reply's function_call holds one
        parallel_tool_calls=False if body.legacy_functions else body.parallel_tool_calls,
        response_format=_format_of(body),
        grammar=grammar,
        grammar_triggers=patterns,
        grammar_trigger_tokens=tokens,
        preserved_tokens=tuple(body.preserved_tokens or ()),
        sampling=sampling_of(body),
        n=body.n,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
        post_sampling_probs=bool(body.post_sampling_probs),
        reasoning=reasoning_of(body),
        chat_template_kwargs=body.chat_template_kwargs,
        # a final assistant message is continued, as llama-server's "prefill assistant" does
        continue_final_message=prefill,
        generation_prompt=not closed,
        truncation=body.truncation or "disabled",
        line_rules=line_rules_of(body),
    )


def line_rules_of(body: Any) -> LineRules:
    """A body's llama-server ``n_indent`` and ``t_max_predict_ms`` (null: off) as the service's :class:`LineRules`."""
    return LineRules(n_indent=body.n_indent or 0,
                     t_max_predict_ms=body.t_max_predict_ms if body.t_max_predict_ms is not None else -1)


def _check_continuation(body: schemas.ChatCompletionRequest, prefill: bool, thought: bool) -> None:
    """llama-server's ``continue_final_message`` / ``add_generation_prompt``, as far as they agree with what jan
    does (a final assistant message is continued: its content, or its ``reasoning_content`` where that is all it
    holds (``thought``), inside the open thought; every other conversation answered after the generation prompt);
    a RequestError naming the field for the rest, in llama-server's words where it has them."""
    cont, gen = body.continue_final_message, body.add_generation_prompt
    if cont == "reasoning_content" and prefill and not thought:
        raise RequestError("continue_final_message: 'reasoning_content' continues the thinking of a final assistant "
                           "message that holds only reasoning_content; this one has content, which is what jan "
                           "continues (send continue_final_message true, or the message without its content)",
                           param="continue_final_message", code="invalid_value")
    if cont not in (None, False) and gen is True:
        raise RequestError("Cannot set both add_generation_prompt and continue_final_message to true.",
                           param="add_generation_prompt", code="invalid_value")
    if not prefill and (cont not in (None, False) or gen is False):
        field = "continue_final_message" if cont not in (None, False) else "add_generation_prompt"
        raise RequestError(f"{field}: jan continues only a final assistant message (without tool calls); the last "
                           "message here is not one, and it is answered after the generation prompt",
                           param=field, code="invalid_value")


#: OpenAI's legacy completions generate 16 tokens when ``max_tokens`` is not sent; a model's own
#: ``parameters.max_tokens`` (model.json) wins over it, as over every default.
COMPLETION_DEFAULTS = SamplingOptions(max_tokens=16)


def completion_request(body: schemas.CompletionRequest) -> CompletionRequest:
    """``POST /v1/completions`` as a typed :class:`CompletionRequest` (OpenAI's four prompt forms)."""
    prompt = body.prompt
    listed = False
    if isinstance(prompt, str):
        prompts: list[Any] = [prompt]
    elif prompt and all(isinstance(t, int) for t in prompt):
        prompts = [tuple(prompt)]
    else:
        prompts, listed = [p if isinstance(p, str) else tuple(p) for p in prompt], True
    # (llama-server's grammar fields, json_schema and a lazy grammar, read as its /completion reads them)
    grammar, patterns, tokens = client_grammar(body.grammar, body.json_schema, body.grammar_lazy, body.grammar_triggers)
    return CompletionRequest(model=body.model, prompts=tuple(prompts), listed=listed, sampling=sampling_of(body),
                             n=body.n, logprobs=body.logprobs, echo=body.echo, grammar=grammar,
                             grammar_triggers=patterns, grammar_trigger_tokens=tokens,
                             preserved_tokens=tuple(body.preserved_tokens or ()),
                             prompt_only=body.max_tokens == 0, dialect_defaults=COMPLETION_DEFAULTS,
                             suffix=body.suffix or None,  # ("": no gap to fill, as OpenAI reads it)
                             line_rules=line_rules_of(body))


def content_prompt(prompt: schemas.ContentPrompt, where: str) -> MediaText | str:
    """llama-server's ``{"content": [parts]}`` embedding input as one prompt: its parts' text, a media marker for
    each image and audio part, in order, as its ``tokenize_oai_content_array`` joins them; text alone (no media) is
    that text. The parts are read as a chat message's (a MediaError naming ``where.content[i]...``); an image by
    URL was fetched by the route (:func:`jan.server.media_fetch.fetch_body_images`), as a chat's."""
    from jan.services.types import MEDIA_MARKER

    parts = _parts(prompt.content, where)
    media = tuple(p for p in parts if isinstance(p, (ImagePart, AudioPart)))
    for i, part in enumerate(prompt.content if media else ()):
        # the marker stands for a media part in the joined text: one a text part spells would take the place of the
        # next image or clip (or be one too many); said of that part, not of a "prompt" the body does not have
        if isinstance(part, schemas.TextPart) and MEDIA_MARKER in part.text:
            raise RequestError(f"{where}.content[{i}].text: holds the media marker {MEDIA_MARKER}, which stands for "
                               "an image or audio part in an input with media; leave it out of the text (each media "
                               "part is placed where it stands among the parts)", param=f"{where}.content[{i}].text",
                               code="invalid_value")
    text = "".join(p.text if isinstance(p, TextPart) else MEDIA_MARKER for p in parts)
    return MediaText(text, media) if media else text


def embedding_request(body: schemas.EmbeddingRequest) -> EmbeddingRequest:
    """The body as jan's typed request; a prompt object's media decoded (a MediaError naming its field:
    ``input.multimodal_data[i]``, ``input[k]...`` in a list; ``input[k].content[i]...`` for a content input)."""
    from jan.server.dialects.llamacpp import media_text, prompt_field  # (llama-server's prompt objects)

    inputs, listed = body.input, True
    if isinstance(inputs, (str, schemas.MediaPrompt, schemas.ContentPrompt)) or (
            inputs and all(isinstance(t, int) for t in inputs)):
        inputs, listed = [inputs], False

    def typed_input(k: int, x: Any) -> Any:
        if isinstance(x, str):
            return x
        if isinstance(x, schemas.MediaPrompt):
            return media_text(x, prompt_field(body.input, k, "input"))
        if isinstance(x, schemas.ContentPrompt):
            where = prompt_field(body.input, k, "input")
            typed = content_prompt(x, where)
            if typed == "":  # (refused as an empty string input is, by the body's own rule)
                raise RequestError(f"{where}.content: its text parts hold no text, and it has no image or audio",
                                   param=f"{where}.content", code="invalid_value")
            return typed
        return tuple(x)

    # (llama-server's embd_normalize: 2, euclidean, is the default's L2 norm; another replaces it)
    p_norm = body.embd_normalize if body.embd_normalize != 2 else None
    return EmbeddingRequest(model=body.model, inputs=tuple(typed_input(k, x) for k, x in enumerate(inputs)),
                            dimensions=body.dimensions, listed=listed, p_norm=p_norm)


def embedding_media_error(exc: MediaError, body: schemas.EmbeddingRequest) -> MediaError:
    """The embedding service's refusal of an input's media said of the body's field (as llama-server's
    ``/embedding`` says it: :func:`jan.server.dialects.llamacpp.media_error`)."""
    from jan.server.dialects.llamacpp import media_error

    return media_error(exc, body.input, "input")


# -- responses -------------------------------------------------------------------------------
def usage_dict(usage: Usage, reasoning_tokens: int | None = None) -> dict[str, Any]:
    """OpenAI's ``usage`` (:meth:`jan.services.token_counts.TokenCounts.openai_chat`); with ``reasoning_tokens`` (a
    chat completion's: :attr:`ChatDelta.reasoning_tokens`) its ``completion_tokens_details`` tell them, as OpenAI's
    chat completions always do; without (a text completion's) they tell none."""
    return token_counts(usage, reasoning_tokens or 0).openai_chat(reasoning=reasoning_tokens is not None)


def timings_dict(usage: Usage) -> dict[str, Any]:
    """llama-server's ``timings`` of one generation, from the engine's own usage (one clock: the engine's): the
    prompt tokens evaluated (less those the KV cache held) and their time, the tokens generated and theirs. As
    llama-server counts them, the first generated token is free (it comes from the prompt's last batch): the
    per-token rates count the decode steps after it, over ``generation_ms`` (first token to the end)."""
    prompt_n = max(usage.prompt_tokens - usage.cached_tokens, 0)
    steps = max(usage.completion_tokens - 1, 0)
    out = {"cache_n": usage.cached_tokens,
           "prompt_n": prompt_n, "prompt_ms": usage.prompt_ms,
           "prompt_per_token_ms": usage.prompt_ms / prompt_n if prompt_n else 0.0,
           "prompt_per_second": prompt_n * 1000.0 / usage.prompt_ms if usage.prompt_ms > 0 else 0.0,
           "predicted_n": usage.completion_tokens, "predicted_ms": usage.generation_ms,
           "predicted_per_token_ms": usage.generation_ms / steps if steps else 0.0,
           "predicted_per_second": steps * 1000.0 / usage.generation_ms if usage.generation_ms > 0 else 0.0}
    if usage.draft_tokens:
        out.update(draft_n=usage.draft_tokens, draft_n_accepted=usage.draft_accepted)
    return out


def timings_of(usage: Usage | None) -> dict[str, Any] | None:
    """``timings`` as llama-server adds them to its OpenAI answers, or None where the engine timed nothing: a
    remote engine's usage has token counts only (llama-server too leaves them out of a result its slot never
    started)."""
    if usage is None or (usage.prompt_ms <= 0 and usage.generation_ms <= 0):
        return None
    return timings_dict(usage)


def completion_id(kind: str) -> str:
    """A new id of a ``chat.completion`` (``chatcmpl-...``) or ``text_completion`` (``cmpl-...``)."""
    prefix = "chatcmpl" if kind.startswith("chat.") else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _header(kind: str, model_id: str, given_id: str | None = None) -> dict[str, Any]:
    return {
        "id": given_id or completion_id(kind),
        "object": kind,
        "created": int(time.time()),
        "model": model_id,
        "system_fingerprint": f"jan-{jan.__version__}",
    }


def _token_id(token_id: int) -> dict[str, int]:
    """llama-server's ``id`` of a logprobs item (its clients read the token id there beside OpenAI's fields); none
    where the engine does not know it (a remote one's tokens, -1)."""
    return {"id": token_id} if token_id >= 0 else {}


def _chat_logprobs(items: Iterable[TokenLogprob], top: int | None = None, post_sampling: bool = False
                   ) -> list[dict[str, Any]]:
    """Logprobs items as a chat's ``logprobs.content`` tells them, each with ``top`` alternatives at most (None: all
    the engine scored); with ``post_sampling`` (llama-server's ``post_sampling_probs``: scored in the distribution
    the sampler chain drew from) also as llama-server tells those, a ``prob`` with its ``top_probs`` (the OpenAI
    fields stay beside them, in that distribution too: OpenAI clients read ``logprob``)."""
    if post_sampling:
        items = list(items)  # (read twice)

        def prob(t: Any) -> dict[str, Any]:
            return {**_token_id(t.token_id), "token": t.token, "bytes": t.bytes,
                    "prob": math.exp(t.logprob) if t.logprob is not None else 0.0}
        return [{**one, **prob(lp), "top_probs": [prob(t) for t in lp.top[:top]]}
                for one, lp in zip(_chat_logprobs(items, top), items)]
    return [
        {
            **_token_id(lp.token_id),
            "token": lp.token,
            "logprob": lp.logprob,
            "bytes": lp.bytes,
            "top_logprobs": [{**_token_id(t.token_id), "token": t.token, "logprob": t.logprob, "bytes": t.bytes}
                             for t in lp.top[:top]],
        }
        for lp in items
    ]


def _finish_reason(reason: str | None, legacy_functions: bool) -> str | None:
    """A choice's ``finish_reason``; a call answering the deprecated ``functions`` ends it ``function_call``."""
    return "function_call" if legacy_functions and reason == "tool_calls" else reason


# A reply to the deprecated ``functions`` holds one call (``function_call``). The request asked for no parallel
# calls (chat_request), so a local model makes one at most; of an engine that made more anyway (a remote upstream
# that ignores parallel_tool_calls), the first is the one this shape can hold.
def _legacy_call(call: ToolCall) -> dict[str, Any]:
    """A whole call as the deprecated ``message.function_call``."""
    return {"name": call.name, "arguments": call.arguments}


def _legacy_call_piece(pieces: Iterable[Any]) -> dict[str, Any] | None:
    """The first call's piece of a streamed delta as the deprecated ``delta.function_call`` (its name with its
    first piece, as a tool call's), or None when the delta has none of it."""
    piece = next((c for c in pieces if c.index == 0), None)
    if piece is None:
        return None
    if piece.id is not None or piece.name is not None:
        return {"name": piece.name or "", "arguments": piece.arguments}
    return {"arguments": piece.arguments}


def _delta_fields(delta: ChatDelta, legacy_functions: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if delta.content:
        out["content"] = delta.content
    if delta.reasoning:
        out["reasoning_content"] = delta.reasoning
    if delta.tool_calls and legacy_functions:
        call = _legacy_call_piece(delta.tool_calls)
        if call is not None:
            out["function_call"] = call
    elif delta.tool_calls:
        calls = []
        for c in delta.tool_calls:
            if c.id is not None or c.name is not None:
                calls.append({"index": c.index, "id": c.id, "type": "function",
                              "function": {"name": c.name or "", "arguments": c.arguments}})
            else:
                calls.append({"index": c.index, "function": {"arguments": c.arguments}})
        out["tool_calls"] = calls
    return out


class ChatChunkEncoder:
    """Typed deltas to ``chat.completion.chunk`` dicts (one id and timestamp per response)."""

    def __init__(self, model_id: str, *, top_logprobs: int = 0, include_usage: bool = False,
                 legacy_functions: bool = False, completion_id: str | None = None, timings_per_token: bool = False,
                 post_sampling: bool = False):
        self.header = _header("chat.completion.chunk", model_id, completion_id)
        self.timings_per_token = timings_per_token
        self.top_logprobs = top_logprobs
        self.post_sampling = post_sampling  # (the request's post_sampling_probs: probabilities, as llama-server's)
        self.include_usage = include_usage
        #: the request offered the deprecated ``functions``: calls go out as ``delta.function_call`` pieces
        self.legacy_functions = legacy_functions
        self._started: set[int] = set()

    def encode(self, delta: ChatDelta) -> dict[str, Any] | None:
        """The chunk for ``delta``, or None when it carries nothing to send."""
        if delta.choice < 0:
            if delta.usage is None or not self.include_usage:
                return None
            return _with_timings({**self.header, "choices": [], "usage": usage_dict(delta.usage,
                                                                                    delta.reasoning_tokens)},
                                 delta.usage)
        fields = _delta_fields(delta, self.legacy_functions)
        first = delta.choice not in self._started
        if not fields and not first and delta.logprobs is None and delta.finish_reason is None:
            return None
        if first:
            fields = {"role": "assistant", **({"content": ""} if not fields else {}), **fields}
            self._started.add(delta.choice)
        logprobs = None
        if delta.logprobs is not None:
            logprobs = {"content": _chat_logprobs(delta.logprobs, self.top_logprobs, self.post_sampling),
                        "refusal": None}
        chunk = {**self.header, "choices": [{"index": delta.choice, "delta": fields, "logprobs": logprobs,
                                             "finish_reason": _finish_reason(delta.finish_reason,
                                                                             self.legacy_functions)}]}
        if self.timings_per_token and delta.progress is not None:
            return _with_timings(chunk, delta.progress)  # (llama-server's timings_per_token: the timings so far)
        # llama-server's last chunk of a result carries its timings: the usage chunk where one is asked for
        return chunk if self.include_usage else _with_timings(chunk, delta.choice_usage)


def _with_timings(body: dict[str, Any], usage: Usage | None) -> dict[str, Any]:
    """``body`` with llama-server's ``timings`` of ``usage`` where the engine timed it (:func:`timings_of`): its
    OpenAI answers and each result's last stream chunk carry them (its web UI and benchmark scripts read them; an
    OpenAI client ignores a field it does not know)."""
    timings = timings_of(usage)
    if timings is not None:
        body["timings"] = timings
    return body


def chat_completion(result: ChatResult, *, top_logprobs: int = 0, legacy_functions: bool = False,
                    completion_id: str | None = None, post_sampling: bool = False) -> dict[str, Any]:
    """A ``chat.completion`` response body; with ``legacy_functions`` (the request offered the deprecated
    ``functions``) a call is the message's ``function_call``, as OpenAI answers such a request."""
    choices = []
    for index, choice in enumerate(result.choices):
        m = choice.message
        message: dict[str, Any] = {"role": m.role, "content": m.text if m.content else None}
        if m.reasoning:
            message["reasoning_content"] = m.reasoning
        if m.tool_calls and legacy_functions:
            message["function_call"] = _legacy_call(m.tool_calls[0])
        elif m.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                                                                   "arguments": c.arguments}}
                                     for c in m.tool_calls]
        logprobs = {"content": _chat_logprobs(choice.logprobs, top_logprobs, post_sampling)} \
            if choice.logprobs else None
        choices.append({"index": index, "message": message, "logprobs": logprobs,
                        "finish_reason": _finish_reason(choice.finish_reason, legacy_functions)})
    return _with_timings({**_header("chat.completion", result.model, completion_id), "choices": choices,
                          "usage": usage_dict(result.usage, result.reasoning_tokens)}, result.usage)


class CompletionChunkEncoder:
    """Typed completion deltas to ``text_completion`` chunks, and their aggregate."""

    def __init__(self, model_id: str, *, logprobs: bool = False, include_usage: bool = False,
                 timings_per_token: bool = False):
        self.header = _header("text_completion", model_id)
        self.timings_per_token = timings_per_token
        self.logprobs = logprobs
        self.include_usage = include_usage
        self._offsets: dict[int, int] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self.usage: Usage | None = None

    def encode(self, delta: CompletionDelta) -> dict[str, Any] | None:
        if delta.choice < 0:
            self.usage = delta.usage
            if delta.usage is None or not self.include_usage:
                return None
            return _with_timings({**self.header, "choices": [], "usage": usage_dict(delta.usage)}, delta.usage)
        logprobs = None
        offset = self._offsets.get(delta.choice, 0)
        if self.logprobs:
            items = list(delta.logprobs or ())
            # OpenAI's text_offset: where each token is in the choice's text as returned (the echoed prompt, then
            # what was generated), and each token as that text spells it (pieces_in)
            pieces = pieces_in(delta.text, items)
            # an echoed prompt's first token has no logprob, and no alternatives (null, as OpenAI's)
            logprobs = {"tokens": [piece for _, piece in pieces], "token_logprobs": [lp.logprob for lp in items],
                        # the token's own alternative keyed as it is spelled (greedy checks compare the two)
                        "top_logprobs": [{piece if (t.token_id, t.token) == (lp.token_id, lp.token) else t.token:
                                          t.logprob for t in lp.top}
                                         if lp.logprob is not None else None for lp, (_, piece) in zip(items, pieces)],
                        "text_offset": [offset + at for at, _ in pieces],
                        # llama-server's own shape of a text completion's logprobs (as a chat's: id, token, bytes,
                        # logprob, top_logprobs), which its clients read instead of OpenAI's lists above
                        "content": _chat_logprobs(items)}
            self._offsets[delta.choice] = offset + len(delta.text)
        choice = {"index": delta.choice, "text": delta.text, "logprobs": logprobs,
                  "finish_reason": delta.finish_reason}
        self._fold(choice)
        chunk = {**self.header, "choices": [choice]}
        if delta.choice_usage is not None and not self.include_usage:
            # a result's last chunk tells its usage, as llama-server's /v1/completions writes it whether or not
            # include_usage asks (which gets OpenAI's own usage chunk after it instead)
            chunk["usage"] = usage_dict(delta.choice_usage)
        if self.timings_per_token and delta.progress is not None:
            return _with_timings(chunk, delta.progress)  # (llama-server's timings_per_token: the timings so far)
        # (a result's last chunk: its timings, unless the usage chunk that follows carries the request's)
        return chunk if self.include_usage else _with_timings(chunk, delta.choice_usage)

    def _fold(self, choice: dict[str, Any]) -> None:
        state = self._choices.setdefault(choice["index"], {"index": choice["index"], "text": "", "logprobs": None,
                                                           "finish_reason": None})
        state["text"] += choice["text"]
        if choice["logprobs"] is not None:
            target = state["logprobs"] = state["logprobs"] or {}
            for key, value in choice["logprobs"].items():
                target.setdefault(key, []).extend(value)
        if choice["finish_reason"]:
            state["finish_reason"] = choice["finish_reason"]

    def response(self) -> dict[str, Any]:
        """The whole ``text_completion`` (every delta encoded so far, folded)."""
        return _with_timings({**self.header, "choices": [self._choices[i] for i in sorted(self._choices)],
                              "usage": usage_dict(self.usage) if self.usage is not None else None}, self.usage)


def pieces_in(text: str, tokens: list[TokenLogprob]) -> list[tuple[int, str]]:
    """Each token's ``(offset, piece)`` in ``text``, the text the tokens made (a completion delta's: the service
    gives a delta the tokens whose text it shows): where it starts (in characters) and the text it spells there,
    so that ``text[offset:]`` starts with its piece and the pieces make ``text`` (OpenAI's ``tokens`` and
    ``text_offset``, whose tokens are the text's own pieces).

    A token's piece is its bytes where ``text`` has them next. What ``text`` lacks spells nothing there: a BOS
    an echoed prompt begins with, an end-of-generation token (control tokens the text does not show), anything
    that does not match (a mismatch never moves the tokens after it). SentencePiece writes a space before the
    text it tokenizes that the text does not have: the token it went to spells its text without it. A token a
    stop string cut spells the part the text kept. A token holding part of a UTF-8 character spells nothing but
    from where that character starts, the one that completes it the character: each piece is whole characters.
    """
    raw = text.encode("utf-8")
    decode = codecs.getincrementaldecoder("utf-8")().decode
    out: list[tuple[int, str]] = []
    at = chars = 0  # bytes of text spelled so far, and the characters they make whole
    for token in tokens:
        piece = bytes(token.bytes)
        left = len(raw) - at
        if piece and raw.startswith(piece, at):
            used = len(piece)
        elif piece.startswith(b" ") and len(piece) > 1 and raw.startswith(piece[1:], at):
            used = len(piece) - 1  # SentencePiece's space before the text
        elif 0 < left < len(piece) and piece.startswith(raw[at:]):
            used = left  # the text ends inside the token: a stop string cut it
        elif raw.startswith(_REPLACEMENT, at) and _torn(piece):
            used = len(_REPLACEMENT)  # bytes that are no UTF-8 character: the engine shows U+FFFD for them
        else:
            used = 0
        spelled = decode(raw[at:at + used])
        out.append((chars, spelled))
        at, chars = at + used, chars + len(spelled)
    return out


_REPLACEMENT = "\ufffd".encode("utf-8")


def _torn(piece: bytes) -> bool:
    """Whether a token's bytes are no whole UTF-8 text."""
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def rerank_request(body: schemas.RerankRequest) -> RerankRequest:
    return RerankRequest(model=body.model, query=body.query, documents=tuple(body.document_texts), top_n=body.top_n,
                         max_tokens_per_doc=body.max_tokens_per_doc, max_chunks_per_doc=body.max_chunks_per_doc,
                         truncate=bool(body.truncate),
                         truncation_direction="left" if body.truncation_direction in ("Left", "left") else "right",
                         raw_scores=body.scores_raw, field="texts" if body.tei else "documents")


def rerank_refusal(exc: ValueError, body: schemas.RerankRequest) -> APIError | None:
    """A refusal of the reranking that names the field at fault (``param``) as a 400 in the body's own words (a Text
    Embeddings Inference body's documents are its ``texts``: the engine numbers them ``documents[i]``); a pair
    longer than the reranker's context with the pair's token count and the context (``n_prompt_tokens``,
    ``n_ctx``: llama-server's ``exceed_context_size_error`` tells them) where known. None for any other error (it
    is answered as it is)."""
    param = getattr(exc, "param", None)
    overflow = isinstance(exc, ContextOverflowError)
    if not overflow and not (body.tei and isinstance(param, str) and param.startswith("documents")):
        return None
    param, message = param or "documents", str(exc)
    if body.tei and param.startswith("documents"):
        param = "texts" + param[len("documents"):]
        if message.startswith("documents"):
            message = "texts" + message[len("documents"):]
    if not overflow:
        return APIError(400, message, param=param, code=getattr(exc, "code", None) or "invalid_value")
    numbers = {"n_prompt_tokens": exc.n_tokens, "n_ctx": exc.n_ctx} \
        if exc.n_tokens is not None and exc.n_ctx is not None else None
    return APIError(400, message, param=param, code="context_length_exceeded", details=numbers)


def rerank_response(result: RerankResult, body: schemas.RerankRequest) -> dict[str, Any] | list[dict[str, Any]]:
    """Jina's and Cohere's answer (``results`` of ``index`` and ``relevance_score``, most relevant first, with
    ``document`` when ``return_documents``: ``{"text"}`` for a string, an object document as it was given, as
    Cohere returns it; ``usage``), or for a Text Embeddings Inference body its bare list of ``index`` and ``score``
    (``text`` with ``return_text``), as llama-server's format_response_rerank. A document cut to fit is returned
    whole, as given (as Cohere and TEI return it)."""
    if body.tei:
        texts = body.texts or []
        return [{"index": i, "score": score, **({"text": texts[i]} if body.return_text else {})}
                for i, score in result.ranked]
    given = body.documents or []

    def document(i: int) -> dict[str, Any]:
        d = given[i]
        return {"text": d} if isinstance(d, str) else d

    results = [{"index": i, "relevance_score": score, **({"document": document(i)} if body.return_documents else {})}
               for i, score in result.ranked]
    # the name the body gave (the model's id without one), as llama-server's rerank echoes it: Jina's API does too
    return {"object": "list", "model": body.model or result.model, "results": results,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}


def embeddings_response(result: EmbeddingResult, encoding_format: str = "float") -> dict[str, Any]:
    import numpy as np  # here, not at the top: a server that never embeds never loads numpy (resident memory)

    data = []
    for i, vec in enumerate(result.vectors):
        if encoding_format == "base64":
            value: Any = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
        else:
            value = np.asarray(vec, dtype=np.float32).tolist() if not isinstance(vec, list) else vec
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": result.model,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}
