"""The MCP servers the user configured: ``<data>/mcp.json`` in Claude desktop's ``mcpServers`` shape.

::

    {"mcpServers": {
        "files": {"command": "python", "args": ["files_server.py"], "env": {"ROOT": "/home/me/notes"}},
        "search": {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "Bearer ..."}},
        "old": {"command": "old-server", "disabled": true}
    }}

A server has either ``command`` (+ ``args``, ``env``, ``cwd``: started as a
child process speaking MCP over stdio) or ``url`` (+ ``headers``: streamable
HTTP). ``disabled`` turns it off; ``timeout`` bounds its tool calls
(seconds). Only this file starts servers; nothing from a request does.
The file is written atomically under a lock; a file that cannot be parsed
is reported, never overwritten. An invalid entry is reported and left out
(the host runs the others, and an edit keeps it as it was).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jan.core.fs import atomic_write_text, loads_json
from jan.json_text import data_file_text
from jan.local_files import read_regular_file
from jan.errors import JanError

__all__ = ["CONFIG_FILE", "NAME_RULE", "McpConfigError", "McpServerConfig", "load_config", "read_config",
           "edit_config", "SERVER_NAME_RE", "valid_name"]

CONFIG_FILE = "mcp.json"
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}\Z")


#: ``__`` separates a server's name from its tool's in the names jan gives MCP tools (``<server>__<tool>``): a
#: server named ``a__b`` would make ``a__b__t`` read as tool ``b__t`` of a server ``a``.
NAME_RULE = "letters, digits, '_' or '-' (at most 40, starting with a letter or digit), without '__'"


def valid_name(name: str) -> bool:
    """Whether ``name`` can name an MCP server (:data:`NAME_RULE`)."""
    return bool(SERVER_NAME_RE.match(name)) and "__" not in name


class McpConfigError(JanError, ValueError):
    """``mcp.json`` is not valid JSON or does not have the expected shape (an API answers it with a 400 of this
    ``code``)."""

    code = "invalid_mcp_config"


#: The longest a tool call may be given (``timeout``, seconds), in mcp.json and `jan mcp add --timeout`.
MAX_TOOL_TIMEOUT_S = 3600


#: An HTTP header's name: a token (RFC 9110, 5.1).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class McpServerConfig(BaseModel):
    """One entry of ``mcpServers``."""

    model_config = ConfigDict(extra="allow")

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    disabled: bool = False
    timeout: float | None = Field(default=None, gt=0, le=MAX_TOOL_TIMEOUT_S)

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServerConfig":
        if bool(self.command) == bool(self.url):
            raise ValueError("give either 'command' (stdio) or 'url' (streamable HTTP)")
        if self.command is not None and (not self.command.strip() or "\0" in self.command):
            # no program is named so (it failed at each start as "not found", of a name the listing shows blank)
            raise ValueError(f"'command' {self.command[:80]!r} names no program")
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError("'url' must be an http:// or https:// URL")
        if self.url:
            try:
                parts = urlsplit(self.url)
                parts.port  # noqa: B018 - a port out of range or no number raises here, not at each start
            except ValueError as exc:  # (a malformed IPv6 literal too)
                raise ValueError(f"'url' {self.url[:200]!r} is not a URL ({exc})") from None
            if not parts.hostname:
                raise ValueError(f"'url' {self.url[:200]!r} has no host")
        for name, value in (self.headers or {}).items():
            # a name that is no HTTP token (`Authorization: Bearer x` given whole as one) was kept, and sent as a
            # header the server never reads (or refused by the HTTP client at each start)
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"'headers': {name[:80]!r} is no header name (letters, digits and "
                                 "!#$%&'*+-.^_`|~; its value goes after it, apart)")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"'headers': the value of {name!r} holds a line break or NUL")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    @property
    def target(self) -> str:
        """The command line or URL, for listings (no env, no headers: they may hold secrets)."""
        if self.command:
            return " ".join([self.command, *self.args])
        return self.url or ""

    def launch_key(self) -> str:
        """What decides whether a running server must be restarted after the file changed."""
        return json.dumps(self.model_dump(exclude={"disabled", "timeout"}), sort_keys=True)


def config_path(data_folder: str | os.PathLike[str]) -> Path:
    return Path(data_folder) / CONFIG_FILE


class _Object(dict):
    """A JSON object as read, with the keys it held more than once (``twice``)."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        keys = [key for key, _ in pairs]
        self.twice = {key for key in keys if keys.count(key) > 1} if len(self) < len(keys) else set()


def _read_text(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are :class:`McpConfigError` naming the file (a bare
    ``UnicodeDecodeError`` said neither which file nor what to do, and crashed ``jan mcp``)."""
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a folder in its place, no permission: the file's fault, told so (the host failed to load)
        raise McpConfigError(f"{path} cannot be read ({exc.strerror or exc}); repair or remove it") from None
    try:
        return data_file_text(data)
    except UnicodeDecodeError as exc:
        raise McpConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); repair or remove it") \
            from None


def _parse_each(text: str, where: Path) -> tuple[dict[str, McpServerConfig], dict[str, str]]:
    """The valid servers by name, and why each other entry is not one (by name). A file that is no JSON, or
    whose ``mcpServers`` is no object, raises :class:`McpConfigError`: there is no entry to read then."""
    try:
        raw = loads_json(text, object_pairs_hook=_Object) if text.strip() else {}
    except ValueError as exc:  # not JSON, or nested too deeply to parse (a RecursionError otherwise)
        # what to do is said as for a file that cannot be read: `jan mcp add` refuses to write over it
        raise McpConfigError(f"{where} is not valid JSON: {exc}; repair or remove it") from None
    servers = raw.get("mcpServers", {}) if isinstance(raw, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(f"{where}: 'mcpServers' must be an object of servers by name; repair or remove it")
    out: dict[str, McpServerConfig] = {}
    problems: dict[str, str] = {}
    for name, entry in servers.items():
        if name in getattr(servers, "twice", ()):
            # JSON keeps the last of two entries of one name, silently: the user meant one of them, which one is
            # a guess (a server pasted in twice, one of them changed). Neither runs until one is removed.
            problems[name] = f"{where}: server {name!r} is configured twice; remove one of its entries"
            continue
        if not valid_name(name):
            problems[name] = f"{where}: server name {name!r} must be {NAME_RULE}"
            continue
        try:
            out[name] = parse_entry(entry)
        except ValueError as exc:
            problems[name] = f"{where}: server {name!r}: {exc}"
    return out, problems


def parse_entry(entry: Any) -> McpServerConfig:
    """One ``mcpServers`` entry as a server's configuration; raises ValueError saying what is wrong with it in
    the file's words (the field, then why: our validators' own sentences, without pydantic's "Value error, ")."""
    try:
        # strict: "disabled": "yes" is no boolean, "timeout": "30" no number, "args": [1] no strings (lax mode
        # took each as the declared type, a guess at what the user meant)
        return McpServerConfig.model_validate(entry, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        msg = first["msg"]
        if first.get("type") == "value_error" and msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        raise ValueError((f"{field!r}: " if field else "") + msg) from None


def _parse(text: str, where: Path) -> dict[str, McpServerConfig]:
    servers, problems = _parse_each(text, where)
    if problems:
        raise McpConfigError(next(iter(problems.values())))
    return servers


def load_config(data_folder: str | os.PathLike[str]) -> dict[str, McpServerConfig]:
    """The configured servers by name (empty without a file); raises :class:`McpConfigError`."""
    path = config_path(data_folder)
    try:
        text = _read_text(path)
    except FileNotFoundError:
        return {}
    return _parse(text, path)


def read_config(data_folder: str | os.PathLike[str]) -> tuple[dict[str, McpServerConfig], dict[str, str]]:
    """The configured servers as a host runs them: the valid ones by name, and why each invalid entry is not one
    (by name): one bad entry costs only itself. Raises :class:`McpConfigError` for a file that cannot be read."""
    path = config_path(data_folder)
    try:
        text = _read_text(path)
    except FileNotFoundError:
        return {}, {}
    return _parse_each(text, path)


def edit_config(data_folder: str | os.PathLike[str], edit: Any) -> dict[str, McpServerConfig]:
    """Apply ``edit(servers)`` (a dict of raw entries by name, changed in place) and save atomically.

    Keys other than ``mcpServers`` in the file are kept, and so are entries
    that were invalid before (as they were: one bad entry does not lock the
    others). Returns the new configuration's valid servers; raises
    :class:`McpConfigError` if the file cannot be read or the edit makes an
    entry invalid (the file is then left as it was).
    """
    path = config_path(data_folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the lock of the file written: an mcp.json linked from elsewhere is locked where it is, so two data folders
    # linking one file (or a jan editing it by its own name there) exclude each other
    with FileLock(os.path.realpath(path) + ".lock", timeout=30):
        try:
            text = _read_text(path)
        except FileNotFoundError:
            text = ""
        _, before = _parse_each(text, path)  # refuse to rewrite a file we cannot read
        raw = json.loads(text) if text.strip() else {}
        servers = raw.setdefault("mcpServers", {})
        edit(servers)
        new_text = json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
        parsed, after = _parse_each(new_text, path)
        made = [problem for name, problem in after.items() if before.get(name) != problem]
        if made:
            raise McpConfigError(made[0])
        # an mcp.json kept elsewhere and linked here (a dotfiles folder) is written through its link, not replaced
        # (atomic_write_text does; a dangling link is an error naming it)
        atomic_write_text(path, new_text)
    return parsed
