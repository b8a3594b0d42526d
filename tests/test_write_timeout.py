"""A client that never reads its answer is bounded by the server's write_timeout (jan.server.protocol), in every
dialect: its connection is closed and its generation stopped, while other clients are served meanwhile.

Once the kernel's send buffer and aiohttp's 64 KiB were full, each write of the answer waited for the client to
read, with no bound: a client that opened a stream and read nothing held its handler, its generation (and the
engine's slot) and its connection for as long as it kept the connection open.
"""

from __future__ import annotations

import logging
import socket
import threading

import httpx
import pytest

from endless_engine import STREAMED, EndlessEngine
from server_helpers import http_post

from jan.server.config import ServerConfig
from jan.store import DataFolder
from jan.testing.server import ServerThread

#: The server's write_timeout here: short, so that an unread answer is cut soon. What is asserted is that it is cut
#: (the generation's close, awaited with WAIT, far longer), never how soon.
WRITE_TIMEOUT = 1.0
WAIT = 60
#: Text per delta: the answer fills the connection's buffers within a few hundred deltas.
WORDS = "ok " * 1000


class ChattyEngine(EndlessEngine):
    """:class:`EndlessEngine` whose every delta has text: an answer that never ends and always has more to send."""

    def chat(self, model, request):
        from jan.services.types import ChatDelta

        return self._endless(ChatDelta(content="ok "), ChatDelta(content=WORDS))

    def complete(self, model, request):
        from jan.services.types import CompletionDelta

        return self._endless(CompletionDelta(text="ok "), CompletionDelta(text=WORDS))


class _Said(logging.Handler):
    """Sets ``event`` at a record of jan.server.protocol's that says the connection was closed unread."""

    def __init__(self):
        super().__init__()
        self.event = threading.Event()

    def emit(self, record):
        if "read none of its answer" in record.getMessage():
            self.event.set()


@pytest.fixture(scope="module")
def engine():
    return ChattyEngine()


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine):
    folder = tmp_path_factory.mktemp("unread") / "data"
    DataFolder(folder).models.create({"id": "chatty", "engine": "endless", "object": "model"})
    cfg = ServerConfig(data_folder=folder, models=[], n_threads=1, write_timeout=WRITE_TIMEOUT)
    with ServerThread(cfg, extensions=[engine]) as srv:
        yield srv


@pytest.mark.parametrize("path", list(STREAMED))
def test_a_client_that_never_reads_is_cut_and_its_generation_stopped(server, engine, path):
    engine.clear()
    said = _Said()
    logger = logging.getLogger("jan.server.protocol")
    logger.addHandler(said)
    level = logger.level
    logger.setLevel(logging.INFO)
    host, port = server.base_url.split("//")[1].split(":")
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (a small window: the server's buffers fill)
        sock.settimeout(WAIT)  # (a guard against a hang, no measure)
        sock.connect((host, int(port)))
        sock.sendall(http_post(path, {"model": "chatty", **STREAMED[path]}))
        assert engine.started.wait(WAIT)
        # another client is answered while this one reads nothing
        assert httpx.get(server.base_url + "/health", timeout=WAIT).status_code == 200
        assert engine.closed.wait(WAIT), "the generation of a client that reads nothing went on"
        assert said.event.wait(WAIT), "the server did not say why it closed the connection"
        # what the client reads now ends (the connection is closed), never the stream's own end
        answer = b""
        try:
            while more := sock.recv(65536):
                answer += more
        except ConnectionResetError:
            pass
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert b"[DONE]" not in answer and b'"done":true' not in answer and b"message_stop" not in answer
    finally:
        sock.close()
        logger.removeHandler(said)
        logger.setLevel(level)


def test_the_write_timeout_must_be_a_number_of_seconds(tmp_path):
    for bad in (0, -1, float("inf"), float("nan"), True, "60"):
        with pytest.raises(ValueError, match="write_timeout"):
            ServerConfig(data_folder=tmp_path, write_timeout=bad)


def test_jan_serve_takes_write_timeout(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import jan.cli.serve as serve_cli
    from jan.cli import main

    given = []

    async def run_server(config):  # (the config the command built; nothing starts)
        given.append(config)

    monkeypatch.setattr(serve_cli, "run_server", run_server)
    result = CliRunner().invoke(main, ["serve", "--data-folder", str(tmp_path), "--write-timeout", "5"])
    assert result.exit_code == 0, result.output
    assert given[0].write_timeout == 5
    for bad in ("0", "nan", "inf"):
        refused = CliRunner().invoke(main, ["serve", "--data-folder", str(tmp_path), "--write-timeout", bad])
        assert refused.exit_code == 2 and "--write-timeout" in refused.output, refused.output


def test_what_a_slow_reader_takes_counts_as_progress():
    """The bytes still unsent count those in the kernel's send queue (where one supports telling them): a client that
    reads, however slowly, takes bytes there at once, while the transport's own buffer may not move for longer than
    the write timeout (the socket is writable again only once much of a send buffer of megabytes is free)."""
    import asyncio

    from jan.server.protocol import _OUTQ, _unsent_bytes

    if _OUTQ is None:
        pytest.skip("this system does not tell a socket's send queue")

    class Transport(asyncio.Transport):  # (the transport's buffer is empty: only the kernel's queue is counted)
        def __init__(self, sock):
            super().__init__()
            self.sock = sock

        def get_write_buffer_size(self):
            return 0

        def get_extra_info(self, name, default=None):
            return self.sock if name == "socket" else default

    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.settimeout(WAIT)
        client.connect(listener.getsockname())
        server_side, _ = listener.accept()
        with client, server_side:
            server_side.setblocking(False)
            try:
                while True:  # the kernel's send queue full: the client reads nothing yet
                    server_side.send(b"x" * 65536)
            except BlockingIOError:
                pass
            transport = Transport(server_side)
            full = _unsent_bytes(transport)
            assert full > 0
            taken = 0
            while _unsent_bytes(transport) >= full:  # (the client's reads are acknowledged as it reads on)
                taken += len(client.recv(4096))
                assert taken < full, "what the client took never showed"
