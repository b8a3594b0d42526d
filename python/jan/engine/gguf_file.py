"""A GGUF file on disk as the native engine takes it: its name, its magic, its header, its weights.

The checks a load can make without reading weights live here, so that :class:`jan.Model` and
:class:`jan.ModelPool` (which must judge a load before it unloads anything to make room) say the same
thing for every file a model has: its weights, its draft model, its projector."""

from __future__ import annotations

import os
from pathlib import Path

from jan import _engine
from jan.engine.logs import forward_native_logs, native_error_detail
from jan.errors import BadRequestTypeError, ModelFileError, ModelLoadError
from jan.gguf_extent import cut_short
from jan.gguf_magic import has_gguf_magic
from jan.local_files import meant_file, not_a_regular_file


def file_path(value: object, name: str) -> str:
    """A file argument (``path``, ``draft_model``, ``mmproj``) as text: a str or an ``os.PathLike`` (bytes
    decoded as the file system's names are). :class:`~jan.BadRequestTypeError` (a TypeError) naming ``name`` for
    any other type, rather than
    pathlib's "expected str, bytes or os.PathLike object, not NoneType"; :class:`ModelFileError` for an empty
    path, which ``Path("")`` would read as the current folder ("'.' is a directory")."""
    if isinstance(value, (bytes, bytearray)):
        value = os.fsdecode(bytes(value))
    if not isinstance(value, (str, os.PathLike)):
        raise BadRequestTypeError(f"{name}: expected a file path (str or os.PathLike), got {type(value).__name__}",
                                  param=name, code="invalid_type")
    text = os.fspath(value)
    if isinstance(text, bytes):  # a PathLike whose __fspath__ gives bytes
        text = os.fsdecode(text)
    if not text.strip():
        raise ModelFileError(f"{name}: the file path is empty", param=name)
    return str(Path(text))


def file_param(prefix: str) -> str:
    """The argument a model's file came from, as the library call takes it, from the option its messages begin
    with (``"mmproj: "``, ``"lora[1]: "``): ``path``, the weights', where they begin with none (or "model file")."""
    option = prefix.rstrip(": ")
    return option if option and option != "model file" else "path"


def native_path_problem(path: str) -> str | None:
    """Why the native engine cannot open the file ``path`` names (said after "the file name ..."), None when it
    can: a NUL character (C reads the name only up to it, so another file was opened, or written: a slot saved to
    "a" for "a<NUL>b.bin"), or a name whose bytes are not UTF-8 (read back from the file system as lone surrogates,
    which pybind11 refused with a TypeError naming no file)."""
    if "\x00" in path:
        return "holds a NUL character, which no file name can"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8, so llama.cpp cannot open it (rename the file)"
    return None


def native_path(path: str, what: str = "") -> str:
    """``path`` as the native engine takes it (UTF-8 text, no NUL): :class:`ModelFileError` saying why not
    (:func:`native_path_problem`)."""
    problem = native_path_problem(path)
    if problem is not None:
        raise ModelFileError(f"{what}the file name {path!r} {problem}", param=file_param(what))
    return path


def not_a_file(what: str, path: str) -> str:
    """Why ``path`` is no weights file: a directory (a folder given where its GGUF was meant), something else that
    is there but no regular file (``/dev/null``, a FIFO), or nothing."""
    kind = not_a_regular_file(path)
    if kind is not None:
        return f"{what} '{path}' is {kind}, not a GGUF file"
    meant = meant_file(path)  # (a name a case or a letter off the file that is there: stories260k.gguf)
    return f"{what} not found: '{path}'" + (f": did you mean {meant!r}?" if meant else "")


def check_gguf_file(path: str, what: str, prefix: str = "") -> None:
    """:class:`ModelFileError` unless ``path`` is a readable file that starts as a GGUF does and holds all the
    tensor data its header describes (:func:`jan.gguf_extent.cut_short`: one cut short says how many bytes are
    missing) — the one answer for every file of a model (``what``: "model file", "draft model file", "projector
    file"; ``prefix`` names the option it came from, "draft_model: "). Reads the header (kept per file version)."""
    native_path(path, prefix)
    param = file_param(prefix)
    if not os.path.isfile(path):
        raise ModelFileError(prefix + not_a_file(what, path), param=param)
    try:
        gguf = has_gguf_magic(path)
    except OSError as exc:
        raise ModelFileError(f"{prefix}{what} '{path}' cannot be read: {exc.strerror or exc}", param=param) from None
    if not gguf:
        raise ModelFileError(f"{prefix}{what} '{path}' is not a GGUF file", param=param)
    try:
        short = cut_short(path, what)
    except OSError as exc:
        raise ModelFileError(f"{prefix}{what} '{path}' cannot be read: {exc.strerror or exc}", param=param) from None
    if short:  # (a partial download: found from its header, before any weights of the model load)
        raise ModelFileError(prefix + short, param=param)


def load_weights(path: str, mp: "_engine.ModelParams", what: str = "") -> "_engine.Model":
    """The native model for ``path``. llama.cpp refusing the file itself (unreadable, not GGUF, truncated,
    unknown architecture) raises :class:`ModelFileError` with llama.cpp's last logged error; ``what``
    prefixes the message (which file of a model it was)."""
    native_path(path, what)
    try:
        native = _engine.Model(path, mp)
    except ModelLoadError as e:
        detail = native_error_detail(forward_native_logs())
        raise ModelFileError(f"{what}{e}: {detail}" if detail else f"{what}{e}", param=file_param(what)) from None
    forward_native_logs()
    return native
