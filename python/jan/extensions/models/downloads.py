"""A pull in progress, in the shape the ModelExtension interface promises."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jan.core import DownloadComplete, DownloadFailed, DownloadProgress, DownloadTask
from jan.downloads import DownloadCancelledError, DownloadError, DownloadState, resolve_url
from jan.downloads import DownloadTask as FileDownload
from jan.store.models import check_gguf

log = logging.getLogger("jan.models")

_HASH_READ_BYTES = 1 << 20
#: The most seconds a stop of jan waits for a pull to end (:meth:`ModelPull.close`).
PULL_STOP_BOUND = 15.0


@dataclass(frozen=True)
class PullFile:
    """One file of a pull: ``url`` (as given: http(s) or ``hf://``) for ``dest``, its place in the model folder.

    It downloads to ``staged``: ``dest`` itself, or hidden beside a file already there, swapped in once the pull
    proves it. ``left``: the file at ``dest`` is named by no model.json — a pull that stopped between its download's
    end and writing model.json (a download reaches ``dest`` only whole). It is used as it is when it matches the
    source: its ``sha256`` when the pull names one (then nothing is fetched), else the size the source answers with
    (the download's first response; it is stopped there). One that does not match is downloaded again."""

    url: str
    dest: str
    staged: str
    sha256: str | None = None  # lowercase hex
    left: bool = False

    @property
    def checked_first(self) -> bool:
        """Whether the file left at ``dest`` is checked before anything is downloaded (its hash decides)."""
        return self.left and self.sha256 is not None


class ModelPull(DownloadTask):
    """Downloads the weights (and ``extra`` files beside them, such as the projector, at the same
    time), then writes model.json; progress (all files together) goes to the event bus.

    ``register`` gets, per file's ``dest``, the path that holds it now (``dest`` for a file used as it was left,
    else where it was downloaded) and writes model.json."""

    def __init__(self, start: Callable[[PullFile], FileDownload], model: PullFile, model_id: str, bus,
                 register: Callable[[dict[str, str]], Awaitable[dict]], *, extra: list[PullFile] = (),
                 cleanup: Callable[[], Awaitable[None]] | None = None):
        self.id = model_id
        self.model_id = model_id
        #: What is being pulled (the model file's URL as given), set by the model manager.
        self.source: str | None = None
        #: The model file's partial download an earlier pull left (bytes; 0: none), set by the model manager:
        #: with ``resumed_from`` in :meth:`status`, whether the source took it up or sent the file again.
        self.partial_bytes = 0
        self._cleanup = cleanup  # after a failure or cancel: removes what the pull left behind
        self._start = start
        self._files = [model, *extra]
        self._url = resolve_url(model.url)
        self._bus = bus
        self._register = register
        self._downloads: dict[str, FileDownload] = {}  # per dest, once its download started
        self._kept: dict[str, int] = {}  # per dest used as it was left: its size
        self._publishers: list[asyncio.Task] = []
        self._stop = threading.Event()  # cancel(): a hash being taken stops
        self._model: dict[str, Any] | None = None
        self._error: BaseException | None = None
        try:
            for file in self._files:  # at once (a bad URL or a conflict is the caller's error), but after a hash
                if not file.checked_first:
                    self._begin(file)
        except BaseException:
            self._abandon()
            raise
        self._task = asyncio.create_task(self._run())

    @property
    def sha256(self) -> str | None:
        """The model file's SHA-256 (lowercase hex) when known before it is fetched (the pull named one), else None:
        what Ollama's pull progress calls the layer's ``digest``."""
        return self._files[0].sha256

    def _abandon(self) -> None:
        """A file could not even start: the ones that did are of no use (their partial files stay, to resume)."""
        for download in self._downloads.values():
            download.cancel()
        for publisher in self._publishers:
            publisher.cancel()

    def _begin(self, file: PullFile) -> FileDownload:
        download = self._downloads[file.dest] = self._start(file)
        self._publishers.append(asyncio.create_task(self._publish(download)))
        return download

    async def _publish(self, download: FileDownload) -> None:
        async for p in download.progress():
            if p.state == DownloadState.DOWNLOADING:
                done, total = self._bytes()
                self._bus.emit_nowait(DownloadProgress(task_id=self.id, model_id=self.model_id,
                                                       downloaded_bytes=done, total_bytes=total))

    async def _run(self) -> None:
        try:
            found = {}
            for file in self._files:
                found[file.dest] = await self._fetch(file)
            self._model = await self._register(found)
            await self._bus.emit(DownloadComplete(task_id=self.id, model_id=self.model_id))
        except BaseException as exc:  # noqa: BLE001 - recorded, re-raised by wait()
            self._error = exc
            for download in self._downloads.values():
                if not download.done:  # one file failed: the others are of no use either
                    download.cancel(discard=True)
                    with contextlib.suppress(BaseException):
                        await download.wait()
            # a file another process is downloading is its own: nothing of it is this pull's to remove
            theirs = isinstance(exc, DownloadError) and exc.reason == DownloadError.CONFLICT
            if self._cleanup is not None and not theirs:
                try:
                    await self._cleanup()
                except Exception:  # the pull's own error is the one to report
                    log.warning("pull of %s: could not remove what it left behind", self.model_id, exc_info=True)
            if not isinstance(exc, asyncio.CancelledError):
                await self._bus.emit(DownloadFailed(task_id=self.id, model_id=self.model_id, error=str(exc)))
        finally:
            for publisher in self._publishers:
                publisher.cancel()

    async def _fetch(self, file: PullFile) -> str:
        """The path that holds ``file`` once it is there: ``dest`` when the file left there is used, else its
        download's."""
        if file.checked_first:
            digest = await asyncio.to_thread(_sha256_of, file.dest, self._stop)
            if self._stop.is_set():
                raise DownloadCancelledError(url=self._url)
            if digest == file.sha256:
                return await self._keep(file)
            log.info("pull of %s: %s has another sha256; downloading it again", self.model_id, file.dest)
            self._begin(file)
        download = self._downloads[file.dest]
        if file.left and file.sha256 is None and await self._same_size(download, file.dest):
            download.cancel(discard=True)  # the source's answer was all that was needed of it
            with contextlib.suppress(Exception):
                await download.wait()
            if self._stop.is_set():  # the pull itself was cancelled meanwhile
                raise DownloadCancelledError(url=self._url)
            if download.state is not DownloadState.COMPLETED:  # (one that ended first is a whole copy as good)
                del self._downloads[file.dest]
                return await self._keep(file)
        await download.wait()
        return file.staged

    async def _keep(self, file: PullFile) -> str:
        self._kept[file.dest] = await asyncio.to_thread(os.path.getsize, file.dest)
        log.info("pull of %s: using %s, downloaded whole by an earlier pull", self.model_id, file.dest)
        return file.dest

    @staticmethod
    async def _same_size(download: FileDownload, path: str) -> bool:
        """Whether the source's size for ``download`` (from its first response) is the size of the GGUF file at
        ``path``; False when the download ends without telling one."""
        async for p in download.progress():
            if p.bytes_total is not None:
                return p.bytes_total == await asyncio.to_thread(_gguf_size, path)
            if p.state.is_final:
                return False
        return False

    def _bytes(self) -> tuple[int, int | None]:
        """Bytes done and expected over every file (total None while one size is unknown)."""
        done, totals = 0, []
        for file in self._files:
            download = self._downloads.get(file.dest)
            if download is not None:
                done += download.bytes_done
                totals.append(download.bytes_total)
            else:  # used as it was left, or its hash still being taken
                done += self._kept.get(file.dest, 0)
                totals.append(self._kept.get(file.dest))
        return done, (None if any(t is None for t in totals) else sum(totals))

    def _state(self, d: FileDownload | None) -> str:
        if d is None:  # the model file was used as it was left, or its hash is being taken
            if self._error is not None:
                return "cancelled" if isinstance(self._error, (DownloadCancelledError, asyncio.CancelledError)) \
                    else "failed"
            return "completed" if self._model is not None else "downloading"
        state = d.state.value if hasattr(d.state, "value") else str(d.state)
        if state == "verifying":
            state = "downloading"
        if state == "completed" and self._model is None and self._error is None:
            state = "downloading"  # weights are there, model.json is being written
        if self._error is not None and state == "completed":
            state = "failed"
        return state

    def status(self) -> dict[str, Any]:
        d = self._downloads.get(self._files[0].dest)
        done, total = self._bytes()
        state = self._state(d)
        own = d.error if d is not None else None
        error = str(own) if own else (str(self._error) if self._error and state == "failed" else None)
        return {
            "id": self.id,
            "model_id": self.model_id,
            "url": d.url if d is not None else self._url,
            "state": state,
            "downloaded_bytes": done,
            "total_bytes": total,
            "speed": d.speed if d is not None else 0.0,
            "eta": d.eta if d is not None else (0.0 if state == "completed" else None),
            "error": error,
            "partial_bytes": self.partial_bytes,
            "resumed_from": d.resumed_from if d is not None else None,
        }

    async def wait(self) -> dict[str, Any]:
        await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error
        return self._model

    def file_downloads(self) -> list[FileDownload]:
        """The downloads of its files it started (the downloader's tasks)."""
        return list(self._downloads.values())

    @property
    def done(self) -> bool:
        """Whether the pull has ended (completed, failed or cancelled), its task with it."""
        return self._task.done() and all(publisher.done() for publisher in self._publishers)

    async def close(self, bound: float = PULL_STOP_BOUND) -> None:
        """At a stop of jan, once the downloader's close has stopped the downloads (their partial files kept, to
        resume): a hash being taken stops too, and the pull's task and its progress tasks are awaited, at most
        ``bound`` s. Left running, the pull would remove its files or write a model.json as the store stops, and be
        destroyed pending when the event loop closes."""
        self._stop.set()
        pending = [task for task in (self._task, *self._publishers) if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=bound)
        if not self._task.done():
            log.warning("pull of %s did not end before jan stopped", self.model_id)

    async def cancel(self) -> None:
        self._stop.set()
        for download in list(self._downloads.values()):
            download.cancel(discard=True)
        try:
            await asyncio.shield(self._task)
        except BaseException:  # noqa: BLE001 - the cancellation itself
            pass


def _sha256_of(path: str, stop: threading.Event) -> str | None:
    """Blocking: the file's sha256 (lowercase hex); None once ``stop`` is set, or when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while not stop.is_set():
                block = f.read(_HASH_READ_BYTES)
                if not block:
                    return digest.hexdigest()
                digest.update(block)
    except OSError:
        return None
    return None


def _gguf_size(path: str) -> int | None:
    """Blocking: the size of the GGUF file at ``path``; None when it is none (it is then downloaded again)."""
    try:
        check_gguf(path)
        return os.path.getsize(path)
    except (OSError, ValueError):
        return None
