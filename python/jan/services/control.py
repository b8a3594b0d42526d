"""A handle on one chat generation while it runs, for a client other than the one reading it: llama-server's
``POST /v1/chat/completions/control`` ("reasoning_end": stop thinking and answer now, a chat page's button).

The front end makes one and puts it on the :class:`~jan.services.types.ChatRequest`; the chat service arms what the
control needs (a thinking budget without a cap, so that the engine's budget sampler watches the thinking) and
attaches the engine's requests once they are submitted; the front end looks it up by the completion's id.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Literal

#: What :meth:`GenerationControl.end_reasoning` did: ``ended`` (the engine closes the thinking at its next token),
#: ``pending`` (not submitted yet: done as it is), ``not_armed`` (no thinking to end: the model's chat format has
#: none, or its engine is not a local one), ``finished`` (every choice has ended).
EndReasoning = Literal["ended", "pending", "not_armed", "finished"]


#: Why a control cannot end a reply's thinking that the request's own (raw GBNF) grammar holds.
GRAMMAR_HOLDS_THINKING = ("the request's own grammar holds its whole output, the thinking included, so only the "
                          "grammar can end the thinking (a response_format, which holds the answer alone, leaves "
                          "it free to be ended)")


class GenerationControl:
    """Controls on the engine requests of one chat completion (one per choice). Thread-safe: attached from the
    worker thread that submits them, used from the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Weak: the control acts on the requests while their readers hold them, and never keeps one past its end. A
        # run keeps its last turn's control for as long as the run is remembered (256 of them), and each engine
        # request held its native state, its event file descriptor with it: a descriptor per run, for hours.
        self._requests: list[weakref.ref] = []
        self._attached = False
        self._armed = False
        self._end_asked = False
        #: why the thinking cannot be ended, where the cause is the request's own rather than its model's (None:
        #: the model does not think, or its engine cannot end a thinking)
        self.unarmed_reason: str | None = None

    @property
    def end_asked(self) -> bool:
        """Whether an end of the thinking was asked before the requests were attached: the chat service then makes
        them with a spent thinking budget, so that they close it at their first token (setting the engine's flag
        after the submit would let the first tokens of thinking through)."""
        with self._lock:
            return self._end_asked and not self._attached

    def attach(self, requests: list[Any], *, armed: bool, reason: str | None = None) -> None:
        """The engine requests (``jan.Request``) that serve the completion, once submitted; ``armed``: whether they
        were made with the thinking budget that can end the thinking (``reason``: why not, when the request itself
        rules it out). An end asked for before is done now."""
        with self._lock:
            self._requests = [weakref.ref(request) for request in requests]
            self._attached, self._armed = True, armed
            self.unarmed_reason = None if armed else reason
            if self._end_asked and armed:
                for request in requests:
                    request.end_reasoning()

    def end_reasoning(self) -> EndReasoning:
        """Close each choice's thinking at its next token, so that the model answers now."""
        with self._lock:
            if not self._attached:
                self._end_asked = True
                return "pending"
            if not self._armed:
                return "not_armed"
            # (a request gone has ended: its reader let go of it)
            live = [request for request in (ref() for ref in self._requests) if request is not None]
            ended = [request.end_reasoning() for request in live]
            return "ended" if any(ended) else "finished"
