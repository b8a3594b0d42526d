"""The model catalogue: ``<data>/models/<id>/model.json`` plus downloads."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

from .base import ExtensionInterface, ExtensionType

__all__ = ["DownloadState", "DownloadTask", "ImportMode", "ModelExtension"]

ImportMode = Literal["symlink", "copy", "move"]


class DownloadState:
    """Values of :meth:`DownloadTask.status`'s ``"state"`` key."""

    QUEUED = "queued"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DownloadTask(ABC):
    """A model download in progress, as returned by :meth:`ModelExtension.pull`.

    Progress is also published on the event bus as ``DownloadProgress``
    events, then one ``DownloadComplete`` or ``DownloadFailed``.
    """

    #: Identifies the download (the server exposes it); often the model id.
    id: str = ""
    #: The model the download will create.
    model_id: str = ""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """A snapshot of the download as a dict.

        Keys: ``id``, ``model_id``, ``url``, ``state`` (a :class:`DownloadState`
        value), ``downloaded_bytes``, ``total_bytes`` (``None`` if unknown),
        ``error`` (``None`` unless failed).
        """

    @abstractmethod
    async def wait(self) -> dict[str, Any]:
        """Wait until the download ends; return the new model's ``model.json`` dict.

        Raises the download's error (a ``JanError``) if it failed, and
        ``asyncio.CancelledError`` if it was cancelled.
        """

    @abstractmethod
    async def cancel(self) -> None:
        """Stop the download and remove its partial files; a finished download is left alone."""


class ModelExtension(ExtensionInterface):
    """List, import, edit, delete and download models described by ``model.json`` dicts.

    Model ids are validated so that none can reach outside the data folder;
    an unknown id raises :class:`jan.errors.ModelNotFoundError`.
    """

    extension_type: ClassVar[str] = ExtensionType.MODEL

    @abstractmethod
    async def list_models(self) -> list[dict[str, Any]]:
        """Every known model's ``model.json`` dict (downloaded or not; ``metadata`` may say which)."""

    @abstractmethod
    async def get_model(self, model_id: str) -> dict[str, Any]:
        """The ``model.json`` dict of one model; raises ``ModelNotFoundError``."""

    @abstractmethod
    async def import_model(
        self, path: str, *, model_id: str | None = None, mode: ImportMode = "symlink"
    ) -> dict[str, Any]:
        """Add a local GGUF file as a model and return its new ``model.json`` dict.

        ``mode`` says whether the file is symlinked, copied or moved into
        ``<data>/models/<model_id>/``; ``model_id`` defaults to one derived
        from the file name. Settings (context length, chat template, ...)
        are read from the GGUF metadata where possible.
        """

    async def model_written_at(self, model_id: str) -> float | None:
        """When the model's definition was last written (seconds since the epoch): imported, pulled, created,
        copied or changed. None where the catalogue cannot tell (the default)."""
        return None

    @abstractmethod
    async def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into ``model.json`` (``settings``/``parameters``/``metadata`` merge one level deep) and return it."""

    @abstractmethod
    async def delete_model(self, model_id: str) -> None:
        """Delete the model's folder (its files and ``model.json``); raises ``ModelNotFoundError``."""

    @abstractmethod
    async def pull(self, source: str, model_id: str | None = None) -> DownloadTask:
        """Start downloading a model and return its :class:`DownloadTask` at once.

        ``source`` is an ``https://`` URL of a GGUF file or ``hf://owner/repo/file.gguf``
        (``hf://owner/repo`` may pick a file by quantization). Pulling a model
        that is already being pulled returns the running task.
        """

    @abstractmethod
    async def cancel_pull(self, task_id: str) -> bool:
        """Cancel a running download by task id (or model id); ``False`` if there was none."""

    @abstractmethod
    async def list_downloads(self) -> list[DownloadTask]:
        """Downloads that are running or ended recently."""
