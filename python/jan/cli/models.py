"""``jan models``: list, show, import, pull, rm, start, stop."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import click

from jan.local_files import expand_home
from jan.cli.common import (
    FREE_TEXT_WIDTH,
    CLIError,
    PathParam,
    RemoveAliasGroup,
    connection_options,
    damaged_model_ids,
    each_result,
    human_bytes,
    json_option,
    nonempty_param,
    print_json,
    print_result,
    print_table,
    warn,
    warn_problems,
    Words,
)
from jan.cli.inference import check_gguf_file, meant_by_server, meant_in_store
from jan.cli.progress import DownloadBar

IMPORT_MODES = ("symlink", "copy", "link", "reference")


@click.group(cls=RemoveAliasGroup)
def models() -> None:
    """List, show, import, pull, remove, start and stop models."""


def _not_found(model_id: str, where: str, meant: str = "") -> CLIError:
    """``meant``: the guess of a model the id differs from only in case or by ``.gguf`` (the server's, or the
    data folder's by the same rule), said in place of the pointer to the list."""
    return CLIError(f"model '{model_id}' not found {where}" + (meant or " (see `jan models list`)"))


def _server_model(client, model_id: str) -> dict[str, Any]:
    from jan.cli.client import ServerError, path_part

    try:
        return client.get(f"/v1/models/{path_part(model_id)}")
    except ServerError as exc:
        # a damaged model.json: the server's words say where (the store's "'<id>' is damaged", not any id with
        # the word in it: `jan models rm damaged-copy` was answered with the server's bare 404)
        if exc.status == 404 and f"{model_id!r} is damaged" not in str(exc):
            raise _not_found(model_id, f"on the server at {client.base_url}", meant_by_server(exc)) from None
        raise


def _local_model(conn, model_id: str) -> dict[str, Any]:
    from jan.store import InvalidIdError, StoredModelNotFoundError

    try:
        store = conn.store(create=False)  # (only read: a folder that is not there has no model, and is not made)
        if store is None:
            raise StoredModelNotFoundError("model", model_id)
        return store.models.get(model_id)
    except StoredModelNotFoundError as exc:
        if exc.damaged:  # its model.json was set aside: say so, and where (not just "not found")
            raise CLIError(f"{exc} (in {conn.data_folder})") from None
        raise _not_found(model_id, f"in {conn.data_folder}", meant_in_store(conn, model_id)) from None
    except InvalidIdError:  # no id can be it (`stories260K ` with a stray space): still the guess of the one meant
        raise _not_found(model_id, f"in {conn.data_folder}", meant_in_store(conn, model_id)) from None


def as_served(conn, models: list[dict[str, Any]], *, read_only: bool = True) -> list[dict[str, Any]]:
    """``models`` (model.json records of the data folder) as a server's ``GET /v1/models`` shows them
    (:func:`jan.server.model_view.api_model`: ``created`` in seconds, ``owned_by``, ``state``, ``capabilities``,
    ``meta``, ...), from the engines and services of this process: so every `jan models` command's --json gives one
    shape with or without a server (the data folder's record lacked half of the fields, and its ``created`` was in
    milliseconds where the API's is in seconds). ``read_only``: the command only reads (`list`, `show`), and writes
    nothing for it."""
    if not models:
        return []
    from jan.server.model_view import api_model

    runtime = conn.runtime(read_only=read_only)

    async def shown() -> list[dict[str, Any]]:
        return [await api_model(runtime.manager, runtime.services, m) for m in models]

    return runtime.call(shown())


def _size(model: dict[str, Any]) -> Any:
    return (model.get("metadata") or {}).get("size")


# --------------------------------------------------------------------------- list / show


@models.command("list")
@json_option
@connection_options
def list_models(as_json: bool, conn) -> None:
    """List the models (with their state when a server runs)."""
    client = conn.server()
    if client is not None:
        page = client.get("/v1/models") or {}
        data, problems = page.get("data", []), page.get("problems") or []
        leftovers = page.get("leftovers") or []
        where = f"on the server at {client.base_url} (--local: the data folder {conn.data_folder})"
    else:
        store = conn.store(create=False)  # (listing makes no folder: none there is no model)
        data = sorted(store.models.list(), key=lambda m: m["id"]) if store is not None else []
        problems = [p.to_dict() for p in store.problems if p.path.startswith("models/")] if store is not None else []
        leftovers = store.models.leftovers() if store is not None else []
        why = "--local" if conn.force_local or conn.data_explicit else f"no server running at {conn.url}"
        where = f"in the data folder {conn.data_folder} ({why})"
    warn_problems(problems)  # a damaged model.json: say why that model is shown as damaged
    warn_leftovers(leftovers)
    if client is None and store is not None:
        warn_missing_files([m["id"] for m in data if _weights_missing(store, m)])
    elif client is not None:  # (the server tells it per model, as the data folder's own check does here)
        warn_missing_files([m["id"] for m in data if m.get("weights_missing")])
    if as_json:
        print_json(data if client is not None else as_served(conn, data))
        return
    click.echo(f"models {where}", err=True)  # stderr: the table itself stays pipeable
    columns = ["ID", "NAME", "SIZE", "ENGINE"] + (["STATE"] if client is not None else [])
    rows = []
    for m in data:
        row = [m["id"], m.get("name", ""), human_bytes(_size(m)), m.get("engine", "")]
        if client is not None:
            row.append(m.get("state", ""))
        rows.append(row)
    # a model whose model.json is damaged is still there (left in place for the user to repair): a row says so,
    # rather than it vanishing from the list
    listed = {m["id"] for m in data}
    for model_id in sorted(damaged_model_ids(problems) - listed):
        rows.append([model_id, "(damaged model.json)", "", ""] + (["damaged"] if client is not None else []))
    rows.sort(key=lambda row: row[0])
    if not rows and not as_json:
        absent = conn.absent_note() if client is None else ""  # (a mistyped folder: "no models yet" misled)
        click.echo(f"no models: {absent}: check the path, or add one with `jan models import FILE.gguf`, which "
                   "makes it" if absent else
                   "no models yet: add one with `jan models pull URL` or `jan models import FILE.gguf`", err=True)
        return
    print_table(columns, rows, max_widths={"NAME": FREE_TEXT_WIDTH})  # (a model's name is free text; its ID is whole)


def _weights_missing(store, model: dict[str, Any]) -> bool:
    """Whether a model has no weights file on disk (a remote model, of the API format, has none to have)."""
    from jan.store.models import API_FORMAT, model_format

    if model_format(model) == API_FORMAT:
        return False
    try:
        return store.models.model_file(model["id"], model) is None
    except (OSError, ValueError, TypeError):  # (a hand-edited model.json's odd path: said when it is used)
        return False


def warn_missing_files(model_ids: list[str]) -> None:
    """Say which listed models have no weights file (deleted, moved, a link to a file that is gone), on stderr: the
    listing showed them as any other, and only a chat with one said so."""
    for model_id in model_ids:
        warn(f"model '{model_id}' has no weights file on disk (models/{model_id}): pull or import it again, or "
             f"`jan models rm {model_id}`")


def warn_leftovers(leftovers: list[dict[str, Any]]) -> None:
    """Say which model folders hold files but no model.json (a pull or import that a kill stopped), what they take
    and how to finish or remove them, on stderr: the disk they use is otherwise invisible."""
    for item in leftovers:
        names = ", ".join(f["name"] for f in item.get("files", []))
        what = "an unfinished download" if item.get("partial") else "files no model.json names"
        how = "pull the same URL again to resume it, or " if item.get("partial") else ""
        warn(f"models/{item['id']} is {what} ({names}; {human_bytes(item.get('bytes') or 0)}), not a model: "
             f"{how}`jan models rm {item['id']}` removes it")


@models.command("show")
@click.argument("model_id", callback=nonempty_param)
@json_option
@connection_options
def show_model(model_id: str, as_json: bool, conn) -> None:
    """Show a model's model.json, its file and (with a server) its state."""
    client = conn.server()
    if client is not None:
        model = _server_model(client, model_id)
        # the weights the server reads (its model object names them, as the local one does): `file` was told only
        # without a server, so the same model showed two ways
        file = model.get("file_path") if isinstance(model.get("file_path"), str) and not model.get("weights_missing") \
            else None
    else:
        model = _local_model(conn, model_id)
        path = conn.store().models.model_file(model_id)
        file = str(path) if path else None
        model = {**model, "file_path": file}
        if as_json:
            model = as_served(conn, [model])[0]
    if as_json:
        print_json(model)
        return
    lines = [("id", model["id"]), ("name", model.get("name")), ("engine", model.get("engine")),
             ("format", model.get("format")), ("size", human_bytes(_size(model)))]
    from jan.store.models import API_FORMAT, model_format

    # (a model another server's API answers has no file to miss: it said "(missing: pull or import it again)")
    if file or model.get("weights_missing") or (client is None and model_format(model) != API_FORMAT):
        lines.append(("file", file or "(missing: pull or import it again)"))
    for source in model.get("sources") or []:
        lines.append(("source", source.get("url") or source.get("filename")))
    if model.get("state"):
        lines.append(("state", model["state"] + (f" ({model['error']})" if model.get("error") else "")))
    if model.get("description"):
        lines.append(("description", model["description"]))
    if model.get("system"):  # the model's own system prompt and stored turns, put into every chat
        lines.append(("system", model["system"]))
    license_text = model.get("license")
    if isinstance(license_text, str) and license_text.strip():  # (a license's text runs long: its first line)
        first, *rest = license_text.strip().splitlines()
        lines.append(("license", first + (f" ({len(rest)} more lines: --json shows them)" if rest else "")))
    for key in ("messages", "settings", "parameters", "metadata"):
        if model.get(key):
            lines.append((key, json.dumps(model[key], ensure_ascii=False)))
    width = max(len(k) for k, _ in lines) + 1
    for key, value in lines:
        if value not in (None, ""):
            click.echo(f"{key + ':':<{width}} {value}")
    from jan.services.models import model_json_typos

    for _, said in model_json_typos(model):  # (a hand-edited model.json's typo: kept, and never read)
        warn(said)


# --------------------------------------------------------------------------- import
def _taken(model_id: str, *, damaged: bool) -> CLIError:
    """An import into an id a model has: a model whose model.json is damaged (left in place) is one still, and
    "already exists" alone sent the user looking for a model `jan models show` calls damaged."""
    if damaged:
        return CLIError(f"model '{model_id}' already exists, its model.json damaged: repair or remove "
                        f"models/{model_id}/model.json (`jan models rm {model_id}` removes the model), or choose "
                        "another --id")
    return CLIError(f"model '{model_id}' already exists (choose another --id, or `jan models rm {model_id}`)")


def _damaged_here(conn, model_id: str) -> bool:
    """Whether the data folder's model ``model_id`` has a damaged model.json (a hint: False where it cannot tell)."""
    from jan.store import StoredModelNotFoundError

    try:
        conn.store().models.get(model_id)
    except StoredModelNotFoundError as exc:
        return exc.damaged is not None
    except Exception:  # noqa: BLE001 - a hint only
        return False
    return False



def _import_local(conn, path: Path, model_id: str | None, mode: str, mmproj: Path | None = None) -> dict[str, Any]:
    from jan.extensions.models.gguf_info import describe_gguf
    from jan.store import AlreadyExistsError, CaseClashError, StoreError, slugify_id, validate_id

    try:
        info = describe_gguf(str(path))
    except Exception as exc:  # noqa: BLE001 - llama.cpp refused the file
        raise CLIError(f"{path} does not load as a GGUF model: {exc}") from None
    model_id = model_id or slugify_id(path.stem)
    try:
        validate_id(model_id, "model id")
        settings = {**info["settings"], **({"mmproj": str(mmproj)} if mmproj else {})}
        # a copy (--mode copy, or a hard link that has to copy) of weights of many GB takes minutes: shown as it goes
        with DownloadBar(model_id, done_word="copied", lazy=True) as bar:
            return conn.store().models.import_gguf(path, model_id=model_id, mode=mode, name=info["name"],
                                                   settings=settings, metadata=info["metadata"], progress=bar.copied)
    except CaseClashError as exc:
        raise CLIError(str(exc)) from None
    except AlreadyExistsError:
        raise _taken(model_id, damaged=_damaged_here(conn, model_id)) from None
    except StoreError as exc:
        raise CLIError(str(exc)) from None


#: How long `jan models import` waits for a server's answer (seconds): its copy of the weights is made before it
#: answers, and a copy of many GB may take many minutes.
SERVER_IMPORT_TIMEOUT_S = 24 * 3600.0


def _id_param(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--id``: a model id the store takes (:func:`jan.store.validate_id`), else a usage error naming the option
    (``--id bad/id`` was a runtime error, exit 1, after the file was read; it is the command line's own mistake)."""
    from jan.store import InvalidArgumentError
    from jan.store.ids import validate_id

    value = nonempty_param(ctx, param, value)
    if value is not None:
        try:
            validate_id(value, "model id")
        except InvalidArgumentError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


@models.command("import")
@click.argument("path", type=PathParam(exists=True, path_type=Path))
@click.option("--id", "model_id", default=None, callback=_id_param,
              help="Model id [default: from the file name].")
@click.option("--mode", type=Words(IMPORT_MODES, {"hardlink": "link", "ref": "reference"}), default="symlink", show_default=True,
              help="symlink/copy/hard-link the file into the data folder, or reference it where it is.")
@click.option("--mmproj", type=PathParam(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Its multimodal projector (images/audio), referenced where it is "
                   "[default: mmproj-<file name> beside it, else the folder's only *mmproj*.gguf, if there].")
@json_option
@connection_options
def import_model(path: Path, model_id: str | None, mode: str, mmproj: Path | None, as_json: bool, conn) -> None:
    """Add a local .gguf file as a model."""
    path = expand_home(path).absolute()
    check_gguf_file(path, "PATH")
    if mmproj is None and "mmproj" not in path.name.lower():
        # the models extension's one rule (a server applies it to a POST /v1/models too): here it only knew
        # mmproj-<name>, so a repository downloaded whole (model-Q4_K_M.gguf beside mmproj-model-f16.gguf) imported
        # without its projector when no server ran
        from jan.hf_repo import sibling_mmproj

        beside = sibling_mmproj(str(path))
        mmproj = Path(beside) if beside else None
    mmproj = expand_home(mmproj).absolute() if mmproj else None
    if mmproj is not None:  # checked now, not first when the model loads and fails on it
        from jan.extensions.models.gguf_info import check_projector

        try:
            check_projector(str(mmproj))
        except ValueError as exc:
            raise CLIError(f"--mmproj: {exc}") from None
    client = conn.server()
    if client is not None:
        body = {"path": str(path), "mode": mode, **({"id": model_id} if model_id else {}),
                **({"settings": {"mmproj": str(mmproj)}} if mmproj else {})}
        from jan.cli.client import ServerError

        try:
            # (the server answers when its copy is whole: a copy of many GB takes as long as the disks need, where a
            # limit of minutes said "cannot reach the jan server" of a server still copying)
            model = client.post("/v1/models", body, timeout=SERVER_IMPORT_TIMEOUT_S)
        except KeyboardInterrupt:
            from jan.store import slugify_id

            # the request was sent: the server goes on with it whatever this process does, and Ctrl-C said nothing
            # of that (the model was there after all)
            warn(f"stopped waiting; the server at {conn.url} goes on with the import of {path} (once it is listed, "
                 f"`jan models rm {model_id or slugify_id(path.stem)}` removes it)")
            raise
        except ServerError as exc:
            if exc.status == 409 and "differs only in case" not in str(exc):
                taken = model_id or path.stem
                problems = (client.get("/v1/models") or {}).get("problems") or []
                raise _taken(taken, damaged=taken in damaged_model_ids(problems)) from None
            raise
    else:
        model = _import_local(conn, path, model_id, mode, mmproj)
        if as_json:
            model = as_served(conn, [model], read_only=False)[0]
    if as_json:
        print_json(model)
    else:
        # the projector is named: one picked up by itself (beside the model) is otherwise a silent choice
        projector = ((model.get("settings") or {}).get("mmproj")) if isinstance(model, dict) else None
        click.echo(f"imported {model['id']} ({mode} of {path}" + (f"; projector {projector})" if projector else ")"))


# --------------------------------------------------------------------------- pull
#: How often a local pull's progress is read (seconds): the server's event interval.
PULL_PROGRESS_S = 0.25


def _pull_local(conn, url: str, model_id: str | None, sha256: str | None, bar: DownloadBar) -> dict[str, Any]:
    """The pull on the data folder, in this process: the model manager's own pull (what ``jan serve``'s
    ``POST /v1/models/pull`` runs), followed as the server's events are. Only ``jan models pull``'s rule differs:
    it never replaces a model (``update=False``), where the API's pull of a model's own source updates it."""
    import asyncio

    from jan.downloads import DownloadCancelledError, DownloadError
    from jan.store import StoreError

    runtime = conn.runtime()
    models = runtime.services.models.model_extension()
    try:
        task = runtime.call(models.pull(url, model_id, **({"sha256": sha256} if sha256 else {}), update=False))
    except (DownloadError, StoreError, ValueError) as exc:  # a bad URL, id or hash; an id taken: before anything
        raise CLIError(str(exc)) from None

    async def events():
        waiter = asyncio.ensure_future(task.wait())
        try:
            while not waiter.done():
                yield task.status()
                await asyncio.wait([waiter], timeout=PULL_PROGRESS_S)
            status = task.status()
            try:
                status = {**status, "state": "completed", "model": waiter.result()}
            except (asyncio.CancelledError, DownloadCancelledError):
                status = {**status, "state": "cancelled"}
            except Exception as exc:  # noqa: BLE001 - the pull's failure, told as the server's final event tells it
                status = {**status, "state": "failed", "error": str(exc)}
            yield status
        finally:
            if not waiter.done():
                waiter.cancel()  # stops waiting only: a stop of the runtime stops the pull, its part kept

    return _followed(runtime.iterate(events()), bar, lambda: _resumable(conn, task.model_id))


def _resumable(conn, model_id: str) -> bool:
    """Whether a failed pull left a partial file (with bytes) in the model's folder to resume from."""
    folder = conn.store().models.folder(model_id)
    return any(p.stat().st_size > 0 for p in folder.glob("*.part")) if folder.is_dir() else False


def _followed(events, bar: DownloadBar, resumable=None) -> dict[str, Any]:
    """The pulled model, from a pull's progress events (the server's ``POST /v1/models/pull`` stream, or the local
    pull's status as it goes: one shape), shown on ``bar``: a resume said once the source agreed to it (a partial
    file and a ``resumed_from``), or that it could not (it sent the file from its start). ``resumable``: whether a
    failed pull left a partial file, to say so."""
    final: dict[str, Any] = {}
    told = False
    for event in events:
        final = event
        kept = int(event.get("partial_bytes") or 0)
        if kept and not told and event.get("state") in ("downloading", "completed"):
            if event.get("resumed_from"):
                told = True
                bar.note(f"resuming {event.get('model_id') or bar.label} at {human_bytes(event['resumed_from'])}")
            elif int(event.get("downloaded_bytes") or 0) not in (0, kept):  # (equal: no answer yet)
                told = True
                bar.note(f"the server cannot resume {event.get('model_id') or bar.label}: downloading it again "
                         "from the start")
        bar.update_server(event)
    state = final.get("state")
    if state == "completed" and final.get("model"):
        return final["model"]
    if state == "cancelled":
        raise CLIError("the download was cancelled on the server")
    hint = "; run the same command again to resume" if resumable is not None and resumable() else ""
    raise CLIError(f"download failed: {final.get('error') or 'the server ended the pull without finishing it'}"
                   f"{hint}")


def _pull_server(client, url: str, model_id: str | None, sha256: str | None, bar: DownloadBar) -> dict[str, Any]:
    body = {"url": url, **({"id": model_id} if model_id else {}), **({"sha256": sha256} if sha256 else {})}
    with client.stream("/v1/models/pull", body) as events:
        return _followed(events, bar)


def _refuse_local_file(url: str) -> None:
    """A file of this computer given to `pull` (a path, or a ``file://`` URL), which only downloads: said as the
    command that adds it, `jan models import`, not as "not a URL" / "unsupported URL scheme"."""
    path = url[len("file://"):] if url[:7].lower() == "file://" else url
    if path is not url or ("://" not in url and (os.path.exists(os.path.expanduser(url))
                                                 or url.lower().endswith(".gguf"))):
        from urllib.parse import unquote

        path = unquote(path) if path is not url else path
        raise CLIError(f"{url} is a file path, not a download URL: `jan models pull` downloads (http://, https://, "
                       f"hf://); a file on this computer is added with `jan models import {shlex.quote(path)}`")


@models.command("pull")
@click.argument("url", callback=nonempty_param)
@click.option("--id", "model_id", default=None, callback=_id_param,
              help="Model id [default: from the file name].")
@click.option("--sha256", default=None, help="Expected SHA-256 of the file (checked before it is kept).")
@json_option
@connection_options
def pull_model(url: str, model_id: str | None, sha256: str | None, as_json: bool, conn) -> None:
    """Download a .gguf model from URL (https://, http:// or hf://owner/repo/file.gguf).

    A whole repository, hf://owner/repo[:QUANT], pulls its model (Q4_K_M unless QUANT names another) and its
    mmproj-*.gguf projector, as llama-server's -hf does; Ollama's name for it, hf.co/owner/repo[:QUANT], is the same
    pull.

    An interrupted pull keeps its partial file: run the same command again to resume it.
    """
    _refuse_local_file(url)
    client = conn.server()
    with DownloadBar(model_id or url.rstrip("/").rsplit("/", 1)[-1]) as bar:
        try:
            if client is not None:
                model = _pull_server(client, url, model_id, sha256, bar)
            else:
                model = _pull_local(conn, url, model_id, sha256, bar)
                if as_json:
                    model = as_served(conn, [model], read_only=False)[0]
        except KeyboardInterrupt:
            bar.stop()
            warn("pull interrupted; run the same command again to resume")
            raise
    if as_json:
        print_json(model)
    else:
        click.echo(f"pulled {model['id']} ({human_bytes(_size(model))})")


# --------------------------------------------------------------------------- rm / start / stop


@models.command("rm")
@click.argument("model_ids", nargs=-1, required=True, metavar="ID...", callback=nonempty_param)
@json_option
@connection_options
def remove_model(model_ids: tuple[str, ...], as_json: bool, conn) -> None:
    """Delete models and their files (a file imported by reference is left alone).

    --json: an array of the API's answers, ``{"id", "object": "model", "deleted": true}`` each."""
    client = conn.server()

    def remove(model_id: str) -> dict[str, Any]:
        if client is not None:
            from jan.cli.client import ServerError, path_part

            try:  # (a folder without a model.json, which the list warns of, is removed too: no GET first)
                return client.call("DELETE", f"/v1/models/{path_part(model_id)}")
            except ServerError as exc:
                if exc.status != 404:
                    raise
                _server_model(client, model_id)  # the 404's words: "not found", with a "did you mean"
                raise
        else:
            from jan.store import InvalidIdError, StoredModelNotFoundError

            try:
                store = conn.store(create=False)  # (nothing to remove from a folder that is not there)
                if store is None:
                    raise StoredModelNotFoundError("model", model_id)
                models_store = store.models
                if not models_store.exists(model_id) and models_store.downloading(model_id):
                    raise CLIError(f"models/{model_id} is being downloaded now (by another `jan` process); stop that "
                                   "pull first")
                models_store.delete(model_id)
            except (StoredModelNotFoundError, InvalidIdError):
                raise _not_found(model_id, f"in {conn.data_folder}", meant_in_store(conn, model_id)) from None
            return {"id": model_id, "object": "model", "deleted": True}  # (the server's answer to the same DELETE)

    each_result(model_ids, remove, as_json, lambda model_id, _: f"removed {model_id}")


def _start_stop(conn, model_id: str, action: str, as_json: bool) -> None:
    from jan.cli.client import path_part

    client = conn.require_server(f"`jan models {action}`")
    _server_model(client, model_id)
    model = client.post(f"/v1/models/{path_part(model_id)}/{action}", timeout=600)
    print_result(as_json, model, f"{model_id}: {model.get('state', 'ok')}")


@models.command("start")
@click.argument("model_id", callback=nonempty_param)
@json_option
@connection_options
def start_model(model_id: str, as_json: bool, conn) -> None:
    """Load a model in the running server (--json: the server's model object)."""
    _start_stop(conn, model_id, "start", as_json)


@models.command("stop")
@click.argument("model_id", callback=nonempty_param)
@json_option
@connection_options
def stop_model(model_id: str, as_json: bool, conn) -> None:
    """Unload a model from the running server (--json: the server's model object)."""
    _start_stop(conn, model_id, "stop", as_json)
