"""A run's steps: what each part of a run did, as OpenAI's run step objects tell it.

A model turn that writes a message (text or thinking; or nothing, as it ends without calling tools) is a
``message_creation`` step, created as the stream tells the message (``in_progress``) and ended with the turn; a turn
that only calls tools writes no message on OpenAI's wire and has no such step. A turn that calls tools is followed by
a ``tool_calls`` step holding its calls, each with its ``output`` once it has one: it ends when every call has one —
at once for the calls the run's policy runs, after ``submit_tool_outputs`` for those the user answers (until then it
stays ``in_progress``, its run in ``requires_action``, as OpenAI's).

A ``tool_calls`` step is created as its turn's first call piece streams (told with no calls; each piece a
``thread.run.step.delta``); one whose calls never ran (the token limit cut them, so none was run or asked about)
ends ``cancelled``. A step ends as its turn or its run does: ``completed`` (also in a run ``incomplete``: the step
did what it was for), ``cancelled`` (a cancelled run, and one a stop of jan interrupted: nothing is left
``in_progress`` that nobody runs; resuming the run starts steps of its own) or ``failed`` (with the run's
``last_error``).

Usage: each model turn is counted once, so the steps' usage adds up to the run's. A ``message_creation`` step's
is its turn's; a turn that called tools tells its usage in its ``tool_calls`` step (as jan's stream did before
steps could be listed), its ``message_creation`` step (if it wrote something) zero. ``null`` while a step is
``in_progress`` (OpenAI's rule, applied where the object is made: the record keeps a waiting tool step's usage for
when it ends).

Steps are kept in their run's record (``steps``, :mod:`jan.services.run_records`), saved before each step's
event is published, so a client that lists them after an event, or after a restart, finds what was streamed.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from jan.services.errors import FAILURE_KINDS
from jan.store._util import now_s

__all__ = ["LAST_ERROR_CODES", "STEP_ID_RE", "RunStep", "end_status", "interrupted_steps", "last_error",
           "openai_last_error", "zero_usage"]

STEP_ID_RE = re.compile(r"^step_[A-Za-z0-9]{1,64}$")
#: Statuses a step never leaves.
ENDED_STATUSES = ("completed", "cancelled", "failed", "expired")
#: OpenAI's documented values of a failed run's (and run step's) ``last_error.code``: clients switch on them, so
#: jan's own, finer codes (``context_length_exceeded``, ``queue_full``, ...) go into the ``message`` instead.
LAST_ERROR_CODES = FAILURE_KINDS
#: jan's codes that are no server error, as OpenAI's vocabulary has them: for a ``last_error`` saved by a jan that
#: kept its own code there (a new failure is classified by its exception: jan.services.errors.failure_kind).
_OLD_CODES = {"queue_full": "rate_limit_exceeded", "model_pool_busy": "rate_limit_exceeded",
              "context_length_exceeded": "invalid_prompt"}


def last_error(message: str, code: str | None, kind: str) -> dict[str, str]:
    """A failed run's (step's) ``last_error``: ``{"code": kind, "message": ...}``, ``kind`` one of
    :data:`LAST_ERROR_CODES`, jan's own ``code`` kept at the end of the message when it says more
    (``"The prompt has 900 tokens, ... (context_length_exceeded)"``). ValueError for another ``kind``."""
    if kind not in LAST_ERROR_CODES:
        raise ValueError(f"last_error code must be one of {', '.join(LAST_ERROR_CODES)}, got {kind!r}")
    detail = f" ({code})" if code and code != kind and not message.endswith(f"({code})") else ""
    return {"code": kind, "message": f"{message}{detail}"}


def openai_last_error(value: Any) -> dict[str, Any] | None:
    """A saved ``last_error`` in OpenAI's vocabulary (:func:`last_error`): what a record an older jan wrote holds
    (jan's own code) is mapped as it is read; one already in it, or None, is returned as it is."""
    if not isinstance(value, dict) or value.get("code") in LAST_ERROR_CODES:
        return value
    code = value.get("code")
    kind = _OLD_CODES.get(code, "server_error") if isinstance(code, str) else "server_error"
    return last_error(str(value.get("message") or "The run failed"), code if isinstance(code, str) else None, kind)


def zero_usage() -> dict[str, Any]:
    """The usage of a step that used no tokens of its own (a calling turn's message: its tool step has them)."""
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def end_status(run_status: str) -> str:
    """How an open step ends when its run ends with ``run_status``."""
    if run_status in ("completed", "incomplete"):
        return "completed"
    if run_status == "expired":  # the tool calls it waited on were never answered (OpenAI's step status)
        return "expired"
    return "failed" if run_status == "failed" else "cancelled"


@dataclass(eq=False)
class RunStep:
    """One step of a run. ``tool_calls``: OpenAI's function tool calls (``{"id", "type": "function", "function":
    {"name", "arguments", "output"}}``, ``output`` null until the call has one; Jan adds ``approved_by`` and
    ``duration_ms``). ``usage``: the turn's, shown once the step ended."""

    run_id: str
    thread_id: str
    assistant_id: str
    type: str  # "message_creation" | "tool_calls"
    message_id: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"step_{uuid.uuid4().hex[:24]}")
    created_at: int = field(default_factory=now_s)  # (the data folder's clock, as its run's times)
    status: str = "in_progress"
    completed_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    last_error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.status == "in_progress"

    def end(self, status: str, *, usage: dict[str, Any] | None = None, last_error: dict[str, Any] | None = None,
            at: int | None = None) -> None:
        """End the step (``completed``, ``cancelled`` or ``failed``) at ``at`` (now); a step that ended stays so."""
        if not self.open:
            return
        at = now_s() if at is None else at
        self.status = status
        if status == "completed":
            self.completed_at = at
        elif status == "failed":
            self.failed_at, self.last_error = at, last_error
        else:
            self.cancelled_at = at
        if usage is not None:
            self.usage = usage
        if self.usage is None:  # an ended step tells its usage: none of its turn's was known
            self.usage = zero_usage()

    def answer(self, call_id: str, output: str, **extra: Any) -> None:
        """Record a call's output (and Jan's ``approved_by``/``duration_ms``)."""
        for call in self.tool_calls:
            if call.get("id") == call_id:
                call["function"]["output"] = output
                call.update(extra)

    def snapshot(self) -> "RunStep":
        """The step as it stands (a stream event keeps it so, while the step goes on)."""
        return copy.deepcopy(self)

    def details(self) -> dict[str, Any]:
        """OpenAI's ``step_details``."""
        if self.type == "message_creation":
            return {"type": "message_creation", "message_creation": {"message_id": self.message_id}}
        return {"type": "tool_calls", "tool_calls": copy.deepcopy(self.tool_calls)}

    def to_record(self) -> dict[str, Any]:
        """What is saved of the step (in its run's record): OpenAI's object, with the turn's usage kept."""
        return {"id": self.id, "object": "thread.run.step", "created_at": self.created_at, "run_id": self.run_id,
                "assistant_id": self.assistant_id, "thread_id": self.thread_id, "type": self.type,
                "status": self.status, "step_details": self.details(), "last_error": self.last_error,
                "expired_at": self.expired_at, "cancelled_at": self.cancelled_at, "failed_at": self.failed_at,
                "completed_at": self.completed_at, "metadata": self.metadata, "usage": self.usage}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "RunStep":
        details = record.get("step_details") or {}
        kind = record.get("type") or details.get("type") or "message_creation"
        return cls(run_id=record.get("run_id") or "", thread_id=record.get("thread_id") or "",
                   assistant_id=record.get("assistant_id") or "", type=kind,
                   message_id=(details.get("message_creation") or {}).get("message_id"),
                   tool_calls=list(details.get("tool_calls") or []), id=record["id"],
                   created_at=int(record.get("created_at") or 0), status=record.get("status") or "in_progress",
                   completed_at=record.get("completed_at"), cancelled_at=record.get("cancelled_at"),
                   failed_at=record.get("failed_at"), expired_at=record.get("expired_at"),
                   last_error=openai_last_error(record.get("last_error")), usage=record.get("usage"),
                   metadata=record.get("metadata") or {})


def interrupted_steps(records: Any, at: int) -> list[dict[str, Any]]:
    """The steps of a run record whose run a stop of jan interrupted: the open ones ``cancelled`` at ``at``."""
    out = []
    for record in records if isinstance(records, list) else []:
        if isinstance(record, dict) and record.get("status") == "in_progress":
            record = {**record, "status": "cancelled", "cancelled_at": at,
                      "usage": record.get("usage") or zero_usage()}
        out.append(record)
    return out
