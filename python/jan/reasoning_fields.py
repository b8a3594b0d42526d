"""The thinking settings of a request body, read one way for every front end (the chat route, the services'
``ReasoningRequest``, the CLI). Kept apart from :mod:`jan.templates` so that a front end which renders no
template (the CLI, tests/test_one_path.py) reads them without importing the template machinery."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["REASONING_FIELDS", "THINKING_SWITCHES", "request_reasoning", "thinking_switch_fault"]


#: The request fields :func:`request_reasoning` reads.
REASONING_FIELDS = ("reasoning_effort", "think", "chat_template_kwargs", "reasoning_format", "reasoning_budget",
                    "reasoning_budget_tokens", "thinking_budget_tokens")


#: The thinking switches templates read from ``chat_template_kwargs`` as booleans (``enable_thinking``: Qwen3,
#: GLM, SmolLM3, Nemotron...; ``thinking``: DeepSeek V3.1/V3.2, Kimi-K3), which jan reads too (ReasoningRequest).
THINKING_SWITCHES = ("enable_thinking", "thinking")


def thinking_switch_fault(kwargs: Any) -> tuple[str, Any] | None:
    """The first thinking switch (:data:`THINKING_SWITCHES`) that ``kwargs`` (a request's ``chat_template_kwargs``)
    gives as something other than a boolean or null, with its value; None when there is none. Templates read the
    switch every way (Qwen3 "is false", GLM "not enable_thinking", Reka "is true"), so the string "false" turned
    thinking on in one and off in another, while :func:`request_reasoning` ignored it: every front end refuses it
    (llama-server refuses a string, "true" and "false" included), the one test shared by the typed request
    (``ChatRequest``, whatever engine runs it) and the template's variables (``template_variables``)."""
    if not isinstance(kwargs, Mapping):
        return None
    for key in THINKING_SWITCHES:
        value = kwargs.get(key)
        if value is not None and not isinstance(value, bool):
            return key, value
    return None


def request_reasoning(body: Mapping[str, Any]) -> dict[str, Any]:
    """The thinking settings a request gives, as the competitors spell them (:data:`REASONING_FIELDS`), under the
    names of :class:`ReasoningRequest`'s fields (and of the service's ``ReasoningOptions``): only those it gives,
    so that the model's defaults fill the rest. The one reading of them, for every front end that takes them.

    ``reasoning_effort``; Ollama's ``think`` (``true``/``false`` turns thinking on/off, a level is the effort when
    ``reasoning_effort`` gives none); ``chat_template_kwargs.enable_thinking`` (a boolean, where ``think`` gave
    none); ``reasoning_format``; llama-server's ``reasoning_budget``, else its ``reasoning_budget_tokens`` (-1: the model's
    budget), else ``thinking_budget_tokens``. A ``reasoning_budget`` of -1 is kept: it asks for no cap, over a
    model's own budget. Values are checked where they are used."""
    given: dict[str, Any] = {}
    effort = body.get("reasoning_effort")
    think = body.get("think")
    if isinstance(think, bool):
        given["enabled"] = think
    elif isinstance(think, str) and effort is None:
        effort = think
    if effort is not None:
        given["effort"] = effort
    kwargs = body.get("chat_template_kwargs")
    switch = kwargs.get("enable_thinking") if isinstance(kwargs, Mapping) else None
    if "enabled" not in given and isinstance(switch, bool):
        given["enabled"] = switch
    if body.get("reasoning_format") is not None:
        given["format"] = body["reasoning_format"]
    budget = body.get("reasoning_budget")
    if budget is None and body.get("reasoning_budget_tokens") is not None:
        # llama-server's chat field, read before thinking_budget_tokens as it reads them; its -1 is the server's
        # (here the model's) budget, not jan's reasoning_budget -1 (no cap)
        budget = body["reasoning_budget_tokens"] if body["reasoning_budget_tokens"] != -1 else None
    elif budget is None:
        budget = body.get("thinking_budget_tokens")
    if budget is not None:
        given["budget_tokens"] = budget
    return given
