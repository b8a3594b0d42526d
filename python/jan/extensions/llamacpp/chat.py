"""OpenAI chat completions on a local model: template, constraints, n choices, tool calls."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jan
from jan.extensions.llamacpp.logprobs import chat_logprobs
from jan.extensions.llamacpp.options import sampling_options
from jan.extensions.llamacpp.streams import check_finish, merged, seeds
from jan.templates import JSON_OBJECT_GRAMMAR, ToolCallStreamParser, json_schema_to_grammar, tool_call_grammar


def constraint_grammar(request: dict[str, Any]) -> str | None:
    """The grammar that enforces response_format / tool_choice / an explicit llama.cpp grammar."""
    tools = request.get("tools") or []
    choice = request.get("tool_choice")
    if tools and (choice == "required" or isinstance(choice, dict)):
        return tool_call_grammar(tools, choice, parallel_tool_calls=request.get("parallel_tool_calls", True) is not False)
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        return json_schema_to_grammar(schema) if schema else JSON_OBJECT_GRAMMAR
    if fmt.get("type") == "json_object":
        return json_schema_to_grammar(fmt["schema"]) if fmt.get("schema") else JSON_OBJECT_GRAMMAR
    return request.get("grammar") or None


def chunk_header(kind: str, model_id: str) -> dict[str, Any]:
    prefix = "chatcmpl" if kind == "chat.completion.chunk" else "cmpl"
    return {
        "id": f"{prefix}-{uuid.uuid4().hex[:24]}",
        "object": kind,
        "created": int(time.time()),
        "model": model_id,
        "system_fingerprint": f"jan-{jan.__version__}",
    }


def usage_dict(usages: list[jan.Usage]) -> dict[str, Any]:
    prompt = usages[0].prompt_tokens if usages else 0
    completion = sum(u.completion_tokens for u in usages)
    cached = usages[0].cached_tokens if usages else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


async def chat_stream(model: jan.Model, model_id: str, prompt: str, request: dict[str, Any],
                      model_json: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Yield ``chat.completion.chunk`` dicts for ``prompt`` (already rendered by the chat template)."""
    options = sampling_options(model_json, request)
    n = int(request.get("n") or 1)
    want_logprobs = bool(request.get("logprobs"))
    top = int(request.get("top_logprobs") or 0)
    grammar = constraint_grammar(request)
    tools = request.get("tools") if request.get("tool_choice") != "none" else None

    header = chunk_header("chat.completion.chunk", model_id)
    choice_seeds = seeds(options.pop("seed", None), n, lambda: random.randrange(2**32))
    requests = [
        model.stream(prompt, **options, seed=s, grammar=grammar, logprobs=want_logprobs, top_logprobs=top)
        for s in choice_seeds
    ]
    parsers = [ToolCallStreamParser(tools) if tools else None for _ in range(n)]
    started = [False] * n
    usages: list[jan.Usage | None] = [None] * n

    def choice(index: int, delta: dict, finish: str | None = None, logprobs=None) -> dict[str, Any]:
        if not started[index]:
            delta = {"role": "assistant", **({"content": ""} if not delta else {}), **delta}
            started[index] = True
        return {**header, "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

    async for index, chunk in merged(requests):
        check_finish(chunk)
        logprobs = chat_logprobs(chunk.logprobs, top) if want_logprobs and chunk.logprobs else None
        parser = parsers[index]
        deltas = parser.feed(chunk.text) if parser else ([{"content": chunk.text}] if chunk.text else [])
        if chunk.finish_reason is not None and parser:
            deltas += parser.finish()
        if not deltas and (logprobs or not started[index]):
            deltas = [{}]
        for k, delta in enumerate(deltas):
            yield choice(index, delta, logprobs=logprobs if k == 0 else None)
        if chunk.finish_reason is not None:
            usages[index] = chunk.usage
            finish = "tool_calls" if parser and parser.tool_calls else chunk.finish_reason
            yield choice(index, {}, finish)

    stream_options = request.get("stream_options") or {}
    if stream_options.get("include_usage"):
        yield {**header, "choices": [], "usage": usage_dict([u for u in usages if u is not None])}
