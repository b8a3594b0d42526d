"""Shared pieces of the Anthropic / Responses server tests: models, named-event SSE parsing and the official SDKs'
clients of a test server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import anthropic
    import openai

from jan.testing.gguf_models import TINY_CHAT_CONFIG, models_dir, vocab_path, write_llama_from_vocab, write_tool_template_model

# A tool whose argument the grammar can only fill one of two ways: a tiny random model's call is short.
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Lyon"]}},
                  "required": ["city"], "additionalProperties": False}


def tool_model(tmp: Path) -> Path:
    """Tiny llama with the phi-3 vocab and a ChatML + Hermes-style tool template."""
    return write_tool_template_model(tmp / "tool-model.gguf")


def openai_client(server, timeout: float = 120) -> openai.OpenAI:
    """The official ``openai`` SDK's client of a test server (its ``/v1``): no retries (a test sees the first answer,
    never a retried one), ``timeout`` seconds a request (generous: a busy 2-core machine)."""
    import openai  # (a test extra: only the tests that use the SDK import it)

    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=timeout)


def anthropic_client(server, timeout: float = 120) -> anthropic.Anthropic:
    """The official ``anthropic`` SDK's client of a test server, as :func:`openai_client`."""
    import anthropic

    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=timeout)


def folded_chat_stream(client, **kwargs) -> dict:
    """A streamed chat completion (``client``: the openai SDK's) folded into one choice's whole: ``reasoning``,
    ``content``, ``calls`` (a list of (name, arguments) in call order), ``logprobs`` (how many tokens had them) and
    ``finish_reason``."""
    out = {"reasoning": "", "content": "", "calls": {}, "logprobs": 0, "finish_reason": None}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            out["reasoning"] += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            out["content"] += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                slot = out["calls"].setdefault(call.index, ["", ""])
                slot[0] += call.function.name or ""
                slot[1] += call.function.arguments or ""
            if choice.logprobs and choice.logprobs.content:
                out["logprobs"] += len(choice.logprobs.content)
            out["finish_reason"] = choice.finish_reason or out["finish_reason"]
    out["calls"] = [tuple(c) for _, c in sorted(out["calls"].items())]
    return out


QWEN2_IM_END = 151645


def reasoning_model(tmp: Path) -> Path:
    """Tiny llama with the qwen2 vocab and QwQ's chat template, which opens ``<think>`` in the
    generation prompt: everything the model writes is reasoning until ``</think>``."""
    template = (models_dir().parent / "templates" / "Qwen-QwQ-32B.jinja").read_text(encoding="utf-8")
    return write_llama_from_vocab(tmp / "qwq-tiny.gguf", vocab_path("ggml-vocab-qwen2.gguf"), **TINY_CHAT_CONFIG,
                                  dtype="f32", chat_template=template,
                                  extra_kv={"tokenizer.ggml.eos_token_id": QWEN2_IM_END,
                                            "tokenizer.ggml.eot_token_id": QWEN2_IM_END})


def has_reasoning_parser() -> bool:
    """Whether this build parses reasoning out of model output (the chat formats of issue 12)."""
    import jan.templates

    return (Path(jan.templates.__file__).parent / "formats" / "__init__.py").is_file()


def anthropic_prompt_tokens(usage) -> int:
    """The prompt size an Anthropic ``usage`` (SDK object or dict) reports: its ``input_tokens`` are only
    the tokens not read from the cache, so the prompt is input + cache_read + cache_creation."""
    get = usage.get if isinstance(usage, dict) else lambda key: getattr(usage, key, None)
    return sum(get(key) or 0 for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))


def named_events(body: bytes) -> list[tuple[str, dict]]:
    """``(event, data)`` pairs of an SSE body with named events (Anthropic, Responses)."""
    events = []
    for block in body.decode().split("\n\n"):
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
        if data is not None:
            events.append((name, data))
    return events


def collapse(names: list) -> list:
    """Runs of the same item as one (a golden sequence does not depend on how many tokens a delta is)."""
    out: list = []
    for name in names:
        if not out or out[-1] != name:
            out.append(name)
    return out


def http_body(raw: bytes) -> tuple[int, bytes]:
    """Status and de-chunked body of a raw HTTP/1.1 response."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" not in head.lower():
        return status, rest
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2:]
    return status, body
