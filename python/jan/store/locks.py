"""The data folder's per-file locks: :mod:`jan.core.locks`, raising the store's own
:class:`~jan.store.errors.LockTimeoutError` (kept importable from here)."""

from __future__ import annotations

from jan.core.locks import DEFAULT_STRIPES, DEFAULT_TIMEOUT
from jan.core.locks import LockManager as _LockManager

from .errors import LockTimeoutError

__all__ = ["DEFAULT_STRIPES", "DEFAULT_TIMEOUT", "LockManager"]


class LockManager(_LockManager):
    timeout_error = LockTimeoutError
