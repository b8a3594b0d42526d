"""Downloading model files (GGUF) for the model manager.

>>> async with Downloader() as downloader:
...     task = downloader.start("hf://owner/repo/model-Q4_K_M.gguf", models_dir, sha256=digest)
...     async for progress in task.progress():
...         print(progress.state.value, progress.bytes_done, progress.bytes_total)
...     path = await task.wait()

Bytes go to ``<dest>.part`` and only reach ``dest`` (with ``os.replace``, after
size and sha256 checks) once complete, so a file at ``dest`` is always whole.
An interrupted download leaves the ``.part`` behind; the next ``start`` for the
same destination resumes it with an HTTP ``Range`` request. Dropped connections
are retried with backoff from the current offset.

``hf://owner/repo[@revision]/path/file.gguf`` is shorthand for
``<endpoint>/owner/repo/resolve/<revision or main>/path/file.gguf``; the
endpoint is ``JAN_HF_ENDPOINT``, else ``HF_ENDPOINT``, else
``https://huggingface.co``, and ``HF_TOKEN`` (when set) is sent to it as a
bearer token.

The CLI uses the blocking :func:`download` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import hashlib
import logging
import os
import random
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import filelock
from multidict import CIMultiDict

from jan.local_files import expand_home
from jan.errors import JanError
from jan.server.aiohttp_import import load_client

__all__ = [
    "DEFAULT_HF_ENDPOINT",
    "DownloadCancelledError",
    "DownloadError",
    "DownloadProgress",
    "DownloadState",
    "DownloadTask",
    "Downloader",
    "download",
    "filename_from_url",
    "hf_endpoint",
    "lock_path",
    "part_busy",
    "part_path",
    "resolve_url",
]

log = logging.getLogger(__name__)

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
PART_SUFFIX = ".part"
LOCK_SUFFIX = ".downloading.lock"

# Disk writes and hashing happen off the event loop; batching network reads
# (typically 16-64 KiB each) into 1 MiB keeps the thread hops cheap.
_FLUSH_BYTES = 1 << 20
_READ_BYTES = 1 << 20
_HASH_READ_BYTES = 8 << 20
_SPEED_WINDOW_S = 5.0
_SPEED_SAMPLE_S = 0.1
# Responses that only restart the transfer (416 on a bad part, a Range answer
# starting at the wrong offset) can only recur on a misbehaving server.
_MAX_RESTARTS = 2

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE_RE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


# --------------------------------------------------------------------------- errors and data


class DownloadError(JanError):
    """A download could not be started or did not complete.

    ``reason`` is one of the class constants below (stable strings that API
    clients can switch on); ``url`` is the URL involved and ``status`` the HTTP
    status when a response caused the failure.
    """

    INVALID_URL = "invalid_url"  # unsupported scheme, malformed hf:// path, no file name
    CONFLICT = "conflict"  # the destination is already being downloaded from another URL
    HTTP_STATUS = "http_status"  # the server answered with an error status
    NETWORK = "network"  # connection failures, still failing after the retries
    SIZE_MISMATCH = "size_mismatch"  # the file is not the expected size
    CHECKSUM_MISMATCH = "checksum_mismatch"  # sha256 differs; the .part was deleted
    IO = "io"  # the local disk refused (permissions, disk full)
    CANCELLED = "cancelled"  # DownloadCancelledError
    INTERNAL = "internal"  # a bug; the message carries the original exception

    def __init__(self, message: str, reason: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.url = url
        self.status = status

    @property
    def http_status(self) -> int:
        """The HTTP status a server answers a failed pull with, the same on every pull route (Ollama's ``/api/pull``,
        ``POST /v1/models/pull``): the client's bad URL is a 400, a source that says the file is not there (404,
        410) a 404 as an unknown model name is, a pull of another source under the same id a 409; a source that
        fails otherwise (a 5xx, a refused connection, a file of the wrong size or hash) is a 502, since the fault
        is upstream, not the client's nor jan's. A full local disk is a 507; its other refusals (IO) and jan's own bugs
        are a 500."""
        if self.status in (404, 410):  # (an hf:// repository that is not there is also an INVALID_URL)
            return 404
        if self.reason == DownloadError.INVALID_URL:
            return 400
        if self.reason in (DownloadError.CONFLICT, DownloadError.CANCELLED):
            return 409  # (cancelled: another request stopped this pull)
        if self.reason == DownloadError.IO and self.disk_full:
            return 507  # (as every write of the data folder a full disk refuses: the operator's to free space)
        if self.reason in (DownloadError.IO, DownloadError.INTERNAL):
            return 500
        return 502

    @property
    def disk_full(self) -> bool:
        """Whether the local disk refused the download for want of space (full, or over quota)."""
        cause = self.__cause__
        return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class DownloadCancelledError(DownloadError):
    """Raised by :meth:`DownloadTask.wait` when the task was cancelled."""

    def __init__(self, message: str = "download cancelled", *, url: str | None = None):
        super().__init__(message, DownloadError.CANCELLED, url=url)


class DownloadState(str, enum.Enum):
    """Lifecycle of a :class:`DownloadTask`.

    ``queued`` → ``downloading`` → ``verifying`` → ``completed``, or
    ``failed`` / ``cancelled`` from any non-final state.
    """

    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (DownloadState.COMPLETED, DownloadState.FAILED, DownloadState.CANCELLED)


@dataclass(frozen=True)
class DownloadProgress:
    """An immutable snapshot of a task, as delivered by :meth:`DownloadTask.progress`.

    ``bytes_total`` is None while the size is unknown; ``speed`` is in bytes
    per second over the last few seconds of network transfer; ``eta`` is in
    seconds (None when unknown); ``error`` is the failure's message.
    """

    task_id: str
    url: str
    dest: Path
    state: DownloadState
    bytes_done: int
    bytes_total: int | None
    speed: float
    eta: float | None
    error: str | None
    timestamp: float
    #: Bytes kept from an earlier attempt that the server agreed to continue from (a 206 to a
    #: Range request); None when the download starts from zero (or the server ignored Range).
    resumed_from: int | None = None

    @property
    def fraction(self) -> float | None:
        """Share done in [0, 1], or None while the total is unknown."""
        if not self.bytes_total:
            return 1.0 if self.state is DownloadState.COMPLETED else None
        return min(1.0, self.bytes_done / self.bytes_total)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the server's download endpoints)."""
        return {
            "id": self.task_id,
            "url": self.url,
            "dest": str(self.dest),
            "state": self.state.value,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "speed": self.speed,
            "eta": self.eta,
            "error": self.error,
            "timestamp": self.timestamp,
            "resumed_from": self.resumed_from,
        }


# --------------------------------------------------------------------------- URLs


def hf_endpoint() -> str:
    """The Hugging Face base URL: ``JAN_HF_ENDPOINT``, ``HF_ENDPOINT`` or the public hub."""
    return _env_hf_endpoint()


def _env_hf_endpoint() -> str:
    endpoint = os.environ.get("JAN_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
    return endpoint.rstrip("/")


def _hf_token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def resolve_url(url: str, *, hf_endpoint: str | None = None) -> str:
    """Return the http(s) URL to fetch for ``url``.

    ``hf://owner/repo/path/file.gguf`` and ``hf://owner/repo@revision/path/file.gguf``
    become ``<endpoint>/owner/repo/resolve/<revision or main>/path/file.gguf``
    (``hf_endpoint`` overrides the environment). A revision containing ``/``
    (``refs/pr/1``) must be written percent-encoded (``refs%2Fpr%2F1``).
    http and https URLs are returned unchanged; anything else raises
    :class:`DownloadError` with reason ``invalid_url``.
    """
    if not isinstance(url, str) or not url.strip():
        raise DownloadError("empty download URL", DownloadError.INVALID_URL, url=str(url))
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DownloadError(
            f"not a URL: {url!r} (expected http://, https://, hf://owner/repo/file.gguf or a whole "
            f"hf://owner/repo[:QUANT], or Ollama's name for one, hf.co/owner/repo[:QUANT])",
            DownloadError.INVALID_URL,
            url=url,
        )
    scheme = scheme.lower()
    if scheme == "hf":
        return _resolve_hf(url, rest, (hf_endpoint or _env_hf_endpoint()).rstrip("/"))
    if scheme in ("http", "https"):
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - a port out of range or no number (told as a redirect once aiohttp met it)
        except ValueError as exc:  # e.g. a malformed IPv6 literal, a port 99999
            raise DownloadError(f"malformed URL {url!r}: {exc}", DownloadError.INVALID_URL, url=url) from exc
        if not host:
            raise DownloadError(f"URL {url!r} has no host", DownloadError.INVALID_URL, url=url)
        return url
    raise DownloadError(
        f"unsupported URL scheme {scheme + '://'!r} in {url!r}: only http://, https:// and hf:// can be downloaded",
        DownloadError.INVALID_URL,
        url=url,
    )


def _resolve_hf(original: str, rest: str, endpoint: str) -> str:
    # A whole repository (hf://owner/repo[:QUANT]) never reaches here (jan.hf_repo.plan_pull picks its file
    # first), but a user who mistyped one reads this message, so it names that form too.
    usage = ("hf:// URLs look like hf://owner/repo/path/file.gguf or hf://owner/repo@revision/path/file.gguf, "
             "or a whole repository: hf://owner/repo[:QUANT]")
    segments = rest.split("/")
    if len(segments) < 3 or any(not s for s in segments):
        raise DownloadError(f"bad hf:// URL {original!r}: {usage}", DownloadError.INVALID_URL, url=original)
    owner, repo_revision, *path = segments
    repo, at, revision = repo_revision.partition("@")
    if not repo or (at and not revision):
        raise DownloadError(f"bad hf:// URL {original!r}: {usage}", DownloadError.INVALID_URL, url=original)
    names = [unquote(s) for s in (owner, repo, *path)]
    if any(n in (".", "..") or "/" in n or "\\" in n for n in names):
        raise DownloadError(f"bad hf:// URL {original!r}: {usage}", DownloadError.INVALID_URL, url=original)
    revision = unquote(revision) if at else "main"
    owner, repo, *path = (quote(n, safe="") for n in names)
    return f"{endpoint}/{owner}/{repo}/resolve/{quote(revision, safe='')}/{'/'.join(path)}"


def filename_from_url(url: str) -> str:
    """The file name a download of ``url`` gets when its destination is a folder.

    Taken from the URL path's last segment (percent-decoded; hf:// is resolved
    first). ``Content-Disposition`` is deliberately not consulted: the name has
    to be known before any request so an existing ``.part`` can be resumed.
    """
    if url.strip().lower().startswith("hf://"):
        url = resolve_url(url, hf_endpoint=DEFAULT_HF_ENDPOINT)
    # The last segment once decoded: "..%2F..%2Fx.gguf" decodes to "../../x.gguf", which joined to a model's
    # folder wrote the download outside the data folder (anywhere the process may write). A separator that
    # arrives encoded separates too, so only what follows the last one can name the file.
    name = unquote(urlsplit(url).path).replace("\\", "/").rsplit("/", 1)[-1]
    name = name.replace("\x00", "").strip()
    if name in ("", ".", "..") or name.endswith(PART_SUFFIX):
        raise DownloadError(
            f"cannot derive a file name from {url!r}: give the destination file explicitly",
            DownloadError.INVALID_URL,
            url=url,
        )
    return _fit_name(name)


#: The longest file name a download takes, in bytes: file systems allow 255, and its ``.part``, its staging and its
#: lock add up to 25 more.
MAX_NAME_BYTES = 200


def _fit_name(name: str) -> str:
    """``name``, or where it is longer than :data:`MAX_NAME_BYTES` (a URL's last segment may be 2,000 characters,
    and was a 500 "data folder cannot be read": ENAMETOOLONG) its stem cut short plus a digest of the whole name,
    the extension kept: the same URL gives the same name, so a partial download still resumes."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, ext = os.path.splitext(name)
    if len(ext.encode()) > 16:  # no extension worth keeping
        stem, ext = name, ""
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    room = MAX_NAME_BYTES - len(ext.encode()) - len(digest) - 1
    return f"{stem.encode()[:room].decode(errors='ignore')}-{digest}{ext}"


def part_path(dest: str | os.PathLike[str]) -> Path:
    """Where the incomplete bytes of ``dest`` are kept: ``<dest>.part``."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


def _resolve_dest(dest_path: str | os.PathLike[str], url: str) -> Path:
    raw = os.fspath(dest_path)
    dest = expand_home(raw)
    if raw.endswith(("/", os.sep)) or dest.is_dir():
        dest = dest / filename_from_url(url)
    return dest.resolve()


def _normalize_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip()
    if value.lower().startswith("sha256:"):
        value = value[len("sha256:") :]
    if not _SHA256_RE.match(value):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    return value.lower()


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme.lower(), pa.hostname, pa.port) == (pb.scheme.lower(), pb.hostname, pb.port)


# --------------------------------------------------------------------------- file helpers (run in threads)


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def lock_path(dest: str | os.PathLike[str]) -> Path:
    """The lock a download of ``dest`` holds while it runs (hidden beside it, gone when it ends)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}{LOCK_SUFFIX}")


def _lock_destination(dest: Path, url: str) -> filelock.BaseFileLock:
    """Hold the lock of a download of ``dest`` (:func:`lock_path`), or :class:`DownloadError` (``conflict``) when
    another process holds it: two processes writing one ``.part`` (two ``jan models pull`` of one model, a CLI and
    a server on one data folder) truncate and overwrite each other's bytes, and the one that ends first keeps a file
    of the right size with holes in it — a damaged model that passes the size and GGUF checks. (In one process the
    :class:`Downloader` gives a second start the running task.)"""
    lock = filelock.FileLock(str(lock_path(dest)), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DownloadError(f"{dest} is being downloaded by another process now; wait for it to end (then pulling "
                            "again uses or resumes what it left)", DownloadError.CONFLICT, url=url) from None
    return lock


def _unlock_destination(lock: filelock.BaseFileLock) -> None:
    path = lock.lock_file
    lock.release()
    with contextlib.suppress(OSError):  # (filelock may have removed it already)
        os.unlink(path)


def part_busy(dest: str | os.PathLike[str]) -> bool:
    """Whether a download of ``dest`` runs now, in this process or another (its lock is held): its ``.part`` is
    no leftover to list or remove."""
    if not os.path.exists(lock_path(dest)):
        return False
    lock = filelock.FileLock(str(lock_path(dest)), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    except OSError:
        return False
    _unlock_destination(lock)
    return False


def _open_part(path: Path, offset: int):
    if offset == 0:
        return open(path, "wb")  # also truncates a part that the server made us restart
    f = open(path, "r+b")
    f.seek(offset)
    f.truncate()
    return f


def _commit(part: Path, dest: Path) -> None:
    # fsync before the rename: after a crash the final name must never point
    # at a file whose data did not reach the disk.
    fd = os.open(part, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, dest)
    if os.name == "posix":  # the rename itself lives in the directory
        try:
            dir_fd = os.open(dest.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)


class _Retry(Exception):
    """A transient failure: try again (after a backoff) from the part's current size."""

    def __init__(self, message: str, *, progressed: bool = False, status: int | None = None, delay: float | None = None):
        super().__init__(message)
        self.progressed = progressed
        self.status = status
        self.delay = delay


class _Restart(Exception):
    """The part was thrown away; request again from zero without waiting."""


class _Subscriber:
    """One ``progress()`` consumer: keeps every state change, but only the latest update within a state."""

    __slots__ = ("pending", "event")

    def __init__(self) -> None:
        self.pending: deque[DownloadProgress] = deque()
        self.event = asyncio.Event()

    def push(self, snap: DownloadProgress) -> None:
        if self.pending and self.pending[-1].state is snap.state:
            self.pending[-1] = snap
        else:
            self.pending.append(snap)
        self.event.set()


# --------------------------------------------------------------------------- task


class DownloadTask:
    """One download, created by :meth:`Downloader.start`.

    Attributes (read-only for callers): ``id``, ``url`` (resolved http(s) URL),
    ``source_url`` (as given, e.g. hf://), ``dest``, ``part_path``, ``sha256``,
    ``expected_size``, ``state``, ``bytes_done``, ``bytes_total``, ``speed``,
    ``eta``, ``error`` (a :class:`DownloadError` once failed or cancelled),
    ``attempts`` (HTTP requests made), ``resumed_from`` (the part's size when
    the first request was made, None when starting from zero), ``created_at``,
    ``finished_at``.
    """

    def __init__(
        self,
        downloader: Downloader,
        *,
        url: str,
        source_url: str,
        dest: Path,
        sha256: str | None,
        expected_size: int | None,
        headers: CIMultiDict[str],
    ):
        self.id = uuid.uuid4().hex
        self.url = url
        self.source_url = source_url
        self.dest = dest
        self.part_path = part_path(dest)
        self.sha256 = sha256
        self.expected_size = expected_size
        self.state = DownloadState.QUEUED
        self.bytes_done = 0
        self.bytes_total: int | None = expected_size
        self.error: DownloadError | None = None
        self.attempts = 0
        self.resumed_from: int | None = None
        self.created_at = time.time()
        self.finished_at: float | None = None

        self._downloader = downloader
        self._headers = headers
        self._runner: asyncio.Task[None] | None = None
        self._cancel_requested = False
        self._discard = False
        self._subscribers: list[_Subscriber] = []
        self._last_publish = float("-inf")
        self._publish_handle: asyncio.TimerHandle | None = None
        # The running hash always covers exactly the first _hashed bytes of the part.
        self._hasher = hashlib.sha256() if sha256 else None
        self._hashed = 0
        self._io_future: asyncio.Future[Any] | None = None
        self._committed = False
        # Validator of the representation being fetched, so a resumed range
        # can't silently splice two different versions of the file (If-Range).
        self._validator: str | None = None
        self._net_bytes = 0
        self._net_started: float | None = None
        self._net_elapsed = 0.0
        self._samples: deque[tuple[float, int]] = deque()

    def __repr__(self) -> str:
        return f"<DownloadTask {self.id[:8]} {self.state.value} {self.bytes_done}/{self.bytes_total} {self.source_url}>"

    # ---- public API

    @property
    def done(self) -> bool:
        """True once completed, failed or cancelled."""
        return self.state.is_final

    @property
    def speed(self) -> float:
        """Bytes per second over the last few seconds (the average once finished)."""
        if self.state is not DownloadState.DOWNLOADING:
            return self._net_bytes / self._net_elapsed if self._net_elapsed > 0 else 0.0
        now = time.monotonic()
        while self._samples and now - self._samples[0][0] > _SPEED_WINDOW_S:
            self._samples.popleft()
        if not self._samples:
            return 0.0
        t0, b0 = self._samples[0]
        elapsed = now - t0
        return (self._net_bytes - b0) / elapsed if elapsed >= _SPEED_SAMPLE_S else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current speed; 0 once completed, None when unknown."""
        if self.state is DownloadState.COMPLETED:
            return 0.0
        if self.state is not DownloadState.DOWNLOADING or self.bytes_total is None:
            return None
        speed = self.speed
        if speed <= 0:
            return None
        return max(0, self.bytes_total - self.bytes_done) / speed

    def snapshot(self) -> DownloadProgress:
        """The task's current progress."""
        return DownloadProgress(
            task_id=self.id,
            url=self.source_url,
            dest=self.dest,
            state=self.state,
            bytes_done=self.bytes_done,
            bytes_total=self.bytes_total,
            speed=self.speed,
            eta=self.eta,
            error=str(self.error) if self.error is not None else None,
            timestamp=time.time(),
            resumed_from=self.resumed_from if self.state is not DownloadState.QUEUED else None,
        )

    async def progress(self) -> AsyncIterator[DownloadProgress]:
        """Yield progress snapshots until the task finishes (the last one is final).

        Starts with the current state. Updates are rate-limited by the
        downloader (``progress_interval``, 0.1 s by default); a slow consumer
        skips intermediate updates but still sees every state change. Any
        number of consumers may iterate at once.
        """
        sub = _Subscriber()
        sub.push(self.snapshot())
        if not self.state.is_final:
            self._subscribers.append(sub)
        try:
            while True:
                if not sub.pending:
                    sub.event.clear()
                    await sub.event.wait()
                    continue
                snap = sub.pending.popleft()
                yield snap
                if snap.state.is_final:
                    return
        finally:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    async def wait(self) -> Path:
        """Wait for the task to finish and return ``dest``.

        Raises :class:`DownloadError` when it failed and
        :class:`DownloadCancelledError` when it was cancelled. Cancelling the
        caller of ``wait()`` does not cancel the download.
        """
        if self._runner is not None:
            if not self._runner.done():
                # asyncio.wait, not shield: it neither cancels the download when
                # the caller is cancelled nor raises if the runner was cancelled.
                await asyncio.wait([self._runner])
            self._settle_from_runner(self._runner)
        if self.state is DownloadState.COMPLETED:
            return self.dest
        raise self.error or DownloadError(f"download ended in state {self.state.value}", DownloadError.INTERNAL, url=self.url)

    def cancel(self, *, discard: bool = False) -> bool:
        """Stop the download soon; the ``.part`` file is kept for a later resume.

        With ``discard=True`` the ``.part`` file is deleted instead (also on a
        task that already failed or was cancelled). Returns False when the task
        had already finished.
        """
        if self.state.is_final:
            if discard and self.state is not DownloadState.COMPLETED:
                self._discard_part(force=False)
            return False
        self._cancel_requested = True
        self._discard = self._discard or discard
        if self._runner is not None:
            self._runner.cancel()
        return True

    # ---- progress plumbing

    def _publish(self, *, force: bool = False) -> None:
        interval = self._downloader.progress_interval
        now = time.monotonic()
        if not force and now - self._last_publish < interval:
            if self._publish_handle is None:
                loop = asyncio.get_running_loop()
                self._publish_handle = loop.call_at(
                    loop.time() + (self._last_publish + interval - now), self._publish_now
                )
            return
        self._publish_now()

    def _publish_now(self) -> None:
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish_handle = None
        self._last_publish = time.monotonic()
        snap = self.snapshot()
        for sub in self._subscribers:
            sub.push(snap)

    def _set_state(self, state: DownloadState) -> None:
        if self.state is not state:
            self._pause_clock()
            self.state = state
            if state is DownloadState.DOWNLOADING:
                self._net_started = time.monotonic()
                self._samples.clear()
                self._samples.append((self._net_started, self._net_bytes))
            self._publish(force=True)

    def _pause_clock(self) -> None:
        if self._net_started is not None:
            self._net_elapsed += time.monotonic() - self._net_started
            self._net_started = None

    def _count(self, n: int) -> None:
        self.bytes_done += n
        self._net_bytes += n
        now = time.monotonic()
        if not self._samples or now - self._samples[-1][0] >= _SPEED_SAMPLE_S:
            self._samples.append((now, self._net_bytes))

    def _finish(self, state: DownloadState, error: DownloadError | None = None) -> None:
        if self.state.is_final:
            return
        self.error = error
        self.finished_at = time.time()
        self._set_state(state)
        self._subscribers.clear()  # each already holds its final snapshot

    def _discard_part(self, *, force: bool) -> None:
        # Another task may own the part by now (a new start() after cancel):
        # only the current owner, or a task with no successor, may delete it.
        owner = self._downloader._active.get(self.dest)
        if force or owner is None or owner is self:
            try:
                _unlink(self.part_path)
            except OSError as exc:
                log.warning("could not delete %s: %s", self.part_path, exc)

    def _on_runner_done(self, runner: asyncio.Task[None]) -> None:
        self._settle_from_runner(runner)
        self._downloader._release(self)

    def _settle_from_runner(self, runner: asyncio.Task[None]) -> None:
        # _run records its own outcome; this only covers a runner cancelled
        # before it ever started (or a bug escaping _run).
        if not self.state.is_final:
            if runner.cancelled():
                if self._discard:
                    self._discard_part(force=False)
                self._finish(DownloadState.CANCELLED, DownloadCancelledError(url=self.url))
            else:
                exc = runner.exception()
                self._finish(
                    DownloadState.FAILED,
                    DownloadError(f"download crashed: {exc!r}", DownloadError.INTERNAL, url=self.url),
                )
        elif not runner.cancelled():
            runner.exception()  # mark retrieved

    # ---- the download itself

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Shielded: a cancel must not abandon a write half-way, because the
        # cleanup (and maybe the next task) then reuses the same file.
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._io_future = fut
        return await asyncio.shield(fut)

    async def _settle_io(self) -> None:
        fut = self._io_future
        if fut is not None and not fut.done():
            await asyncio.wait([fut])

    async def _run(self, predecessor: asyncio.Task[None] | None) -> None:
        try:
            if predecessor is not None:
                # A cancelled task on the same destination may still be flushing the part.
                await asyncio.wait([predecessor])
            async with self._downloader._slots:
                await self._download()
            self._finish(DownloadState.COMPLETED)
            log.info("downloaded %s -> %s", self.source_url, self.dest)
        except asyncio.CancelledError:
            await self._settle_io()
            if self._committed:  # the cancel came too late: the file is already in place
                self._finish(DownloadState.COMPLETED)
                return
            if predecessor is not None and not predecessor.done():
                await asyncio.wait([predecessor])  # it still owns the part
            if self._discard:
                self._discard_part(force=True)
            self._finish(DownloadState.CANCELLED, DownloadCancelledError(url=self.url))
            log.info("download of %s cancelled at %d bytes", self.source_url, self.bytes_done)
        except DownloadError as exc:
            self._finish(DownloadState.FAILED, exc)
            log.warning("download of %s failed: %s", self.source_url, exc)
        except OSError as exc:
            failure = DownloadError(f"cannot write {self.dest}: {exc}", DownloadError.IO, url=self.url)
            failure.__cause__ = exc  # (what the disk said: a full one is a 507, http_status)
            self._finish(DownloadState.FAILED, failure)
            log.warning("download of %s failed: %s", self.source_url, exc)
        except Exception as exc:  # noqa: BLE001 - recorded on the task; wait() re-raises it
            log.exception("download of %s crashed", self.source_url)
            self._finish(
                DownloadState.FAILED,
                DownloadError(f"download crashed: {exc!r}", DownloadError.INTERNAL, url=self.url),
            )
        finally:
            self._downloader._release(self)

    async def _download(self) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        # taken before the state says "downloading": a snapshot while it is taken would show 0 bytes done of a
        # part about to resume (the CLI then said the server could not resume it)
        lock = await self._io(_lock_destination, self.dest, self.url)
        try:  # "downloading" says from where: the part on disk, which the first request asks to continue
            self.bytes_done = await self._io(_size_or_zero, self.part_path)
        except BaseException:
            _unlock_destination(lock)
            raise
        self._set_state(DownloadState.DOWNLOADING)
        try:
            await self._download_locked()
        finally:
            _unlock_destination(lock)  # (here, not in a worker: a cancel must not leave it held)

    async def _download_locked(self) -> None:
        failures = 0
        restarts = 0
        while True:
            try:
                await self._attempt()
                break
            except _Restart as exc:
                restarts += 1
                if restarts > _MAX_RESTARTS:
                    raise DownloadError(
                        f"server keeps rejecting the download of {self.url}: {exc}", DownloadError.HTTP_STATUS, url=self.url
                    ) from exc
                log.info("restarting %s from zero: %s", self.url, exc)
            except _Retry as exc:
                failures = 1 if exc.progressed else failures + 1
                if failures > self._downloader.retries:
                    reason = DownloadError.HTTP_STATUS if exc.status else DownloadError.NETWORK
                    raise DownloadError(
                        f"download of {self.url} failed after {self.attempts} attempts: {exc}",
                        reason,
                        url=self.url,
                        status=exc.status,
                    ) from exc.__cause__
                delay = min(self._downloader.backoff_max, self._downloader.backoff * 2 ** (failures - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: many clients retrying one CDN shouldn't sync up
                if exc.delay is not None:
                    delay = min(self._downloader.backoff_max, max(delay, exc.delay))
                log.warning("download of %s interrupted (%s); retrying in %.1fs from byte %d", self.url, exc, delay, self.bytes_done)
                await asyncio.sleep(delay)
        await self._verify_and_commit()

    def _request_headers(self, offset: int) -> CIMultiDict[str]:
        headers = CIMultiDict(self._headers)
        # Ranges and hashes are over the stored bytes, so no content coding.
        headers["Accept-Encoding"] = "identity"
        headers.pop("Range", None)
        headers.pop("If-Range", None)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self._validator:
                headers["If-Range"] = self._validator
        return headers

    async def _attempt(self) -> None:
        offset = _size_or_zero(self.part_path)
        if self.expected_size is not None and offset > self.expected_size:
            _unlink(self.part_path)
            offset = 0
        # Only a 206 (or a 416 for a part that is already whole) makes it a resume: a server may
        # ignore Range and send everything again.
        resuming = offset if self.attempts == 0 and offset else None
        self.attempts += 1
        start_bytes = offset
        self.bytes_done = offset
        await load_client()  # (off the loop, the first time: jan.server.aiohttp_import)
        session = self._downloader._session_for_requests()
        try:
            async with session.get(self.url, headers=self._request_headers(offset), allow_redirects=True) as resp:
                total: int | None
                if resp.status == 416 and offset:
                    self.resumed_from = resuming
                    await self._range_not_satisfiable(resp, offset)
                    return
                if resp.status == 206 and offset:
                    match = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
                    if match is None or int(match.group(1)) != offset:
                        self.resumed_from = None
                        await self._io(_unlink, self.part_path)
                        raise _Restart(f"asked for bytes {offset}- but got Content-Range {resp.headers.get('Content-Range')!r}")
                    self.resumed_from = resuming if resuming is not None else self.resumed_from
                    total = None if match.group(3) == "*" else int(match.group(3))
                    if total is None and resp.content_length is not None:
                        total = offset + resp.content_length
                elif resp.status in (200, 206):  # 206 to a request without Range: treat as a full body
                    if offset:
                        log.info("%s ignored the Range request; downloading from the start", self.url)
                        offset = start_bytes = 0
                        self.bytes_done = 0
                        self.resumed_from = None  # nothing was resumed after all
                    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
                    total = None if encoded else resp.content_length
                else:
                    self._raise_for_status(resp)
                    return  # unreachable; _raise_for_status always raises

                if total is not None and self.expected_size is not None and total != self.expected_size:
                    raise DownloadError(
                        f"{self.url} is {total} bytes, expected {self.expected_size}",
                        DownloadError.SIZE_MISMATCH,
                        url=self.url,
                    )
                if self._validator is None:
                    etag = resp.headers.get("ETag")
                    self._validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
                self.bytes_total = total if total is not None else self.expected_size
                await self._sync_hash(offset)
                self._publish()
                await self._stream(resp, offset)
                if total is not None and self.bytes_done < total:
                    raise _Retry(
                        f"connection closed at byte {self.bytes_done} of {total}", progressed=self.bytes_done > start_bytes
                    )
        except aiohttp.TooManyRedirects as exc:
            # (its repr is every request and response header of the whole chain: a screenful, not an error)
            hops = [str(r.url) for r in exc.history]
            last = f", the last to {hops[-1]}" if hops else ""
            raise DownloadError(f"cannot fetch {self.url}: too many redirects ({len(hops)} followed{last}; a "
                                "redirect loop?)", DownloadError.HTTP_STATUS, url=self.url) from exc
        except (aiohttp.InvalidURL, aiohttp.RedirectClientError, aiohttp.NonHttpUrlClientError) as exc:
            # a redirect to a URL that is none, or not http(s): asking again gets the same answer (these were
            # retried five times, then told as the bare URL)
            raise DownloadError(f"cannot fetch {self.url}: it redirects to an invalid or non-HTTP URL "
                                f"({getattr(exc, 'url', exc)})", DownloadError.HTTP_STATUS, url=self.url) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            message = str(exc) or type(exc).__name__
            raise _Retry(message, progressed=self.bytes_done > start_bytes) from exc

    async def _range_not_satisfiable(self, resp: aiohttp.ClientResponse, offset: int) -> None:
        # 416: we asked for bytes past the end, so the part is either the whole
        # file or longer than it (stale / wrong file).
        match = _UNSATISFIED_RANGE_RE.match(resp.headers.get("Content-Range", ""))
        size = int(match.group(1)) if match else self.expected_size
        if size == offset or (size is None and self.sha256):
            # Complete, or at least checkable: verification decides.
            self.bytes_total = offset
            self.bytes_done = offset
            self._publish()
            return
        await self._io(_unlink, self.part_path)
        raise _Restart(f"server answered 416 to a resume from byte {offset} (file size {size})")

    def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        status = resp.status
        if status in (408, 425, 429) or status >= 500:
            retry_after = resp.headers.get("Retry-After", "")
            delay = float(retry_after) if retry_after.isdigit() else None
            raise _Retry(f"HTTP {status} {resp.reason or ''}".strip(), status=status, delay=delay)
        hint = ""
        if _same_origin(self.url, self._downloader._hf_endpoint_now()):
            if status in (401, 403):
                hint = (
                    " (gated or private repository: check that HF_TOKEN has access)"
                    if "Authorization" in self._headers
                    else " (gated or private repository: set HF_TOKEN)"
                )
            elif status == 404:
                hint = " (check the repository, revision and file path)"
        status_line = f"HTTP {status} {resp.reason}" if resp.reason else f"HTTP {status}"
        raise DownloadError(
            f"{status_line} for {self.url}{hint}",
            DownloadError.HTTP_STATUS,
            url=self.url,
            status=status,
        )

    async def _sync_hash(self, size: int) -> None:
        """Bring the running sha256 up to the first ``size`` bytes of the part (resume)."""
        if self._hasher is None or self._hashed == size:
            return
        if self._hashed > size:
            self._hasher = hashlib.sha256()
            self._hashed = 0
        f = await self._io(open, self.part_path, "rb")
        try:
            await self._io(f.seek, self._hashed)
            while self._hashed < size:
                n = await self._io(self._hash_from_file, f, min(_HASH_READ_BYTES, size - self._hashed))
                if n == 0:
                    raise DownloadError(
                        f"{self.part_path} shrank while being read", DownloadError.IO, url=self.url
                    )
        finally:
            await self._settle_io()
            f.close()

    def _hash_from_file(self, f: Any, n: int) -> int:
        data = f.read(n)
        assert self._hasher is not None
        self._hasher.update(data)
        self._hashed += len(data)
        return len(data)

    def _write(self, f: Any, data: bytearray) -> None:
        f.write(data)
        if self._hasher is not None:
            self._hasher.update(data)
            self._hashed += len(data)

    def _close_part(self, f: Any, data: bytearray) -> None:
        try:
            if data:
                self._write(f, data)
        finally:
            f.close()

    async def _stream(self, resp: aiohttp.ClientResponse, offset: int) -> None:
        if self._hasher is not None and offset == 0 and self._hashed:
            self._hasher = hashlib.sha256()
            self._hashed = 0
        f = await self._io(_open_part, self.part_path, offset)
        buf = bytearray()
        limit = self.expected_size
        try:
            async for data in resp.content.iter_chunked(_READ_BYTES):
                buf += data
                self._count(len(data))
                if limit is not None and self.bytes_done > limit:
                    raise DownloadError(
                        f"{self.url} sent more than the expected {limit} bytes", DownloadError.SIZE_MISMATCH, url=self.url
                    )
                if len(buf) >= _FLUSH_BYTES:
                    chunk, buf = buf, bytearray()
                    await self._io(self._write, f, chunk)
                self._publish()
        finally:
            # Whatever arrived is a valid prefix: persist it even on failure or
            # cancel, so the next attempt resumes from every byte received.
            await self._settle_io()
            await self._io(self._close_part, f, buf)

    def _commit(self) -> None:
        _commit(self.part_path, self.dest)
        self._committed = True

    async def _verify_and_commit(self) -> None:
        self._set_state(DownloadState.VERIFYING)
        if not self.part_path.exists():
            raise DownloadError(f"{self.part_path} disappeared before verification", DownloadError.IO, url=self.url)
        size = _size_or_zero(self.part_path)
        want = self.expected_size if self.expected_size is not None else self.bytes_total
        if want is not None and size != want:
            await self._io(_unlink, self.part_path)
            raise DownloadError(
                f"downloaded {size} bytes of {self.url}, expected {want}; the partial file was deleted",
                DownloadError.SIZE_MISMATCH,
                url=self.url,
            )
        if self.sha256 is not None:
            await self._sync_hash(size)
            assert self._hasher is not None
            digest = self._hasher.hexdigest()
            if digest != self.sha256:
                await self._io(_unlink, self.part_path)
                raise DownloadError(
                    f"sha256 mismatch for {self.dest.name}: expected {self.sha256}, got {digest} "
                    f"(from {self.url}); the partial file was deleted",
                    DownloadError.CHECKSUM_MISMATCH,
                    url=self.url,
                )
        await self._io(self._commit)
        self.bytes_done = size
        self.bytes_total = size


# --------------------------------------------------------------------------- downloader


class Downloader:
    """Runs downloads on the current asyncio event loop.

    ``max_concurrent`` downloads transfer at once (the rest are ``queued``);
    ``retries`` consecutive failed attempts without progress end a download
    (an attempt that received bytes resets the count); ``backoff`` doubles per
    failure up to ``backoff_max`` seconds. ``session`` lets the caller share an
    :class:`aiohttp.ClientSession` (it is then not closed here).
    ``hf_endpoint`` / ``hf_token`` override the environment variables.

    Use as ``async with Downloader() as d:`` or call :meth:`close`, which
    cancels running downloads (keeping their ``.part`` files).
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        max_concurrent: int = 3,
        retries: int = 5,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        progress_interval: float = 0.1,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        hf_endpoint: str | None = None,
        hf_token: str | None = None,
        user_agent: str = "jan-downloader/0.1",
        trust_env: bool = True,
    ):
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.progress_interval = progress_interval
        self._hf_endpoint = hf_endpoint.rstrip("/") if hf_endpoint else None
        self._hf_token = hf_token
        self._user_agent = user_agent
        self._trust_env = trust_env
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session = session
        self._owns_session = session is None
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: dict[str, DownloadTask] = {}
        self._active: dict[Path, DownloadTask] = {}
        self._closed = False

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(
        self,
        url: str,
        dest_path: str | os.PathLike[str],
        *,
        sha256: str | None = None,
        expected_size: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DownloadTask:
        """Start (or join) the download of ``url`` to ``dest_path`` and return its task.

        ``url`` is http(s) or ``hf://owner/repo[@revision]/path``. ``dest_path``
        is the final file, or an existing folder / a path ending in a separator,
        in which case the file name comes from the URL. ``sha256`` (hex, an
        optional ``sha256:`` prefix is accepted) and ``expected_size`` are
        checked before the file is moved into place. ``headers`` are added to
        every request (they override the ``HF_TOKEN`` authorization).

        If the same URL is already being downloaded to the same destination,
        that task is returned; a different URL for a destination in progress
        raises :class:`DownloadError` (``conflict``), as do bad URLs
        (``invalid_url``). Must be called with an event loop running.
        """
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("Downloader is closed")
        if expected_size is not None and expected_size < 0:
            raise ValueError("expected_size must be >= 0")
        digest = _normalize_sha256(sha256)
        resolved = resolve_url(url, hf_endpoint=self._hf_endpoint_now())
        dest = _resolve_dest(dest_path, resolved)

        predecessor = None
        existing = self._active.get(dest)
        if existing is not None:
            if existing._cancel_requested or existing.done:
                predecessor = existing._runner
            elif existing.url == resolved:
                return existing
            else:
                raise DownloadError(
                    f"{dest} is already being downloaded from {existing.source_url}",
                    DownloadError.CONFLICT,
                    url=resolved,
                )

        task = DownloadTask(
            self,
            url=resolved,
            source_url=url.strip(),
            dest=dest,
            sha256=digest,
            expected_size=expected_size,
            headers=self._headers_for(resolved, headers),
        )
        self._tasks[task.id] = task
        self._active[dest] = task
        task._runner = loop.create_task(task._run(predecessor), name=f"jan-download-{task.id[:8]}")
        task._runner.add_done_callback(task._on_runner_done)
        log.info("download %s: %s -> %s", task.id[:8], url, dest)
        return task

    def get(self, task_id: str) -> DownloadTask | None:
        """The task with this id (finished ones too, until :meth:`forget`), or None."""
        return self._tasks.get(task_id)

    def list(self) -> list[DownloadTask]:
        """All known tasks, oldest first."""
        return list(self._tasks.values())

    def cancel(self, task_id: str, *, discard: bool = False) -> bool:
        """Cancel a task by id (see :meth:`DownloadTask.cancel`); False if unknown or finished."""
        task = self._tasks.get(task_id)
        return task.cancel(discard=discard) if task is not None else False

    def forget(self, task_id: str) -> bool:
        """Drop a finished task from :meth:`list`; False if unknown or still running."""
        task = self._tasks.get(task_id)
        if task is None or not task.done:
            return False
        del self._tasks[task_id]
        return True

    async def close(self) -> None:
        """Cancel running downloads (keeping their ``.part`` files) and close the HTTP session."""
        self._closed = True
        runners = [t._runner for t in self._active.values() if t._runner is not None]
        for task in list(self._active.values()):
            task.cancel()
        if runners:
            await asyncio.wait(runners)
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    # ---- internals

    def _hf_endpoint_now(self) -> str:
        return self._hf_endpoint or hf_endpoint()

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        # The token only goes to the hub itself; aiohttp drops it again when
        # the hub redirects to its CDN (another origin, pre-signed URL).
        token = self._hf_token or _hf_token()
        if token and _same_origin(url, self._hf_endpoint_now()):
            headers["Authorization"] = f"Bearer {token}"
        for key, value in (extra or {}).items():
            headers[key] = value
        return headers

    def _session_for_requests(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the aiohttp session given to Downloader is closed")
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                trust_env=self._trust_env,
                headers={"User-Agent": self._user_agent},
            )
        return self._session

    def _release(self, task: DownloadTask) -> None:
        if self._active.get(task.dest) is task:
            del self._active[task.dest]


# --------------------------------------------------------------------------- blocking helper


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    headers: Mapping[str, str] | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    **downloader_options: Any,
) -> Path:
    """Download ``url`` to ``dest`` and return the final path (blocking; for the CLI).

    Same arguments as :meth:`Downloader.start`; ``progress`` is called with
    each :class:`DownloadProgress` (rate-limited, the last one final); other
    keyword arguments go to :class:`Downloader`. Raises :class:`DownloadError`.
    On Ctrl-C the ``.part`` file is kept, so running it again resumes.
    Cannot be called from a running event loop (use :class:`Downloader`).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("download() blocks; inside an event loop use Downloader().start() instead")
    return asyncio.run(
        _download(url, dest, sha256=sha256, expected_size=expected_size, headers=headers, progress=progress, options=downloader_options)
    )


async def _download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None,
    expected_size: int | None,
    headers: Mapping[str, str] | None,
    progress: Callable[[DownloadProgress], None] | None,
    options: dict[str, Any],
) -> Path:
    async with Downloader(**options) as downloader:
        task = downloader.start(url, dest, sha256=sha256, expected_size=expected_size, headers=headers)
        reporter = asyncio.create_task(_report(task, progress)) if progress is not None else None
        try:
            return await task.wait()
        finally:
            if reporter is not None:
                if task.done:
                    await reporter  # delivers the final snapshot
                else:
                    reporter.cancel()


async def _report(task: DownloadTask, callback: Callable[[DownloadProgress], None]) -> None:
    async for snap in task.progress():
        try:
            callback(snap)
        except Exception:  # noqa: BLE001 - a broken progress bar must not kill the download
            log.exception("download progress callback failed; no further progress reported")
            return
