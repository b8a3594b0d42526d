"""``jan extensions``: list, enable and disable extensions."""

from __future__ import annotations

from typing import Any

import click

from jan.cli.common import (FREE_TEXT_WIDTH, CLIError, connection_options, did_you_mean, json_option, nonempty_param,
                            print_json, print_result, print_table, warn)


@click.group()
def extensions() -> None:
    """List, enable and disable extensions (built-in ones included)."""


def _server_api(conn):
    """The server client when a server runs and offers /v1/extensions; else None (local)."""
    client = conn.server()
    if client is None:
        return None
    from jan.cli.client import ServerError

    try:
        client.get("/v1/extensions")
    except ServerError as exc:
        if exc.status not in (404, 405):
            raise
        warn(f"the server at {client.base_url} has no /v1/extensions; using {conn.data_folder} "
             f"(changes apply when the server restarts)")
        return None
    return client


def _manager(conn, read_only: bool = False):
    from jan.core import ExtensionManager

    return ExtensionManager(conn.local_folder, read_only=read_only)


def _records(conn) -> tuple[list[dict[str, Any]], bool]:
    client = _server_api(conn)
    if client is not None:
        data = client.get("/v1/extensions")
        items = data.get("data", []) if isinstance(data, dict) else data
        return list(items or []), True
    if conn.existing_folder() is None:
        return _fresh_records(), False
    manager = _manager(conn, read_only=True)  # (a listing writes nothing)
    records = [_as_served(r) for r in manager.list()]
    if manager.state_problem:  # (a damaged extensions.json, left where it is: why every extension shows enabled)
        warn(manager.state_problem)
    return records, False


def _fresh_records() -> list[dict[str, Any]]:
    """What a data folder that is not there yet would list (the built-in extensions, as they start), read from an
    empty folder made for it, not by making the user's: the manager records what it finds in extensions.json as it
    starts, and `jan extensions list` (or `disable` of a name no extension has) made ~/jan."""
    import tempfile

    from jan.core import ExtensionManager

    with tempfile.TemporaryDirectory(prefix="jan-extensions-") as empty:
        return [_as_served(r) for r in ExtensionManager(empty).list()]


def _as_served(record) -> dict[str, Any]:
    """An extension's record as ``GET /v1/extensions`` answers it (``"object": "extension"`` first), so --json gives
    one shape with or without a server."""
    return {"object": "extension", **record.to_dict()}


@extensions.command("list")
@json_option
@connection_options
def list_extensions(as_json: bool, conn) -> None:
    """List installed extensions with their state (loaded, disabled, failed, ...)."""
    records, _ = _records(conn)
    if as_json:
        print_json(records)
        return
    rows = []
    for r in records:
        types = r.get("types") or []
        rows.append([r.get("name", ""), r.get("version") or "", "yes" if r.get("enabled") else "no", r.get("state", ""),
                     ", ".join(types) if isinstance(types, list) else str(types), r.get("description", "")])
    # an error whole after the table, not in its STATE column (as wide as the longest error, every row with it)
    errors = [(r.get("name", ""), f"{r.get('state', '')}: {r['error']}") for r in records if r.get("error")]
    print_table(["NAME", "VERSION", "ENABLED", "STATE", "TYPES", "DESCRIPTION"], rows,
                max_widths={"DESCRIPTION": FREE_TEXT_WIDTH}, notes=errors)


def _switch(conn, name: str, enable: bool, as_json: bool) -> None:
    action = "enable" if enable else "disable"
    client = _server_api(conn)
    if client is None:
        from jan.core import ExtensionNotFoundError

        if conn.existing_folder() is None:  # (a name no extension has makes no folder to be refused in)
            known = [r.get("name") for r in _fresh_records()]
            if name not in known:
                raise _not_found(name, known)
        manager = _manager(conn)
        try:
            from jan.core.bounded import run_loop

            run_loop(manager.enable(name) if enable else manager.disable(name))
        except ExtensionNotFoundError:
            raise _not_found(name, [r.name for r in manager.list()]) from None
        # what is known without loading it: an extension that cannot be imported, or requires another jan, will
        # not load at the next start either - say so rather than a bare "enabled"
        record = next((r for r in manager.list() if r.name == name), None)
        failed = enable and record is not None and record.state in ("failed", "incompatible") and record.error
        print_result(as_json, _as_served(record) if record is not None else {"object": "extension", "name": name},
                     f"{name}: {action}d" + (f" ({record.state}: {record.error})" if failed else ""))
        return
    from jan.cli.client import ServerError, path_part

    try:
        record = client.post(f"/v1/extensions/{path_part(name)}/{action}") or {}
    except ServerError as exc:
        if exc.status == 404:
            listed = client.get("/v1/extensions")
            items = listed.get("data", []) if isinstance(listed, dict) else listed
            raise _not_found(name, [r.get("name") for r in items or [] if isinstance(r, dict)]) from None
        raise
    state = record.get("state") or ""
    detail = f" ({state}: {record['error']})" if record.get("error") else f" ({state})" if state != f"{action}d" else ""
    print_result(as_json, record, f"{name}: {action}d{detail}")
    if enable and state == "loading":
        warn(f"{name} is still loading; `jan extensions list` shows whether it loaded or failed")


def _not_found(name: str, known: list) -> CLIError:
    return CLIError(f"no extension named '{name}'{did_you_mean(name, known)} (see `jan extensions list`)")


@extensions.command("enable")
@click.argument("name", callback=nonempty_param)
@json_option
@connection_options
def enable_extension(name: str, as_json: bool, conn) -> None:
    """Enable an extension (a running server loads it at once; otherwise at its next start). --json: its record, as
    `jan extensions list --json` gives it."""
    _switch(conn, name, True, as_json)


@extensions.command("disable")
@click.argument("name", callback=nonempty_param)
@json_option
@connection_options
def disable_extension(name: str, as_json: bool, conn) -> None:
    """Disable an extension (a running server unloads it at once; otherwise it stays off from its next start).
    --json: its record, as `jan extensions list --json` gives it."""
    _switch(conn, name, False, as_json)
