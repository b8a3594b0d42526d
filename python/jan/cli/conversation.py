"""Where `jan chat` saves a conversation: the server's /v1/threads API, or the data folder.

Both write Jan's shapes: a thread (title, assistants[{assistant_id, assistant_name,
model, instructions}], metadata) and its messages (role, text content, metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jan.cli.common import CLIError, Connection, error_text, os_error_message, warn, warn_problems

ASSISTANT = {"assistant_id": "jan", "assistant_name": "Jan"}


def thread_assistants(model_id: str, system: str | None) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {**ASSISTANT, "model": {"id": model_id}}
    if system:
        entry["instructions"] = system
    return [entry]


class LocalThreads:
    """Threads saved in this process through the conversational extension (as the server saves them)."""

    where = "data folder"

    def __init__(self, runtime):
        self.runtime = runtime
        self.store = runtime.services.runs.conversations()

    def _call(self, coro):
        from jan.core import NotFoundError
        from jan.errors import JanError

        try:
            return self.runtime.call(coro)
        except NotFoundError as exc:
            raise CLIError(str(exc)) from None
        except OSError as exc:  # a read-only data folder, a full disk: the path and the reason, not "[Errno 30]"
            raise CLIError(os_error_message(exc)) from None
        except (JanError, ValueError) as exc:
            raise CLIError(error_text(exc)) from None

    def create(self, title: str, assistants: list[dict[str, Any]], metadata: dict[str, Any]) -> str:
        return self._call(self.store.create_thread({"title": title, "assistants": assistants,
                                                    "metadata": metadata}))["id"]

    def add(self, thread_id: str, role: str, text: str, *, status: str = "ready",
            metadata: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"role": role, "content": text, "status": status, "metadata": metadata or {}}
        if role == "assistant":
            message["assistant_id"] = "jan"
        # through the run service, as the server adds a message: refused while a run (of a server that
        # shares the data folder, or one left waiting for approval) holds the thread
        self._call(self.runtime.services.runs.add_message(thread_id, message))

    def update(self, thread_id: str, **fields: Any) -> None:
        self._call(self.store.update_thread(thread_id, fields))

    def load(self, thread_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from jan.core import NotFoundError
        from jan.store import InvalidIdError

        try:
            thread = self.runtime.call(self.store.get_thread(thread_id))
        except (NotFoundError, InvalidIdError) as exc:  # an id no thread can have is none of them, as `jan threads show` says
            if getattr(exc, "damaged", None):  # its thread.json is damaged: say so and where, not "not found"
                raise CLIError(f"{exc} (in {self.runtime.manager.data_folder})") from None
            from jan.cli.threads import meant_thread

            ids = [t["id"] for t in self._call(self.store.list_threads()) if isinstance(t, dict) and "id" in t]
            raise CLIError(f"thread '{thread_id}' not found in {self.runtime.manager.data_folder}"
                           f"{meant_thread(thread_id, ids)} (see `jan threads list`)") from None
        messages = self._call(self.store.list_messages(thread_id, order="asc"))
        # a damaged line the store skipped: why a message is missing from the resumed chat, said as `jan threads
        # show` says it (the chat said "resumed thread ... (0 messages)" alone, the rest of it lost unsaid)
        warn_problems(self.store.problems(f"threads/{thread_id}/"))
        return thread, messages

    def path(self, thread_id: str) -> str:
        return str(self.runtime.manager.data_folder / "threads" / thread_id)

    def read_file(self, thread_id: str, file_id: str) -> tuple[bytes, str]:
        """A file saved with the thread's messages (an image, an attached document's text): (bytes, MIME type)."""
        return self._call(self.store.read_file(thread_id, file_id))


class ServerThreads:
    """Threads saved through a running server's ``/v1/threads`` API.

    ``fallback`` (``() -> LocalThreads | None``): where to write once the server no longer takes connections
    (killed mid-answer): the data folder it worked on, when that is on this machine. What the user saw of a turn
    (their message, the part of the answer that came) is then kept there, for the next `jan chat --thread` to go
    on from, rather than lost with the server."""

    where = "server"

    def __init__(self, client, fallback: Callable[[], "LocalThreads | None"] | None = None):
        self.client = client
        self._fallback = fallback
        self._local: LocalThreads | None = None

    def _written(self, write: Callable[[Any], Any], on_server: Callable[[], Any]) -> Any:
        """``on_server()``; once the server refuses connections (:class:`~jan.cli.client.ServerUnreachableError`:
        nothing of the request reached it), ``write(local)`` in the data folder the fallback gives, from then on."""
        from jan.cli.client import ServerUnreachableError

        if self._local is not None:
            return write(self._local)
        try:
            return on_server()
        except ServerUnreachableError:
            local = self._fallback() if self._fallback is not None else None
            if local is None:
                raise
            self._local = local
            self.where = local.where
            _saving_instead(self.client, local)
            return write(local)

    def create(self, title: str, assistants: list[dict[str, Any]], metadata: dict[str, Any]) -> str:
        body = {"title": title, "assistants": assistants, "metadata": metadata}
        return self._written(lambda local: local.create(title, assistants, metadata),
                             lambda: self.client.post("/v1/threads", body)["id"])

    def add(self, thread_id: str, role: str, text: str, *, status: str = "ready",
            metadata: dict[str, Any] | None = None) -> None:
        from jan.cli.client import path_part

        body: dict[str, Any] = {"role": role, "content": text, "metadata": metadata or {}, "status": status}
        if role == "assistant":
            body["assistant_id"] = "jan"
        self._written(lambda local: local.add(thread_id, role, text, status=status, metadata=metadata),
                      lambda: self.client.post(f"/v1/threads/{path_part(thread_id)}/messages", body))

    def update(self, thread_id: str, **fields: Any) -> None:
        self._written(lambda local: local.update(thread_id, **fields), lambda: self._update(thread_id, fields))

    def _update(self, thread_id: str, fields: dict[str, Any]) -> None:
        from jan.cli.client import ServerError, path_part

        path = f"/v1/threads/{path_part(thread_id)}"
        try:
            self.client.call("PATCH", path, fields)
        except ServerError as exc:
            if exc.status not in (404, 405):
                raise
            self.client.post(path, fields)  # OpenAI's "modify thread" is a POST

    def load(self, thread_id: str, *, messages: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The thread and (unless ``messages`` is false: then ``[]``) its messages."""
        from jan.cli.client import ServerError, path_part

        tid = path_part(thread_id)
        try:
            thread = self.client.get(f"/v1/threads/{tid}")
        except ServerError as exc:
            # the server's 400 for an id no thread can have (`../x`) is, to someone naming a thread, "not found": as
            # the same command says it without a server
            from jan.cli.threads import damaged_on_server, meant_thread, server_threads

            if (exc.status == 404 or exc.code == "invalid_id") and not damaged_on_server(exc, thread_id):
                ids = [t["id"] for t in server_threads(self.client)[0] if isinstance(t, dict) and "id" in t]
                raise CLIError(f"thread '{thread_id}' not found on the server at {self.client.base_url}"
                               f"{meant_thread(thread_id, ids)} (see `jan threads list`)") from None
            raise
        if not messages:
            return thread, []
        problems: list[dict[str, Any]] = []
        stored = list_messages(self.client, thread_id, problems)
        warn_problems(problems)  # (as the data folder's own: a damaged line, why a message is missing)
        return thread, stored

    def path(self, thread_id: str) -> str:
        if self._local is not None:
            return self._local.path(thread_id)
        return f"{self.client.base_url}/v1/threads/{thread_id}"

    def read_file(self, thread_id: str, file_id: str) -> tuple[bytes, str]:
        """A file saved with the thread's messages (an image, an attached document's text): (bytes, MIME type)."""
        from jan.cli.client import path_part

        return self.client.get_bytes(f"/v1/threads/{path_part(thread_id)}/files/{path_part(file_id)}")


def list_messages(client, thread_id: str, problems: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every message of a thread from the server, oldest first (following the cursor); ``problems``, when given,
    gets the server's damaged lines of the thread's files (its ``problems``: why a message is missing)."""
    from jan.cli.client import path_part

    messages: list[dict[str, Any]] = []
    after = None
    for _ in range(10_000):  # bounded: 100 per page
        # all: the tool results and calling turns too, which OpenAI's list leaves to the run steps
        query = "?order=asc&limit=100&all=true" + (f"&after={path_part(after)}" if after else "")
        page = client.get(f"/v1/threads/{path_part(thread_id)}/messages{query}") or {}
        messages += page.get("data") or []
        if problems is not None:
            problems[:] = page.get("problems") or problems
        if not page.get("has_more") or not page.get("data"):
            break
        after = page["data"][-1]["id"]
    return messages


def open_threads(conn: Connection):
    """The server's thread API when a server runs and has one, else the data folder."""
    client = conn.server()
    if client is not None:
        from jan.cli.client import ServerError, ServerUnreachableError

        try:
            client.get("/v1/threads?limit=1")
            return ServerThreads(client, fallback=lambda: _server_folder_threads(conn))
        except ServerUnreachableError:  # gone since the command began (killed mid-answer): its folder, if known
            local = _server_folder_threads(conn)
            if local is None:
                raise
            _saving_instead(client, local)
            return local
        except ServerError as exc:
            if exc.status not in (404, 405):
                raise
            warn(f"the server at {client.base_url} has no /v1/threads; saving to {conn.data_folder} instead")
    return LocalThreads(conn.runtime())


def _saving_instead(client, local: LocalThreads) -> None:
    warn(f"the server at {client.base_url} is gone; saving to {local.runtime.manager.data_folder}")


def _server_folder_threads(conn: Connection) -> LocalThreads | None:
    """The threads of the data folder the (now gone) server worked on, in this process; None when that folder is
    not known here (a server on another machine, or one that did not say)."""
    if conn.server_folder() is None:
        return None
    return LocalThreads(conn.runtime())


def history_of(messages: list[dict[str, Any]], read_file=None) -> list[dict[str, Any]]:
    """Stored messages as chat messages for the model, exactly as a run of the thread reads them
    (:func:`jan.services.tool_loop.chat_messages`: their text, earlier thinking as ``reasoning_content``, tool calls
    with their results, no pending or failed turns), with the thread's files sent inline: with ``read_file``
    (``file_id -> (bytes, mime)``, the thread's files) a user turn's images become ``data:`` URL parts in stored
    order and the documents attached to a turn of any role (the text the server read from the upload, kept with the
    thread) OpenAI ``file`` parts before them, titled with the upload's name; without it, only the text."""
    import base64

    from jan.services.tool_loop import chat_messages
    from jan.services.untrusted import UNTRUSTED_KEY

    def data_url(file_id: str) -> str:
        data, mime = read_file(file_id)
        mime = mime.split(";")[0].strip() or "application/octet-stream"  # (a server's Content-Type may add a charset)
        return f"data:{mime};base64," + base64.b64encode(data).decode()

    def inline(part: dict[str, Any]) -> dict[str, Any] | None:
        if part.get("type") == "image_file":
            if read_file is None:
                return None
            return {"type": "image_url", "image_url": {"url": data_url(part["image_file"]["file_id"])}}
        if part.get("type") == "document":
            if read_file is None:
                return None
            doc = part["document"]
            file: dict[str, Any] = {"file_data": data_url(doc["file_id"])}
            if doc.get("title"):
                file["filename"] = doc["title"]
            return {"type": "file", "file": file}
        return part

    out: list[dict[str, Any]] = []
    for entry in chat_messages(messages, ""):
        content = entry.get("content")
        if isinstance(content, list):
            parts = [p for p in (inline(part) for part in content) if p is not None]
            # (nothing but the turn's own text left: the plain string; third-party text keeps its marked part)
            if all(p.get("type") == "text" and UNTRUSTED_KEY not in p for p in parts):
                entry = {**entry, "content": "".join(p["text"] for p in parts)}
            else:
                entry = {**entry, "content": parts}
        out.append(entry)
    return out
