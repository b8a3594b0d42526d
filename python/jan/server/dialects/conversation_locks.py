"""One response at a time in a conversation (the Responses API's ``conversation``), as OpenAI's API allows: a
response reads the conversation's items before its input and adds its input and output once it ends, so two made
at once would each answer the same history and then both be added, each missing the other's turn. OpenAI answers
the second a 400 ``conversation_locked`` ("Another process is currently operating on this conversation. Please
retry in a few seconds.", ``param: "conversation"``); jan does the same for a live request, and a batch's line
(queued work) waits for the conversation instead.

The hold is taken before the conversation is read and released once the response's items are in it (or when the
request fails before its response starts). It holds in every process sharing the data folder (two servers, or
``jan serve`` and the CLI's local mode), through the one claim of a thread an Assistants run makes too
(:mod:`jan.services.thread_claims`: checked and claimed under the thread's claim lock, the turn a lease a dead
process leaves free, SIGKILL too): a conversation is a thread, so a run active on it holds it against a response
(``conversation_locked``) and a response being made in it holds it against a run (the runs API's ``run_active``).
A read-only data folder records no claim: there the hold is this process's alone.

The Conversations API's writes (adding items, deleting one, deleting the conversation, replacing its metadata) are
refused with the same 400 ``conversation_locked`` (:meth:`ConversationLocks.refusal`) while a response is being made
in the conversation or a run holds its thread, checked and written under the thread's claim lock
(:meth:`jan.services.runs.RunService.unheld`; writes wait for each other there): a client's item added, or the
conversation deleted, between a response's read of the history and its append would leave the items out of order
(the response answered without it, yet is listed after it), or the response's turn appended to a conversation
deleted under it.

Letting go removes the turn's lease file: file work, done in a worker thread (never on the event loop, which a slow
disk would stall); the conversation is free in this process once it is gone (:meth:`ConversationHold.let_go` waits
for that, and a :meth:`ConversationLocks.take` meanwhile waits for it rather than being refused).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from jan.background import report_failure
from jan.server.errors import APIError

_log = logging.getLogger("jan.server")

__all__ = ["LOCKED_MESSAGE", "ConversationHold", "ConversationLocks"]

#: OpenAI's words for a conversation another response is being made in.
LOCKED_MESSAGE = "Another process is currently operating on this conversation. Please retry in a few seconds."

#: Longest pause (s) between a waiting taker's tries at a conversation another process holds (nothing tells this
#: process when that one lets go).
_RETRY_MAX = 0.5


class ConversationHold:
    """A conversation held for one response; :meth:`release` (any number of times) lets the next one in."""

    def __init__(self, locks: "ConversationLocks", conversation_id: str, freed: asyncio.Event):
        self._locks = locks
        self.conversation_id = conversation_id
        self._freed = freed
        self.released = False

    def release(self) -> None:
        """Let go now (no await: safe in a ``finally`` a cancel cuts short); the claim on disk goes in a worker
        thread, and the next taker of this process is let in once it is gone."""
        if self.released:
            return
        self.released = True
        self._locks._release(self.conversation_id, self._freed)

    async def let_go(self) -> None:
        """:meth:`release`, and wait until the conversation is free (its claim on disk gone): a client told the
        response ended finds the conversation free."""
        self.release()
        await self._freed.wait()


class ConversationLocks:
    """The conversations a response is being made in now (an app's one registry).

    ``claim(conversation_id)`` (async) claims the conversation's thread in every process sharing the data folder
    (False: a run or another process's response holds it) and ``unclaim(conversation_id)`` lets it go
    (:meth:`jan.services.runs.RunService.claim_turn` and ``release_turn``); without them the holds are this
    process's alone."""

    def __init__(self, claim: Callable[[str], Awaitable[bool]] | None = None,
                 unclaim: Callable[[str], None] | None = None) -> None:
        self._held: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}
        #: The conversations whose hold is being let go (its claim on disk removed in a worker thread).
        self._releasing: set[str] = set()
        self._letting_go: set[asyncio.Task] = set()
        self._claim = claim
        self._unclaim = unclaim

    def held(self, conversation_id: str) -> bool:
        """Whether a response is being made in the conversation now (by this process)."""
        return conversation_id in self._held

    async def take(self, conversation_id: str, *, param: str = "conversation") -> ConversationHold:
        """Hold the conversation for a response; OpenAI's 400 ``conversation_locked`` (naming ``param``, the
        request's field or path part holding the id) while another response (this process's or another's sharing
        the data folder), a write of the Conversations API or an Assistants run holds it. A hold being let go is
        waited for (its lease file removed in a worker thread: moments)."""
        freed = self._held.get(conversation_id)
        if freed is not None and conversation_id in self._releasing:
            await freed.wait()
        hold = await self._try_take(conversation_id) if conversation_id not in self._held else None
        if hold is None:
            raise self.refusal(param)
        return hold

    def refusal(self, param: str = "conversation_id") -> APIError:
        """OpenAI's 400 ``conversation_locked`` naming ``param``: what a write of the Conversations API is answered
        while a response (or a run) holds the conversation."""
        return APIError(400, LOCKED_MESSAGE, param=param, code="conversation_locked")

    def waiting(self, conversation_id: str) -> int:
        """How many takers wait for the conversation now (:meth:`wait_take`)."""
        return self._waiting.get(conversation_id, 0)

    async def wait_take(self, conversation_id: str) -> ConversationHold:
        """Hold the conversation once nothing else holds it (queued work: a batch's line): this process's holds
        are waited on, another process's (or a run's) tried again, every :data:`_RETRY_MAX` s at most."""
        pause = 0.02
        while True:
            freed = self._held.get(conversation_id)
            if freed is None and (hold := await self._try_take(conversation_id)) is not None:
                return hold
            self._waiting[conversation_id] = self._waiting.get(conversation_id, 0) + 1
            try:
                if freed is not None:
                    await freed.wait()
                else:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _RETRY_MAX)
            finally:
                left = self._waiting.pop(conversation_id) - 1
                if left:
                    self._waiting[conversation_id] = left

    async def _try_take(self, conversation_id: str) -> ConversationHold | None:
        """Hold the conversation (nobody in this process holds it), or None when a claim elsewhere does."""
        freed = asyncio.Event()
        self._held[conversation_id] = freed  # (first: another take of this process meanwhile is refused at once)
        try:
            claimed = self._claim is None or await self._claim(conversation_id)
        except BaseException:
            self._free(conversation_id, freed)
            raise
        if not claimed:
            self._free(conversation_id, freed)
            return None
        return ConversationHold(self, conversation_id, freed)

    def _release(self, conversation_id: str, freed: asyncio.Event) -> None:
        """A hold let go: its claim on disk first (in a worker thread: it unlinks a file), then this process's next
        taker."""
        if self._unclaim is None:
            self._free(conversation_id, freed)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # (no loop: nothing to stall)
            try:
                self._unclaim(conversation_id)
            finally:
                self._free(conversation_id, freed)
            return
        self._releasing.add(conversation_id)
        task = report_failure(loop.create_task(self._unclaim_off_loop(conversation_id, freed)),
                              f"letting the claim on conversation {conversation_id!r} go", _log)
        self._letting_go.add(task)  # (a strong reference: the loop keeps only weak ones)
        task.add_done_callback(self._letting_go.discard)

    async def _unclaim_off_loop(self, conversation_id: str, freed: asyncio.Event) -> None:
        assert self._unclaim is not None
        try:
            # (shielded: a cancel, the loop's shutdown, stops the wait, never the unclaim the worker does)
            await asyncio.shield(asyncio.to_thread(self._unclaim, conversation_id))
        finally:
            self._free(conversation_id, freed)

    def _free(self, conversation_id: str, freed: asyncio.Event) -> None:
        if self._held.get(conversation_id) is freed:
            del self._held[conversation_id]
            self._releasing.discard(conversation_id)
        freed.set()
