"""The CLI's local mode: the same extension manager and services as ``jan serve``, in this process.

The manager runs on an asyncio loop in a background thread; the CLI's synchronous code calls
into it with :meth:`LocalRuntime.call` and iterates streams with :meth:`LocalRuntime.iterate`.
So ``jan run``/``jan chat`` without a server build the same typed requests and take the same
path to the engine (templates, precedence, parsing) as ``/v1/chat/completions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

from jan.cli.common import CLIError

T = TypeVar("T")

__all__ = ["LocalRuntime"]


class LocalRuntime:
    """Extension manager + :class:`~jan.services.Services` on a private event loop (close it)."""

    def __init__(self, data_folder: Path, *, enable_extensions: bool = True,
                 allow_media_from: tuple[str, ...] = (), read_only: bool = False):
        from jan.cli.inference import interrupts_stay_on_this_thread
        from jan.core import ExtensionManager, LocalEventBus
        from jan.services import Services

        #: The images a message links to are fetched as ``jan serve`` fetches them (``allow_media_from``: its
        #: ``--allow-media-from``); a folder that is not there is refused here, before anything starts.
        self.media = LinkedMedia(allow_media_from)
        self.loop = asyncio.new_event_loop()
        # Started with SIGINT blocked, so the loop thread and every engine thread it starts
        # leave Ctrl-C to the main thread.
        with interrupts_stay_on_this_thread():
            self._thread = threading.Thread(target=self.loop.run_forever, name="jan-local", daemon=True)
            self._thread.start()
        Path(data_folder).mkdir(parents=True, exist_ok=True)
        # read_only: for a command that only reads (`jan models list --json`): extensions.json is not written
        self.manager = ExtensionManager(data_folder, LocalEventBus(), discover_entry_points=enable_extensions,
                                        read_only=read_only)
        self.call(self.manager.start())
        self._tell_damaged_settings()
        self.services = Services.from_manager(self.manager, fetch_image=self.media.data_url)

    def _tell_damaged_settings(self) -> None:
        """Say on stderr which extension's settings.json could not be read (no JSON: left in place, its defaults
        used): a server logs it, but this process shows no log, and `jan run` ran on the defaults without a word."""
        from jan.cli.common import warn

        for record in self.manager.list():
            if record.state != "loaded":  # (settings read now would read a file nothing else read)
                continue
            with contextlib.suppress(Exception):  # (a note only: a start never fails for want of it)
                for problem in self.manager.settings(record.name).problems:
                    if problem.get("field") is None:  # the file as a whole, not one ignored value
                        warn(f"extension {record.name!r}: {problem.get('message')}")

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the runtime's loop and return its result (Ctrl-C cancels it)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def iterate(self, stream: AsyncIterator[T]) -> "SyncStream[T]":
        """A blocking iterator over ``stream``; ``close()`` (or Ctrl-C) closes the stream."""
        return SyncStream(self, stream)

    def local_engine(self):
        """The llama.cpp extension, or None when it is disabled."""
        with contextlib.suppress(LookupError):
            return self.manager.get_inference("llama.cpp")
        return None

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            try:
                self.call(self.manager.stop())
            finally:
                self.call(self.media.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            if not self._thread.is_alive():
                self.loop.close()


class LinkedMedia:
    """The image links of this process's requests and threads (an ``image_url`` part whose URL is ``http(s)://``,
    ``file://`` or a path), fetched by ``jan serve``'s fetcher (:class:`jan.server.media_fetch.MediaFetcher`) with
    its allowlist (``--allow-media-from`` entries, :class:`~jan.server.media_fetch.MediaAllowlist`), its limits and
    its errors (:class:`jan.MediaError`, ``not_allowed`` for a link no entry allows). The fetcher, and aiohttp's
    client with it, is made on the first link met: a command that meets none never imports it.

    Raises ``ValueError`` (:class:`~jan.server.media_fetch.MediaFolderError` for a folder that is not there) for
    an entry that is no URL prefix or folder."""

    def __init__(self, allow_media_from: tuple[str, ...] | list[str] = ()):
        self.entries = tuple(allow_media_from)
        self._fetcher = None
        if self.entries:
            self._allowlist()  # (checked as the command starts, as jan serve checks it)

    def _allowlist(self):
        from jan.server.aiohttp_import import defer_client

        defer_client()  # (the module imports aiohttp: its client is loaded by the first fetch, not by this import)
        from jan.server.media_fetch import MediaAllowlist

        return MediaAllowlist.parse(self.entries)

    async def data_url(self, url: str, param: str) -> str:
        """``url`` as a ``data:`` URL (a ``data:`` URL as it is): the allowed image it links to, fetched. Raises
        :class:`jan.MediaError` naming ``param``."""
        from jan.errors import MediaError

        if url[:5].lower() == "data:":
            return url
        if not self.entries:
            raise MediaError(f"{param}: {url} is a link to an image, and this command fetches none: give "
                             "--allow-media-from URL_PREFIX|FOLDER to allow it (as `jan serve` takes it), or send "
                             "the image itself", reason="not_allowed", param=param)
        if self._fetcher is None:
            from jan.server.media_fetch import MediaFetcher

            self._fetcher = MediaFetcher(self._allowlist())
        return await self._fetcher.data_url(url, param)

    async def close(self) -> None:
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            await fetcher.close()


class SyncStream(Iterator[T]):
    """A blocking iterator over an async stream on the runtime's loop.

    Ctrl-C (or SIGTERM/SIGHUP, :class:`jan.cli.inference.StopSignals`) may land anywhere in :meth:`__next__`,
    also while a step is still running on the loop. :meth:`close` therefore cancels that step and waits for it
    before closing the stream: an ``aclose()`` while a step runs is refused ("already running"), which would
    leave the stream open and its engine request generating until the model is unloaded.
    """

    def __init__(self, runtime: LocalRuntime, stream: AsyncIterator[T]):
        self.runtime = runtime
        self.stream = stream
        self.closed = False
        self._step: asyncio.Task | None = None  # the step running on the loop (set and read there only)

    async def _next(self) -> T:
        self._step = asyncio.current_task()
        try:
            return await self.stream.__anext__()
        finally:
            self._step = None

    def __next__(self) -> T:
        if self.closed:
            raise StopIteration
        try:
            return self.runtime.call(self._next())
        except StopAsyncIteration:
            self.closed = True
            raise StopIteration from None
        except KeyboardInterrupt:
            self.close()
            raise

    async def _close(self) -> None:
        step = self._step
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(BaseException):  # its outcome is of no interest: the stream is being dropped
                await step
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.runtime.call(self._close())


def cli_error(exc: BaseException) -> CLIError:
    """A service's error as one clear CLI line."""
    return CLIError(str(exc) or type(exc).__name__)
