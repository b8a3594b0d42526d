"""Engine log-probabilities in OpenAI's two formats (chat and legacy completions)."""

from __future__ import annotations

import jan


def chat_logprobs(items: list[jan.TokenLogprob], top: int) -> dict:
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": lp.bytes,
                "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in lp.top[:top]],
            }
            for lp in items
        ],
        "refusal": None,
    }


def completion_logprobs(items: list[jan.TokenLogprob], text_offset: int) -> dict:
    offsets = []
    for lp in items:
        offsets.append(text_offset)
        text_offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in items],
        "token_logprobs": [lp.logprob for lp in items],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in items],
        "text_offset": offsets,
    }
