"""Exceptions raised by :mod:`jan.store`.

Each one is also a :class:`jan.errors.JanError`, and most also subclass the
builtin the server maps to an HTTP status: ``ValueError`` -> 400,
``KeyError`` -> 404, ``TimeoutError`` -> 503.
"""

from __future__ import annotations

from jan.core.exceptions import LockTimeoutError as CoreLockTimeoutError
from jan.core.exceptions import NotFoundError as CoreNotFoundError
from jan.errors import JanError, ModelNotFoundError, not_found_message


class StoreError(JanError):
    """Base class of every error the data folder raises on purpose."""


class InvalidArgumentError(StoreError, ValueError):
    """A request carried a value the store refuses (bad type, bad limit, ...); ``param`` names the field at
    fault where the store knows it, ``code`` says what is wrong (the server's error ``param`` / ``code``)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code

    def under(self, prefix: str) -> "InvalidArgumentError":
        """The same error of a value found at ``prefix`` in a larger body (``"messages[2]."``): its message and
        ``param`` named from there, so that a refusal names the field as the request has it."""
        return InvalidArgumentError(f"{prefix}{self}", param=self.param and f"{prefix}{self.param}", code=self.code)


class InvalidIdError(InvalidArgumentError):
    """An id (or extension name) is malformed or would leave the data folder."""


class NotFoundError(StoreError, CoreNotFoundError):
    """No thread/message/assistant/model/setting with that id exists.

    Also a ``jan.core.NotFoundError`` (and so a ``KeyError``), which the
    storage interfaces promise to raise. ``kind`` (alias ``resource``) and
    ``id`` say what was looked up, so the API can build an OpenAI-style
    error body without parsing the message.
    """

    #: It is not found because its file was damaged: this is where that file was set aside (relative to
    #: the data folder), so a caller can say so instead of "not found".
    damaged: str | None = None

    def __init__(self, kind: str, resource_id: str, message: str | None = None):
        super().__init__(message or not_found_message(kind, resource_id), resource=kind, id=resource_id)
        self.kind = kind

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"

    def __reduce__(self):  # keep the fields when sent to another process
        return (type(self), (self.kind, self.id, str(self)))


class StoredModelNotFoundError(NotFoundError, ModelNotFoundError):
    """A model id has no ``model.json``; also catchable as ``jan.errors.ModelNotFoundError``."""


class AlreadyExistsError(StoreError):
    """Creating a resource whose id is already taken (the API answers 409)."""

    def __init__(self, kind: str, resource_id: str):
        super().__init__(f"{kind} {resource_id!r} already exists")
        self.kind = kind
        self.id = resource_id

    def __reduce__(self):
        return (type(self), (self.kind, self.id))


class CaseClashError(AlreadyExistsError):
    """Creating a resource whose id differs only in case from one that exists (``Llama`` beside ``llama``): on
    macOS and Windows, where a data folder is often synced to or opened from, both are one folder, and Ollama's
    names are one name whatever their case. The API answers 409, naming the id that exists (``existing``)."""

    def __init__(self, kind: str, resource_id: str, existing: str):
        super().__init__(kind, resource_id)
        self.existing = existing
        self.args = (f"{kind} {resource_id!r} differs only in case from the {kind} {existing!r}, which exists: ids "
                     "that differ only in case are one folder on macOS and Windows; use that id, or another one",)

    def __reduce__(self):
        return (type(self), (self.kind, self.id, self.existing))


class LockTimeoutError(StoreError, CoreLockTimeoutError):
    """Another thread or process held a file's lock for longer than the timeout."""


class NewerSchemaError(StoreError):
    """A file was written by a newer jan; this one reads it but will not rewrite it."""


class CorruptFileError(StoreError):
    """A JSON file did not parse; it has been moved aside to ``moved_to``."""

    def __init__(self, path: str, error: str, moved_to: str | None):
        super().__init__(f"{path}: {error}")
        self.path = path
        self.error = error
        self.moved_to = moved_to

    def __reduce__(self):
        return (type(self), (self.path, self.error, self.moved_to))


class PartlySavedError(Exception):
    """A save that failed part-way, or after an earlier save of the same work: ``kept`` says what of it is on disk
    nonetheless (a phrase: ``"the reply so far stays in the thread, marked incomplete"``), so that the error a user
    reads says what was stored rather than "nothing was saved". Its cause (``raise ... from exc``, or
    :func:`partly_saved`) is the failure itself (an ``OSError`` of a full disk, a :class:`CorruptFileError`...)."""

    def __init__(self, kept: str, what: str = "the work"):
        super().__init__(kept)
        self.kept = kept
        #: What could not be saved, in words (``"the reply"``), for an error that is not the disk's.
        self.what = what

    def __str__(self) -> str:  # the failure, then what stays: "[Errno 28] No space left on device: ...; the reply ..."
        return f"{self.__cause__}; {self.kept}" if self.__cause__ is not None else self.kept

    def __reduce__(self):
        return (type(self), (self.kept, self.what))


def partly_saved(exc: BaseException, kept: str, what: str = "the work") -> PartlySavedError:
    """``exc`` (a failed save of ``what``) told with what stays on disk: a :class:`PartlySavedError` caused by it (an
    ``exc`` that is one already keeps its own account, the first save's being the one that left the disk so)."""
    if isinstance(exc, PartlySavedError):
        return exc
    err = PartlySavedError(kept, what)
    err.__cause__ = exc
    return err


def kept_of(exc: BaseException | None) -> str | None:
    """What stays on disk of a failed save, where the failure says so (a :class:`PartlySavedError` in ``exc`` or
    its chain of causes), else None."""
    while exc is not None:
        if isinstance(exc, PartlySavedError):
            return exc.kept
        exc = exc.__cause__
    return None
