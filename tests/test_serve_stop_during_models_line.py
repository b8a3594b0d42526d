"""A Ctrl-C (SIGINT) while `jan serve` writes its start's models line stops it then, not once the listing returns.

The start awaited the model listing (its "jan: N models: ..." line) before it waited on the stop signal: the signal
handler was set, but a slow listing (a folder of many models, a remote extension's list) held the stop until it
returned. The line now races the stop; a stop first drops the line and shuts down.
"""

from __future__ import annotations

import asyncio
import os
import signal

from jan.cli import serve as serve_cli
from jan.server.config import ServerConfig

BOUND = 60  # (bounds a hang, measures nothing)


def test_a_stop_while_the_models_listing_is_slow_is_acted_on_with_the_listing_still_held(tmp_path, monkeypatch,
                                                                                          capsys):
    async def main() -> None:
        entered, gate, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def slow_line(app) -> str:  # the listing, held by a gate the test never opens
            entered.set()
            try:
                await gate.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "jan: the listing returned"

        monkeypatch.setattr(serve_cli, "_models_line", slow_line)
        served = asyncio.ensure_future(serve_cli.run_server(
            ServerConfig(data_folder=tmp_path / "data", host="127.0.0.1", port=0, models=[], n_threads=1)))
        try:
            await asyncio.wait_for(entered.wait(), BOUND)  # (the signal handlers are set before the line starts)
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(asyncio.shield(served), BOUND)  # stopped with the gate still closed
            assert not gate.is_set() and cancelled.is_set()
        finally:
            if not served.done():
                gate.set()
                served.cancel()
                await asyncio.gather(served, return_exceptions=True)

    asyncio.run(main())
    out = capsys.readouterr().out
    assert "jan: shutting down" in out and "the listing returned" not in out, out


def test_the_models_line_is_still_written_when_the_listing_returns_first(tmp_path, monkeypatch, capsys):
    async def main() -> None:
        written = asyncio.Event()

        async def line(app) -> str:
            asyncio.get_running_loop().call_soon(written.set)
            return "jan: 0 models here"

        monkeypatch.setattr(serve_cli, "_models_line", line)
        served = asyncio.ensure_future(serve_cli.run_server(
            ServerConfig(data_folder=tmp_path / "data", host="127.0.0.1", port=0, models=[], n_threads=1)))
        try:
            await asyncio.wait_for(written.wait(), BOUND)
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(asyncio.shield(served), BOUND)
        finally:
            if not served.done():
                served.cancel()
                await asyncio.gather(served, return_exceptions=True)

    asyncio.run(main())
    out = capsys.readouterr().out
    assert "jan: 0 models here" in out and "jan: shutting down" in out, out
