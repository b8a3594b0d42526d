"""``Services``: every service, built once from the extension manager (by the server or the CLI)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from dataclasses import dataclass

from jan.core import ExtensionManager, LocalEventBus
from jan.services.chat import ChatService
from jan.services.completions import CompletionService
from jan.services.embeddings import EmbeddingService
from jan.services.models import ModelService
from jan.services.runs import RunService, describe_error

__all__ = ["Services", "open_services"]


@dataclass(frozen=True)
class Services:
    manager: ExtensionManager
    models: ModelService
    chat: ChatService
    completions: CompletionService
    embeddings: EmbeddingService
    runs: RunService

    @classmethod
    def from_manager(cls, manager: ExtensionManager, *,
                     describe_error: Callable[[BaseException], tuple[str, str | None]] = describe_error,
                     default_model: str | None = None) -> "Services":
        """Every service over ``manager`` (started or not). ``describe_error`` maps a failure to the
        (message, code) a run records (the server passes its HTTP error mapping); ``default_model`` is
        the model of requests that name none (else the only loaded one)."""
        models = ModelService(manager, default_model=default_model)
        chat = ChatService(models)
        return cls(manager=manager, models=models, chat=chat, completions=CompletionService(models),
                   embeddings=EmbeddingService(models), runs=RunService(manager, models, chat, describe_error=describe_error))


@contextlib.asynccontextmanager
async def open_services(data_folder: str | Path, *, discover_extensions: bool = True) -> AsyncIterator[Services]:
    """The Python API's way in: start the extension manager on ``data_folder`` (as ``jan serve``
    does, built-ins and entry-point extensions), yield the services, stop it on the way out::

        async with open_services("~/jan") as services:
            result = await services.chat.complete(ChatRequest(model="qwen", messages=(...)))
    """
    from jan.store import make_data_folder

    folder = make_data_folder(data_folder)  # "" (the current folder) and a file in its place refused by name
    manager = ExtensionManager(folder, LocalEventBus(), discover_entry_points=discover_extensions)
    await manager.start()
    try:
        yield Services.from_manager(manager)
    finally:
        await manager.stop()
