"""Storage of assistants (``<data>/assistants/<id>/assistant.json``)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from .base import ExtensionInterface, ExtensionType

__all__ = ["AssistantExtension"]


class AssistantExtension(ExtensionInterface):
    """Create, read, update and delete assistants.

    Assistants are dicts in Jan's/OpenAI's shape: ``id``, ``object``
    (``"assistant"``), ``name``, ``description``, ``model``, ``instructions``,
    ``tools``, ``metadata``, ``created_at``, ...

    **Decision:** assistant storage is its own interface (type
    ``"assistant"``) *and* :class:`ConversationalExtension` inherits it, so a
    conversation store normally stores assistants too (as Jan's file layout
    does), while an extension that only manages assistants (e.g. one that
    syncs them from elsewhere) can still replace that part alone. The server
    asks ``manager.get(AssistantExtension)`` for ``/v1/assistants``.

    Missing ids raise :class:`jan.core.NotFoundError`; ids are validated by
    the implementation so no id can reach outside the data folder.
    """

    extension_type: ClassVar[str] = ExtensionType.ASSISTANT

    @abstractmethod
    async def list_assistants(self) -> list[dict[str, Any]]:
        """Every assistant, oldest first."""

    @abstractmethod
    async def get_assistant(self, assistant_id: str) -> dict[str, Any]:
        """The assistant with this id; raises ``NotFoundError`` if there is none."""

    @abstractmethod
    async def create_assistant(self, assistant: dict[str, Any]) -> dict[str, Any]:
        """Store a new assistant and return it as stored.

        The implementation fills in ``id`` (if absent), ``object`` and
        ``created_at``. An id that is already taken raises a ``JanError``
        (the server answers 409); an invalid one a ``JanError`` that is also
        a ``ValueError`` (400).
        """

    @abstractmethod
    async def update_assistant(self, assistant_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the stored assistant (top-level keys replace) and return the result.

        ``id``, ``object`` and ``created_at`` cannot be changed. Raises
        ``NotFoundError`` for an unknown id.
        """

    @abstractmethod
    async def delete_assistant(self, assistant_id: str) -> None:
        """Remove the assistant and its files; raises ``NotFoundError`` for an unknown id."""
