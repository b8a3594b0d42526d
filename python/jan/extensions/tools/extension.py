"""The built-in tools, an ordinary :class:`ToolProvider` extension (settings under ``<data>/settings/tools/``).

``current_time``
    The date and time now, in UTC or an IANA time zone.
``read_file``
    A text file under ``files_folder`` (unset: the tool is not offered);
    paths that leave the folder (``..``, absolute paths, symlinks out) are refused.
``fetch_url``
    An ``http(s)`` URL's text (off unless ``fetch_enabled``).

Like every tool, they run only when the assistant allows them and the
approval policy is met; their output is size-limited by the registry.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from jan.core import Tool, ToolProvider, ToolResult
from jan.core.settings import given_now
from jan.extensions._builtin import BuiltinExtension
from jan.local_files import expand_home, folder_problem, open_regular_file

#: Bytes read from a file or a URL at most.
MAX_READ_BYTES = 256 * 1024


class BuiltinToolsSettings(BaseModel):
    files_folder: str | None = Field(None, description="Folder read_file may read (unset: read_file is off)")
    fetch_enabled: bool = Field(False, description="Offer fetch_url (lets a model reach the network)")
    fetch_timeout: float = Field(20.0, gt=0, le=300, description="Seconds fetch_url may take")

    @field_validator("files_folder")
    @classmethod
    def _a_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        # No folder's name holds a NUL: read_file would be offered and fail on every call (refused here instead)
        if value is not None and "\0" in value:
            raise ValueError("a folder path cannot contain a NUL character")
        # A folder read_file reads must be there when it is set (a typo was taken silently, and each call failed
        # as "no file"); one stored earlier that is gone for now (an unmounted disk) is kept, and read_file says so
        if value is not None and given_now(info):
            problem = folder_problem(value)
            if problem:
                raise ValueError(problem)
        return value


class CurrentTime(Tool):
    name = "current_time"
    description = "The current date and time (ISO 8601) in UTC or in the given IANA time zone."
    parameters = {"type": "object", "properties": {
        "timezone": {"type": "string", "description": "IANA time zone such as Europe/Paris (default UTC)"}}}
    source = "tools"

    async def call(self, arguments: dict[str, Any], *, timeout: float | None = None) -> ToolResult:
        zone_name = arguments.get("timezone") or "UTC"
        try:
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(zone_name)
        except Exception:  # noqa: BLE001 - unknown zone, or no tz database
            return ToolResult.error(f"Unknown time zone {zone_name!r}")
        return ToolResult.text(_dt.datetime.now(zone).isoformat(timespec="seconds"))


class ReadFile(Tool):
    name = "read_file"
    parameters = {"type": "object", "properties": {
        "path": {"type": "string", "description": "Path relative to the allowed folder"}}, "required": ["path"]}
    source = "tools"

    def __init__(self, folder: Path):
        self.folder = folder
        self.description = (f"Read a UTF-8 text file under the allowed folder (at most {MAX_READ_BYTES} bytes). "
                            "Give a path relative to that folder.")

    def _read(self, relative: str) -> ToolResult:
        problem = folder_problem(self.folder)
        if problem:  # the folder set in the tools settings (files_folder) is gone: not "no file" of every name
            return ToolResult.error(f"The allowed folder is not there ({problem}); "
                                    "set files_folder in the tools extension's settings")
        try:
            root = self.folder.resolve()
            target = (root / relative).resolve()
        except (ValueError, OSError) as exc:  # a NUL in the path, a name too long, a link loop: no such file
            return ToolResult.error(f"No file {relative[:200]!r} ({getattr(exc, 'strerror', None) or exc})")
        if relative.startswith(("/", "\\")) or not target.is_relative_to(root):
            return ToolResult.error(f"{relative!r} is outside the allowed folder")
        try:
            if target.is_dir():
                names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
                return ToolResult.text("\n".join(names[:1000]))
            # a named pipe in the folder is refused, not waited on (the worker thread would never come back)
            with open_regular_file(target) as f:
                data = f.read(MAX_READ_BYTES + 1)
        except FileNotFoundError:
            return ToolResult.error(f"No file {relative!r}")
        except OSError as exc:
            return ToolResult.error(f"Cannot read {relative[:200]!r}: {exc.strerror}")
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            return ToolResult((ToolResult.text(text).parts[0],), truncated=True)
        return ToolResult.text(text)

    async def call(self, arguments: dict[str, Any], *, timeout: float | None = None) -> ToolResult:
        return await asyncio.to_thread(self._read, str(arguments.get("path", "")))


#: Redirects fetch_url follows at most.
MAX_REDIRECTS = 5
#: Content types read as text whatever their main type says.
_TEXT_TYPES = ("json", "xml", "javascript", "ecmascript", "x-www-form-urlencoded", "yaml", "toml", "csv", "sql")


async def _read_at_most(content: Any, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of a response body and whether there was more. (One ``read(n)`` returns what has
    arrived, at most ``n``: the first chunk of a streamed page, a few bytes of a slow one, told as the whole.)"""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    return data[:limit], size > limit


def _binary(content_type: str, data: bytes) -> bool:
    """Whether a body is no text a model can read: NUL bytes, or a non-text type whose bytes are not UTF-8."""
    if b"\0" in data:
        return True
    main = content_type.split("/", 1)[0]
    if main == "text" or any(word in content_type for word in _TEXT_TYPES):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(data) - 3  # (a character cut at the read limit is no sign of binary)
    return False


class FetchUrl(Tool):
    name = "fetch_url"
    description = f"Fetch an http(s) URL and return its text (at most {MAX_READ_BYTES} bytes)."
    parameters = {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}
    source = "tools"

    def __init__(self, timeout: float):
        self.timeout = timeout

    async def call(self, arguments: dict[str, Any], *, timeout: float | None = None) -> ToolResult:
        import aiohttp

        url = str(arguments.get("url", ""))
        if not url.startswith(("http://", "https://")):
            return ToolResult.error("Only http:// and https:// URLs can be fetched")
        limit = min(self.timeout, timeout) if timeout else self.timeout
        from jan.server.aiohttp_import import load_client

        await load_client()  # (off the loop, the first time)
        # Each failure told as what it is: aiohttp's own text for these is the bare URL, or "0, message=''"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session:
                async with session.get(url, max_redirects=MAX_REDIRECTS) as response:
                    data, cut = await _read_at_most(response.content, MAX_READ_BYTES)
                    status, charset = response.status, response.charset
                    content_type = response.content_type or ""
        except aiohttp.TooManyRedirects:
            return ToolResult.error(f"Could not fetch {url}: more than {MAX_REDIRECTS} redirects (a redirect loop?)")
        except (aiohttp.InvalidUrlRedirectClientError, aiohttp.NonHttpUrlRedirectClientError) as exc:
            return ToolResult.error(f"Could not fetch {url}: it redirects to {str(exc.args[0] if exc.args else exc)[:300]}, which is no "
                                    "http(s) URL")
        except aiohttp.InvalidURL:
            return ToolResult.error(f"Could not fetch {url}: it is not a valid URL (its host or port)")
        except asyncio.TimeoutError:
            return ToolResult.error(f"Could not fetch {url}: no whole answer within {limit:g} seconds")
        except aiohttp.ClientError as exc:
            return ToolResult.error(f"Could not fetch {url}: {str(exc) or type(exc).__name__}")
        if _binary(content_type, data):
            return ToolResult.error(f"HTTP {status}: {url} is {content_type or 'binary'} content, not text")
        try:
            text = data.decode(charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = data.decode("utf-8", errors="replace")
        result = ToolResult.text(f"HTTP {status}\n\n{text}", is_error=status >= 400)
        return ToolResult(result.parts, is_error=result.is_error, truncated=True) if cut else result


class BuiltinToolsExtension(BuiltinExtension, ToolProvider):
    """current_time, read_file (under ``files_folder``) and fetch_url (when ``fetch_enabled``)."""

    name = "tools"
    description = "Built-in tools: current_time, read_file (allowed folder), fetch_url (off by default)"
    settings_schema = BuiltinToolsSettings

    async def list_tools(self) -> list[Tool]:
        settings = self.ctx.settings
        tools: list[Tool] = [CurrentTime()]
        folder = settings.get("files_folder")
        if folder:
            tools.append(ReadFile(expand_home(folder)))
        if settings.get("fetch_enabled"):
            tools.append(FetchUrl(float(settings.get("fetch_timeout"))))
        return tools
