"""Tests for jan.downloads against a local aiohttp file server on 127.0.0.1.

The server serves a random fixture with Range support and can be told to drop
the connection at a byte offset, pause at an offset until released, ignore
Range, or answer an error status. Every request it sees is recorded, so tests
assert what the client actually asked for (resume offsets, hf:// paths, the
token), not just the final bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

try:
    from jan import downloads as dl
except ImportError:  # checkout without jan installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from jan import downloads as dl

from jan.downloads import (
    DownloadCancelledError,
    DownloadError,
    Downloader,
    DownloadProgress,
    DownloadState,
)
from jan.errors import JanError
from local_site import serve_app

pytestmark = pytest.mark.timeout(60)

SIZE = 3 * 1024 * 1024 + 12345  # not a multiple of any buffer size
DATA = os.urandom(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()
CHUNK = 64 * 1024


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0


@dataclass
class FileServer:
    """Behaviour knobs; tests flip them between requests."""

    base: str = ""
    requests: list[Seen] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)  # per request, in order: close the connection at this file offset
    drop_always_at: int | None = None  # ... or on every request
    pause_at: int | None = None  # stop sending at this offset until `gate` is set
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    ignore_range: bool = False
    status: int | None = None  # answer every file request with this status
    delay: float = 0.0  # sleep between chunks (to make a download take a while)

    def url(self, path: str = "/files/model.gguf") -> str:
        return self.base + path

    def ranges(self) -> list[str | None]:
        return [r.range for r in self.requests if r.path.startswith(("/files/", "/cdn/"))]


async def _serve_file(request: web.Request, server: FileServer) -> web.StreamResponse:
    seen = Seen(request.method, request.path, request.headers.get("Range"), request.headers.get("Authorization"))
    server.requests.append(seen)
    if server.status is not None:
        seen.status = server.status
        return web.Response(status=server.status, text="nope")

    start = 0
    status = 200
    headers = {"Accept-Ranges": "bytes", "ETag": '"fixture-v1"'}
    if seen.range and not server.ignore_range:
        m = re.fullmatch(r"bytes=(\d+)-", seen.range)
        assert m, seen.range  # the client only ever sends open-ended ranges
        start = int(m.group(1))
        if start >= SIZE:
            seen.status = 416
            return web.Response(status=416, headers={"Content-Range": f"bytes */{SIZE}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{SIZE - 1}/{SIZE}"
    seen.status = status

    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = SIZE - start
    await resp.prepare(request)
    drop = server.drops.pop(0) if server.drops else server.drop_always_at
    pos = start
    try:
        while pos < SIZE:
            end = min(SIZE, pos + CHUNK)
            for stop in (drop, server.pause_at):
                if stop is not None and pos < stop < end:
                    end = stop
            if drop is not None and pos >= drop:
                # Stall, then close: the client consumes every byte sent
                # before it sees the body end early. (aiohttp discards bytes
                # still in its read buffer when the payload error arrives, so
                # without the stall the resume offset would land a little
                # before `drop`, which is correct but not exactly assertable.)
                if pos > start:
                    await asyncio.sleep(0.1)
                request.transport.close()
                return resp
            if server.pause_at is not None and pos >= server.pause_at:
                await asyncio.wait_for(server.gate.wait(), 20)
                server.pause_at = None
            await resp.write(DATA[pos:end])
            pos = end
            if server.delay:
                await asyncio.sleep(server.delay)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.TimeoutError):
        pass
    return resp


@pytest.fixture
async def server():
    state = FileServer()

    async def files(request: web.Request) -> web.StreamResponse:
        return await _serve_file(request, state)

    async def hf_resolve(request: web.Request) -> web.StreamResponse:
        state.requests.append(
            Seen(request.method, request.path, request.headers.get("Range"), request.headers.get("Authorization"), 302)
        )
        # Like the hub: the resolve URL redirects to where the bytes live.
        raise web.HTTPFound(f"/cdn/{request.match_info['path']}")

    async def loop(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])  # /loop/0 -> /loop/1 -> /loop/0 -> ...
        raise web.HTTPFound(f"/loop/{1 - n}")

    async def bad_redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "ftp://example.invalid/model.gguf"})

    app = web.Application()
    app.router.add_get("/loop/{n}", loop)
    app.router.add_get("/bad-redirect", bad_redirect)
    app.router.add_get("/files/{name}", files)
    app.router.add_get("/cdn/{path:.+}", files)
    app.router.add_get("/{owner}/{repo}/resolve/{revision}/{path:.+}", hf_resolve)
    async with serve_app(app, shutdown_timeout=1) as state.base:
        try:
            yield state
        finally:
            state.gate.set()


@pytest.fixture
async def downloader(monkeypatch):
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "JAN_HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    d = Downloader(backoff=0.01, backoff_max=0.05, progress_interval=0.05, trust_env=False)
    try:
        yield d
    finally:
        await d.close()


async def wait_for_bytes(task: dl.DownloadTask, n: int) -> DownloadProgress:
    async def watch():
        async for p in task.progress():
            if p.bytes_done >= n or p.state.is_final:
                return p
        raise AssertionError("progress ended without a final state")

    return await asyncio.wait_for(watch(), 20)


# --------------------------------------------------------------------------- basics


async def test_full_download_with_sha256(server, downloader, tmp_path):
    dest = tmp_path / "models" / "model.gguf"
    task = downloader.start(server.url(), dest, sha256=SHA, expected_size=SIZE)
    assert await asyncio.wait_for(task.wait(), 20) == dest
    assert dest.read_bytes() == DATA
    assert not dl.part_path(dest).exists()
    assert task.state is DownloadState.COMPLETED
    assert (task.bytes_done, task.bytes_total, task.eta, task.error) == (SIZE, SIZE, 0.0, None)
    assert task.speed > 0
    assert server.ranges() == [None]
    assert downloader.get(task.id) is task and downloader.list() == [task]


async def test_bad_sha256_fails_and_leaves_no_file(server, downloader, tmp_path):
    dest = tmp_path / "model.gguf"
    wrong = hashlib.sha256(b"something else").hexdigest()
    task = downloader.start(server.url(), dest, sha256=wrong)
    with pytest.raises(DownloadError) as info:
        await asyncio.wait_for(task.wait(), 20)
    err = info.value
    assert isinstance(err, JanError)
    assert err.reason == DownloadError.CHECKSUM_MISMATCH
    assert wrong in str(err) and SHA in str(err)
    assert task.state is DownloadState.FAILED and task.error is err
    assert not dest.exists()
    assert not dl.part_path(dest).exists()


async def test_size_mismatch_is_refused_before_downloading(server, downloader, tmp_path):
    dest = tmp_path / "model.gguf"
    task = downloader.start(server.url(), dest, expected_size=SIZE - 1)
    with pytest.raises(DownloadError) as info:
        await asyncio.wait_for(task.wait(), 20)
    assert info.value.reason == DownloadError.SIZE_MISMATCH
    assert not dest.exists()
    assert not dl.part_path(dest).exists()  # refused on the headers, before any byte was written


async def test_http_error_status_fails_without_retrying(server, downloader, tmp_path):
    server.status = 404
    task = downloader.start(server.url(), tmp_path / "model.gguf")
    with pytest.raises(DownloadError) as info:
        await asyncio.wait_for(task.wait(), 20)
    assert (info.value.reason, info.value.status) == (DownloadError.HTTP_STATUS, 404)
    assert len(server.requests) == 1


async def test_server_errors_are_retried_then_fail(server, tmp_path):
    server.status = 503
    async with Downloader(retries=2, backoff=0.01, backoff_max=0.02, trust_env=False) as d:
        task = d.start(server.url(), tmp_path / "model.gguf")
        with pytest.raises(DownloadError) as info:
            await asyncio.wait_for(task.wait(), 20)
    assert (info.value.reason, info.value.status) == (DownloadError.HTTP_STATUS, 503)
    assert len(server.requests) == 3


# --------------------------------------------------------------------------- resume


async def test_dropped_connection_is_resumed(server, downloader, tmp_path):
    drop = 1_234_567
    server.drops = [drop]
    dest = tmp_path / "model.gguf"
    task = downloader.start(server.url(), dest, sha256=SHA)
    await asyncio.wait_for(task.wait(), 20)
    assert server.ranges() == [None, f"bytes={drop}-"]
    assert [r.status for r in server.requests] == [200, 206]
    assert task.attempts == 2
    assert dest.read_bytes() == DATA


async def test_repeated_drops_each_resume_from_the_current_offset(server, tmp_path):
    server.drops = [500_000, 1_500_000, 2_500_000]
    dest = tmp_path / "model.gguf"
    # retries=1: only failures without progress count, so three drops that
    # each made progress must not exhaust it.
    async with Downloader(retries=1, backoff=0.01, backoff_max=0.02, trust_env=False) as d:
        task = d.start(server.url(), dest, sha256=SHA)
        await asyncio.wait_for(task.wait(), 20)
    assert server.ranges() == [None, "bytes=500000-", "bytes=1500000-", "bytes=2500000-"]
    assert task.attempts == 4
    assert dest.read_bytes() == DATA


async def test_retries_are_bounded(server, tmp_path):
    server.drop_always_at = 0  # never sends a byte
    async with Downloader(retries=3, backoff=0.01, backoff_max=0.02, trust_env=False) as d:
        task = d.start(server.url(), tmp_path / "model.gguf")
        with pytest.raises(DownloadError) as info:
            await asyncio.wait_for(task.wait(), 20)
    assert info.value.reason == DownloadError.NETWORK
    assert len(server.requests) == 4


async def test_cancel_then_start_again_resumes_from_part(server, downloader, tmp_path):
    pause = 1_000_000
    server.pause_at = pause
    dest = tmp_path / "model.gguf"
    task = downloader.start(server.url(), dest, sha256=SHA)
    seen = await wait_for_bytes(task, pause)
    assert seen.state is DownloadState.DOWNLOADING and seen.bytes_done == pause

    assert task.cancel() is True
    with pytest.raises(DownloadCancelledError) as info:
        await asyncio.wait_for(task.wait(), 5)
    assert info.value.reason == DownloadError.CANCELLED
    assert task.state is DownloadState.CANCELLED
    assert task.cancel() is False
    assert not dest.exists()
    # Every byte received before the cancel was kept.
    assert dl.part_path(dest).stat().st_size == pause

    server.gate.set()
    again = downloader.start(server.url(), dest, sha256=SHA)
    assert again is not task
    await asyncio.wait_for(again.wait(), 20)
    offsets = [int(r.split("=")[1].rstrip("-")) for r in server.ranges() if r]
    assert offsets == [pause] and offsets[0] > 0
    assert again.resumed_from == pause
    assert dest.read_bytes() == DATA
    assert not dl.part_path(dest).exists()


async def test_cancel_with_discard_deletes_part(server, downloader, tmp_path):
    server.pause_at = 300_000
    dest = tmp_path / "model.gguf"
    task = downloader.start(server.url(), dest)
    await wait_for_bytes(task, 300_000)
    assert downloader.cancel(task.id, discard=True) is True
    with pytest.raises(DownloadCancelledError):
        await asyncio.wait_for(task.wait(), 5)
    assert not dl.part_path(dest).exists()
    assert not dest.exists()


async def test_discard_after_cancel_deletes_part(server, downloader, tmp_path):
    server.pause_at = 300_000
    dest = tmp_path / "model.gguf"
    task = downloader.start(server.url(), dest)
    await wait_for_bytes(task, 300_000)
    task.cancel()
    with pytest.raises(DownloadCancelledError):
        await asyncio.wait_for(task.wait(), 5)
    assert dl.part_path(dest).exists()
    assert task.cancel(discard=True) is False  # already finished, but the part goes
    assert not dl.part_path(dest).exists()


async def test_restart_right_after_cancel_waits_for_the_old_task(server, downloader, tmp_path):
    server.pause_at = 700_000
    dest = tmp_path / "model.gguf"
    task = downloader.start(server.url(), dest, sha256=SHA)
    await wait_for_bytes(task, 700_000)
    task.cancel()
    again = downloader.start(server.url(), dest, sha256=SHA)  # before the old one wound down
    assert again is not task
    server.gate.set()
    await asyncio.wait_for(again.wait(), 20)
    assert task.state is DownloadState.CANCELLED
    assert server.ranges() == [None, "bytes=700000-"]
    assert dest.read_bytes() == DATA


async def test_server_ignoring_range_restarts_cleanly(server, downloader, tmp_path):
    server.ignore_range = True
    dest = tmp_path / "model.gguf"
    # A stale part with wrong bytes: only a clean restart can produce the right hash.
    dl.part_path(dest).write_bytes(os.urandom(700_000))
    task = downloader.start(server.url(), dest, sha256=SHA)
    await asyncio.wait_for(task.wait(), 20)
    assert server.ranges() == ["bytes=700000-"]
    assert [r.status for r in server.requests] == [200]
    assert dest.read_bytes() == DATA
    assert not dl.part_path(dest).exists()


async def test_complete_part_answered_416_is_verified_without_transfer(server, downloader, tmp_path):
    dest = tmp_path / "model.gguf"
    dl.part_path(dest).write_bytes(DATA)
    task = downloader.start(server.url(), dest, sha256=SHA)
    await asyncio.wait_for(task.wait(), 20)
    assert [(r.range, r.status) for r in server.requests] == [(f"bytes={SIZE}-", 416)]
    assert dest.read_bytes() == DATA


async def test_oversized_part_answered_416_restarts_from_zero(server, downloader, tmp_path):
    dest = tmp_path / "model.gguf"
    dl.part_path(dest).write_bytes(DATA + b"junk")
    task = downloader.start(server.url(), dest)
    await asyncio.wait_for(task.wait(), 20)
    assert server.ranges() == [f"bytes={SIZE + 4}-", None]
    assert dest.read_bytes() == DATA


async def test_resume_hashes_existing_part(server, downloader, tmp_path):
    dest = tmp_path / "model.gguf"
    dl.part_path(dest).write_bytes(DATA[:2_000_000])
    task = downloader.start(server.url(), dest, sha256=SHA)
    await asyncio.wait_for(task.wait(), 20)
    assert server.ranges() == ["bytes=2000000-"]
    assert task.resumed_from == 2_000_000
    assert dest.read_bytes() == DATA

    # A corrupted prefix is caught by the hash even though the tail is right.
    bad = tmp_path / "bad.gguf"
    dl.part_path(bad).write_bytes(b"\0" * 100 + DATA[100:2_000_000])
    task = downloader.start(server.url(), bad, sha256=SHA)
    with pytest.raises(DownloadError) as info:
        await asyncio.wait_for(task.wait(), 20)
    assert info.value.reason == DownloadError.CHECKSUM_MISMATCH
    assert not bad.exists() and not dl.part_path(bad).exists()


# --------------------------------------------------------------------------- progress


async def test_progress_events_are_monotonic_and_end_completed(server, downloader, tmp_path):
    server.delay = 0.004  # ~50 chunks -> ~0.2 s, so several rate-limited updates
    task = downloader.start(server.url(), tmp_path / "model.gguf", sha256=SHA)
    # Taking the first snapshot right away (no await gives the download a
    # turn before) subscribes while the task is still queued.
    subscriptions = [task.progress(), task.progress()]
    heads = [await anext(it) for it in subscriptions]

    async def collect(head, it) -> list[DownloadProgress]:
        return [head] + [p async for p in it]

    first, second = await asyncio.wait_for(
        asyncio.gather(*(collect(h, it) for h, it in zip(heads, subscriptions))), 20
    )
    for events in (first, second):
        states = [e.state for e in events]
        # Every state change is delivered, in order.
        assert [s for i, s in enumerate(states) if i == 0 or s is not states[i - 1]] == [
            DownloadState.QUEUED,
            DownloadState.DOWNLOADING,
            DownloadState.VERIFYING,
            DownloadState.COMPLETED,
        ]
        done = [e.bytes_done for e in events]
        assert done == sorted(done)
        assert events[-1].bytes_done == events[-1].bytes_total == SIZE
        assert events[-1].fraction == 1.0 and events[-1].eta == 0.0 and events[-1].error is None
        assert all(e.task_id == task.id for e in events)
        downloading = [e for e in events if e.state is DownloadState.DOWNLOADING]
        assert len(downloading) >= 2
        # Rate limit: same-state updates are at least progress_interval apart.
        for a, b in zip(downloading, downloading[1:]):
            assert b.timestamp - a.timestamp >= 0.04
        assert any(e.speed > 0 for e in downloading)
        assert any(e.eta is not None for e in downloading)
    # A late subscriber gets the final snapshot and stops.
    late = [p async for p in task.progress()]
    assert [p.state for p in late] == [DownloadState.COMPLETED]
    assert late[0].to_dict()["state"] == "completed"


async def test_failed_download_reports_error_in_progress(server, downloader, tmp_path):
    task = downloader.start(server.url(), tmp_path / "model.gguf", sha256="0" * 64)
    events = await asyncio.wait_for(_collect(task), 20)
    assert events[-1].state is DownloadState.FAILED
    assert "sha256 mismatch" in events[-1].error


@pytest.mark.parametrize("path, words", [("/loop/0", "too many redirects"), ("/bad-redirect", "non-HTTP URL (ftp://")])
async def test_a_redirect_loop_or_a_broken_redirect_is_one_readable_line(server, downloader, tmp_path, path, words):
    """Not aiohttp's repr of the whole chain of requests and responses with every header (a screenful)."""
    task = downloader.start(server.url(path), tmp_path / "model.gguf")
    with pytest.raises(DownloadError) as caught:
        await asyncio.wait_for(task.wait(), 30)
    message = str(caught.value)
    assert words in message and server.url(path) in message, message
    assert "\n" not in message and "CIMultiDictProxy" not in message and len(message) < 300, message
    assert caught.value.http_status == 502  # the source's fault, as any other failure upstream


async def _collect(task):
    return [p async for p in task.progress()]


# --------------------------------------------------------------------------- URLs


async def test_hf_shorthand_resolves_to_local_endpoint(server, downloader, tmp_path, monkeypatch):
    monkeypatch.setenv("JAN_HF_ENDPOINT", server.base + "/")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/not-used")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    task = downloader.start("hf://someone/tiny-model@v1.0/quants/tiny Q4.gguf", tmp_path)
    assert task.url == server.base + "/someone/tiny-model/resolve/v1.0/quants/tiny%20Q4.gguf"
    assert task.dest == (tmp_path / "tiny Q4.gguf").resolve()
    await asyncio.wait_for(task.wait(), 20)
    resolve, cdn = server.requests
    assert (resolve.path, resolve.status) == ("/someone/tiny-model/resolve/v1.0/quants/tiny Q4.gguf", 302)
    assert resolve.authorization == "Bearer hf_secret"
    assert cdn.path == "/cdn/quants/tiny Q4.gguf" and cdn.status == 200
    assert task.dest.read_bytes() == DATA


async def test_hf_token_is_not_sent_to_other_hosts(server, downloader, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")  # endpoint stays the public hub
    task = downloader.start(server.url(), tmp_path / "model.gguf")
    await asyncio.wait_for(task.wait(), 20)
    assert server.requests[0].authorization is None


async def test_explicit_headers_are_sent(server, downloader, tmp_path):
    task = downloader.start(server.url(), tmp_path / "model.gguf", headers={"Authorization": "Bearer mine"})
    await asyncio.wait_for(task.wait(), 20)
    assert server.requests[0].authorization == "Bearer mine"


def test_resolve_url_revisions_and_endpoints(monkeypatch):
    for var in ("HF_ENDPOINT", "JAN_HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert dl.resolve_url("hf://o/r/f.gguf") == "https://huggingface.co/o/r/resolve/main/f.gguf"
    assert dl.resolve_url("hf://o/r@abc123/a/b/f.gguf") == "https://huggingface.co/o/r/resolve/abc123/a/b/f.gguf"
    assert dl.resolve_url("hf://o/r@refs%2Fpr%2F1/f.gguf") == "https://huggingface.co/o/r/resolve/refs%2Fpr%2F1/f.gguf"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local/")
    assert dl.resolve_url("hf://o/r/f.gguf") == "http://mirror.local/o/r/resolve/main/f.gguf"
    monkeypatch.setenv("JAN_HF_ENDPOINT", "http://jan.local")
    assert dl.resolve_url("hf://o/r/f.gguf") == "http://jan.local/o/r/resolve/main/f.gguf"
    assert dl.resolve_url("hf://o/r/f.gguf", hf_endpoint="http://x") == "http://x/o/r/resolve/main/f.gguf"
    assert dl.resolve_url("https://example.com/a.gguf?download=1") == "https://example.com/a.gguf?download=1"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/model.gguf",
        "file:///etc/passwd",
        "s3://bucket/model.gguf",
        "model.gguf",
        "",
        "http:///nohost.gguf",
        "hf://owner",
        "hf://owner/repo",
        "hf://owner/repo@/f.gguf",
        "hf://owner//f.gguf",
        "hf://owner/repo/../f.gguf",
    ],
)
async def test_bad_urls_are_rejected(downloader, tmp_path, url):
    with pytest.raises(DownloadError) as info:
        downloader.start(url, tmp_path / "x.gguf")
    assert info.value.reason == DownloadError.INVALID_URL
    assert downloader.list() == []


def test_bad_scheme_message_is_clear():
    with pytest.raises(DownloadError, match=r"unsupported URL scheme 'ftp://'.*http://, https:// and hf://"):
        dl.resolve_url("ftp://example.com/model.gguf")
    with pytest.raises(DownloadError, match="unsupported URL scheme"):
        dl.download("file:///tmp/x.gguf", "/tmp/never-written.gguf")


def test_mistyped_url_messages_name_the_whole_repository_form():
    # the README's `jan models pull hf://owner/repo[:QUANT]`: a user who leaves out hf:// or a part of the
    # repository is shown that form too, not only the single-file one
    for url in ("owner/repo", "hf://owner", "hf://owner/"):
        with pytest.raises(DownloadError, match=re.escape("hf://owner/repo[:QUANT]")):
            dl.resolve_url(url)
    # a source that is no URL is told every form the README says a pull takes, Ollama's hf.co/... too (left out,
    # though every pull route and command takes it)
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").split())
    with pytest.raises(DownloadError) as info:
        dl.resolve_url("owner/repo")
    for form in ("http://", "https://", "hf://owner/repo/file.gguf", "hf://owner/repo[:QUANT]",
                 "hf.co/owner/repo[:QUANT]"):
        assert form in str(info.value), form
    assert "hf://owner/repo[:QUANT]" in readme and "hf.co/owner/repo[:QUANT]" in readme


def test_filename_from_url():
    assert dl.filename_from_url("https://h/a/b/Model%20Q4_K_M.gguf?download=true") == "Model Q4_K_M.gguf"
    assert dl.filename_from_url("hf://o/r@v2/dir/f.gguf") == "f.gguf"
    with pytest.raises(DownloadError):
        dl.filename_from_url("https://h/")


@pytest.mark.parametrize("url, name", [
    ("http://h/m/..%2F..%2F..%2Fescaped.gguf", "escaped.gguf"),  # was "../../../escaped.gguf"
    ("http://h/m/..%5C..%5Cw.gguf", "w.gguf"),
    ("http://h/m/%2Fetc%2Fcron.d%2Fjob", "job"),
    ("http://h/m/a%00b.gguf", "ab.gguf"),
])
def test_a_file_name_never_leaves_the_destination_folder(url, name):
    """A separator that arrives percent-encoded separates too: the decoded name joined to a model's folder wrote
    the download anywhere the process may write."""
    assert dl.filename_from_url(url) == name
    for url in ("http://h/m/%2e%2e", "http://h/m/..%2F", "http://h/m/x%2F.."):
        with pytest.raises(DownloadError):
            dl.filename_from_url(url)


def test_a_file_name_too_long_for_a_file_system_is_cut_the_same_way_each_time():
    long = "x" * 300
    name = dl.filename_from_url(f"http://h/{long}.gguf")
    assert name.endswith(".gguf") and len(name.encode()) <= dl.MAX_NAME_BYTES
    assert name == dl.filename_from_url(f"http://h/other/{long}.gguf")  # (a resume finds its .part)
    assert name != dl.filename_from_url(f"http://h/{long}y.gguf")
    wide = dl.filename_from_url("http://h/" + "%E6%A8%A1" * 120 + ".gguf")  # 360 bytes of one CJK character
    assert len(wide.encode()) <= dl.MAX_NAME_BYTES and wide.startswith("模") and wide.endswith(".gguf")


async def test_a_pull_of_a_traversing_url_stays_in_its_folder(server, downloader, tmp_path):
    folder = tmp_path / "models" / "m"
    folder.mkdir(parents=True)
    task = downloader.start(server.url("/files/..%2F..%2Fescaped.gguf"), folder)
    path = await asyncio.wait_for(task.wait(), 30)
    assert path == folder / "escaped.gguf" and path.read_bytes() == DATA
    assert not (tmp_path / "escaped.gguf").exists()


def test_bad_sha256_argument(tmp_path):
    async def go():
        async with Downloader() as d:
            d.start("https://example.com/f.gguf", tmp_path / "f.gguf", sha256="abc")

    with pytest.raises(ValueError, match="64 hexadecimal"):
        asyncio.run(go())


# --------------------------------------------------------------------------- registry


async def test_concurrent_start_of_same_url_returns_same_task(server, downloader, tmp_path):
    server.pause_at = 200_000
    dest = tmp_path / "model.gguf"

    async def start():
        await asyncio.sleep(0)
        return downloader.start(server.url(), dest, sha256=SHA)

    tasks = await asyncio.gather(*(start() for _ in range(5)))
    assert all(t is tasks[0] for t in tasks)
    # Same file addressed through its folder is the same download too.
    assert downloader.start(server.url(), tmp_path, sha256=SHA) is tasks[0]
    with pytest.raises(DownloadError) as info:
        downloader.start(server.url("/files/other.gguf"), dest)
    assert info.value.reason == DownloadError.CONFLICT
    server.gate.set()
    await asyncio.wait_for(tasks[0].wait(), 20)
    assert len(server.requests) == 1
    assert downloader.list() == [tasks[0]]
    # Finished: starting again is a new task.
    assert downloader.start(server.url(), dest, sha256=SHA) is not tasks[0]


async def test_queue_limits_concurrent_downloads(server, tmp_path):
    server.pause_at = 100_000
    async with Downloader(max_concurrent=1, trust_env=False, progress_interval=0.01) as d:
        a = d.start(server.url("/files/a.gguf"), tmp_path / "a.gguf")
        b = d.start(server.url("/files/b.gguf"), tmp_path / "b.gguf")
        await wait_for_bytes(a, 100_000)
        assert b.state is DownloadState.QUEUED
        b.cancel()  # cancelling a queued task works too
        with pytest.raises(DownloadCancelledError):
            await asyncio.wait_for(b.wait(), 5)
        server.gate.set()
        await asyncio.wait_for(a.wait(), 20)
        assert d.forget(a.id) is True and d.get(a.id) is None
        assert d.cancel("no-such-id") is False


async def test_close_cancels_running_downloads_and_keeps_parts(server, tmp_path):
    server.pause_at = 400_000
    dest = tmp_path / "model.gguf"
    d = Downloader(trust_env=False, progress_interval=0.01)
    task = d.start(server.url(), dest)
    await wait_for_bytes(task, 400_000)
    await asyncio.wait_for(d.close(), 5)
    assert task.state is DownloadState.CANCELLED
    assert dl.part_path(dest).stat().st_size == 400_000
    with pytest.raises(RuntimeError):
        d.start(server.url(), dest)


# --------------------------------------------------------------------------- blocking helper


async def test_sync_download_with_callback(server, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server.drops = [800_000]
    events: list[DownloadProgress] = []
    dest = tmp_path / "sync.gguf"
    # download() runs its own event loop, so it goes to a thread while this
    # loop keeps serving.
    path = await asyncio.wait_for(
        asyncio.to_thread(
            dl.download, server.url(), dest, sha256=SHA, progress=events.append, backoff=0.01, trust_env=False
        ),
        20,
    )
    assert path == dest.resolve()
    assert dest.read_bytes() == DATA
    assert events[-1].state is DownloadState.COMPLETED and events[-1].bytes_done == SIZE
    assert server.ranges() == [None, "bytes=800000-"]


async def test_sync_download_refuses_running_loop(tmp_path):
    with pytest.raises(RuntimeError, match="event loop"):
        dl.download("https://example.com/f.gguf", tmp_path / "f.gguf")


async def test_a_destination_another_downloader_is_filling_is_refused_not_overwritten(server, downloader, tmp_path):
    """Two processes pulling one model (two ``jan models pull``, a CLI beside a server) wrote one ``.part`` at once:
    the second truncated it under the first, which could end with a file of the right size with holes in it. The
    lock is per destination across processes (another :class:`Downloader` stands in for another process here)."""
    server.pause_at = SIZE // 2
    dest = tmp_path / "model.gguf"
    first = downloader.start(server.url(), dest)
    await wait_for_bytes(first, SIZE // 2)
    assert dl.part_busy(dest)
    other = Downloader(backoff=0.01, backoff_max=0.05, progress_interval=0.05, trust_env=False)
    try:
        second = other.start(server.url(), dest)
        with pytest.raises(DownloadError) as caught:
            await asyncio.wait_for(second.wait(), 20)
        assert caught.value.reason == DownloadError.CONFLICT and caught.value.http_status == 409
        assert "another process" in str(caught.value)
    finally:
        await other.close()
    server.gate.set()
    assert await asyncio.wait_for(first.wait(), 20) == dest
    assert dest.read_bytes() == DATA
    assert not dl.part_busy(dest) and not dl.lock_path(dest).exists()  # the lock goes with the download
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
