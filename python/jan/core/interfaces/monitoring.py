"""System and model monitoring."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from .base import ExtensionInterface, ExtensionType

__all__ = ["MonitoringExtension"]


class MonitoringExtension(ExtensionInterface):
    """Resource usage of the machine and metrics of the models jan serves.

    Numbers are plain JSON values; sizes in bytes, usage in percent (0-100).
    """

    extension_type: ClassVar[str] = ExtensionType.MONITORING

    @abstractmethod
    async def resource_usage(self) -> dict[str, Any]:
        """CPU and memory usage of the machine and of jan.

        Shape: ``{"cpu": {"usage": pct, "cores": n}, "memory": {"total": b,
        "used": b, "process_rss": b}}``.
        """

    @abstractmethod
    async def gpus(self) -> list[dict[str, Any]]:
        """One dict per GPU: ``id``, ``name``, ``vendor``, ``memory_total``, ``memory_used``, ``usage``; empty without GPUs."""

    @abstractmethod
    async def loaded_models(self) -> list[dict[str, Any]]:
        """One dict per loaded model across every engine: ``id``, ``engine``, ``status``, ``memory`` (bytes, if known)."""

    @abstractmethod
    async def model_metrics(self, model_id: str | None = None) -> dict[str, Any]:
        """Counters of one model (or of all, keyed by model id, when ``model_id`` is ``None``).

        Per model: ``requests_total``, ``requests_active``, ``prompt_tokens_total``,
        ``generated_tokens_total``, ``prompt_tokens_per_second``,
        ``generated_tokens_per_second``, ``time_to_first_token_ms`` (recent average).
        """
