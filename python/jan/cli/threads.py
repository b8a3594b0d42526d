"""``jan threads``: list, show, export and delete saved conversations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jan.cli.common import (
    CLIError,
    PathParam,
    RemoveAliasGroup,
    connection_options,
    each_result,
    echo_styled,
    human_time,
    json_option,
    meant_id,
    nonempty_param,
    print_json,
    print_table,
    warn_problems,
    Words,
    write_output_file,
)

ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}


@click.group(cls=RemoveAliasGroup)
def threads() -> None:
    """List, show, export and delete saved conversations."""


def fetch_thread(conn, thread_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    client = conn.server()
    if client is not None:
        from jan.cli.conversation import ServerThreads, list_messages

        thread, _ = ServerThreads(client).load(thread_id, messages=False)
        problems: list[dict[str, Any]] = []
        messages = list_messages(client, thread_id, problems)
        warn_problems(problems)  # a damaged line of the thread's messages: why a message is missing
        return thread, messages
    from jan.store import InvalidIdError, NotFoundError, StoreError

    store = conn.store(create=False)  # (only read: a folder that is not there holds no thread, and is not made)
    try:
        if store is None:
            raise NotFoundError("thread", thread_id)
        thread, messages = store.threads.get(thread_id), store.messages.list(thread_id).data
        # a damaged line the store skipped (and reported): why a message is missing, said as `threads list` says it
        warn_problems([p.to_dict() for p in store.problems if p.path.startswith(f"threads/{thread_id}/")])
        return _as_served(thread, messages)
    except (NotFoundError, InvalidIdError) as exc:
        if getattr(exc, "damaged", None):  # its thread.json is damaged: that, and where to mend it, not "not found"
            raise CLIError(f"{exc} (in {conn.data_folder})") from None
        ids = [t["id"] for t in store.threads.list().data] if store is not None else []
        raise CLIError(f"thread '{thread_id}' not found in {conn.data_folder}{meant_thread(thread_id, ids)} "
                       "(see `jan threads list`)") from None
    except StoreError as exc:
        raise CLIError(str(exc)) from None


def _as_served(thread: dict[str, Any], messages: list[dict[str, Any]]
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A thread and its messages from the data folder as a server's API shows them (``GET /v1/threads/{id}``, its
    messages with ``all=true``: OpenAI's statuses and optional fields), so `show --json` and `export --format json`
    give one shape with or without a server (the data folder's ``ready`` was a server's ``completed``)."""
    from jan.services.thread_turns import message_object, thread_object

    return thread_object(thread), [message_object(m, jan_view=True) for m in messages]


def damaged_on_server(exc, thread_id: str) -> bool:
    """Whether a server's 404 for ``thread_id`` says its thread.json is damaged (the store's "'<id>' is damaged:
    repair or remove ..."): those words, which say where to mend it, are the answer, not "not found"."""
    return exc.status == 404 and f"{thread_id!r} is damaged" in str(exc)


def meant_thread(thread_id: str, ids: list[str]) -> str:
    """:func:`jan.cli.common.meant_id` of a thread's id."""
    return meant_id(thread_id, ids, "thread_")


def server_threads(client, limit: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The server's threads, most recent first (``limit``: at least that many, where there are), and the damaged
    files it set aside."""
    data: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    after = None
    for _ in range(10_000):  # bounded: one page of 100 per round
        query = "?limit=100" + (f"&after={after}" if after else "")
        page = client.get(f"/v1/threads{query}") or {}
        data += page.get("data") or []
        problems = page.get("problems") or problems
        if not page.get("has_more") or not page.get("data") or (limit and len(data) >= limit):
            break
        after = page["data"][-1]["id"]
    return data, problems


#: What the MODEL column says of a thread whose runs take the server's default model (neither the thread nor its
#: assistant names one): the model a request that names none gets, which depends on what is loaded when it runs.
DEFAULT_MODEL_SHOWN = "(default)"


def _model_of(thread: dict[str, Any], assistant_models: dict[str, str] | None = None) -> str:
    """The model the thread's runs use, as a run picks it: the thread's own (``assistants[0].model.id``), else its
    assistant's ``model`` (``assistant_models``: assistant id -> model, ``"*"`` for any), else
    :data:`DEFAULT_MODEL_SHOWN`. Without ``assistant_models``, only the thread's own ("" when it names none)."""
    assistants = thread.get("assistants") or []
    entry = assistants[0] if assistants and isinstance(assistants[0], dict) else {}
    model = entry.get("model") or {}
    own = model.get("id", "") if isinstance(model, dict) else ""
    if own or assistant_models is None:
        return own if isinstance(own, str) else ""
    from jan.store.assistants import DEFAULT_ASSISTANT_ID  # (a run's assistant when the thread names none)

    chosen = assistant_models.get(entry.get("assistant_id") or DEFAULT_ASSISTANT_ID)
    return chosen if isinstance(chosen, str) and chosen not in ("", "*") else DEFAULT_MODEL_SHOWN


def _assistant_models(client, store) -> dict[str, str]:
    """Each assistant's ``model`` by its id (the server's, else the data folder's); {} where they cannot be read."""
    try:
        if client is not None:
            found: list[dict[str, Any]] = []
            after = None
            for _ in range(1_000):  # bounded: one page of 100 per round
                page = client.get("/v1/assistants?limit=100" + (f"&after={after}" if after else "")) or {}
                found += page.get("data") or []
                if not page.get("has_more") or not page.get("data"):
                    break
                after = page["data"][-1]["id"]
        else:
            found = store.assistants.list().data if store is not None else []
    except Exception:  # noqa: BLE001 - the column falls back to "(default)"; the listing itself still answers
        return {}
    return {a["id"]: a.get("model") for a in found if isinstance(a, dict) and isinstance(a.get("id"), str)}


#: Characters of a title `jan threads list` shows (a title can be any length; --json has it whole).
TITLE_WIDTH = 60


@threads.command("list")
@click.option("--limit", "-n", type=click.IntRange(1), default=None, help="Show only the most recent N.")
@json_option
@connection_options
def list_threads(limit: int | None, as_json: bool, conn) -> None:
    """List threads, most recently updated first."""
    client = conn.server()
    problems: list[dict[str, Any]] = []
    store = None
    if client is not None:
        data, problems = server_threads(client, limit)
    else:
        store = conn.store(create=False)  # (listing makes no folder: none there is no thread)
        from jan.services.thread_turns import thread_object

        data = [thread_object(t) for t in store.threads.list(limit=limit).data] if store is not None else []
        problems = [p.to_dict() for p in store.problems if p.path.startswith("threads/")] if store is not None else []
    warn_problems(problems)  # damaged files the store set aside: say why a conversation is missing
    data = data[:limit] if limit else data
    if as_json:
        print_json(data)
        return
    if not data:
        # damaged threads are threads still (left in place to mend): "no threads yet" would say there are none
        absent = conn.absent_note() if client is None else ""  # (a mistyped folder: "no threads yet" misled)
        click.echo(f"no thread can be read: {len(problems)} damaged file(s), named above" if problems
                   else f"no threads: {absent}: check the path" if absent
                   else "no threads yet: `jan chat` saves each conversation as one", err=True)
        return
    assistant_models = _assistant_models(client, store)
    rows = [[t["id"], t.get("title", ""), _model_of(t, assistant_models),
             human_time(t.get("updated") or t.get("created_at"))] for t in data]
    print_table(["ID", "TITLE", "MODEL", "UPDATED"], rows, max_widths={"TITLE": TITLE_WIDTH})


@threads.command("show")
@click.argument("thread_id", callback=nonempty_param)
@json_option
@connection_options
def show_thread(thread_id: str, as_json: bool, conn) -> None:
    """Print a thread's conversation."""
    thread, messages = fetch_thread(conn, thread_id)
    if as_json:
        print_json({"thread": thread, "messages": messages})
        return
    echo_styled(thread.get("title") or thread_id, bold=True)
    client = conn.server()
    model = _model_of(thread, _assistant_models(client, conn.store(create=False) if client is None else None))
    echo_styled(f"{thread_id} - {model} - {human_time(thread.get('created') or thread.get('created_at'))}", dim=True)
    instructions = _instructions(thread)
    if instructions:
        click.echo()
        echo_styled("System", bold=True)
        click.echo(instructions)
    for m in messages:
        shown = _shown(m)
        click.echo()
        echo_styled(shown.heading, bold=True)
        if shown.thinking:
            echo_styled(shown.thinking, dim=True)  # as `jan chat` shows it: dimmed, apart from the answer
        if shown.text:
            click.echo(shown.text)
        for call in shown.calls:
            click.echo(f"-> {call}")


@dataclass(frozen=True)
class _Shown:
    """What `show` and `export` tell of a message: its heading (role, the tool a result came from, a status that
    is not a whole one), the model's thinking, its text (an image as ``[image]``, a linked one as ``[image: URL]``, an
    attached document as ``[file: NAME]``) and the tool calls it made as
    ``name(arguments)``. Only the text was told, with any thinking glued to its start, and a turn that called tools
    showed as an empty answer, its calls nowhere."""

    heading: str
    thinking: str
    text: str
    calls: list[str]


def _shown(message: dict[str, Any]) -> _Shown:
    # (the services' readers of a stored message, as a run reads a thread; imported here: the other commands of
    # `jan threads` need none of them)
    from jan.services.thread_turns import stored_calls, stored_metadata
    from jan.services.tool_loop import reasoning_of, text_of

    metadata = stored_metadata(message)
    heading = ROLE_NAMES.get(message.get("role"), str(message.get("role")))
    if message.get("role") == "tool" and isinstance(metadata.get("name"), str):
        heading += f" ({metadata['name']})"
    parts = message.get("content") if isinstance(message.get("content"), list) else []
    # each image where the message holds it: a file or a data: URL as [image], a link the store kept as given with
    # its URL (what a run fetches; the Conversations API lists it so); then the documents attached, by name
    media = [_image_shown(p) for p in parts if isinstance(p, dict) and p.get("type") in ("image_file", "image_url")]
    media += [f"[file: {name}]" for name in _attached_names(message)]
    text = "\n".join(filter(None, [text_of(message), *media]))
    calls = []
    for call in stored_calls(metadata):  # (a hand edit's 5: none)
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            calls.append(f"{function['name']}({function.get('arguments') or ''})")
    return _Shown(heading + _status_note(message), reasoning_of(message), text, calls)


def _image_shown(part: dict[str, Any]) -> str:
    """``[image]`` for a stored image (a file, a ``data:`` URL), ``[image: URL]`` for a link."""
    from jan.services.thread_turns import part_field

    url = part_field(part, "image_url", "url") if part.get("type") == "image_url" else None
    return f"[image: {url}]" if isinstance(url, str) and url and url[:5].lower() != "data:" else "[image]"


def _attached_names(message: dict[str, Any]) -> list[str]:
    """The documents attached to a message, by the upload's name (else the thread file's or the upload's id: a
    server's listing leaves the thread file out)."""
    names = []
    attachments = message.get("attachments")
    for attachment in attachments if isinstance(attachments, list) else ():
        if not isinstance(attachment, dict):
            continue
        document = attachment.get("document") if isinstance(attachment.get("document"), dict) else {}
        name = next((v for v in (document.get("filename"), document.get("file_id"), attachment.get("file_id"))
                     if isinstance(v, str) and v), None)
        if name is not None:
            names.append(name)
    return names


def _status_note(message: dict[str, Any]) -> str:
    """What a message's status adds to its heading: nothing for a whole one. The data folder keeps Jan's statuses
    (``ready``, ``stopped``, ...), told as a server tells them (OpenAI's ``incomplete`` with its reason): a reply
    cut at -n showed as whole from the folder, "(incomplete: max_tokens)" from a server; a stopped one
    "(stopped)" and "(incomplete: run_cancelled)"."""
    status = message.get("status")
    if status in ("ready", "stopped", "error", "pending"):  # Jan's own (a server's are OpenAI's already)
        from jan.services.thread_turns import openai_status

        status, reason = openai_status(message)
    else:
        details = message.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
    if not status or status == "completed":
        return ""
    return f" ({status}: {reason})" if reason else f" ({status})"


def _instructions(thread: dict[str, Any]) -> str | None:
    assistants = thread.get("assistants") or []
    return assistants[0].get("instructions") if assistants and isinstance(assistants[0], dict) else None


def to_markdown(thread: dict[str, Any], messages: list[dict[str, Any]],
                assistant_models: dict[str, str] | None = None) -> str:
    lines = [f"# {thread.get('title') or thread['id']}", ""]
    details = [f"thread `{thread['id']}`"]
    model = _model_of(thread, assistant_models)
    if model:
        details.append(f"model `{model}`" if model != DEFAULT_MODEL_SHOWN else f"model {model}")
    created = human_time(thread.get("created") or thread.get("created_at"))
    if created:
        details.append(created)
    lines += ["_" + ", ".join(details) + "_", ""]
    instructions = _instructions(thread)
    if instructions:
        lines += ["## System", "", instructions, ""]
    for m in messages:
        shown = _shown(m)
        lines += [f"## {shown.heading}", ""]
        if shown.thinking:  # a quote, apart from the answer
            lines += ["> " + line if line else ">" for line in shown.thinking.splitlines()] + [""]
        if shown.text:
            lines += [shown.text, ""]
        for call in shown.calls:
            lines += [f"Calls `{call}`", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


@threads.command("export")
@click.argument("thread_id", callback=nonempty_param)
@click.option("--format", "-f", "fmt", type=Words(["markdown", "json"], {"md": "markdown"}), default="markdown", show_default=True)
@click.option("--output", "-o", type=PathParam(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write to FILE instead of stdout ('-': stdout, as for `jan files download`).")
@connection_options
def export_thread(thread_id: str, fmt: str, output: Path | None, conn) -> None:
    """Export a thread as Markdown or JSON (the thread and its messages as the API shows them, with or without a
    server)."""
    thread, messages = fetch_thread(conn, thread_id)
    if fmt == "json":
        text = json.dumps({"thread": thread, "messages": messages}, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    else:
        client = conn.server()
        text = to_markdown(thread, messages,
                           _assistant_models(client, conn.store(create=False) if client is None else None))
    if output is None or str(output) == "-":  # '-' was written as a file named '-'
        click.echo(text, nl=False)
        return
    write_output_file(output, lambda put: put(text.encode("utf-8")), data_folder=conn.data_folder)
    click.echo(f"exported {thread_id} to {output}", err=True)


@threads.command("rm")
@click.argument("thread_ids", nargs=-1, required=True, metavar="ID...", callback=nonempty_param)
@json_option
@connection_options
def remove_thread(thread_ids: tuple[str, ...], as_json: bool, conn) -> None:
    """Delete threads and their messages.

    --json: an array of the API's answers, ``{"id", "object": "thread.deleted", "deleted": true}`` each."""
    client = conn.server()

    def remove(thread_id: str) -> dict[str, Any]:
        if client is not None:
            from jan.cli.client import ServerError, path_part
            from jan.cli.conversation import ServerThreads

            try:
                return client.call("DELETE", f"/v1/threads/{path_part(thread_id)}")
            except ServerError as exc:
                if exc.status != 404 and exc.code != "invalid_id":
                    raise
                ServerThreads(client).load(thread_id, messages=False)  # the not-found words, with a "did you mean"
                raise
        else:
            from jan.store import InvalidIdError, NotFoundError, StoreError

            store = conn.store(create=False)  # (nothing to remove from a folder that is not there; none is made)
            try:
                if store is None:
                    raise NotFoundError("thread", thread_id)
                store.threads.delete(thread_id)
            except (NotFoundError, InvalidIdError):
                ids = [t["id"] for t in store.threads.list().data] if store is not None else []
                raise CLIError(f"thread '{thread_id}' not found in {conn.data_folder}{meant_thread(thread_id, ids)} "
                               "(see `jan threads list`)") from None
            except StoreError as exc:
                raise CLIError(str(exc)) from None
            return {"id": thread_id, "object": "thread.deleted", "deleted": True}  # (the server's answer to it)

    each_result(thread_ids, remove, as_json, lambda thread_id, _: f"removed {thread_id}")
