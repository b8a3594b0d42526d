"""What a GGUF file says of itself (:class:`jan.ModelInfo`: its key/values, architecture, sizes, special tokens,
chat template), read once per file version for every reader: the load checks (:mod:`jan.engine.preflight`), the
model service's settings checks, model lists and ``/api/show``, and importing a model.

llama.cpp reads a header through a vocab-only load (no weights: the key/values and the vocabulary), which for a
large vocabulary costs tens of MiB while it lasts (:mod:`jan.engine.heap`) and ~0.1-0.5 s; each reader used to
make its own.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from jan.engine.gguf_file import check_gguf_file, file_param
from jan.errors import ModelFileError
from jan.file_stamps import FileVersion, file_version

if TYPE_CHECKING:
    from jan.engine.model import ModelInfo

__all__ = ["read_header", "read_info"]


@functools.lru_cache(maxsize=64)
def _info(version: FileVersion) -> ModelInfo:
    # imported here: jan.engine.model is imported by this module's importers
    from jan.engine.model import Model

    with Model(version[0], vocab_only=True) as model:  # closing it hands the vocabulary's memory back
        return model.info


def read_info(path: str | os.PathLike[str], what: str = "") -> ModelInfo:
    """The :class:`jan.ModelInfo` of the GGUF at ``path`` (``n_params`` and sizes as a vocab-only load tells them),
    kept per file version (:func:`jan.file_stamps.file_version`). Blocking: call it off the event loop.

    Raises :class:`~jan.ModelFileError` (its message prefixed ``what``, e.g. ``"draft_model: "``) when the file
    cannot be read or is no GGUF llama.cpp reads."""
    path = os.fspath(path)
    try:
        version = file_version(path)
    except OSError as exc:
        check_gguf_file(path, "model file", what)  # the words a load has for it: not found, unreadable
        raise ModelFileError(f"{what}cannot read '{path}': {exc.strerror or exc}", param=file_param(what)) from None
    try:
        return _info(version)
    except ModelFileError as exc:
        if not what:
            raise
        raise ModelFileError(f"{what}{exc}", param=file_param(what)) from None


def read_header(path: str | os.PathLike[str], what: str = "") -> dict[str, str]:
    """The GGUF key/values of ``path`` as llama.cpp reads them (arrays and numbers rendered as text), as
    :func:`read_info`; a copy the caller may change."""
    return dict(read_info(path, what).metadata)
