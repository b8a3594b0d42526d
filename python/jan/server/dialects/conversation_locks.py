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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from jan.server.errors import APIError

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
        if self.released:
            return
        self.released = True
        self._locks._release(self.conversation_id, self._freed)


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
        self._claim = claim
        self._unclaim = unclaim

    def held(self, conversation_id: str) -> bool:
        """Whether a response is being made in the conversation now (by this process)."""
        return conversation_id in self._held

    async def take(self, conversation_id: str) -> ConversationHold:
        """Hold the conversation for a response; OpenAI's 400 ``conversation_locked`` while another response (this
        process's or another's sharing the data folder) or an Assistants run holds it."""
        hold = await self._try_take(conversation_id) if conversation_id not in self._held else None
        if hold is None:
            raise APIError(400, LOCKED_MESSAGE, param="conversation", code="conversation_locked")
        return hold

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
        """A hold let go: its claim on disk first, then this process's next taker."""
        try:
            if self._unclaim is not None:
                self._unclaim(conversation_id)
        finally:
            self._free(conversation_id, freed)

    def _free(self, conversation_id: str, freed: asyncio.Event) -> None:
        if self._held.get(conversation_id) is freed:
            del self._held[conversation_id]
        freed.set()
