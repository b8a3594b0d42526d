"""A small blocking client for the jan server (stdlib only: the CLI stays quick to start)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from jan.json_text import loads_json
from jan.cli.common import CLIError

STREAM_READ_TIMEOUT_S = 600.0
#: Bytes read from a file (or the network) at a time in an upload or a download: neither is ever whole in memory.
CHUNK_BYTES = 1024 * 1024


class ServerUnreachableError(CLIError):
    """No jan server took the connection (refused, or reset as it was made: it stopped, or never ran there), so
    nothing answered the request; what it would have written may be written elsewhere (`jan chat` saves its turn
    in the server's data folder itself: :class:`jan.cli.conversation.ServerThreads`)."""


class ServerError(CLIError):
    """The server answered with an error status (its message is shown)."""

    def __init__(self, status: int, message: str, code: str | None = None):
        hint = " - set JAN_API_KEY or pass --api-key" if status == 401 else ""
        super().__init__(f"server: {message} (HTTP {status}){hint}")
        self.status = status
        self.code = code


def _error_from(status: int, body: bytes) -> ServerError:
    message, code = body.decode("utf-8", "replace").strip()[:500] or "no details", None
    try:
        data = loads_json(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            message, code = str(err.get("message") or message), err.get("code")
        elif isinstance(err, str):
            message = err
    except ValueError:
        pass
    return ServerError(status, message, code)


def path_part(value: str) -> str:
    """``value`` as one URL path segment. An argument holding bytes that are not UTF-8 reaches Python as lone
    surrogates (``surrogateescape``): they go as the bytes typed (``%FF``), for the server to say it has no such
    id, not as a UnicodeEncodeError's traceback."""
    return quote(value, safe="", errors="surrogateescape")


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        host = urlsplit(self.base_url).hostname or ""
        handlers = []
        if host in ("127.0.0.1", "localhost", "::1"):
            handlers.append(urllib.request.ProxyHandler({}))  # never send loopback traffic to a proxy
        self._opener = urllib.request.build_opener(*handlers)

    def _request(self, method: str, path: str, body: Any = None, accept: str = "application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        return req

    def _open(self, req, timeout: float):
        try:
            return self._opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error_from(exc.code, exc.read()) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            # (refused, or reset as it was taken: a server killed a moment before, its socket not yet gone)
            gone = isinstance(reason, (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError))
            kind = ServerUnreachableError if gone else CLIError
            raise kind(f"cannot reach the jan server at {self.base_url}: {reason}") from None
        except http.client.HTTPException as exc:  # not HTTP at all: $JAN_API_URL names an SSH port, say
            raise CLIError(f"the server at {self.base_url} does not answer as a jan server (HTTP) does: "
                           f"{type(exc).__name__} {str(exc)[:100]!r}") from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Reading an answer's body: a connection that breaks off (the server stopped, a reset, a body shorter
        than its length: http.client's IncompleteRead, no OSError) is a CLIError, never a traceback."""
        try:
            yield
        except (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as exc:
            raise CLIError(f"the connection to the jan server at {self.base_url} ended before its answer was "
                           f"complete ({exc or type(exc).__name__})") from None

    def health(self, timeout: float) -> dict | None:
        """``/health`` if a jan server answers quickly, else ``None``."""
        try:
            with self._opener.open(self._request("GET", "/health"), timeout=timeout) as resp:
                data = loads_json(resp.read())
        except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException):
            return None  # nothing, or something that is no jan server (not HTTP, not its JSON), answers
        # "degraded": a jan server whose extension failed to load; its answers say why (not "no server")
        return data if isinstance(data, dict) and data.get("status") in ("ok", "degraded") else None

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """One JSON request; raises :class:`ServerError` for an error status."""
        with self._open(self._request(method, path, body), timeout or self.timeout) as resp, self._reading():
            raw = resp.read()
        if not raw:
            return None
        try:
            return loads_json(raw)
        except ValueError:
            raise CLIError(f"the server at {self.base_url} sent a response that is not JSON") from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def get_bytes(self, path: str) -> tuple[bytes, str]:
        """A non-JSON resource (an image file): its bytes and Content-Type; :class:`ServerError` for an error."""
        with self._open(self._request("GET", path, accept="*/*"), self.timeout) as resp, self._reading():
            return resp.read(), resp.headers.get("Content-Type", "application/octet-stream")

    def post(self, path: str, body: Any = None, timeout: float | None = None) -> Any:
        return self.call("POST", path, {} if body is None else body, timeout)

    def upload(self, path: str, fields: dict[str, str], *, filename: str, source: BinaryIO, size: int) -> Any:
        """POST a multipart/form-data upload: ``fields`` as plain parts, then ``size`` bytes of ``source`` as the
        part ``file`` named ``filename``, streamed (never whole in memory). Returns the JSON answer;
        :class:`ServerError` for an error status, :class:`CLIError` when the server ends the connection before the
        file is sent (a server refuses an upload over its limit by its length, without reading it)."""
        boundary = f"jan-{uuid.uuid4().hex}"
        head = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                        for name, value in fields.items())
        # the exact name (RFC 7578 allows RFC 5987's filename*), and an ASCII one for servers that read only that
        fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "file"
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{fallback}"; '
                 f"filename*=UTF-8''{quote(filename, safe='', errors='surrogateescape')}\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            left = size
            while left > 0 and (chunk := source.read(min(CHUNK_BYTES, left))):
                left -= len(chunk)
                yield chunk
            if left:  # the file shrank while it was sent: the length told is wrong, the upload must not pass
                raise CLIError(f"{filename}: the file changed while it was uploaded ({left} bytes fewer)")
            yield tail

        req = urllib.request.Request(self.base_url + path, data=body(), method="POST")
        req.add_header("Accept", "application/json")
        req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
        req.add_header("Content-Length", str(len(head) + size + len(tail)))
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with self._opener.open(req, timeout=STREAM_READ_TIMEOUT_S) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error_from(exc.code, exc.read()) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise CLIError(f"the jan server at {self.base_url} ended the upload of {size} bytes before it was sent "
                           f"({reason}); a file larger than its max_upload_bytes (jan serve --max-upload-bytes) is "
                           "refused so") from None
        try:
            return loads_json(raw)
        except ValueError:
            raise CLIError(f"the server at {self.base_url} sent a response that is not JSON") from None

    def download(self, path: str, write: Callable[[bytes], Any]) -> str:
        """GET a resource's bytes into ``write``, a chunk at a time; returns its Content-Type. :class:`ServerError`
        for an error status."""
        with self._open(self._request("GET", path, accept="*/*"), STREAM_READ_TIMEOUT_S) as resp, self._reading():
            while chunk := resp.read(CHUNK_BYTES):
                write(chunk)
            return resp.headers.get("Content-Type", "application/octet-stream")

    def stream(self, path: str, body: Any) -> "EventStream":
        """POST and read Server-Sent Events; iterate for the decoded ``data:`` payloads."""
        resp = self._open(self._request("POST", path, body, accept="text/event-stream"), STREAM_READ_TIMEOUT_S)
        return EventStream(resp, self.base_url)


class EventStream:
    """The ``data:`` events of an SSE response as dicts; ``close()`` drops the connection,
    which makes the server cancel the generation."""

    def __init__(self, resp, base_url: str = "the server"):
        self._resp = resp
        self._base_url = base_url
        self._done = False

    def __iter__(self) -> Iterator[dict]:
        content_type = self._resp.headers.get("Content-Type", "")
        try:
            if "text/event-stream" not in content_type:  # a server that answered without streaming
                try:
                    data = loads_json(self._resp.read() or b"null")
                except ValueError:
                    raise CLIError(f"the server at {self._base_url} sent a response that is not JSON") from None
                self._done = True
                if isinstance(data, dict):
                    yield data
                return
            yield from self._events()
        except (OSError, http.client.HTTPException) as exc:  # a reset, a chunk cut short (IncompleteRead)
            raise CLIError(f"{self._cut_short()} ({exc or type(exc).__name__})") from None
        if not self._done:
            raise CLIError(self._cut_short())

    def _cut_short(self) -> str:
        # every jan stream ends with [DONE] (an error with its error event): without it the answer was cut off,
        # and a command that printed what came would otherwise end as if it were whole (exit 0)
        return f"the connection to the jan server at {self._base_url} ended before its answer was complete (did the server stop?)"

    def _events(self) -> Iterator[dict]:
        event = "message"
        lines: list[str] = []
        for raw in self._resp:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                event = line[6:].strip()
                continue
            if line.startswith("data:"):
                lines.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
                continue
            if line == "" and lines:
                payload = "\n".join(lines)
                lines = []
                if payload.strip() == "[DONE]":
                    self._done = True
                    return
                try:
                    data = loads_json(payload)
                except ValueError:
                    continue
                if event == "error" or (isinstance(data, dict) and "error" in data and len(data) == 1):
                    err = data.get("error") if isinstance(data, dict) else data
                    message = err.get("message") if isinstance(err, dict) else str(err)
                    raise CLIError(f"server: {message}")
                event = "message"
                yield data

    def close(self) -> None:
        try:
            self._resp.close()
        except OSError:
            pass

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
