"""``Services``: every service, built once from the extension manager (by the server or the CLI)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jan.core import ExtensionManager
from jan.services.chat import ChatService
from jan.services.completions import CompletionService
from jan.services.embeddings import EmbeddingService
from jan.services.models import ModelService
from jan.services.runs import RunService, describe_error

__all__ = ["Services"]


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
                     describe_error: Callable[[BaseException], tuple[str, str | None]] = describe_error) -> "Services":
        """Every service over ``manager`` (started or not). ``describe_error`` maps a failure to the
        (message, code) a run records (the server passes its HTTP error mapping)."""
        models = ModelService(manager)
        chat = ChatService(models)
        return cls(manager=manager, models=models, chat=chat, completions=CompletionService(models),
                   embeddings=EmbeddingService(models), runs=RunService(manager, models, chat, describe_error=describe_error))
