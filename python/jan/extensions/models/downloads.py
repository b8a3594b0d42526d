"""A pull in progress, in the shape the ModelExtension interface promises."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from jan.core import DownloadComplete, DownloadFailed, DownloadProgress, DownloadTask
from jan.downloads import DownloadState, DownloadTask as FileDownload

log = logging.getLogger("jan.models")


class ModelPull(DownloadTask):
    """Downloads the weights (and ``extra`` files beside them, such as the projector, at the same
    time), then writes model.json; progress (all files together) goes to the event bus."""

    def __init__(self, download: FileDownload, model_id: str, bus, register: Callable[[], Awaitable[dict]], *,
                 extra: list[FileDownload] = (), cleanup: Callable[[], Awaitable[None]] | None = None):
        self.id = model_id
        self.model_id = model_id
        #: What is being pulled (the model file's URL as given), set by the model manager.
        self.source: str | None = None
        self._cleanup = cleanup  # after a failure or cancel: removes what the pull left behind
        self._download = download
        self._extra = list(extra)
        self._bus = bus
        self._register = register
        self._model: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async def publish():
            async for p in self._download.progress():
                if p.state == DownloadState.DOWNLOADING:
                    done, total = self._bytes()
                    self._bus.emit_nowait(DownloadProgress(task_id=self.id, model_id=self.model_id,
                                                           downloaded_bytes=done, total_bytes=total))

        publisher = asyncio.create_task(publish())
        try:
            await self._download.wait()
            for download in self._extra:
                await download.wait()
            self._model = await self._register()
            await self._bus.emit(DownloadComplete(task_id=self.id, model_id=self.model_id))
        except BaseException as exc:  # noqa: BLE001 - recorded, re-raised by wait()
            self._error = exc
            for download in (self._download, *self._extra):
                if not download.done:  # one file failed: the others are of no use either
                    download.cancel(discard=True)
                    with contextlib.suppress(BaseException):
                        await download.wait()
            if self._cleanup is not None:
                try:
                    await self._cleanup()
                except Exception:  # the pull's own error is the one to report
                    log.warning("pull of %s: could not remove what it left behind", self.model_id, exc_info=True)
            if not isinstance(exc, asyncio.CancelledError):
                await self._bus.emit(DownloadFailed(task_id=self.id, model_id=self.model_id, error=str(exc)))
        finally:
            publisher.cancel()

    def _bytes(self) -> tuple[int, int | None]:
        """Bytes done and expected over every file (total None while one size is unknown)."""
        files = [self._download, *self._extra]
        totals = [d.bytes_total for d in files]
        return sum(d.bytes_done for d in files), (None if any(t is None for t in totals) else sum(totals))

    def status(self) -> dict[str, Any]:
        d = self._download
        done, total = self._bytes()
        state = d.state.value if hasattr(d.state, "value") else str(d.state)
        if state == "verifying":
            state = "downloading"
        if state == "completed" and self._model is None and self._error is None:
            state = "downloading"  # weights are there, model.json is being written
        if self._error is not None and state == "completed":
            state = "failed"
        error = str(d.error) if d.error else (str(self._error) if self._error and state == "failed" else None)
        return {
            "id": self.id,
            "model_id": self.model_id,
            "url": d.url,
            "state": state,
            "downloaded_bytes": done,
            "total_bytes": total,
            "speed": d.speed,
            "eta": d.eta,
            "error": error,
        }

    async def wait(self) -> dict[str, Any]:
        await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error
        return self._model

    async def cancel(self) -> None:
        self._download.cancel(discard=True)
        for download in self._extra:
            download.cancel(discard=True)
        try:
            await asyncio.shield(self._task)
        except BaseException:  # noqa: BLE001 - the cancellation itself
            pass
