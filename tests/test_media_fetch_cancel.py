"""A media URL a request gives (an image, a document) is fetched only while its client waits: a client that leaves
cancels the fetch (jan.server.disconnect.while_client_waits), in every dialect that fetches, instead of the fetch
running on to its own time limit. The media server here never answers, and sees its connection closed."""

from __future__ import annotations

import json
import logging
import socket
import threading

import pytest

from jan.server.config import ServerConfig
from jan.server.keys import MEDIA_FETCHER
from jan.testing.server import ServerThread
from server_helpers import http_post

WAIT = 60


class SilentSite:
    """A media server that reads each request and never answers; ``connected`` is set when a fetch reaches it,
    ``closed`` when the fetcher closes that connection."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        self.connected = threading.Event()
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()

    def reset(self) -> None:
        self.connected.clear()
        self.closed.clear()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            self.connected.set()
            try:
                while conn.recv(65536):
                    pass  # (the request; then nothing is answered)
            except OSError:
                pass
            self.closed.set()


@pytest.fixture(scope="module")
def site():
    with SilentSite() as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, site):
    cfg = ServerConfig(data_folder=tmp_path_factory.mktemp("fetchcancel") / "data", allow_media_from=[site.url])
    with ServerThread(cfg) as srv:
        # a fetch that is not cancelled runs for an hour here, not its 30 s: nothing but the cancel ends it in time
        srv.app[MEDIA_FETCHER].timeout_s = 3600
        yield srv


def _thread_id(server) -> str:
    import urllib.request

    request = urllib.request.Request(server.base_url + "/v1/threads", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        return json.loads(answer.read())["id"]


def _image(url: str) -> list:
    return [{"type": "image_url", "image_url": {"url": url}}]


#: (path, body) of each request that fetches a URL, by dialect and kind of media.
REQUESTS = {
    "openai-image": lambda u, s: ("/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": _image(u)}]}),
    "openai-render": lambda u, s: ("/apply-template", {"model": "m", "messages": [
        {"role": "user", "content": _image(u)}]}),
    "responses-image": lambda u, s: ("/v1/responses", {"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_image", "image_url": u}]}]}),
    "responses-file": lambda u, s: ("/v1/responses", {"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_file", "file_url": u}]}]}),
    "anthropic-image": lambda u, s: ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": u}}]}]}),
    "anthropic-document": lambda u, s: ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": u}}]}]}),
    "thread-message": lambda u, s: (f"/v1/threads/{_thread_id(s)}/messages",
                                    {"role": "user", "content": _image(u)}),
}


@pytest.mark.parametrize("kind", REQUESTS)
def test_a_client_that_leaves_cancels_the_fetch_of_its_media(server, site, kind, caplog):
    path, body = REQUESTS[kind](site.url + kind + ".png", server)
    site.reset()
    host, port = server.base_url.split("//")[1].split(":")
    sent = http_post(path, body, host=f"127.0.0.1:{port}", headers={"anthropic-version": "2023-06-01"})
    with caplog.at_level(logging.WARNING):
        with socket.create_connection((host, int(port)), timeout=WAIT) as client:
            client.sendall(sent)
            assert site.connected.wait(WAIT), f"{kind}: the media URL was never fetched"
        # the client has left: the fetch is cancelled, and the media server sees its connection end
        assert site.closed.wait(WAIT), f"{kind}: the fetch ran on after its client left"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records]


def test_a_fetch_outside_a_request_is_not_watched():
    """(a batch's item or a run fetches in a task of its own, with the submitting request's context: its client
    leaving is no reason to stop it)"""
    import asyncio
    import weakref

    from jan.server.disconnect import _HANDLING, while_client_waits

    class Gone:
        transport = None  # (a client that left)

    gone = Gone()

    async def main() -> str:
        _HANDLING.set((weakref.ref(gone), weakref.ref(asyncio.current_task())))

        async def other_task() -> str:
            return await while_client_waits(asyncio.sleep(0, "done"))

        return await asyncio.create_task(other_task())

    assert asyncio.run(main()) == "done"


@pytest.mark.parametrize("kind", ["openai-image", "anthropic-image", "responses-file"])
def test_a_fetch_in_progress_when_the_server_stops_is_a_503(tmp_path, site, kind):
    """It was left waiting through the stop's grace period, then the client's connection was dropped with no
    answer; it is now the dialect's 503 ``server_shutdown`` as the stop begins."""
    cfg = ServerConfig(data_folder=tmp_path / "data", allow_media_from=[site.url])
    with ServerThread(cfg) as srv:
        srv.app[MEDIA_FETCHER].timeout_s = 3600  # (nothing but the stop ends it in time)
        path, body = REQUESTS[kind](site.url + kind + ".png", srv)
        site.reset()
        host, port = srv.base_url.split("//")[1].split(":")
        sent = http_post(path, body, host=f"127.0.0.1:{port}", headers={"anthropic-version": "2023-06-01"})
        answer = bytearray()
        with socket.create_connection((host, int(port)), timeout=WAIT) as client:
            client.sendall(sent)
            assert site.connected.wait(WAIT), f"{kind}: the media URL was never fetched"
            srv.stop()
            while more := client.recv(65536):
                answer.extend(more)
    status_line, rest = bytes(answer).split(b"\r\n", 1)
    assert b" 503 " in status_line, answer
    assert b"shutting down" in rest, answer
