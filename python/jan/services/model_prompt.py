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

import copy
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from jan.errors import MediaError
from jan.services.errors import RequestError
from jan.services.types import ChatMessage, ChatRequest

__all__ = ["PROMPT_FIELDS", "STORED_ROLES", "check_model_prompt", "model_prompt_place", "model_prompt_problem",
           "requests_media_error", "with_model_prompt"]

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
    at, added = _placed(request, system or "", stored or [])
    if not added:
        return request
    return replace(request, messages=(*request.messages[:at], *added, *request.messages[at:]))


def model_prompt_place(request: ChatRequest, model: Mapping[str, Any]) -> tuple[int, int]:
    """Where :func:`with_model_prompt` puts the model's messages among ``request``'s: ``(at, count)``, the request's
    messages from ``at`` on moved ``count`` places later (``(0, 0)``: none added, or a model.json of another shape)."""
    if model_prompt_problem(model) is not None:
        return 0, 0
    at, added = _placed(request, model.get("system") or "", model.get("messages") or [])
    return at, len(added)


def _placed(request: ChatRequest, system: str, stored: list[Mapping[str, str]]) -> tuple[int, list[ChatMessage]]:
    """The messages the model's prompt adds to ``request``, and the index they go in at: after the request's own
    leading system/developer messages, which replace the model's system prompt (so does one later on)."""
    messages = request.messages
    lead = 0
    while lead < len(messages) and messages[lead].role in _OWN_SYSTEM_ROLES:
        lead += 1
    own_system = any(m.role in _OWN_SYSTEM_ROLES for m in messages)
    head = [] if own_system or not system else [ChatMessage.of_text("system", system)]
    turns = [] if request.context else [ChatMessage.of_text(m["role"], m["content"]) for m in stored]
    return lead, [*head, *turns]


def requests_media_error(exc: MediaError, place: tuple[int, int]) -> MediaError:
    """A :class:`~jan.errors.MediaError` raised of the request with the model's prompt (``place``:
    :func:`model_prompt_place`) said of the request's own message: front ends name the field of their body by its
    ``message_index``, which the model's added messages moved."""
    at, count = place
    index = exc.message_index
    if not count or index is None or index < at + count:  # (before them; the added messages are text, no media)
        return exc
    own = index - count
    old, new = f"messages[{index}]", f"messages[{own}]"
    moved = copy.copy(exc)
    moved.args = (str(exc).replace(old, new, 1), *exc.args[1:])
    moved.message_index = own
    if isinstance(exc.param, str):
        moved.param = exc.param.replace(old, new, 1)
    return moved
