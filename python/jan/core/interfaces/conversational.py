"""Storage of threads and their messages (plus assistants, inherited)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Literal

from .assistant import AssistantExtension
from .base import ExtensionType

__all__ = ["ConversationalExtension", "SortOrder"]

SortOrder = Literal["asc", "desc"]


class ConversationalExtension(AssistantExtension):
    """Threads, messages and assistants, as dicts in Jan's/OpenAI's shapes.

    Thread: ``id``, ``object`` (``"thread"``), ``title``, ``assistants`` (list),
    ``created``, ``updated``, ``metadata``. Message: ``id``, ``object``
    (``"thread.message"``), ``thread_id``, ``role``, ``content``
    (``[{"type": "text", "text": {"value": ..., "annotations": []}}]``),
    ``status``, ``created``, ``updated``, ``metadata``.

    It inherits the assistant methods of :class:`AssistantExtension` (see
    there for why). Contract for every implementation:

    * missing threads/messages raise :class:`jan.core.NotFoundError`;
    * ids are validated, so no id can reach outside the data folder;
    * writes are atomic and concurrent writers do not lose messages;
    * list pagination follows OpenAI: results sorted by creation time in
      ``order``; ``after``/``before`` are ids (exclusive cursors) in that
      order; ``limit`` ``None`` means no limit (the server applies the API's
      default of 20).
    """

    extension_type: ClassVar[str] = ExtensionType.CONVERSATIONAL

    # -- threads ---------------------------------------------------------
    @abstractmethod
    async def list_threads(
        self,
        *,
        limit: int | None = None,
        order: SortOrder = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Threads sorted by ``created`` in ``order``, paginated by the ``after``/``before`` ids and ``limit``."""

    @abstractmethod
    async def get_thread(self, thread_id: str) -> dict[str, Any]:
        """The thread with this id; raises ``NotFoundError`` if there is none."""

    @abstractmethod
    async def create_thread(self, thread: dict[str, Any]) -> dict[str, Any]:
        """Store a new thread and return it as stored.

        Fills in ``id`` (if absent), ``object``, ``created`` and ``updated``.
        Messages given under a ``messages`` key, if the implementation
        accepts it, are appended in order.
        """

    @abstractmethod
    async def update_thread(self, thread_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the thread (top-level keys replace), bump ``updated``, return the result."""

    @abstractmethod
    async def delete_thread(self, thread_id: str) -> None:
        """Delete the thread with all its messages; raises ``NotFoundError`` for an unknown id."""

    # -- messages --------------------------------------------------------
    @abstractmethod
    async def list_messages(
        self,
        thread_id: str,
        *,
        limit: int | None = None,
        order: SortOrder = "asc",
        after: str | None = None,
        before: str | None = None,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Messages of a thread sorted by creation in ``order``, paginated by ``after``/``before`` ids and ``limit``.

        ``run_id`` keeps only the messages that run wrote (their ``run_id``; a ``tool`` message's may be
        under ``metadata``), filtered before paging: the cursors and ``limit`` apply to the filtered list.
        Raises ``NotFoundError`` if the thread does not exist.
        """

    @abstractmethod
    async def get_message(self, thread_id: str, message_id: str) -> dict[str, Any]:
        """One message of a thread; raises ``NotFoundError`` if the thread or message is missing."""

    @abstractmethod
    async def create_message(self, thread_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Append a message to the thread and return it as stored.

        Fills in ``id`` (if absent), ``object``, ``thread_id``, ``created``,
        ``updated`` and normalizes a plain-string ``content`` to the list of
        content parts.
        """

    @abstractmethod
    async def update_message(self, thread_id: str, message_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the message (e.g. streamed ``content``, ``status``), bump ``updated``, return it."""

    @abstractmethod
    async def delete_message(self, thread_id: str, message_id: str) -> None:
        """Remove one message; raises ``NotFoundError`` if the thread or message is missing."""

    # -- files -----------------------------------------------------------
    async def read_file(self, thread_id: str, file_id: str) -> tuple[bytes, str]:
        """``(bytes, mime_type)`` of an image stored with one of the thread's messages.

        Messages reference such files with Jan's ``{"type": "image_file", "image_file":
        {"file_id", "mime_type"}}`` parts. Raises ``NotFoundError`` for an unknown thread
        or file. The default (a store that keeps no files) finds none.
        """
        from jan.core.exceptions import NotFoundError
        from jan.errors import not_found_message

        raise NotFoundError(not_found_message("file", file_id), resource="file", id=file_id)
