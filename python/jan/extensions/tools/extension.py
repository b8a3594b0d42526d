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

from pydantic import BaseModel, Field, field_validator

from jan.core import Tool, ToolProvider, ToolResult
from jan.extensions._builtin import BuiltinExtension
from jan.local_files import expand_home, open_regular_file

#: Bytes read from a file or a URL at most.
MAX_READ_BYTES = 256 * 1024


class BuiltinToolsSettings(BaseModel):
    files_folder: str | None = Field(None, description="Folder read_file may read (unset: read_file is off)")
    fetch_enabled: bool = Field(False, description="Offer fetch_url (lets a model reach the network)")
    fetch_timeout: float = Field(20.0, gt=0, le=300, description="Seconds fetch_url may take")

    @field_validator("files_folder")
    @classmethod
    def _a_path(cls, value: str | None) -> str | None:
        # No folder's name holds a NUL: read_file would be offered and fail on every call (refused here instead)
        if value is not None and "\0" in value:
            raise ValueError("a folder path cannot contain a NUL character")
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
        root = self.folder.resolve()
        target = (root / relative).resolve()
        if relative.startswith(("/", "\\")) or not target.is_relative_to(root):
            return ToolResult.error(f"{relative!r} is outside the allowed folder")
        if target.is_dir():
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
            return ToolResult.text("\n".join(names[:1000]))
        try:
            # a named pipe in the folder is refused, not waited on (the worker thread would never come back)
            with open_regular_file(target) as f:
                data = f.read(MAX_READ_BYTES + 1)
        except FileNotFoundError:
            return ToolResult.error(f"No file {relative!r}")
        except OSError as exc:
            return ToolResult.error(f"Cannot read {relative!r}: {exc.strerror}")
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            return ToolResult((ToolResult.text(text).parts[0],), truncated=True)
        return ToolResult.text(text)

    async def call(self, arguments: dict[str, Any], *, timeout: float | None = None) -> ToolResult:
        return await asyncio.to_thread(self._read, str(arguments.get("path", "")))


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
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session:
                async with session.get(url, max_redirects=5) as response:
                    data = await response.content.read(MAX_READ_BYTES)
                    status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return ToolResult.error(f"Could not fetch {url}: {str(exc) or type(exc).__name__}")
        text = data.decode("utf-8", errors="replace")
        return ToolResult.text(f"HTTP {status}\n\n{text}", is_error=status >= 400)


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
