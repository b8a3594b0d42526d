"""``Services``: every service, built once from the extension manager (by the server or the CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from jan.core import ExtensionManager
from jan.services.chat import ChatService
from jan.services.completions import CompletionService
from jan.services.embeddings import EmbeddingService
from jan.services.models import ModelService

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    manager: ExtensionManager
    models: ModelService
    chat: ChatService
    completions: CompletionService
    embeddings: EmbeddingService

    @classmethod
    def from_manager(cls, manager: ExtensionManager) -> "Services":
        models = ModelService(manager)
        return cls(manager=manager, models=models, chat=ChatService(models),
                   completions=CompletionService(models), embeddings=EmbeddingService(models))
