"""Monitoring: CPU/memory, GPUs, loaded models and their metrics; serves ``GET /v1/system``."""

from jan.extensions.monitoring.extension import MonitoringExtensionImpl, MonitoringSettings

__all__ = ["MonitoringExtensionImpl", "MonitoringSettings"]
