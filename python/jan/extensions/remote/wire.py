"""The OpenAI wire format on the client side: typed requests to upstream bodies, upstream chunks to typed deltas."""

from __future__ import annotations

import json
from typing import Any

from jan.engine.results import told_logprob
from jan.extensions.remote.upstream import UpstreamError
from jan.image_types import b64encode_text
from jan.services.types import (
    FINISH_REASONS,
    ChatDelta,
    ChatMessage,
    ChatRequest,
    CompletionDelta,
    CompletionRequest,
    ImagePart,
    AudioPart,
    NamedToolChoice,
    SamplingOptions,
    TextPart,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

__all__ = ["chat_body", "chat_deltas", "completion_body", "completion_deltas", "sampling_body", "usage_of"]


def sampling_body(sampling: SamplingOptions) -> dict[str, Any]:
    body = sampling.given()
    if "logit_bias" in body:
        body["logit_bias"] = {str(k): v for k, v in body["logit_bias"].items()}
    return body


def _message(m: ChatMessage) -> dict[str, Any]:
    if all(isinstance(p, TextPart) for p in m.content):
        return m.openai_dict(m.text if m.content or not m.tool_calls else None)
    parts: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, TextPart):
            parts.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            url = f"data:{p.mime_type};base64,{b64encode_text(p.data)}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(p, AudioPart):
            parts.append({"type": "input_audio",
                          "input_audio": {"data": b64encode_text(p.data), "format": p.format}})
    return m.openai_dict(parts)


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The ``/chat/completions`` body of a typed request (without ``model``/``stream``)."""
    body: dict[str, Any] = {"messages": [_message(m) for m in request.messages], **sampling_body(request.sampling)}
    if request.tools:
        body["tools"] = [{"type": "function", "function": {k: v for k, v in (("name", t.name),
                          ("description", t.description), ("parameters", t.parameters), ("strict", t.strict))
                          if v is not None}} for t in request.tools]
    # (OpenAI refuses tool_choice and parallel_tool_calls "only allowed when 'tools' are specified": a request with
    # none, a Responses one Codex sends with parallel_tool_calls false, is answered without them as it would be here)
    choice = request.tool_choice if request.tools else None
    if isinstance(choice, NamedToolChoice):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        body["tool_choice"] = choice
    if request.parallel_tool_calls is not None and request.tools:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = request.response_format
    if fmt is not None:
        if fmt.type == "json_schema":
            schema = {"name": fmt.name or "response", "schema": dict(fmt.schema or {})}
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif fmt.type == "json_object" and fmt.schema:
            body["response_format"] = {"type": "json_object", "schema": dict(fmt.schema)}
        else:
            body["response_format"] = {"type": fmt.type}
    _grammar_fields(body, request)
    if request.n != 1:
        body["n"] = request.n
    if request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    if request.reasoning is not None and request.reasoning.effort:
        body["reasoning_effort"] = request.reasoning.effort
    if request.chat_template_kwargs:
        body["chat_template_kwargs"] = json.loads(json.dumps(dict(request.chat_template_kwargs)))
    return body


def completion_body(request: CompletionRequest) -> dict[str, Any]:
    prompts = [p if isinstance(p, str) else list(p) for p in request.prompts]
    body: dict[str, Any] = {"prompt": prompts[0] if len(prompts) == 1 else prompts, **sampling_body(request.sampling)}
    if request.n != 1:
        body["n"] = request.n
    if request.logprobs is not None:
        body["logprobs"] = request.logprobs
    if request.echo:
        body["echo"] = True
    if request.prompt_only:
        body["max_tokens"] = 0
    _grammar_fields(body, request)
    return body


def _grammar_fields(body: dict[str, Any], request: ChatRequest | CompletionRequest) -> None:
    """A request's ``grammar``, lazy or not, and ``preserved_tokens`` in llama-server's fields, as its
    ``/v1/completions`` reads them (and another jan's chat and completion routes): without ``grammar_lazy`` and the
    triggers the upstream would hold the grammar over the whole output. The patterns are already jan's (type 2:
    searched, a word escaped and a full pattern anchored by now); a token trigger goes as its id."""
    if request.grammar:
        body["grammar"] = request.grammar
    if request.grammar_triggers or request.grammar_trigger_tokens:
        body["grammar_lazy"] = True
        body["grammar_triggers"] = ([{"type": 2, "value": p} for p in request.grammar_triggers]
                                    + [{"type": 0, "value": "", "token": t} for t in request.grammar_trigger_tokens])
    if request.preserved_tokens:
        body["preserved_tokens"] = list(request.preserved_tokens)


def usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details") if isinstance(raw.get("prompt_tokens_details"), dict) else {}
    # the upstream's speculative counts (predicted outputs, another jan's drafts) go on to this server's clients
    completion = raw.get("completion_tokens_details") if isinstance(raw.get("completion_tokens_details"), dict) else {}
    accepted = _count(completion.get("accepted_prediction_tokens"))
    rejected = _count(completion.get("rejected_prediction_tokens"))
    return Usage(prompt_tokens=int(raw.get("prompt_tokens") or 0), completion_tokens=int(raw.get("completion_tokens") or 0),
                 cached_tokens=int(details.get("cached_tokens") or 0), draft_tokens=accepted + rejected,
                 draft_accepted=accepted)


def _count(value: Any) -> int:
    """A count an upstream told (0 where it told none, or no count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def reasoning_tokens_of(raw: Any) -> int:
    """An upstream usage's ``completion_tokens_details.reasoning_tokens`` (0 where it tells none)."""
    details = raw.get("completion_tokens_details") if isinstance(raw, dict) else None
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _bytes(raw: Any) -> list[int]:
    return list(raw) if isinstance(raw, list) else []


def _logprob(raw: Any) -> float | None:
    """An upstream's log-probability, None where it told none or no finite number (its ``null``; ``NaN``, which
    Python's JSON reader takes and jan's writer refuses: its answer was a 400 to the client after the work)."""
    return told_logprob(float(raw)) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None


def _chat_logprobs(raw: Any) -> tuple[TokenLogprob, ...] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), list):
        return None
    return tuple(
        TokenLogprob(-1, str(item.get("token", "")), _bytes(item.get("bytes")), _logprob(item.get("logprob")),
                     [TopLogprob(-1, str(t.get("token", "")), _bytes(t.get("bytes")), _logprob(t.get("logprob")))
                      for t in item.get("top_logprobs") or [] if isinstance(t, dict)])
        for item in raw["content"] if isinstance(item, dict)
    )


#: Upstream finish reasons that are another name of one of jan's (``FINISH_REASONS``): OpenAI's deprecated
#: ``function_call``; Mistral's ``model_length`` (the context ran out); vLLM's ``abort`` (its server cut it off).
_FINISH_SYNONYMS = {"function_call": "tool_calls", "model_length": "length", "abort": "cancelled"}


def finish_reason_of(value: Any) -> str | None:
    """An upstream choice's ``finish_reason`` as one of jan's (``FINISH_REASONS``), which every front end maps;
    one jan does not know is the upstream's fault (an :class:`UpstreamError`), never passed off as a normal end."""
    if value is None:
        return None
    reason = _FINISH_SYNONYMS.get(value, value)
    if reason not in FINISH_REASONS:
        raise UpstreamError(f"the upstream ended a choice with finish_reason {value!r}, which is none of OpenAI's")
    return reason


def chat_deltas(chunk: dict[str, Any]) -> list[ChatDelta]:
    """One upstream ``chat.completion.chunk`` as typed deltas (``usage`` as a ``choice=-1`` delta)."""
    out = []
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        calls = tuple(
            ToolCallDelta(int(c.get("index", 0)), c.get("id"), (c.get("function") or {}).get("name"),
                          (c.get("function") or {}).get("arguments") or "")
            for c in delta.get("tool_calls") or () if isinstance(c, dict)
        )
        out.append(ChatDelta(choice=int(choice.get("index", 0)), content=delta.get("content") or "",
                             reasoning=delta.get("reasoning_content") or delta.get("reasoning") or "",
                             tool_calls=calls, logprobs=_chat_logprobs(choice.get("logprobs")),
                             finish_reason=finish_reason_of(choice.get("finish_reason"))))
    usage = usage_of(chunk.get("usage"))
    if usage is not None:
        out.append(ChatDelta(choice=-1, usage=usage, reasoning_tokens=reasoning_tokens_of(chunk.get("usage"))))
    return out


def _completion_logprobs(raw: Any) -> tuple[TokenLogprob, ...] | None:
    if isinstance(raw, dict) and not isinstance(raw.get("tokens"), list) and isinstance(raw.get("content"), list):
        return _chat_logprobs(raw)  # (llama-server's text completions tell them as a chat does, without the lists)
    if not isinstance(raw, dict) or not isinstance(raw.get("tokens"), list):
        return None
    tops = raw.get("top_logprobs") or []
    values = raw.get("token_logprobs") or []
    out = []
    for i, token in enumerate(raw["tokens"]):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        out.append(TokenLogprob(-1, str(token), list(str(token).encode()), _logprob(values[i] if i < len(values) else None),
                                [TopLogprob(-1, str(t), list(str(t).encode()), _logprob(lp)) for t, lp in top.items()]))
    return tuple(out)


def completion_deltas(chunk: dict[str, Any]) -> list[CompletionDelta]:
    """One upstream ``text_completion`` chunk as typed deltas (``usage`` as a ``choice=-1`` delta); its finish
    reasons made jan's (:func:`finish_reason_of`), as a chat chunk's."""
    out = []
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict):
            out.append(CompletionDelta(choice=int(choice.get("index", 0)), text=choice.get("text") or "",
                                       logprobs=_completion_logprobs(choice.get("logprobs")),
                                       finish_reason=finish_reason_of(choice.get("finish_reason"))))
    usage = usage_of(chunk.get("usage"))
    if usage is not None:
        out.append(CompletionDelta(choice=-1, usage=usage))
    return out
