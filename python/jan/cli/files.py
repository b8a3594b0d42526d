"""``jan files``: list, show, upload, download and delete the files of OpenAI's Files API.

Through a running server the commands use its ``/v1/files`` routes; without one they work on the data folder's
``files/`` with the very store the server uses (:class:`jan.store.uploads.UploadStore`), so an upload made either
way is the same file to the other. Neither way holds a file whole in memory: an upload streams from disk (to the
server, or into the store's temporary file), a download streams into a hidden temporary file beside its target,
renamed over it once whole (a crash never leaves half a file under the name asked for).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import click

from jan.cli.common import (CLIError, RemoveAliasGroup, connection_options, human_bytes, human_time, json_option,
                            PathParam, meant_id, nonempty_param, nonempty_text_param, print_json, print_table, Words, write_output_file)
from jan.local_files import expand_home, open_regular_file
from jan.store.uploads import DEFAULT_MAX_UPLOAD_BYTES, PURPOSES

#: Other spellings of a --purpose (:class:`jan.cli.common.Words`)
PURPOSE_ALIASES = {"fine_tune": "fine-tune", "finetune": "fine-tune", "user-data": "user_data"}

#: Bytes read from a file at a time (an upload, a download): never a whole file in memory.
CHUNK_BYTES = 1024 * 1024
#: Characters of a file name `jan files list` shows (--json has it whole).
NAME_WIDTH = 48
#: The purpose of an upload that names none: files for the user's own use (OpenAI's ``user_data``).
DEFAULT_PURPOSE = "user_data"


@click.group(cls=RemoveAliasGroup)
def files() -> None:
    """List, show, upload, download and delete files (OpenAI's Files API)."""


def _not_found(conn, file_id: str, store=None) -> CLIError:
    """A file id the data folder has no file of, naming the one meant where one is near (``store``'s files)."""
    from jan.store import StoreError

    try:
        ids = [f["id"] for f in store.list().data] if store is not None else []
    except StoreError:  # (a hint only)
        ids = []
    return CLIError(f"file '{file_id}' not found in {conn.data_folder}{meant_id(file_id, ids, 'file-')} "
                    "(see `jan files list`)")


def _on_server(client, file_id: str, call: Callable[[], Any]) -> Any:
    """``call()``, a request about ``file_id`` to the server; its 404 said as the data folder's is (the server's
    "server: file 'x' not found (HTTP 404)" named neither the server nor the file meant)."""
    from jan.cli.client import ServerError

    try:
        return call()
    except ServerError as exc:
        if exc.status != 404 and exc.code != "invalid_id":
            raise
        try:
            ids = [f.get("id") for f in _server_files(client) if isinstance(f, dict)]
        except CLIError:  # (a hint only)
            ids = []
        raise CLIError(f"file '{file_id}' not found on the server at {client.base_url}"
                       f"{meant_id(file_id, ids, 'file-')} (see `jan files list`)") from None


def _uploads(conn):
    """The data folder's upload store (created with the first upload)."""
    from jan.store.uploads import UploadStore

    try:
        return UploadStore(conn.local_folder)
    except OSError as exc:
        raise CLIError(f"cannot open the data folder {conn.data_folder}: {exc.strerror or exc}") from None


def _local(conn, file_id: str, action: Callable[[Any], Any], *, create: bool = False) -> Any:
    """``action(store)`` on the data folder, its store errors as one line (an unknown id: not found). Only an
    upload (``create``) makes the folder: there is no file to show, fetch or delete in one that is not there."""
    from jan.store import NotFoundError, StoreError

    if not create and conn.existing_folder() is None:
        raise _not_found(conn, file_id)
    store = _uploads(conn)
    try:
        return action(store)
    except NotFoundError:
        raise _not_found(conn, file_id, store) from None
    except StoreError as exc:
        raise CLIError(str(exc)) from None


def _file_path(file_id: str, tail: str = "") -> str:
    from jan.cli.client import path_part

    return f"/v1/files/{path_part(file_id)}{tail}"


def _row(f: dict[str, Any]) -> list[Any]:
    return [f.get("id"), f.get("filename"), f.get("purpose"), human_bytes(f.get("bytes")), human_time(f.get("created_at"))]


def _server_files(client, purpose: str | None = None, problems: list[dict[str, Any]] | None = None
                  ) -> list[dict[str, Any]]:
    """The server's files (``purpose``'s only, where given), every page; the damaged files it set aside are put in
    ``problems``."""
    from urllib.parse import urlencode

    data: list[dict[str, Any]] = []
    after = None
    for _ in range(10_000):  # bounded: a page per round (the server's default page is 10000 files)
        query = {k: v for k, v in (("purpose", purpose), ("after", after)) if v}
        page = client.get("/v1/files" + (f"?{urlencode(query)}" if query else "")) or {}
        data += page.get("data") or []
        if problems is not None and page.get("problems"):
            problems[:] = page["problems"]
        if not page.get("has_more") or not page.get("data"):
            break
        after = page["data"][-1]["id"]
    return data


@files.command("list")
@click.option("--purpose", type=Words(PURPOSES, PURPOSE_ALIASES), default=None, help="Only the files uploaded for PURPOSE.")
@json_option
@connection_options
def list_files(purpose: str | None, as_json: bool, conn) -> None:
    """List the uploaded files, newest first."""
    from jan.cli.common import warn_problems

    client = conn.server()
    problems: list[dict[str, Any]] = []
    if client is not None:
        data = _server_files(client, purpose, problems)
    else:
        from jan.store import StoreError

        store = _uploads(conn) if conn.existing_folder() is not None else None  # (listing makes no folder)
        try:
            data = store.list(purpose=purpose).data if store is not None else []
        except StoreError as exc:
            raise CLIError(str(exc)) from None
        problems = [p.to_dict() for p in store.problems.snapshot()] if store is not None else []
    warn_problems(problems)  # a damaged file.json: why a file is missing (told the same from a server)
    if as_json:
        print_json(data)
        return
    if not data:
        absent = conn.absent_note() if client is None else ""  # (a mistyped folder: "no files uploaded yet" misled)
        what = f"no files uploaded for {purpose}" if purpose else "no files uploaded yet"
        click.echo(f"no files: {absent}: check the path" if absent else f"{what}: `jan files upload PATH` keeps one",
                   err=True)
        return
    print_table(["ID", "FILENAME", "PURPOSE", "SIZE", "CREATED"], [_row(f) for f in data],
                max_widths={"FILENAME": NAME_WIDTH})


def _get(conn, file_id: str) -> dict[str, Any]:
    client = conn.server()
    if client is not None:
        return _on_server(client, file_id, lambda: client.get(_file_path(file_id)))
    return _local(conn, file_id, lambda store: store.get(file_id))


@files.command("show")
@click.argument("file_id", callback=nonempty_param)
@json_option
@connection_options
def show_file(file_id: str, as_json: bool, conn) -> None:
    """Show a file's details (its file object)."""
    f = _get(conn, file_id)
    if as_json:
        print_json(f)
        return
    expires = human_time(f.get("expires_at")) or "never"
    for label, value in (("id", f.get("id")), ("filename", f.get("filename")), ("purpose", f.get("purpose")),
                         ("bytes", f"{f.get('bytes')} ({human_bytes(f.get('bytes'))})"),
                         ("created", human_time(f.get("created_at"))), ("expires", expires),
                         ("status", f.get("status"))):
        click.echo(f"{label + ':':<10} {value}")


@files.command("upload")
@click.argument("path", type=PathParam(exists=True, dir_okay=False, readable=True, allow_dash=True, path_type=Path))
@click.option("--purpose", type=Words(PURPOSES, PURPOSE_ALIASES), default=DEFAULT_PURPOSE, show_default=True,
              help="What the file is for (OpenAI's purposes; an image for messages: vision).")
@click.option("--name", "filename", default=None, callback=nonempty_text_param,
              help="The name to keep the file under [default: PATH's name; required for '-', stdin].")
@json_option
@connection_options
def upload_file(path: Path, purpose: str, filename: str | None, as_json: bool, conn) -> None:
    """Upload a file ('-': the bytes of stdin, kept under --name); prints its id (file-...)."""
    from_stdin = str(path) == "-"  # (as `jan files download -o -` writes stdout; it was "no such file: -")
    if from_stdin and filename is None:
        raise click.UsageError("--name is required with '-': stdin has no file name to keep the bytes under")
    name = filename or path.name
    try:
        # a named pipe or a device is refused, not read (or waited on) forever; stdin is read whole into a temporary
        # file first: an upload states its size before its bytes
        source = _stdin_copy() if from_stdin else open_regular_file(path)
    except OSError as exc:
        raise CLIError(f"cannot read {'stdin' if from_stdin else path}: {exc.strerror or exc}") from None
    with source:
        size = os.fstat(source.fileno()).st_size
        client = conn.server()
        if client is not None:
            f = client.upload("/v1/files", {"purpose": purpose}, filename=name, source=source, size=size)
        else:
            f = _local(conn, "", lambda store: _store_upload(store, source, name, purpose), create=True)
    if as_json:
        print_json(f)
        return
    click.echo(f["id"])
    click.echo(f"uploaded {'stdin' if from_stdin else path} as {f['id']} ({human_bytes(f.get('bytes'))}, "
               f"{f.get('purpose')})", err=True)


def _stdin_copy() -> BinaryIO:
    """The bytes of stdin in an unnamed temporary file, at its start (removed as it is closed)."""
    import tempfile

    copy = tempfile.TemporaryFile()
    try:
        while chunk := sys.stdin.buffer.read(CHUNK_BYTES):
            copy.write(chunk)
        copy.seek(0)
    except BaseException:
        copy.close()
        raise
    return copy


def _store_upload(store, source: BinaryIO, filename: str, purpose: str) -> dict[str, Any]:
    """``source``'s bytes kept as a new file of the store, as the server keeps an upload (at most
    :data:`~jan.store.uploads.DEFAULT_MAX_UPLOAD_BYTES`); the store's errors (too large) propagate."""
    writer = store.writer(DEFAULT_MAX_UPLOAD_BYTES)
    try:
        while chunk := source.read(CHUNK_BYTES):
            writer.write(chunk)
        return store.commit(writer, filename=filename, purpose=purpose)
    finally:
        writer.discard()  # (nothing left to remove after a commit)


@files.command("delete")
@click.argument("file_id", callback=nonempty_param)
@json_option
@connection_options
def delete_file(file_id: str, as_json: bool, conn) -> None:
    """Delete a file (a thread image copied from it stays with its thread)."""
    client = conn.server()
    if client is not None:
        result = _on_server(client, file_id, lambda: client.call("DELETE", _file_path(file_id)))
    else:
        result = _local(conn, file_id, lambda store: store.delete(file_id))
    if as_json:
        print_json(result)
        return
    click.echo(f"{file_id}: deleted")


@files.command("download")
@click.argument("file_id", callback=nonempty_param)
@click.option("--output", "-o", type=PathParam(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write to FILE ('-': stdout) [default: stdout, unless it is a terminal].")
@connection_options
def download_file(file_id: str, output: Path | None, conn) -> None:
    """Write a file's bytes, as uploaded, to FILE or stdout."""
    to_stdout = output is None or str(output) == "-"
    if to_stdout and output is None and sys.stdout.isatty():
        raise CLIError("the file's bytes would go to the terminal; give --output FILE (or pipe them)")
    client = conn.server()

    def copy(write: Callable[[bytes], Any]) -> None:
        if client is not None:
            _on_server(client, file_id, lambda: client.download(_file_path(file_id, "/content"), write))
            return

        def read(store) -> None:
            handle, _doc = store.open(file_id)
            with handle:
                while chunk := handle.read(CHUNK_BYTES):
                    write(chunk)

        _local(conn, file_id, read)

    if to_stdout:
        out = sys.stdout.buffer
        copy(out.write)
        out.flush()
        return
    target = expand_home(output)
    write_output_file(target, copy, data_folder=conn.data_folder)
    click.echo(f"downloaded {file_id} to {target}", err=True)
