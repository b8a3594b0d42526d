"""Stored Responses, kept as Jan threads and messages.

A response that is stored (``store: true``, OpenAI's default) is written twice, each copy
with one job:

* its conversation goes into a Jan thread through the conversation store extension, so a
  conversation an agent started shows up in the web page like any other: each input turn
  and the answer are thread messages (thinking as a ``reasoning`` content part before the text,
  as runs save it; tool calls and the tool call a tool message answers in ``metadata``; an MCP item the
  server made, kept as it is in a message of its own, ``metadata.item``: an ``mcp_call`` read again as
  the call and its result, :func:`thread_turns`);
* a small index file ``<data>/responses/<response_id>.json`` holds the ``response`` object,
  its input items (for ``input_items``), the thread and the thread's last message of that
  response: ``previous_response_id`` continues the thread from that message.

Continuing from a response that is not the thread's latest forks the conversation into a
new thread (the earlier messages copied), so no two conversations ever share a thread.
A conversation of OpenAI's Conversations API is a thread too (a ``conv_`` id:
:mod:`jan.server.dialects.conversations_store`): a response made in it (``conversation``) reads the whole thread
(:meth:`~jan.server.dialects.conversations_store.ConversationStore.history`) and adds its input and its answer
together once it ends
(:meth:`ResponsesStore.complete_in_conversation`), under the thread's lock, as every append here.
Index files are written atomically under their per-file lock (the data folder's, as the store's own
files); a damaged one is set aside and reads as missing. :meth:`ResponsesStore.entries` and
:meth:`ResponsesStore.forget` let the index follow its threads (an index file whose thread was deleted
is removed, see :mod:`jan.server.dialects.anthropic_threads`). Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jan.core import ConversationalExtension, NotFoundError
from jan.core.fs import atomic_write_json, loads_json, set_aside
from jan.errors import not_found_message
from jan.image_types import b64encode_text
from jan.store._trash import sweep_temp_files
from jan.store._util import field_type_error
from jan.store.context import LOCK_DIR_NAME
from jan.core.locks import AsyncFileLocks
from jan.store.errors import LockTimeoutError
from jan.store.locks import LockManager
from jan.services.kept_items import (CALL_ID_KEY, JOINS_KEY, MANY_MESSAGES, RESULT_KEY, KeptEntry,  # noqa: F401
                                     heavy_history, history_turns, kept_entry,
                                     kept_item, kept_item_turns, mcp_call_error_text, mcp_call_turns,
                                     result_content)
# (a thread message's turn: the one reading of a thread every path takes, with a prompt's rules)
from jan.services.thread_turns import (TOOL_IMAGES_KEY, FetchImage, attached_documents,  # noqa: F401
                                       fetch_linked_images, from_thread_message, part_field, prompt_entries, thread_history, thread_parts)
from jan.services.types import ChatMessage, DocumentPart, ImagePart, Part, TextPart
from jan.services.untrusted import UntrustedTextPart, text_part_dict
from jan.local_files import FileTooLargeError, read_regular_file

log = logging.getLogger("jan.server")

__all__ = ["CONVERSATION_PREFIX", "CONVERSATION_TITLE", "STOPPED_ERROR", "UNFINISHED", "NotLatestError",
           "ResponsesStore", "StoredResponse", "stopped_response",
           "from_thread_message", "is_conversation_thread", "output_item_ids", "to_thread_message"]

TITLE_CHARS = 60

#: The statuses of a response still being generated.
UNFINISHED = ("queued", "in_progress")
#: The error of a response a server stopped (crashed, killed) while generating it: how it reads, and is saved.
STOPPED_ERROR = {"code": "server_error", "message": "The server stopped while generating this response."}


def stopped_response(response: dict[str, Any], error: dict[str, Any] | None = None) -> dict[str, Any]:
    """``response`` (left unfinished by a server that stopped, or whose end could not be saved) as it ended:
    ``failed``, with ``error`` (``{"code", "message"}``: why its end was not saved), else :data:`STOPPED_ERROR`."""
    return {**response, "status": "failed", "error": dict(error or STOPPED_ERROR)}


@dataclass(frozen=True)
class StoredResponse:
    """One index entry: the ``response`` object, its input items, its thread and the thread's
    last message written for it (``None`` while a background response has no answer yet)."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]] = field(default_factory=list)
    thread_id: str | None = None
    last_message_id: str | None = None
    #: Of a response made in a conversation: the ids of the conversation's items it read before its input (its
    #: ``input_items`` list them first, OpenAI's: "items from this conversation are prepended to input_items").
    history: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.response["id"]


# -- ChatMessage <-> Jan thread message ------------------------------------------------------------
@dataclass(frozen=True)
class KeptTurn:
    """A turn of a conversation with how its items are said, beyond what the chat turn tells:
    ``item_ids`` (kept as the message's ``metadata.item_ids``: the items' ids, and what the turn cannot tell, a
    developer message's role, which calls are custom tools', a custom tool's output), ``files`` (the ``input_file``
    part each document's text came from, and the ``file_id`` reference of each image sent as an upload, by its index
    in the turn's content: listed as sent, read as its text or image).
    ``message`` ``None``: an ``item`` that is no turn of the chat (a web search call), kept as it was sent in a
    message the model never reads."""

    message: ChatMessage | None
    item_ids: dict[str, Any] | None = None
    files: dict[int, dict[str, Any]] | None = None
    item: dict[str, Any] | None = None
    #: Of an ``mcp_call`` ``item``: made in the same model turn as the ``mcp_call`` kept right before it (parallel
    #: calls), and its result as the model read it where it held images (jan.services.kept_items.KeptEntry).
    joins: bool = False
    result: tuple[Part, ...] = ()
    #: Of an ``mcp_call`` ``item``: the id the model's call had (the item's is jan's), which some templates show.
    call_id: str | None = None


def _data_url(part: ImagePart) -> str:
    return f"data:{part.mime_type};base64,{b64encode_text(part.data)}"


def to_thread_message(message: ChatMessage | KeptTurn, response_id: str | None = None) -> dict[str, Any]:
    """A chat turn (or a :class:`KeptTurn`) as a Jan message (``role``, ``content`` parts, ``metadata``);
    ``response_id``: the response that wrote it (none for an item added through the Conversations API)."""
    kept = message if isinstance(message, KeptTurn) else KeptTurn(message)
    if kept.message is None:
        # (an empty reply is in no run's prompt either: the web page's continuation skips it as the store does)
        # (the call's turn and its images beside the item, never in it: the item is listed as it was made)
        return {"role": "assistant", "content": [],
                "metadata": {**({"response_id": response_id} if response_id else {}), "item": kept.item or {},
                             **({JOINS_KEY: True} if kept.joins else {}),
                             **({CALL_ID_KEY: kept.call_id} if kept.call_id else {}),
                             **({RESULT_KEY: result_content(kept.result)} if kept.result else {})}}
    message = kept.message
    # thinking is a ``reasoning`` part before the text, as runs save it: the web page shows it the same way
    content: list[dict[str, Any]] = [{"type": "reasoning", "text": message.reasoning}] if message.reasoning else []
    for j, part in enumerate(message.content):
        if isinstance(part, TextPart):  # (a document's text marked: a later turn reads it as untrusted too)
            content.append(text_part_dict(part))
            if isinstance(part, UntrustedTextPart) and kept.files and j in kept.files:
                content[-1]["file"] = kept.files[j]
        elif isinstance(part, ImagePart):
            content.append({"type": "image_url", "image_url": {"url": _data_url(part)}})
            if kept.files and j in kept.files:  # (the upload it was sent as: listed with it, never read again)
                content[-1]["file"] = kept.files[j]
    metadata: dict[str, Any] = {"response_id": response_id} if response_id else {}
    if message.tool_calls:
        metadata["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                  for c in message.tool_calls]
    if message.tool_call_id:
        metadata["tool_call_id"] = message.tool_call_id
    from jan.services.tool_images import ToolImagePart

    if message.role == "tool" and any(isinstance(p, ToolImagePart) for p in message.content):
        # the images of a tool jan ran (an Anthropic thread's MCP result): read back as such (from_thread_message),
        # which a model without a projector reads as their notes, never a 400 for an image nobody chose to send
        metadata[TOOL_IMAGES_KEY] = True
    if message.name and message.role == "tool":
        metadata["name"] = message.name
    if kept.item_ids:
        metadata["item_ids"] = kept.item_ids
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": content, "metadata": metadata}


#: The id prefix of each kind of item (OpenAI's), for an item given an id anew.
ITEM_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs",
                 "custom_tool_call": "ctc", "custom_tool_call_output": "ctco", "web_search_call": "ws",
                 "mcp_list_tools": "mcpl", "mcp_call": "mcp", "mcp_approval_request": "mcpr",
                 "mcp_approval_response": "mcpa"}


def thread_turns(message: dict[str, Any], images: Mapping[str, ImagePart] | None = None) -> list[ChatMessage]:
    """The chat turns a Jan message stands for: its turn (:func:`from_thread_message`), or those of the item it
    keeps (:func:`kept_item_turns`), or none."""
    return history_turns(thread_entries(message, images))


def thread_entries(message: dict[str, Any],
                   images: Mapping[str, ImagePart] | None = None) -> list[ChatMessage | KeptEntry]:
    """What a Jan message stands for in a conversation's history (:func:`jan.services.kept_items.history_turns`
    reads them): its turn, the item it keeps, or nothing (:func:`jan.services.thread_turns.prompt_entries`, a run's
    reading too)."""
    return prompt_entries(message, images)


def _title(messages: list[ChatMessage | KeptTurn]) -> str | None:
    for message in messages:
        message = message.message if isinstance(message, KeptTurn) else message
        if message is not None and message.role == "user" and message.text.strip():
            text = " ".join(message.text.split())
            return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
    return None


#: The id prefix of a conversation (OpenAI's Conversations API): a conversation is a Jan thread with such an id.
CONVERSATION_PREFIX = "conv_"


#: The title of a conversation's thread until a user turn gives it one.
CONVERSATION_TITLE = "New conversation"


def is_conversation_thread(thread_id: str | None) -> bool:
    """Whether the thread is a conversation's (its id is one: :data:`CONVERSATION_PREFIX`)."""
    return isinstance(thread_id, str) and thread_id.startswith(CONVERSATION_PREFIX)


def output_item_ids(output: Any) -> dict[str, Any]:
    """The ids of a response's ``output`` items, as the thread message of its answer keeps them in a conversation
    (``metadata.item_ids``: its ``reasoning``, its ``message``, its calls by call id): the items a response adds to
    its conversation are its output items, with their ids (OpenAI's), so an id read from the response names the
    conversation's item too (:func:`~jan.server.dialects.conversations.message_items` reads them; checked there)."""
    ids: dict[str, Any] = {"calls": {}}
    for item in output if isinstance(output, list) else ():
        kind, item_id = (item.get("type"), item.get("id")) if isinstance(item, dict) else (None, None)
        if not isinstance(item_id, str):
            continue
        if kind in ("reasoning", "message"):
            ids.setdefault(kind, item_id)  # (several are one turn's: the first names it)
        elif kind in ("function_call", "custom_tool_call") and isinstance(item.get("call_id"), str):
            ids["calls"].setdefault(item["call_id"], item_id)
            if kind == "custom_tool_call":  # (the turn keeps it as a call with JSON arguments: said as it was)
                ids.setdefault("custom", []).append(item["call_id"])
    return ids


def _reid(turn: KeptTurn, used: set[str], remap: dict[str, str]) -> KeptTurn:
    """``turn`` with each of its item ids that is in ``used`` given anew (``remap``: old -> new), and its ids added
    to ``used``: a conversation's items are told apart by id (retrieve, delete, a cursor). An id sent that cannot
    name an item in a path (``valid_item_id``) is given anew too."""
    # (the wire formats load on first use: responses_run)
    from jan.server.dialects.conversations import valid_item_id
    from jan.server.dialects.responses import new_id

    def fresh(item_id: Any, prefix: str) -> Any:
        if not isinstance(item_id, str):
            return item_id
        if item_id in used or not valid_item_id(item_id):
            remap[item_id] = item_id = new_id(prefix)
        used.add(item_id)
        return item_id

    ids = dict(turn.item_ids or {})
    for key, prefix in (("reasoning", "rs"), ("message", "msg"), ("output", "fco")):
        if key in ids:
            ids[key] = fresh(ids[key], prefix)
    if isinstance(ids.get("calls"), dict):
        ids["calls"] = {call_id: fresh(item_id, "fc") for call_id, item_id in ids["calls"].items()}
    item = ({**turn.item, "id": fresh(turn.item.get("id"), ITEM_PREFIXES.get(turn.item.get("type"), "ws"))}
            if turn.item else turn.item)
    return replace(turn, item_ids=ids or turn.item_ids, item=item)


def _cut_off(response: dict[str, Any]) -> bool:
    """Whether the response's answer was cut off: cancelled, or ended ``incomplete`` (its token limit, the context);
    its output items are then ``incomplete``, and so are the conversation's items it adds (OpenAI's are the same
    items), which the thread keeps as Jan's ``stopped``."""
    return response.get("status") in ("cancelled", "incomplete")


def _cut_by(response: dict[str, Any]) -> str | None:
    """The finish reason of a response's answer that its token limit (``length``) or a remote model's filter
    (``content_filter``) cut off, kept in the thread message's ``metadata.finish_reason`` as a run's reply keeps it,
    so the thread tells why it ends there (it told every cut answer ``run_cancelled``); None for a cancelled one."""
    reason = (response.get("incomplete_details") or {}).get("reason")
    return {"max_output_tokens": "length", "content_filter": "content_filter"}.get(reason)


#: The fields of a stored response (or Anthropic message) that readers take for granted, and their JSON types
#: (:func:`jan.store._util.field_type_error`; absent or null is fine): a hand edit's ``"output": 5`` or
#: ``"incomplete_details": "x"`` was a 500 on every read of the response and of those that continue it.
_RESPONSE_TYPES = {"object": "str", "status": "str", "model": "str", "created_at": "number", "output": "list",
                   "usage": "dict", "error": "dict", "incomplete_details": "dict", "previous_response_id": "str",
                   "background": "bool", "store": "bool", "metadata": "dict",
                   "tools": "list", "content": "list", "conversation": "dict", "text": "dict", "reasoning": "dict"}


def _output_error(output: Any) -> str | None:
    """What in a stored response's ``output`` is not a list of item objects whose ``content`` (where they have one)
    is a list of part objects, in words; ``None`` for a usable one."""
    for index, item in enumerate(output or ()):
        if not isinstance(item, dict):
            return f"output[{index}] is not an object"
        content = item.get("content")
        if content is not None and (not isinstance(content, list) or not all(isinstance(p, dict) for p in content)):
            return f"output[{index}].content is not a list of objects"
    return None


# -- the store ---------------------------------------------------------------------------------------
#: The lock files of threads' appends (:meth:`ResponsesStore.locked`), under the data folder: their own, so that the
#: store's per-file locks, which the appends take, never share a file with them.
APPEND_LOCK_DIR = Path(LOCK_DIR_NAME) / "appends"
#: Seconds an append waits for another's on the same thread (sharing its lock file) before ``busy``.
APPEND_WAIT = 60.0


def _busy(path: Path) -> LockTimeoutError:
    return LockTimeoutError(f"timed out waiting for {path} (another request, of this jan or another sharing the "
                            "data folder, is adding to this conversation)")


class NotLatestError(Exception):
    """The response to continue is no longer its thread's latest (see ``ResponsesStore.begin(allow_fork=False)``)."""


#: What a stored response's file that cannot be one raises as it is read: it does not parse, its shape is wrong, or
#: it is larger than any jan writes (:data:`jan.local_files.MAX_DATA_FILE_BYTES`: a 500 on every GET of it, where
#: every other damage was the 404 of a response set aside).
_DAMAGE = (ValueError, KeyError, TypeError, FileTooLargeError)


class ResponsesStore:
    """Stored responses in ``folder`` (the index) and the conversation store (the threads).

    ``conversations`` gives the enabled conversation store extension when asked (it may be
    swapped while the server runs). Ids reaching here are checked by the caller (``resp_``
    and letters/digits only). ``get``/``delete`` raise :class:`jan.core.NotFoundError` for an
    unknown id.
    """

    def __init__(self, folder: Path, conversations: Callable[[], ConversationalExtension], *,
                 fetch_image: FetchImage | None = None):
        self.folder = Path(folder)
        self._conversations = conversations
        #: How a prompt of a thread reads an image one of its messages links to (the server's --allow-media-from
        #: fetcher, as a run's: :func:`jan.services.thread_turns.fetch_linked_images`); None: such a link is refused.
        self.fetch_image = fetch_image
        # the data folder's per-file locks (the store's own), keyed by the path in the data folder
        self._locks: LockManager | None = None
        # Deciding "append or fork" and appending (reading a conversation's item ids and keeping an id, adding a
        # response's turns together) must not interleave for one thread: neither in this process nor in another
        # sharing the data folder (each server's lock was its own, and two appending to one conversation at once
        # interleaved their turns and kept one item id twice). A fixed set of lock files, so nothing is kept per
        # thread ever stored to (a stored response is a thread of its own: one more each, for the server's life).
        self._appends = AsyncFileLocks(self.folder.parent / APPEND_LOCK_DIR, wait=APPEND_WAIT, busy=_busy)

    @property
    def conversations(self) -> ConversationalExtension:
        return self._conversations()

    def _path(self, response_id: str) -> Path:
        return self.folder / f"{response_id}.json"

    def _file_lock(self, response_id: str):
        """The per-file lock of an index file (other threads and processes on the data folder)."""
        if self._locks is None:
            self._locks = LockManager(self.folder.parent / LOCK_DIR_NAME)
        return self._locks.hold(f"{self.folder.name}/{response_id}.json")

    # -- index files ---------------------------------------------------------------------------------
    @staticmethod
    def _parse(raw: bytes, response_id: str) -> StoredResponse:
        """An index file's entry; ``ValueError`` for one that is not one, however it parses: valid JSON of another
        shape (a list, a response that is not an object or not this one, input items that are not objects with
        ids, a thread id that is not a string) is as damaged as a torn file, and was a 500 on every read. (The
        entry's own fields are its writer's: Anthropic's held replies have no status.)"""
        data = loads_json(raw)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        response, items = data.get("response"), data.get("input_items") or []
        if not isinstance(response, dict) or response.get("id") != response_id:
            raise ValueError("its response is not an object with this response's id")
        error = field_type_error(response, _RESPONSE_TYPES) or _output_error(response.get("output"))
        if error is not None:
            raise ValueError(f"its response's {error}")
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
            raise ValueError("its input_items are not a list of items with ids")
        for key in ("thread_id", "last_message_id"):
            if not isinstance(data.get(key), (str, type(None))):
                raise ValueError(f"its {key} is not a string")
        history = data.get("history") or []
        if not isinstance(history, list) or not all(isinstance(i, str) for i in history):
            raise ValueError("its history is not a list of item ids")
        return StoredResponse(response=response, input_items=list(items),
                              thread_id=data.get("thread_id"), last_message_id=data.get("last_message_id"),
                              history=list(history))

    def _read(self, response_id: str) -> StoredResponse:
        """The stored response; :class:`NotFoundError` when there is none, or its file is damaged (it does not parse,
        its shape is no stored response's, or it is larger than any jan writes: :data:`_DAMAGE`), which is then set
        aside as ``<id>.json.corrupt-<n>`` (the error names it)."""
        path = self._path(response_id)
        missing = NotFoundError(not_found_message("response", response_id))
        try:
            return self._parse(read_regular_file(path), response_id)
        except FileNotFoundError:
            raise missing from None
        except _DAMAGE:
            pass
        with self._file_lock(response_id):  # the damage confirmed under the lock before the file is set aside
            try:
                return self._parse(read_regular_file(path), response_id)
            except FileNotFoundError:
                raise missing from None
            except _DAMAGE as exc:
                why = exc.strerror if isinstance(exc, FileTooLargeError) else exc
                moved = set_aside(path)
                log.warning("stored response %s is damaged (%s); set aside as %s", path, why, moved)
        if moved is not None:  # (said where it went, as a damaged document's 404 is, not only "not found")
            missing = NotFoundError(f"{missing}: its file was damaged ({why}) and is set aside as {moved}",
                                    resource="response", id=response_id)
        raise missing

    def _write(self, stored: StoredResponse) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._file_lock(stored.id):
            atomic_write_json(self._path(stored.id), {"response": stored.response, "input_items": stored.input_items,
                                                      "thread_id": stored.thread_id,
                                                      "last_message_id": stored.last_message_id,
                                                      **({"history": stored.history} if stored.history else {})})

    def _entries(self, is_id: Callable[[str], bool]) -> list[StoredResponse]:
        # leftovers of interrupted writes first: a writer that is still alive keeps its temporary file
        sweep_temp_files(self.folder, depth=1)
        try:
            names = sorted(p.stem for p in self.folder.glob("*.json"))
        except OSError:
            return []
        out = []
        for name in names:
            if is_id(name):
                try:
                    out.append(self._read(name))
                except NotFoundError:  # gone meanwhile, or damaged (set aside)
                    continue
                except OSError as exc:  # one that cannot be read (larger than any jan writes, a pipe) is left out
                    log.warning("stored response %s cannot be read (%s); left out", name, exc.strerror or exc)
        return out

    def _end_unfinished(self, is_live: Callable[[str], bool]) -> list[str]:
        try:
            names = sorted(p.stem for p in self.folder.glob("resp_*.json"))
        except OSError:
            return []
        ended = []
        for name in names:
            try:
                if self._read_status(name) not in UNFINISHED:
                    continue  # (most: read without the lock, as any read)
                with self._file_lock(name):
                    # under the lock, which the generating server's final save takes, and before the lease it
                    # drops only once that save is done: an unfinished record whose lease nobody holds is one a
                    # server left when it stopped, never one a live server (of any process) is ending now
                    stored = self._parse(read_regular_file(self._path(name)), name)
                    if stored.response.get("status") not in UNFINISHED or is_live(name):
                        continue
                    self._write(replace(stored, response=stopped_response(stored.response)))
            except (FileNotFoundError, *_DAMAGE):
                continue  # gone meanwhile, or damaged: a read sets it aside
            except OSError as exc:  # (a read-only folder: it reads failed all the same, and the next start tries again)
                log.warning("could not end the stored response %s a stopped server left: %s", name, exc)
                continue
            ended.append(name)
        return ended

    def _read_status(self, response_id: str) -> Any:
        return self._parse(read_regular_file(self._path(response_id)), response_id).response.get("status")

    async def end_unfinished(self, is_live: Callable[[str], bool]) -> list[str]:
        """Save each stored response left ``queued``/``in_progress`` by a server that stopped (crashed, killed) as it
        ended (:func:`stopped_response`), atomically under its per-file lock; ``is_live(id)``: whether a live process
        (this one or another sharing the data folder) holds its lease, which leaves it alone. The ids it ended.
        Called at start (reads never rewrite a record: they answer one left so as failed all the same)."""
        return await asyncio.to_thread(self._end_unfinished, is_live)

    async def entries(self, is_id: Callable[[str], bool]) -> list[StoredResponse]:
        """Every readable index entry whose id ``is_id`` accepts (a damaged file is set aside), after removing the
        temporary files interrupted writes left (the store's rule: a live writer's are kept)."""
        return await asyncio.to_thread(self._entries, is_id)

    def _forget(self, response_id: str, thread_id: str | None) -> bool:
        with self._file_lock(response_id):
            try:
                data = loads_json(read_regular_file(self._path(response_id)))
            except FileNotFoundError:
                return False
            except ValueError:
                data = None  # damaged since it was read: left for the next read to set aside
            if not isinstance(data, dict) or data.get("thread_id") != thread_id:
                return False
            self._path(response_id).unlink()
        return True

    async def forget(self, response_id: str, thread_id: str | None) -> bool:
        """Remove the index file ``response_id`` if it still names the thread ``thread_id`` (checked under its
        lock, so a file written again meanwhile stays); whether it was removed. The thread is left as it is."""
        return await asyncio.to_thread(self._forget, response_id, thread_id)

    async def get(self, response_id: str) -> StoredResponse:
        return await asyncio.to_thread(self._read, response_id)

    async def put(self, stored: StoredResponse) -> None:
        await asyncio.to_thread(self._write, stored)

    async def delete(self, response_id: str) -> None:
        """Forget the response; its conversation stays a thread in Jan (deleted there, if wanted)."""
        def remove() -> None:
            try:
                with self._file_lock(response_id):
                    self._path(response_id).unlink()
            except FileNotFoundError:
                raise NotFoundError(not_found_message("response", response_id)) from None
        await asyncio.to_thread(remove)

    async def find_item(self, item_id: str, start: StoredResponse | None,
                        is_id: Callable[[str], bool]) -> dict[str, Any] | None:
        """An input or output item of a stored response, by its id (what an ``item_reference`` names); ``None`` for
        none. The conversation ``start`` continues is looked in first (it, and the responses it continues), then
        every stored response whose id ``is_id`` accepts."""
        def holds(stored: StoredResponse) -> dict[str, Any] | None:
            output = stored.response.get("output")
            for item in [*stored.input_items, *(output if isinstance(output, list) else ())]:
                if isinstance(item, dict) and item.get("id") == item_id:
                    return item
            return None

        seen: set[str] = set()
        current = start
        while current is not None and current.id not in seen:
            seen.add(current.id)
            if (found := holds(current)) is not None:
                return found
            earlier = current.response.get("previous_response_id")
            current = None
            if isinstance(earlier, str) and is_id(earlier):
                with contextlib.suppress(NotFoundError):
                    current = await self.get(earlier)
        for stored in await self.entries(lambda name: is_id(name) and name not in seen):
            if (found := holds(stored)) is not None:
                return found
        return None

    # -- conversations -------------------------------------------------------------------------------
    async def _thread_messages(self, stored: StoredResponse) -> list[dict[str, Any]]:
        """The thread's messages up to and including the response's last one."""
        if stored.thread_id is None or stored.last_message_id is None:
            raise NotFoundError(f"The response '{stored.id}' has no stored conversation to continue")
        try:
            messages = await self.conversations.list_messages(stored.thread_id, order="asc")
        except NotFoundError:
            raise NotFoundError(f"The conversation of response '{stored.id}' was deleted") from None
        ids = [m.get("id") for m in messages]
        if stored.last_message_id not in ids:
            raise NotFoundError(f"The conversation of response '{stored.id}' no longer holds its messages")
        return messages[: ids.index(stored.last_message_id) + 1]

    async def images(self, thread_id: str, messages: list[dict[str, Any]]) -> dict[str, ImagePart]:
        """The images the ``image_file`` parts of the thread's ``messages`` name, by file id (one gone is left out)."""
        images: dict[str, ImagePart] = {}
        for message in messages:
            for part in message.get("content") or () if isinstance(message.get("content"), list) else ():
                file_id = part_field(part, "image_file", "file_id") if isinstance(part, dict) else None
                if isinstance(file_id, str) and file_id not in images:
                    with contextlib.suppress(NotFoundError):  # a file gone: the turn goes without it
                        images[file_id] = ImagePart(*await self.conversations.read_file(thread_id, file_id))
        return images

    async def files(self, thread_id: str, messages: list[dict[str, Any]]) -> dict[str, ImagePart | DocumentPart]:
        """:meth:`images`, and the documents attached to ``messages`` (the text the server read from each upload,
        kept as a thread file), by file id: what a prompt of the thread reads (one gone is left out); and the images
        its messages link to, by URL, fetched as a run fetches them (:attr:`fetch_image`; one that cannot be read is
        a :class:`jan.MediaError` naming the message and part, never left out)."""
        files: dict[str, ImagePart | DocumentPart] = {**await self.images(thread_id, messages)}
        files.update(await fetch_linked_images(messages, self.fetch_image))
        for message in messages:
            for file_id, _ in attached_documents(message):
                if file_id not in files:
                    with contextlib.suppress(NotFoundError):
                        files[file_id] = DocumentPart((await self.conversations.read_file(thread_id, file_id))[0],
                                                      "text/plain")
        return files

    async def turns(self, thread_id: str, messages: list[dict[str, Any]]) -> list[ChatMessage]:
        """The chat turns the thread's ``messages`` stand for (:func:`jan.services.thread_turns.thread_history`, a
        run's reading too: none for one that is pending, failed, interrupted, of an unknown role; an MCP call's call
        and result), its files (images, attached documents) read from the thread's."""
        files = await self.files(thread_id, messages)

        def read() -> list[ChatMessage]:
            # (one pass over all: the thinking before an MCP call is a message of its own, read as the call's)
            return thread_history(messages, files)
        # (an MCP result's images kept with its call are decoded in the read, and a long thread's turns are many:
        # not on the event loop)
        return await asyncio.to_thread(read) if heavy_history(messages) else read()

    async def history(self, stored: StoredResponse) -> list[ChatMessage]:
        """The conversation a ``previous_response_id`` continues, as chat turns."""
        messages = await self._thread_messages(stored)
        return await self.turns(stored.thread_id, messages)

    def _lock(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._appends.hold(f"threads/{thread_id}")

    def locked(self, thread_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """The lock a thread's appends hold (a response's turns, a conversation's items): none interleave, in this
        process or another sharing the data folder. One at a time: never held while another thread's is taken."""
        return self._lock(thread_id)

    async def append(self, thread_id: str, messages: list[ChatMessage | KeptTurn], response_id: str | None = None, *,
                     last_stopped: bool = False, last_cut_by: str | None = None,
                     taken: Callable[[str], Awaitable[set[str]]] | None = None,
                     ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Append ``messages`` to the thread under its lock, all or none (:meth:`_append`); the messages as
        stored, and the item ids given anew. ``last_stopped``: the last one is an answer cut off (Jan's
        ``stopped``), by ``last_cut_by`` (its finish reason, :func:`_cut_by`) if not by a cancel. ``taken(thread_id)``: the item ids the thread's items have (a conversation's): a kept id
        among them, or twice among ``messages``, is given anew (an item has one id, wherever it is listed), read
        under the lock, so that two appends at once cannot both keep one."""
        async with self._lock(thread_id):
            remap: dict[str, str] = {}
            if taken is not None:
                used = await taken(thread_id)
                messages = [_reid(m, used, remap) if isinstance(m, KeptTurn) else m for m in messages]
            written = await self._append_messages(thread_id, messages, response_id, last_stopped=last_stopped,
                                                  last_cut_by=last_cut_by)
            if is_conversation_thread(thread_id) and (title := _title(messages)):
                # a conversation made without a user turn takes its title from its first (the web page lists it so)
                with contextlib.suppress(NotFoundError):
                    if (await self.conversations.get_thread(thread_id)).get("title") == CONVERSATION_TITLE:
                        await self.conversations.update_thread(thread_id, {"title": title})
            return written, remap

    async def _append(self, thread_id: str, messages: list[ChatMessage], response_id: str) -> str | None:
        written = await self._append_messages(thread_id, messages, response_id)
        return written[-1]["id"] if written else None

    async def _append_messages(self, thread_id: str, messages: list[ChatMessage | KeptTurn], response_id: str | None,
                               *, last_stopped: bool = False, last_cut_by: str | None = None
                               ) -> list[dict[str, Any]]:
        """Append the turns; all or none: one the store refuses (an image it cannot keep) takes those written
        before it out again, so the conversation does not keep half of a response that never was."""
        written: list[dict[str, Any]] = []
        try:
            for k, message in enumerate(messages):
                data = to_thread_message(message, response_id)
                if k == len(messages) - 1 and last_stopped:
                    data["status"] = "stopped"  # Jan's word for an answer cut off
                    if last_cut_by:
                        data["metadata"]["finish_reason"] = last_cut_by
                written.append(await self.conversations.create_message(thread_id, data))
        except Exception:
            await self._take_out(thread_id, written)
            raise
        return written

    async def _take_out(self, thread_id: str, written: list[dict[str, Any]]) -> None:
        """Take the messages just appended out again, the last first (each then the file's last line: cut off,
        which a full disk allows)."""
        for message in reversed(written):
            with contextlib.suppress(Exception):  # (the refusal is what the caller must hear)
                await self.conversations.delete_message(thread_id, message["id"])

    async def _discard(self, thread_id: str) -> None:
        """Delete a thread made for a response that could not be stored, so the thread list shows no empty
        conversation for it."""
        with contextlib.suppress(Exception):  # (the refusal is what the caller must hear)
            await self.conversations.delete_thread(thread_id)

    async def begin(self, response: dict[str, Any], input_items: list[dict[str, Any]], inputs: list[ChatMessage],
                    previous: StoredResponse | None, *, allow_fork: bool = True,
                    source: str = "responses", conversation: str | None = None,
                    history: list[str] | None = None) -> StoredResponse:
        """Store a response that starts now: its input turns join the previous response's
        thread (or a fork of it, or a new thread, its ``metadata.source`` ``source``) and the index
        names them. ``allow_fork=False``: a previous response that is no longer its thread's latest raises
        :class:`NotLatestError` instead (nothing is written). ``conversation``: the thread of the conversation the
        response belongs to; only the index is written now, the turns join it when the response ends
        (:meth:`complete_in_conversation`), so two responses running at once on it never interleave theirs;
        ``history``: the ids of the conversation's items it read (its ``input_items`` list them first)."""
        response_id = response["id"]
        if conversation is not None:
            stored = StoredResponse(response, input_items, conversation, None, history=list(history or ()))
            await self.put(stored)
            return stored
        if previous is None:
            # Jan's default assistant with the response's model: the web page continues it with that model.
            assistant = {"assistant_id": "jan", "assistant_name": "Jan"}
            if response.get("model"):
                assistant["model"] = {"id": response["model"]}
            thread = await self.conversations.create_thread(
                {"title": _title(inputs) or "New response", "assistants": [assistant],
                 "metadata": {"source": source}})
            thread_id = thread["id"]
            try:
                async with self._lock(thread_id):
                    last = await self._append(thread_id, inputs, response_id)
            except Exception:
                await self._discard(thread_id)
                raise
        else:
            earlier = await self._thread_messages(previous)
            async with self._lock(previous.thread_id):
                latest = await self.conversations.list_messages(previous.thread_id, order="desc", limit=1)
                # (a conversation's thread takes only the turns of responses made in it: continuing one of those by
                # previous_response_id forks, as OpenAI's response continued that way is not in the conversation)
                if (latest and latest[0].get("id") == previous.last_message_id
                        and not is_conversation_thread(previous.thread_id)):
                    thread_id = previous.thread_id
                    written = await self._append_messages(thread_id, inputs, response_id)
                    try:
                        return await self._index(response, input_items, thread_id,
                                                 written[-1]["id"] if written else previous.last_message_id)
                    except Exception:
                        # an index the disk refused (full) stores no turn: the thread is left as it was, still
                        # going on from ``previous`` (kept, its turn made the previous response no longer latest)
                        await self._take_out(thread_id, written)
                        raise
            if not allow_fork:
                raise NotLatestError(f"The conversation of response '{previous.id}' went on after it")
            thread = await self.conversations.get_thread(previous.thread_id)
            fork = await self.conversations.create_thread(
                {"title": thread.get("title"), "assistants": thread.get("assistants"), "metadata": {**(thread.get("metadata") or {}),
                                                            "forked_from": previous.thread_id}})
            thread_id = fork["id"]
            try:
                async with self._lock(thread_id):
                    for message in earlier:
                        await self.conversations.create_message(thread_id, {
                            k: v for k, v in message.items() if k in ("role", "content", "metadata", "status")})
                    last = await self._append(thread_id, inputs, response_id)
                    if last is None:
                        last = (await self.conversations.list_messages(thread_id, order="desc", limit=1))[0]["id"]
            except Exception:
                await self._discard(thread_id)
                raise
        try:
            return await self._index(response, input_items, thread_id, last)
        except Exception:  # (a thread the response's index could not name is no conversation of anyone's)
            await self._discard(thread_id)
            raise

    async def complete_in_conversation(self, thread_id: str, stored: StoredResponse | None, response: dict[str, Any],
                                       inputs: list[ChatMessage | KeptTurn], answer: list[KeptTurn], *,
                                       taken: Callable[[str], Awaitable[set[str]]] | None = None,
                                       ) -> StoredResponse | None:
        """A response made in the conversation whose thread is ``thread_id`` ended (``response``: its final
        object): its input turns and its ``answer`` (:func:`~jan.server.dialects.responses.output_turns`: the
        model's turns with the ids of the response's output items, and its MCP items as they are) join the thread
        together, under the thread's lock (OpenAI adds a response's items to its conversation once it ends; a
        failed one adds none). ``stored``: its index entry (``store: true``), which then names the
        thread's last message, for a later ``previous_response_id``, and lists its input items with the ids the
        conversation gave them (``taken``: :meth:`append`)."""
        last, remap = None, {}
        if response.get("status") != "failed":
            try:
                written, remap = await self.append(thread_id, [*inputs, *answer], response["id"],
                                                   last_stopped=bool(answer) and _cut_off(response),
                                                   last_cut_by=_cut_by(response), taken=taken)
                last = written[-1]["id"] if written else None
            except NotFoundError:  # (deleted while the response ran: the answer was given, there is nowhere to add it)
                log.warning("response %s ended after its conversation %s was deleted; its items were not added",
                            response["id"], thread_id)
            # Any other failure (a full disk, a damaged thread file, a lock held too long, a store extension's own
            # error) is raised: the response fails with it (ResponseRun), never completed over a conversation its
            # items never joined (append wrote all of them or none)
        if stored is None:
            return None
        items = [{**i, "id": remap.get(i["id"], i["id"])} for i in stored.input_items] if remap else stored.input_items
        done = replace(stored, response=response, last_message_id=last, input_items=items)
        await self.put(done)
        return done

    async def _index(self, response, input_items, thread_id, last) -> StoredResponse:
        stored = StoredResponse(response, input_items, thread_id, last)
        await self.put(stored)
        return stored

    async def complete(self, stored: StoredResponse, response: dict[str, Any],
                       answer: list[KeptTurn]) -> StoredResponse:
        """The response finished (``response`` is its final object): its ``answer`` joins the thread (the model's
        turns and its MCP items: :func:`~jan.server.dialects.responses.output_turns`, read again by a
        ``previous_response_id`` that continues it)."""
        last = stored.last_message_id
        if answer and stored.thread_id is not None:
            async with self._lock(stored.thread_id):
                # (the last is the answer cut off, Jan's ``stopped``, where it was)
                written = await self._append_messages(stored.thread_id, answer, stored.id,
                                                      last_stopped=_cut_off(response), last_cut_by=_cut_by(response))
            last = written[-1]["id"] if written else last
        done = replace(stored, response=response, last_message_id=last)
        await self.put(done)
        return done
