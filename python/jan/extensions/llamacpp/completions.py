"""OpenAI text completions (``/v1/completions``) on a local model."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import jan
from jan.extensions.llamacpp.chat import chunk_header, usage_dict
from jan.extensions.llamacpp.logprobs import completion_logprobs
from jan.extensions.llamacpp.options import sampling_options
from jan.extensions.llamacpp.streams import check_finish, merged, seeds


def split_prompts(prompt: Any) -> list[str | list[int]]:
    """OpenAI's prompt forms: a string, strings, a token list, or token lists."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    return list(prompt)


async def completion_stream(model: jan.Model, model_id: str, request: dict[str, Any],
                            model_json: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    options = sampling_options(model_json, request)
    n = int(request.get("n") or 1)
    top = request.get("logprobs")
    want_logprobs = top is not None
    prompts = split_prompts(request["prompt"])
    header = chunk_header("text_completion", model_id)

    requests, echo = [], []
    choice_seeds = seeds(options.pop("seed", None), n, lambda: random.randrange(2**32))
    for prompt in prompts:
        text = prompt if isinstance(prompt, str) else model.detokenize(prompt)
        for s in choice_seeds:
            requests.append(model.stream(prompt, **options, seed=s, grammar=request.get("grammar"),
                                         logprobs=want_logprobs, top_logprobs=top or 0))
            echo.append(text if request.get("echo") else "")
    offsets = [len(e) for e in echo]
    usages: dict[int, jan.Usage] = {}

    async for index, chunk in merged(requests):
        check_finish(chunk)
        text = echo[index] + chunk.text
        echo[index] = ""
        logprobs = None
        if want_logprobs:
            logprobs = completion_logprobs(chunk.logprobs or [], offsets[index])
            offsets[index] += sum(len(lp.token) for lp in chunk.logprobs or [])
        yield {**header, "choices": [{"index": index, "text": text, "logprobs": logprobs,
                                      "finish_reason": chunk.finish_reason}]}
        if chunk.finish_reason is not None:
            usages[index] = chunk.usage

    if (request.get("stream_options") or {}).get("include_usage"):
        # one prompt's tokens per prompt, every choice's completion tokens
        per_prompt = [usages[i] for i in sorted(usages)]
        usage = usage_dict(per_prompt)
        usage["prompt_tokens"] = sum(per_prompt[i * n].prompt_tokens for i in range(len(prompts)) if i * n < len(per_prompt))
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        yield {**header, "choices": [], "usage": usage}
