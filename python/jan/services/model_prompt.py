"""A model's own prompt: model.json ``system`` (its default system prompt) and ``messages`` (a conversation stored
with it, as few-shot examples) — Ollama's Modelfile ``SYSTEM`` and ``MESSAGE``.

Applied to every chat in one place (:meth:`jan.services.chat.ChatService`, before any engine sees the request), so
that every front end (OpenAI, Anthropic, Responses, Ollama, threads/runs, the CLI) gets the same rule, Ollama's
(server/routes.go ChatHandler and GenerateHandler):

* the model's ``system`` is the conversation's system prompt when the request has no system (or developer) message
  of its own; one it has replaces it (an Anthropic ``system``, a Responses ``instructions``, an assistant's
  ``instructions``, an ``/api/generate`` ``system`` all arrive as one);
* the stored ``messages`` come before the request's turns, after its system prompt; not for a request that
  continues an earlier exchange by its token ids (``/api/generate``'s ``context``), which holds them already.

Raw prompts (``/api/generate`` with ``raw``, ``/v1/completions``) go through no template and get neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from jan.services.errors import RequestError
from jan.services.types import ChatMessage, ChatRequest

__all__ = ["PROMPT_FIELDS", "STORED_ROLES", "check_model_prompt", "model_prompt_problem", "with_model_prompt"]

#: The model.json fields this module reads.
PROMPT_FIELDS = ("system", "messages")
#: The roles a stored message may have (Ollama's Modelfile MESSAGE: system, user, assistant).
STORED_ROLES = ("system", "user", "assistant")
#: A request message of one of these roles is its own system prompt: the model's is not added then.
_OWN_SYSTEM_ROLES = ("system", "developer")


def model_prompt_problem(model: Mapping[str, Any], fields: Iterable[str] = PROMPT_FIELDS) -> tuple[str, str] | None:
    """What is wrong with a model.json's ``system``/``messages`` (those of ``fields``): ``(param, reason)``, or
    None. Absent or null is no prompt; ``""`` and ``[]`` are none either."""
    for field in fields:
        value = model.get(field)
        if value is None:
            continue
        if field == "system":
            if not isinstance(value, str):
                return "system", f"expected a string, got {type(value).__name__}"
        elif field == "messages":
            if not isinstance(value, list):
                return "messages", f"expected a list of {{role, content}} objects, got {type(value).__name__}"
            for i, message in enumerate(value):
                where = f"messages[{i}]"
                if not isinstance(message, Mapping):
                    return where, f"expected a {{role, content}} object, got {type(message).__name__}"
                other = sorted(set(message) - {"role", "content"})
                if other:
                    return f"{where}.{other[0]}", "a stored message has only a role and a text content"
                role = message.get("role")
                if role not in STORED_ROLES:
                    return f"{where}.role", f"expected one of {', '.join(STORED_ROLES)}, got {role!r}"
                if not isinstance(message.get("content"), str):
                    return f"{where}.content", f"expected a string, got {type(message.get('content')).__name__}"
    return None


def check_model_prompt(model: Mapping[str, Any], changed: Iterable[str] | None = None) -> None:
    """A model.json's ``system`` and ``messages`` as :func:`with_model_prompt` reads them, before it is stored
    (``changed``: the fields a PATCH sets; None: all). :class:`RequestError` naming the field."""
    fields = PROMPT_FIELDS if changed is None else [f for f in PROMPT_FIELDS if f in set(changed)]
    problem = model_prompt_problem(model, fields)
    if problem is not None:
        param, reason = problem
        raise RequestError(f"{param}: {reason}", param=param, code="invalid_value")


def with_model_prompt(request: ChatRequest, model: Mapping[str, Any]) -> ChatRequest:
    """``request`` with the model's system prompt and stored messages (see the module docstring). A model.json
    edited by hand into a wrong shape fails the request with a :class:`RequestError` naming the field."""
    system, stored = model.get("system"), model.get("messages")
    if not system and not stored:
        return request
    problem = model_prompt_problem(model)
    if problem is not None:
        param, reason = problem
        raise RequestError(f"the model '{model.get('id')}' has a model.json {param} no chat can use: {reason}",
                           param=param, code="invalid_model_config")
    messages = list(request.messages)
    # the request's own system prompt: its leading system/developer messages (any such message replaces the model's)
    lead = 0
    while lead < len(messages) and messages[lead].role in _OWN_SYSTEM_ROLES:
        lead += 1
    own_system = any(m.role in _OWN_SYSTEM_ROLES for m in messages)
    head = messages[:lead] if own_system else ([ChatMessage.of_text("system", system)] if system else [])
    turns = [] if request.context else [ChatMessage.of_text(m["role"], m["content"]) for m in stored or ()]
    return replace(request, messages=(*head, *turns, *messages[lead:]))
