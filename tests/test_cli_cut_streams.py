"""A streamed answer the server stops sending before its end (jan serve killed, the connection reset, a proxy
closing it) is an error of the command, not a whole answer.

Before: `jan run` through a server killed mid-answer printed the part that came and exited 0, as if it were the
answer; `jan chat` said nothing about the turn. Every jan stream ends with ``data: [DONE]`` (an error with its
own error event), so one that ends without it was cut off. A stand-in server makes the cut exact: it sends two
pieces and then either closes the connection cleanly or drops it.

Of the same kind: a URL where something that is no HTTP server answers (an SSH port), and an answer shorter than
its Content-Length, were http.client's tracebacks (BadStatusLine, IncompleteRead: no OSError, so no command caught
them)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from aiohttp import web

from test_cli_helpers import cli_env, fails, jan

MODEL = "stories260K"


class CuttingServer:
    """Enough of jan's API for `jan run`/`jan chat --no-save` to use it; each answer stops after two pieces
    (``mode``: "eof", a clean end without [DONE]; "reset", the connection dropped; "whole", [DONE] as usual)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "CuttingServer":
        self.thread.start()
        assert self.ready.wait(60), "the stand-in server did not start"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()

        async def health(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "models": [MODEL]})

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"data": [self._model()]})

        async def model(request: web.Request) -> web.Response:
            return web.json_response(self._model())

        app.router.add_get("/health", health)
        app.router.add_get("/v1/models", models)
        app.router.add_get(f"/v1/models/{MODEL}", model)
        self.saved: list[dict] = []  # the messages a chat saved through /v1/threads

        async def threads(request: web.Request) -> web.Response:
            return web.json_response({"data": [], "has_more": False})

        async def create_thread(request: web.Request) -> web.Response:
            return web.json_response({"id": "thread_1", "object": "thread"})

        async def add_message(request: web.Request) -> web.Response:
            self.saved.append(await request.json())
            return web.json_response({"id": f"msg_{len(self.saved)}", "object": "thread.message"})

        app.router.add_get("/v1/threads", threads)
        app.router.add_post("/v1/threads", create_thread)
        app.router.add_post("/v1/threads/thread_1/messages", add_message)
        app.router.add_post("/v1/chat/completions", self._stream)
        app.router.add_post("/v1/completions", self._stream)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self.ready.set()
        self.loop.run_forever()

    @staticmethod
    def _model() -> dict:
        return {"id": MODEL, "object": "model", "engine": "llama.cpp", "capabilities": ["completion"]}

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = request.path.endswith("/chat/completions")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for text in ("Once", " upon"):
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            await resp.write(f"data: {json.dumps({'choices': [choice], 'model': body.get('model')})}\n\n".encode())
        if self.mode == "reset":
            request.transport.abort()  # no last chunk: the client's read fails mid-body
            return resp
        if self.mode == "whole":
            end = {"index": 0, "delta": {}, "finish_reason": "stop"} if chat else {"index": 0, "text": "",
                                                                                  "finish_reason": "stop"}
            await resp.write(f"data: {json.dumps({'choices': [end]})}\n\ndata: [DONE]\n\n".encode())
        await resp.write_eof()
        return resp


@pytest.mark.parametrize("mode", ["eof", "reset"])
@pytest.mark.parametrize("raw", [False, True], ids=["chat", "raw"])
def test_run_through_a_server_that_stops_mid_answer_fails_saying_so(tmp_path, mode, raw):
    with CuttingServer(mode) as server:
        env = cli_env(tmp_path / "jan", local=False, JAN_API_URL=server.url)
        result = jan("run", MODEL, "hi", *(["--raw"] if raw else []), env=env)
    err = fails(result, f"the connection to the jan server at {server.url} ended before its answer was complete")
    assert "Traceback" not in err
    assert result.stdout == "Once upon\n"  # what came is shown, its line ended before the error


def test_a_whole_stream_is_still_an_answer(tmp_path):
    with CuttingServer("whole") as server:
        env = cli_env(tmp_path / "jan", local=False, JAN_API_URL=server.url)
        result = jan("run", MODEL, "hi", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Once upon\n" and result.stderr == ""


@pytest.mark.parametrize("mode", ["eof", "reset"])
def test_chat_tells_a_turn_cut_off_and_goes_on(tmp_path, mode):
    with CuttingServer(mode) as server:
        env = cli_env(tmp_path / "jan", local=False, JAN_API_URL=server.url)
        result = jan("chat", MODEL, "--no-save", env=env, input="hi\nagain\n")
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "ended before its answer was complete" in line]
    assert len(said) == 2 and all(line.startswith("jan: error: ") for line in said), result.stderr


@pytest.mark.parametrize("mode", ["eof", "reset"])
def test_chat_saves_the_part_of_a_cut_off_answer_it_showed(tmp_path, mode):
    """The turn cut off is saved (through the server's /v1/threads, which still answers): the user's message and
    the part shown, ``stopped`` as Ctrl-C leaves an answer; before, neither was kept."""
    with CuttingServer(mode) as server:
        env = cli_env(tmp_path / "jan", local=False, JAN_API_URL=server.url)
        result = jan("chat", MODEL, env=env, input="hi\n")
        saved = [(m["role"], m["content"], m["status"]) for m in server.saved]
    fails(result, "ended before its answer was complete")
    assert saved == [("user", "hi", "ready"), ("assistant", "Once upon", "stopped")], saved
    assert server.saved[1]["metadata"]["stop_reason"] == "interrupted"


# --------------------------------------------------------------------------- not HTTP, or a body cut short


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with ``reply`` and closes it: an SSH banner (no
    HTTP at all), or an HTTP head promising more body than it sends."""

    def __init__(self, reply: bytes):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "RawServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
        self.sock.close()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)  # to see `stop` (closing a listening socket does not wake its accept())
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(30)
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass


SSH = b"SSH-2.0-OpenSSH_9.2\r\n"
SHORT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"status\": \"ok\", "


@pytest.mark.parametrize("args", [("models", "list"), ("threads", "list"), ("run", MODEL, "hi"),
                                  ("files", "list")], ids=" ".join)
def test_a_url_that_is_no_http_server_is_a_clear_error_when_given_and_local_when_probed(tmp_path, args):
    """Before: http.client.BadStatusLine's traceback from every command, $JAN_API_URL or --url."""
    with RawServer(SSH) as server:
        probed = jan(*args, env=cli_env(tmp_path / "jan", local=False, JAN_API_URL=server.url))
        given = jan(*args, "--url", server.url, env=cli_env(tmp_path / "jan", local=False))
    assert "Traceback" not in probed.stderr
    if args[0] != "run":  # the probe finds no jan server there: the data folder is used
        assert probed.returncode == 0, probed.stderr
    fails(given, server.url)


def test_an_answer_cut_short_of_its_length_is_a_clear_error(tmp_path):
    """A JSON answer whose body ends before its Content-Length (http.client's IncompleteRead, no OSError)."""
    with RawServer(SHORT) as server:
        result = jan("models", "list", "--url", server.url, env=cli_env(tmp_path / "jan", local=False))
    fails(result, server.url)
