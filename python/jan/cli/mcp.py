"""``jan mcp``: list, add and remove the MCP servers of ``<data>/mcp.json``.

``add``/``remove`` edit the file (atomically, under its lock); a running
server notices the change on its next use of MCP. They refuse ``--url``: no API
changes a server's MCP servers (only mcp.json starts programs). ``list`` asks a running
server (which knows each server's state and tools) or reads the file.
"""

from __future__ import annotations

import math
import os

import click

from jan.cli.common import (FREE_TEXT_WIDTH, CLIError, RemoveAliasGroup, connection_options, did_you_mean, json_option, nonempty_param,
                            print_json, print_result, print_table, warn)
from jan.extensions.mcp.config import MAX_TOOL_TIMEOUT_S


@click.group(cls=RemoveAliasGroup)
def mcp() -> None:
    """List, add and remove MCP servers (tools for assistants), kept in <data>/mcp.json."""


def _edit(conn, edit, *, create: bool = True) -> None:
    """``edit(servers)`` on the data folder's mcp.json; ``create=False`` (a removal): a folder that is not there is
    edited as an empty one, and not made."""
    from jan.extensions.mcp import McpConfigError, edit_config

    if conn.url_explicit:
        # No API adds or removes MCP servers, on purpose: only mcp.json starts programs, never a request. So
        # --url cannot be honoured, and editing this machine's data folder instead would change another jan.
        raise CLIError(f"jan mcp add/remove edit the mcp.json of a data folder; a server's MCP servers cannot be "
                       f"changed over its API (--url {conn.url}). Run it where that jan runs, with --data-folder "
                       "<its data folder> (a running jan notices the change)")
    if not create and conn.existing_folder() is None:
        edit({})  # (says what is wrong: no such server)
        return
    try:
        edit_config(conn.local_folder, edit)
    except McpConfigError as exc:
        raise CLIError(str(exc)) from None


@mcp.command("list")
@json_option
@connection_options
def list_servers(as_json: bool, conn) -> None:
    """Configured MCP servers: transport, command or URL, state and tool count."""
    client = conn.server()
    if client is not None:
        body = client.get("/v1/mcp/servers")
        servers = list(body.get("data") or [])
        invalid = {i.get("name"): i.get("error") for i in body.get("invalid") or [] if isinstance(i, dict)}
        file_error = body.get("file_error")
        if "invalid" not in body and "file_error" not in body:  # a jan from before these fields: what it tells
            file_error = body.get("config_error")
    else:
        from jan.extensions.mcp import McpConfigError
        from jan.extensions.mcp.config import read_config

        servers, invalid, file_error = [], {}, None
        try:
            configs, invalid = read_config(conn.local_folder)
        except McpConfigError as exc:
            file_error = str(exc)
        else:
            servers = [_config_record(n, c) for n, c in configs.items()]
    _show_servers(servers, invalid, file_error, as_json)
    if not servers and not invalid and not file_error and not as_json:
        # a header alone read as a listing that failed; said as `jan models list` and the others say it
        absent = conn.absent_note() if client is None else ""  # (a mistyped folder: "no MCP servers yet" misled)
        click.echo(f"no MCP servers: {absent}: check the path" if absent else
                   "no MCP servers yet: `jan mcp add NAME COMMAND [ARGS]...` (or `jan mcp add NAME URL`) adds one",
                   err=True)


def _config_record(name: str, config) -> dict:
    """An mcp.json entry (a parsed :class:`~jan.extensions.mcp.config` entry) as `jan mcp list --json` gives one
    that nothing has started: name, transport, command or URL (``target``), whether enabled, state, tools."""
    return {"name": name, "transport": config.transport, "target": config.target, "enabled": not config.disabled,
            "state": "disabled" if config.disabled else "stopped", "tools": []}


def _show_servers(servers: list[dict], invalid: dict[str, str], file_error: str | None, as_json: bool) -> None:
    """What `jan mcp list` prints, from a server's listing or from mcp.json alike: each server, then each invalid
    entry as such (``state`` "invalid" and its ``error``: it never hides the others); a file that cannot be read is
    an error when nothing is known, else a warning under what is (a server keeps the servers it read before)."""
    servers = [*servers, *({"name": n, "transport": "", "target": "", "enabled": False, "state": "invalid",
                            "error": why, "tools": []} for n, why in invalid.items())]
    if file_error and not servers:
        raise CLIError(file_error)
    if as_json:
        print_json(servers)
    else:
        rows = [[s.get("name", ""), s.get("transport", ""), s.get("target", ""), "yes" if s.get("enabled") else "no",
                 s.get("state", ""), len(s.get("tools") or [])] for s in servers]
        # errors whole after the table, not in its STATE column (as wide as the longest, every row with it)
        errors = [(s.get("name", ""), f"{s.get('state', '')}: {s['error']}") for s in servers if s.get("error")]
        if rows:
            print_table(["NAME", "TRANSPORT", "COMMAND / URL", "ENABLED", "STATE", "TOOLS"], rows,
                        max_widths={"COMMAND / URL": FREE_TEXT_WIDTH}, notes=errors)
    if file_error:
        warn(f"{file_error} (the servers listed are those read from it before)")


@mcp.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("name", callback=nonempty_param)
@click.argument("command_or_url", callback=nonempty_param)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment of a stdio server (repeatable).")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="HTTP header, NAME=VALUE or curl's 'NAME: VALUE' (repeatable).")
@click.option("--timeout", type=click.FloatRange(0, MAX_TOOL_TIMEOUT_S, min_open=True), default=None,
              callback=lambda ctx, param, value: _a_number(value), help="Seconds a tool call may take.")
@json_option
@connection_options
def add_server(name: str, command_or_url: str, args: tuple[str, ...], env: tuple[str, ...], headers: tuple[str, ...],
               timeout: float | None, as_json: bool, conn) -> None:
    """Add a server: `jan mcp add files python files_server.py --root ~/notes` (stdio) or
    `jan mcp add search http://127.0.0.1:8000/mcp` (streamable HTTP).

    --json: the server as `jan mcp list --json` lists it. jan's own options (--env, --timeout, --json) are jan's
    wherever they are given; an argument of the command spelled like one goes after `--`:
    `jan mcp add x -- mytool --json`."""
    from jan.extensions.mcp.config import NAME_RULE, parse_entry, valid_name

    if not valid_name(name):
        raise CLIError(f"an MCP server's name must be {NAME_RULE}, not {name!r} (its tools are named "
                       "<server>__<tool>)")

    def pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
        out = {}
        for item in items:
            key, sep, value = item.partition("=")
            if what == "--header" and ":" in key:
                # curl's and Claude Code's form, `Authorization: Bearer abc==`: split at its colon, not at the
                # first "=" (of a base64 key), which made a header named "Authorization: Bearer abc" of it
                key, sep, value = item.partition(":")
                key, value = key.strip(), value.lstrip()
            if not sep or not key:
                raise CLIError(f"{what} must look like NAME=VALUE" + (" or NAME: VALUE" if what == "--header" else "")
                               + f", not {item!r}")
            out[key] = value
        return out

    if command_or_url.startswith(("http://", "https://")):
        if args or env:
            raise CLIError("an HTTP server takes no command arguments or --env")
        entry: dict = {"url": command_or_url}
        if headers:
            entry["headers"] = pairs(headers, "--header")
    else:
        if "://" in command_or_url:  # a URL jan cannot connect to would be run as a program named like it
            raise CLIError(f"an MCP server's URL must be http:// or https:// (streamable HTTP), not {command_or_url!r}")
        if headers:
            raise CLIError("--header is for HTTP servers")
        entry = {"command": command_or_url, "args": list(args)}
        if env:
            entry["env"] = pairs(env, "--env")
        if _relative_paths(command_or_url, args):
            # `jan mcp add notes python notes_server.py` means the notes_server.py here; jan starts servers in its
            # own working folder, wherever it was started, where that file is not: the server starts here instead.
            entry["cwd"] = os.getcwd()
    if timeout is not None:
        entry["timeout"] = timeout
    try:
        config = parse_entry(entry)
    except ValueError as exc:
        # the entry's own fault, said of what was typed: through the edit it read as mcp.json's ("<data>/mcp.json:
        # server 'web': Value error, ...") though the file is fine and was left as it was
        text = str(exc)
        if text.startswith("'headers': "):  # (said by the flag that gave them)
            raise CLIError("--header: " + text.removeprefix("'headers': ")) from None
        raise CLIError(f"COMMAND_OR_URL: {text}") from None

    def edit(servers: dict) -> None:
        if name in servers:
            raise CLIError(f"an MCP server named '{name}' already exists (remove it first)")
        servers[name] = entry

    _edit(conn, edit)
    print_result(as_json, _config_record(name, config), f"{name}: added to {conn.data_folder / 'mcp.json'}"
                 + (f" (it starts in {entry['cwd']}, where its relative paths are)" if "cwd" in entry else ""))
    _tell_if_the_server_reads_another_file(conn, name, present=True)


def _a_number(value: float | None) -> float | None:
    """click's FloatRange lets NaN through (it compares false with both bounds): refused here, by the option,
    rather than by mcp.json's check in pydantic's words after the file was read."""
    if value is not None and math.isnan(value):
        raise click.BadParameter("NaN is not a number of seconds")
    return value


def _relative_paths(command: str, args: tuple[str, ...]) -> bool:
    """Whether the command line names a file or folder by a relative path (one that is there, from here): a
    command with a folder in it (``./server``), or an argument (``server.py``, ``--root=notes``'s value)."""
    if os.sep in command and not os.path.isabs(command):
        return True
    for arg in args:
        value = arg.partition("=")[2] if arg.startswith("-") else arg
        if value and not os.path.isabs(value) and os.path.exists(value):
            return True
    return False


@mcp.command("remove")
@click.argument("name", callback=nonempty_param)
@json_option
@connection_options
def remove_server(name: str, as_json: bool, conn) -> None:
    """Remove a server from mcp.json (a running jan stops it). --json: ``{"name", "deleted": true}``."""
    def edit(servers: dict) -> None:
        if servers.pop(name, None) is None:
            raise CLIError(f"no MCP server named '{name}'{did_you_mean(name, servers)} (see `jan mcp list`)")

    _edit(conn, edit, create=False)
    print_result(as_json, {"name": name, "deleted": True}, f"{name}: removed")
    _tell_if_the_server_reads_another_file(conn, name, present=False)


def _tell_if_the_server_reads_another_file(conn, name: str, *, present: bool) -> None:
    """Warn (on stderr) when the jan server answering at the default URL does not see the edit just made: it
    reads another data folder's mcp.json (it was started with another --data-folder or $JAN_DATA_FOLDER), so
    the server the user meant to give (or take) the tools never will. (A server that tells its folder is edited
    itself, or the edit refused before it is made: Connection.local_folder; this is for one that does not tell
    it, an older jan or one that wants its key.) Its listing rereads the file and starts
    nothing. A server that cannot be asked is no reason to fail an edit that was made."""
    from jan.cli.client import ServerError

    try:
        client = conn.server()
        if client is None:
            return
        listed = {s.get("name") for s in client.get("/v1/mcp/servers").get("data", [])}
    except (ServerError, CLIError, OSError, AttributeError):
        return
    if (name in listed) == present:
        return
    click.echo(f"jan: warning: the jan server at {conn.url} {'does not list' if present else 'still lists'} "
               f"'{name}': it reads the mcp.json of another data folder, not {conn.data_folder}; run this again "
               "with --data-folder <its data folder> (or $JAN_DATA_FOLDER as it was started)", err=True)
