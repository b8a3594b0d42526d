"""Anthropic's message threads (beta ``message-threads-2026-08-12``): conversations the server holds.

``thread: {"type": "create"}`` on ``POST /v1/messages``: the server keeps the conversation (the
request's ``system`` and ``messages``, its ``tools``, and the reply) under the reply's ``id``.
``thread: {"type": "continue", "previous_message_id": ...}``: the request sends only the new turn's
messages (none, to resume the held reply as a prefill, what a ``pause_turn`` asks for) and no
``system`` or ``tools`` (refused: the thread's are used); the reply is the thread's new head.
Threads are linear: a reply can be continued once.

Storage is the Responses store's (:class:`~jan.server.dialects.responses_store.ResponsesStore`):
each conversation is a Jan thread (``metadata.source`` ``anthropic``; it shows in the web page like
any other, the system prompt as its first message), and ``<data>/message_threads/<msg_id>.json``
(written atomically under its per-file lock, set aside when damaged) holds the reply and names its Jan thread
and that thread's last message of the turn. The thread's first reply (its root) also keeps the ``system`` and
``tools``; later ones name the root (``root``), so an agent's large tool list is stored once, and a
lost root loses the thread.

Tools change mid-thread with ``tool_addition`` / ``tool_removal`` blocks in a ``system``-role message (the SDK tool
runner's ``add_tools()`` / ``remove_tools()``): the turn offers the thread's tools with them applied in message order
(:func:`jan.server.dialects.anthropic.tool_set`), and the thread keeps the changed set for its later turns. A reply
whose turn changed it keeps the set (``tools``, and ``removed_tools`` that a ``tool_reference`` may offer again);
the later ones name that reply (``tools_at``); a reply naming neither has the root's.

The MCP connector's servers (``mcp_servers``) and their toolsets' configs are per request, sent with each turn, as
in Anthropic's API; what the thread's messages chose of their tools (a ``tool_reference`` loading a deferred tool, an
``mcp_tool_listing``, a tool change naming a server's tools: :class:`~jan.server.dialects.anthropic.McpChoices`) is
what a replay would send again, so each reply keeps the thread's choices so far (``mcp``) for the turns after it.

An index file lives as long as its Jan thread (Anthropic's threads expire; jan's never do, and nothing here
invents an expiry): deleting the Jan thread (``DELETE /v1/threads/{id}``, the web page, anything that deletes
through the conversation store, which announces it with :class:`~jan.core.ThreadDeleted`) removes its index files,
and at server start a sweep removes the ones whose thread is gone (deleted by another process, or while jan was
stopped), whose root or tool set is lost (damaged and set aside: the thread can no longer go on), and the temporary
files interrupted writes left. A damaged file set aside is kept, as the store keeps its own.

A turn is written once its reply is whole, never before: a failed, cancelled or
disconnected turn leaves nothing (the SDK replays such a turn), and a crash while one is written
leaves at most messages no index names, which makes the previous reply read as already continued
(the SDK replays then as well). The held history is exactly what a full replay would send: the new
turn's messages as the dialect converts them, and the reply as its client received it, converted back
the way a replay converts it.

Errors carry ``error.details.error_code`` as the SDK reads them (it replays the whole conversation on
the first three): ``thread_not_found`` (404), ``thread_already_continued``,
``thread_continue_in_flight``, ``thread_unsupported_request`` (400; no conversation store enabled).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jan.json_text import loads_json
from jan.core import ConversationalExtension, ExtensionLoadingError, ExtensionNotFoundError, NotFoundError, ThreadDeleted
from jan.server.body_size import body_step
from jan.server.dialect_errors import anthropic_error_shape, anthropic_error_type
from jan.services.thread_turns import FetchImage
from jan.server.dialects.responses_store import NotLatestError, ResponsesStore, StoredResponse
from jan.store.leases import LEASE_DIR_NAME, Leases
from jan.server.errors import APIError, save_failed_error
from jan.services import types as typed
from jan.services.documents import read_documents

if TYPE_CHECKING:
    from jan.server.dialects import anthropic as wire

    Prompt = wire.MessagesRequest | wire.CountTokensRequest

# The wire format (pydantic models of Anthropic's Messages API) is imported where a turn is read, not at the top:
# the server builds these threads at start (their sweep), long before a first Anthropic request, if ever
# (resident memory at start, issue 16).

log = logging.getLogger("jan.server")

__all__ = ["MESSAGE_THREADS_BETA", "MessageThreads", "ThreadError", "Turn", "error_shape"]

MESSAGE_THREADS_BETA = "message-threads-2026-08-12"
#: An id that can name an index file: what jan hands out (``msg_`` and hex) and Anthropic's own shape.
_MESSAGE_ID = re.compile(r"msg_[A-Za-z0-9]{1,100}")
Event = tuple[str, dict[str, Any]]


# -- errors -------------------------------------------------------------------------------------------
class ThreadError(APIError):
    """A thread refusal: Anthropic's error with ``details`` (``error_code`` and its fields)."""

    def __init__(self, status: int, message: str, error_code: str, **details: Any):
        super().__init__(status, message, type=anthropic_error_type(status), param="thread", code=error_code)
        self.details = {"error_code": error_code, **details}


#: What is on disk of a turn whose store failed: nothing (ResponsesStore.begin writes its thread, messages and index
#: whole, or takes them out again).
TURN_NOT_KEPT = "the turn was not kept: its thread is as it was before this request"

#: Anthropic's error body for an error, with ``error.details`` for a thread refusal.
error_shape = anthropic_error_shape


def _not_found(message_id: str) -> ThreadError:
    return ThreadError(404, f"No thread holds the message '{message_id}'; send the whole conversation with "
                            'thread: {"type": "create"}', "thread_not_found")


def _already_continued(message_id: str) -> ThreadError:
    return ThreadError(400, f"The message '{message_id}' was already continued (a thread goes on from its latest "
                            "reply only); continue from the thread's latest reply, or send the whole conversation "
                            'with thread: {"type": "create"}', "thread_already_continued")


def _in_flight(message_id: str) -> ThreadError:
    return ThreadError(400, f"Another request is continuing from '{message_id}'; wait for its reply and continue from "
                            'that, or send the whole conversation with thread: {"type": "create"}',
                       "thread_continue_in_flight")


def _unsupported(reason: str) -> ThreadError:
    return ThreadError(400, f"This server cannot hold threads: {reason}; send the whole conversation without "
                            "`thread`", "thread_unsupported_request")


# -- one turn -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Turn:
    """One ``/v1/messages`` request as the chat path answers it: ``chat_request`` (with a ``continue``: the
    held conversation, then the new turn). :meth:`commit` (a whole answer) or :meth:`stream` (events) store
    a threaded turn once its reply is whole; for a request without ``thread`` both pass the answer on."""

    chat_request: typed.ChatRequest
    threads: MessageThreads | None = None
    inputs: tuple[typed.ChatMessage, ...] = ()
    previous: StoredResponse | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: A ``continue``'s MCP choices of the thread's earlier turns (:class:`~jan.server.dialects.anthropic.McpChoices`:
    #: what a replay's messages would carry), for the turn's ``mcp_servers``; None for no thread's.
    mcp_held: Any = None
    #: The names the turn's MCP servers' tools are offered by, by (server, tool): its reply's calls are held so.
    mcp_names: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    async def read_documents(self) -> None:
        """The turn's documents (PDFs, text files) as the text the model reads, in the request and in the new
        messages a thread holds (a later turn reads the text, not the file again). Raises
        :class:`jan.DocumentError` naming the typed message and part."""
        read = await read_documents(self.chat_request)
        if read is not self.chat_request:  # (the same messages, one for one: the new ones are the last)
            self.inputs = read.messages[len(read.messages) - len(self.inputs):]
            self.chat_request = read

    async def commit(self, message: dict[str, Any]) -> dict[str, Any]:
        """Store the turn with ``message`` (the ``message`` object the client gets) as its reply; returns it.
        A turn answered whole must be held, or its client told it was not (a create answered 200 with no thread
        stored had its next ``continue`` refused ``thread_not_found``), as a stored Responses response that could
        not be saved fails: any failure to store it raises an :class:`~jan.server.errors.APIError`
        (:func:`~jan.server.errors.save_failed_error`: a disk that refused it 507 ``insufficient_storage``...; a
        damaged thread file 500 ``data_folder_damaged``; a lock held too long 503 ``busy``; a store extension's own
        error 500 ``not_saved``), and a thread that went on meanwhile 400 ``thread_already_continued``. Nothing of
        the turn stays (the store writes it whole or takes it out), and the error says so."""
        if self.threads is not None:
            try:
                # not cut in half by a client that leaves meanwhile: the turn is stored whole or not at all
                await asyncio.shield(self.threads.save(self, message))
            except NotLatestError:  # the conversation went on meanwhile (the web page): this reply starts nothing
                log.warning("message %s not held: its thread went on while it was generated", message.get("id"))
                previous = self.previous.id if self.previous is not None else message.get("id")
                # (400 and the code of a continue refused as it came: the SDK answers it by sending the whole
                # conversation again, as it does a thread it cannot find, which a 200 here left its next continue)
                raise ThreadError(400, f"The thread of '{previous}' went on while this reply was generated (another "
                                       f"client continued it): {TURN_NOT_KEPT}; continue from the thread's latest "
                                       'reply, or send the whole conversation with thread: {"type": "create"}',
                                  "thread_already_continued") from None
            except Exception as exc:
                raise save_failed_error(exc, "the turn", TURN_NOT_KEPT) from exc
        return message

    async def stream(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """``events`` passed on; a threaded turn is stored just before ``message_stop`` (so a client that
        continues as soon as it has the whole reply finds it). A stream that ends before then stores nothing."""
        if self.threads is None:
            async for event in events:
                yield event
            return
        snapshot = _Snapshot()
        async with contextlib.aclosing(events) as source:
            async for name, data in source:
                if name == "message_stop" and snapshot.message is not None:
                    await self.commit(snapshot.message)
                else:
                    snapshot.add(name, data)
                yield name, data


class _Snapshot:
    """A streamed reply folded back into the ``message`` object, as the client's SDK folds it."""

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self._json: dict[int, list[str]] = {}

    def add(self, name: str, data: dict[str, Any]) -> None:
        if name == "message_start":
            self.message = copy.deepcopy(data["message"])
            return
        if self.message is None:
            return
        content = self.message["content"]
        if name == "content_block_start":
            content.append(copy.deepcopy(data["content_block"]))
        elif name == "content_block_delta" and 0 <= data["index"] < len(content):
            block, delta = content[data["index"]], data["delta"]
            kind = delta.get("type")
            if kind == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif kind == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif kind == "signature_delta":
                block["signature"] = delta["signature"]
            elif kind == "input_json_delta":
                self._json.setdefault(data["index"], []).append(delta["partial_json"])
        elif name == "content_block_stop" and data["index"] in self._json:
            content[data["index"]]["input"] = _tool_input("".join(self._json.pop(data["index"])))
        elif name == "message_delta":
            self.message.update(data.get("delta") or {})
            self.message["usage"] = {**self.message.get("usage", {}), **(data.get("usage") or {})}


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = loads_json(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _reply(message: dict[str, Any], names: dict[tuple[str, str], str] | None = None) -> list[typed.ChatMessage]:
    """The reply as chat turns, converted as a replay converts it (the client sends its content back): one, or with
    the MCP connector's calls in it (``mcp_tool_use`` / ``mcp_tool_result``) the calling turns, their results and
    the turns going on, as the model read them (``names``: the name each server's tool was offered by, by
    ``(server, tool)``, as a replay's calls are named: jan.server.dialects.anthropic_mcp.offer)."""
    from jan.server.dialects import anthropic as wire

    param = wire.MessageParam.model_validate({"role": "assistant", "content": message["content"]})
    turns = wire._assistant_messages(param.content)
    used = {block.id: names[block.server_name, block.name] for block in param.content
            if isinstance(block, wire.McpToolUseBlock) and (block.server_name, block.name) in (names or {})}
    return [dataclasses.replace(turn, tool_calls=tuple(dataclasses.replace(c, name=used.get(c.id, c.name))
                                                       for c in turn.tool_calls)) if turn.tool_calls
            else dataclasses.replace(turn, name=used[turn.tool_call_id]) if turn.tool_call_id in used else turn
            for turn in turns]


def _tool_fields(tools: wire.ToolSet) -> dict[str, Any]:
    """A thread's tool set as its index file keeps it."""
    fields: dict[str, Any] = {"tools": None if tools.tools is None else [t.model_dump(exclude_none=True)
                                                                         for t in tools.tools]}
    if tools.removed:
        fields["removed_tools"] = [t.model_dump(exclude_none=True) for t in tools.removed]
    return fields


def _mcp_fields(choices: Any) -> dict[str, Any]:
    """A reply's MCP choices (the thread's, its turn's included: :class:`~jan.server.dialects.anthropic.McpChoices`)
    as its index file keeps them; none kept where there are none."""
    return {"mcp": choices.dump()} if choices else {}


def _create_only_fields(body: Prompt) -> None:
    from jan.server.dialects import anthropic as wire

    for name in ("system", "tools"):
        value = getattr(body, name)
        if name == "tools" and value is not None and all(isinstance(t, wire.McpToolset) for t in value):
            continue  # (an mcp_toolset configures the turn's mcp_servers, sent with each turn: the thread keeps none)
        if value is not None:
            how = ("; or send tool_addition / tool_removal blocks in a system message" if name == "tools"
                   else "; or send a system-role message in messages")
            raise APIError(400, f"{name}: not allowed on a thread's `continue`: the thread keeps the {name} it was "
                                f"created with (start a new thread to change it{how})", param=name)


# -- the threads ----------------------------------------------------------------------------------------
class MessageThreads:
    """The held threads: index files in ``folder``, conversations in the conversation store
    (``conversations()``; it may be disabled or swapped while the server runs)."""

    def __init__(self, folder: Path, conversations: Callable[[], ConversationalExtension], *,
                 fetch_image: FetchImage | None = None):
        self.store = ResponsesStore(folder, conversations, fetch_image=fetch_image)
        # replies a request is continuing from right now (threads are linear: one at a time): this process's, and
        # a lease on each (``continuing_<id>``) that other processes sharing the data folder see as well
        self._continuing: set[str] = set()
        #: The continues whose lease is being let go (its file removed in a worker thread), by the reply's id: a
        #: continue of it waits for that rather than being told it is in flight.
        self._letting_go: dict[str, asyncio.Future] = {}
        self._leases = Leases(Path(folder).parent / LEASE_DIR_NAME)
        # the index files of each Jan thread (what the sweep found, and what this process wrote since)
        self._by_thread: dict[str | None, set[str]] = {}

    # -- the index follows its threads -------------------------------------------------------------------
    async def sweep(self) -> list[str]:
        """At server start: remove the index files whose Jan thread is gone (when a conversation store is enabled
        to tell), or whose root or tool set is lost, and the temporary files interrupted writes left; remember the
        others' threads (:meth:`thread_deleted`). Returns the ids removed."""
        entries = await self.store.entries(_MESSAGE_ID.fullmatch)
        gone: set[str | None] = {None}  # an index naming no thread is no thread
        try:
            conversations: ConversationalExtension | None = self.store.conversations
        except ExtensionNotFoundError:
            conversations = None  # nothing tells which threads are gone: they all stay
        threads = {e.thread_id for e in entries if e.thread_id is not None} if conversations is not None else set()
        for thread_id in threads:
            try:
                await conversations.get_thread(thread_id)
            except NotFoundError:
                gone.add(thread_id)
            except Exception:  # unreadable now: kept
                log.exception("could not look up thread %s of held messages", thread_id)
        kept = {e.id for e in entries if e.thread_id not in gone}
        removed, self._by_thread = [], {}
        for entry in entries:
            lost = entry.thread_id in gone or any(
                entry.response.get(key) is not None and entry.response.get(key) not in kept
                for key in ("root", "tools_at"))
            if not lost:
                self._by_thread.setdefault(entry.thread_id, set()).add(entry.id)
            elif await self.store.forget(entry.id, entry.thread_id):
                removed.append(entry.id)
        if removed:
            log.info("removed %d held message(s) whose thread is gone", len(removed))
        return removed

    async def thread_deleted(self, event: ThreadDeleted) -> None:
        """A Jan thread was deleted: its index files go too (each checked again under its lock)."""
        for message_id in sorted(self._by_thread.pop(event.thread_id, ())):
            await self.store.forget(message_id, event.thread_id)

    def _check_store(self) -> None:
        try:
            _ = self.store.conversations
        except ExtensionLoadingError:
            raise  # on its way: a 503 to retry, not a server that cannot hold threads
        except ExtensionNotFoundError:
            raise _unsupported("no conversation store is enabled (enable 'conversational')") from None

    async def _held(self, message_id: str, *, latest: bool) -> _Held:
        """The held reply ``message_id``, its thread's create-only fields and its conversation up to it
        (``latest``: it must be its thread's head)."""
        if not _MESSAGE_ID.fullmatch(message_id):
            raise _not_found(message_id)
        try:
            held = await self.store.get(message_id)
            root = await self._named(held, "root", held)
            # the thread's tool set: this reply's (its turn changed it), the one it names, or the root's
            tools = held if "tools" in held.response else await self._named(held, "tools_at", root)
            history = await self.store.history(held)
            if latest:
                newest = await self.store.conversations.list_messages(held.thread_id, order="desc", limit=1)
                if not newest or newest[0].get("id") != held.last_message_id:
                    raise _already_continued(message_id)
        except NotFoundError:
            raise _not_found(message_id) from None
        return _Held(held, root, tools, history)

    async def _named(self, held: StoredResponse, key: str, default: StoredResponse) -> StoredResponse:
        """The reply ``held`` names under ``key`` (``default`` when it names none); ``NotFoundError`` when lost."""
        named = held.response.get(key)
        if named is None:
            return default
        if isinstance(named, str) and _MESSAGE_ID.fullmatch(named):
            return default if named == default.id else await self.store.get(named)
        raise NotFoundError(named)

    def _continued(self, body: Prompt, held: _Held) -> tuple[typed.ChatRequest, wire.ToolSet]:
        """The chat request of a ``continue``: the held conversation, then the new turn, with the thread's tools
        and the new turn's tool changes; and the tool set the thread has after the turn."""
        from jan.server.dialects import anthropic as wire

        _create_only_fields(body)
        tools, removed = held.tools.response.get("tools"), held.tools.response.get("removed_tools") or []
        toolsets = [t for t in body.tools or () if isinstance(t, wire.McpToolset)]  # (the turn's own)
        held_tools = None if tools is None else [wire.ToolParam.model_validate(t) for t in tools]
        body = body.model_copy(update={"tools": [*(held_tools or ()), *toolsets] if toolsets else held_tools})
        removed_tools = [wire.ToolParam.model_validate(t) for t in removed]
        chat_request = wire.to_chat_request(body, removed_tools, held.history)
        return (dataclasses.replace(chat_request, model=body.model or held.reply.response.get("model")),
                wire.tool_set(body, removed_tools))

    async def mcp_held(self, body: Prompt) -> Any:
        """A ``continue``'s MCP choices of the thread's earlier turns (:attr:`Turn.mcp_held`; ``count_tokens`` counts
        the turn as ``/v1/messages`` makes it); None for a body that continues no thread."""
        from jan.server.dialects import anthropic as wire

        if not isinstance(body.thread, wire.ThreadContinue):
            return None
        held = await self._held(body.thread.previous_message_id, latest=False)
        return wire.McpChoices.load(held.reply.response.get("mcp"))

    async def prompt(self, body: Prompt) -> typed.ChatRequest:
        """The chat request a body stands for, a ``continue`` with its thread (``count_tokens``: nothing is held)."""
        from jan.server.dialects import anthropic as wire

        if not isinstance(body.thread, wire.ThreadContinue):
            return await body_step(wire.to_chat_request, body)  # grows with the body: off the loop for a big one
        _create_only_fields(body)
        self._check_store()
        return (await body_step(self._continued, body,
                                await self._held(body.thread.previous_message_id, latest=False)))[0]

    @contextlib.asynccontextmanager
    async def turn(self, body: wire.MessagesRequest) -> AsyncIterator[Turn]:
        """The :class:`Turn` of a messages request; a ``continue`` is in flight until the block ends."""
        from jan.server.dialects import anthropic as wire

        thread = body.thread
        if thread is None:
            yield Turn(await body_step(wire.to_chat_request, body))  # off the loop for a big body
            return
        if isinstance(thread, wire.ThreadCreate):
            self._check_store()
            chat_request = await body_step(wire.to_chat_request, body)
            # the create-only fields, kept by the thread's first reply (its root) only; its tools as the turn left them
            fields = {"model": body.model,
                      "system": body.system if isinstance(body.system, str) or body.system is None
                      else [block.model_dump() for block in body.system], **_tool_fields(wire.tool_set(body)),
                      **_mcp_fields(await body_step(wire.mcp_choices, body))}
            yield Turn(chat_request, self, chat_request.messages, None, fields)
            return
        _create_only_fields(body)
        self._check_store()
        previous_id = thread.previous_message_id
        if previous_id in self._letting_go:
            await asyncio.shield(self._letting_go[previous_id])
        if previous_id in self._continuing:
            raise await self._refusal_in_flight(previous_id)
        self._continuing.add(previous_id)  # no await since the check: one request wins
        leased = None
        try:
            if _MESSAGE_ID.fullmatch(previous_id):
                # another server sharing the data folder continuing it: both generated a turn, and the one saved
                # second was not held (the thread had gone on), its reply's id no thread's
                if not await asyncio.to_thread(self._try_lease, previous_id):
                    raise await self._refusal_in_flight(previous_id)
                leased = previous_id
            held = await self._held(previous_id, latest=True)
            chat_request, tools = await body_step(self._continued, body, held)
            fields = {"root": held.root.id, "model": body.model or held.reply.response.get("model")}
            changed = _tool_fields(tools)
            if (changed["tools"] != held.tools.response.get("tools")
                    or changed.get("removed_tools", []) != (held.tools.response.get("removed_tools") or [])):
                fields.update(changed)  # this turn changed the thread's tools: its reply keeps them
            else:
                fields["tools_at"] = held.tools.id
            mcp_held = wire.McpChoices.load(held.reply.response.get("mcp"))
            fields.update(_mcp_fields(await body_step(wire.mcp_choices, body, mcp_held)))
            yield Turn(chat_request, self, chat_request.messages[len(held.history):], held.reply, fields, mcp_held)
        finally:
            if leased is None:
                self._continuing.discard(previous_id)
            else:
                # (started at once, never after an await a cancel could cut short; the lease file is removed in a
                # worker thread, not on the event loop, and the continue is this process's until it is gone: a
                # continue of it meanwhile waits for that, then takes the lease anew)
                self._let_go(previous_id)

    async def _refusal_in_flight(self, message_id: str) -> ThreadError:
        """The refusal of a continue of ``message_id`` that another request holds (this process's claim, or another
        process's lease): ``thread_already_continued`` where the thread went on past it already, else
        ``thread_continue_in_flight``. A claim outlives the turn it guards: the turn is stored, then its claim let
        go (a lease file removed in a worker thread, another process's when that process gets to it), so a client
        that continues from the same reply once it has seen the thread go on could meet the claim; it is told what
        is true of the thread, as the same request a moment later would be (the SDK's answer to either is a replay
        of the whole conversation, but an agent that tells the two apart must not be told the wrong one)."""
        try:
            await self._held(message_id, latest=True)
        except ThreadError as refused:
            if refused.details.get("error_code") == "thread_already_continued":
                return refused
        except Exception:  # (unreadable now: the claim is what is known)
            log.debug("could not read the thread of %s while refusing its continue", message_id, exc_info=True)
        return _in_flight(message_id)

    def _let_go(self, message_id: str) -> None:
        """Let the continue of ``message_id`` go: its lease released in a worker thread, then this process's
        mark of it."""
        done = self._leases.release_soon(f"continuing_{message_id}")
        if done is None:
            self._continuing.discard(message_id)
            return

        def released(_: asyncio.Future) -> None:
            self._continuing.discard(message_id)
            if self._letting_go.get(message_id) is done:
                del self._letting_go[message_id]

        self._letting_go[message_id] = done
        done.add_done_callback(released)

    def _try_lease(self, message_id: str) -> bool:
        """Lease the continue of ``message_id`` for this process (False: another process holds it); a folder that
        cannot hold a lease (read-only: nothing can be held there either) goes on unleased."""
        try:
            return self._leases.try_take(f"continuing_{message_id}")
        except OSError as exc:
            log.warning("no lease on the continue of %s (%s): continued all the same", message_id, exc)
            return True

    async def save(self, turn: Turn, message: dict[str, Any]) -> None:
        """Write the turn (its new messages and the reply) to the conversation, then the reply's index file."""
        held = {"id": message["id"], "object": "message_thread.reply", "created_at": int(time.time()),
                "previous_message_id": turn.previous.id if turn.previous else None, **turn.fields,
                "message": message}
        held["model"] = held.get("model") or message.get("model")
        # (NotLatestError: the conversation went on meanwhile, nothing written; any failure leaves nothing either)
        stored = await self.store.begin(held, [], [*turn.inputs, *_reply(message, turn.mcp_names)], turn.previous,
                                        allow_fork=False, source="anthropic")
        self._by_thread.setdefault(stored.thread_id, set()).add(stored.id)


@dataclasses.dataclass(frozen=True)
class _Held:
    """A held reply (``reply``), its thread's first one (``root``: the create-only fields), the one that keeps the
    thread's tool set (``tools``) and the conversation."""

    reply: StoredResponse
    root: StoredResponse
    tools: StoredResponse
    history: list[typed.ChatMessage]
