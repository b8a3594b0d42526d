"""One response at a time in a conversation (the Responses API's ``conversation``), as OpenAI's API allows: a
response reads the conversation's items before its input and adds its input and output once it ends, so two made
at once would each answer the same history and then both be added, each missing the other's turn. OpenAI answers
the second a 400 ``conversation_locked`` ("Another process is currently operating on this conversation. Please
retry in a few seconds.", ``param: "conversation"``); jan does the same for a live request, and a batch's line
(queued work) waits for the conversation instead.

The hold is taken before the conversation is read and released once the response's items are in it (or when the
request fails before its response starts). Within one jan process: two servers on one data folder do not see each
other's holds.
"""

from __future__ import annotations

import asyncio

from jan.server.errors import APIError

__all__ = ["LOCKED_MESSAGE", "ConversationHold", "ConversationLocks"]

#: OpenAI's words for a conversation another response is being made in.
LOCKED_MESSAGE = "Another process is currently operating on this conversation. Please retry in a few seconds."


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
        self._locks._free(self.conversation_id, self._freed)


class ConversationLocks:
    """The conversations a response is being made in now (an app's one registry)."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}

    def held(self, conversation_id: str) -> bool:
        """Whether a response is being made in the conversation now."""
        return conversation_id in self._held

    def take(self, conversation_id: str) -> ConversationHold:
        """Hold the conversation for a response; OpenAI's 400 ``conversation_locked`` while another holds it."""
        if conversation_id in self._held:
            raise APIError(400, LOCKED_MESSAGE, param="conversation", code="conversation_locked")
        return self._hold(conversation_id)

    def waiting(self, conversation_id: str) -> int:
        """How many takers wait for the conversation now (:meth:`wait_take`)."""
        return self._waiting.get(conversation_id, 0)

    async def wait_take(self, conversation_id: str) -> ConversationHold:
        """Hold the conversation once no other response holds it (queued work: a batch's line)."""
        while (freed := self._held.get(conversation_id)) is not None:
            self._waiting[conversation_id] = self._waiting.get(conversation_id, 0) + 1
            try:
                await freed.wait()
            finally:
                left = self._waiting.pop(conversation_id) - 1
                if left:
                    self._waiting[conversation_id] = left
        return self._hold(conversation_id)

    def _hold(self, conversation_id: str) -> ConversationHold:
        freed = asyncio.Event()
        self._held[conversation_id] = freed
        return ConversationHold(self, conversation_id, freed)

    def _free(self, conversation_id: str, freed: asyncio.Event) -> None:
        if self._held.get(conversation_id) is freed:
            del self._held[conversation_id]
        freed.set()
