"""What a dialect says of a top-level request field it does not know.

Each dialect refuses unknown fields as its real API does (a 400 naming the field, in its own words), so a typo
or a field of another endpoint is never silently dropped; the fields its official SDK sends are all declared on
its request bodies (tests/test_dialect_unknown_fields.py checks them against the installed SDKs). A field of
jan's ``/v1/chat/completions`` (an OpenAI name or one of jan's extensions such as ``reasoning_budget``) is
pointed at: this endpoint's name for it where there is one, else that only chat completions takes it.
"""

from __future__ import annotations

from collections.abc import Mapping


def _chat_fields() -> frozenset[str]:
    from jan.server.schemas import ChatCompletionRequest  # (the one list: chat completions' own body)

    return frozenset(name for name, info in ChatCompletionRequest.model_fields.items()) | frozenset(
        info.alias for info in ChatCompletionRequest.model_fields.values() if info.alias)


def chat_hint(field: str, renames: Mapping[str, str]) -> str:
    """`` (...)``: what to send instead of ``field``, where it is a field of chat completions; "" otherwise."""
    if field in renames:
        return f" ({field} is a field of /v1/chat/completions; this endpoint's is {renames[field]})"
    if field in _chat_fields():
        return f" ({field} is a field of jan's /v1/chat/completions, which this endpoint does not take)"
    return ""


#: Chat completions' fields with another name on the Responses API.
RESPONSES_RENAMES: Mapping[str, str] = {
    "max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort", "response_format": "text.format", "verbosity": "text.verbosity",
    "messages": "input"}

#: Chat completions' fields with another name on Anthropic's Messages API.
ANTHROPIC_RENAMES: Mapping[str, str] = {
    "max_completion_tokens": "max_tokens", "stop": "stop_sequences", "reasoning_effort": "output_config.effort",
    "response_format": "output_config.format", "reasoning_budget": "thinking.budget_tokens",
    "thinking_budget_tokens": "thinking.budget_tokens", "reasoning_budget_tokens": "thinking.budget_tokens"}


def responses_unknown(field: str) -> tuple[str, str]:
    """OpenAI Responses' refusal of an unknown parameter: its message and code."""
    return f"Unknown parameter: '{field}'.{chat_hint(field, RESPONSES_RENAMES)}", "unknown_parameter"


def anthropic_unknown(field: str) -> tuple[str, str]:
    """Anthropic's refusal of a field its body does not have (its message; the code is jan's)."""
    return f"{field}: Extra inputs are not permitted{chat_hint(field, ANTHROPIC_RENAMES)}", "unknown_parameter"
