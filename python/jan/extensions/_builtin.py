"""The base class of jan's own (built-in) extensions."""

from __future__ import annotations

from jan.core import BUILTIN_PRIORITY, Extension

__all__ = ["BuiltinExtension"]


class BuiltinExtension(Extension):
    """An extension that ships with jan: written for this API major version, and ranked below any
    third-party extension that implements the same interface (which then replaces it)."""

    requires_api = ">=1,<2"
    priority = BUILTIN_PRIORITY
