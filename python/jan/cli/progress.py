"""Download (and copy) progress on stderr: a rich bar at a terminal, a few plain lines otherwise."""

from __future__ import annotations

import time
from typing import Any

import click

from jan.cli.common import human_bytes, rich_console, stderr_redraws

PLAIN_INTERVAL_S = 1.0


class DownloadBar:
    """Fed with :class:`jan.downloads.DownloadProgress` snapshots (local pulls), the server's pull events or a
    copy's bytes (:meth:`copied`); the final state of a download is always printed. ``done_word``: what a plain
    line calls the bytes that are there (``downloaded``, ``copied``). ``lazy``: the bar shows first when fed
    (an import that only links the file shows none)."""

    def __init__(self, label: str, *, fancy: bool | None = None, done_word: str = "downloaded", lazy: bool = False):
        self.label = label
        self.done_word = done_word
        self.lazy = lazy
        # a bar redraws itself with cursor moves, which a dumb terminal (TERM=dumb: Emacs' shell, a CI log) prints
        # as text; rich then shows it only once done: such a terminal gets the plain lines, as a pipe does
        self.fancy = stderr_redraws() if fancy is None else fancy
        self._progress = None
        self._task = None
        self._last_plain = 0.0
        self._last_line = ""
        self._done = False

    def __enter__(self) -> "DownloadBar":
        if not self.lazy:
            self._start()
        return self

    def _start(self) -> None:
        if self.fancy and self._progress is None:
            from rich.text import Text
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            class BinarySpeedColumn(TransferSpeedColumn):
                # rich's speed column is decimal (MB/s); jan writes sizes in binary units everywhere.
                def render(self, task):
                    speed = task.finished_speed or task.speed
                    return Text("?" if speed is None else f"{human_bytes(speed)}/s", style="progress.data.speed")

            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      DownloadColumn(binary_units=True), BinarySpeedColumn(), TimeRemainingColumn(),
                                      console=rich_console(stderr=True), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None)

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            click.echo(f"jan: {text}", err=True)

    # -- feeding -------------------------------------------------------
    def copied(self, done: int, total: int) -> None:
        """A copy's ``progress(bytes_done, bytes_total)`` (:func:`jan.store.atomic.copy_to_temp`). Its plain lines
        come each second while it lasts, none for a copy over within the first (the command says what it did)."""
        if self._progress is None and done >= total and not self._last_line:
            return
        if self.fancy:
            self._start()
        self._show("completed" if done >= total else "copying", done, total, None)

    def update(self, snap: Any) -> None:
        """A local download's :class:`~jan.downloads.DownloadProgress`."""
        state = snap.state.value if hasattr(snap.state, "value") else str(snap.state)
        self._show(state, snap.bytes_done, snap.bytes_total, snap.error)

    def update_server(self, event: dict[str, Any]) -> None:
        """One event of the server's ``POST /v1/models/pull`` stream."""
        if event.get("model_id") and self.label != event["model_id"]:
            self.label = event["model_id"]
            if self._progress is not None:
                self._progress.update(self._task, description=self.label)
        self._show(str(event.get("state", "")), int(event.get("downloaded_bytes") or 0),
                   event.get("total_bytes"), event.get("error"))

    def _show(self, state: str, done: int, total: int | None, error: str | None) -> None:
        del error  # failures are reported by the command, once
        final = state in ("completed", "failed", "cancelled")
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total or None)
            return
        if state in ("failed", "cancelled") or (not final and done == 0):
            return  # the command reports the failure itself; "0 B" says nothing
        now = time.monotonic()
        if not final and now - self._last_plain < PLAIN_INTERVAL_S:
            return
        self._last_plain = now
        amount = human_bytes(done) + (f" / {human_bytes(total)} ({100 * done / total:.0f}%)" if total else "")
        # The bytes are all here, but the pull is not done until the file proved to be a model:
        # the command itself says "pulled" (or why not) next.
        shown = self.done_word if state == "completed" else state
        line = f"{shown} {self.label}: {amount}"
        if line != self._last_line:
            click.echo(line, err=True)
            self._last_line = line
