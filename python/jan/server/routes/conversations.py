"""OpenAI Conversations: ``POST /v1/conversations``, ``GET``/``POST``/``DELETE /v1/conversations/{id}``,
``GET``/``POST /v1/conversations/{id}/items``, ``GET``/``DELETE /v1/conversations/{id}/items/{item_id}``.

HTTP only: :mod:`jan.server.dialects.conversations` is the wire format, a
:class:`~jan.server.dialects.conversations_store.ConversationStore` keeps each conversation as a Jan thread through
the Responses store (``POST /v1/responses`` with ``conversation`` reads and extends the same thread). Errors keep
OpenAI's shape.

Every write (items added or deleted, the conversation deleted, its metadata replaced) is refused with OpenAI's 400
``conversation_locked``, nothing written, while a response is being made in the conversation (in any process sharing
the data folder) or an Assistants run holds its thread; it is checked and written under the thread's claim lock
(:meth:`jan.services.runs.RunService.unheld`), so no response starts during a write.
"""

from __future__ import annotations

import functools

from aiohttp import web

from jan.core import ConversationalExtension
from jan.errors import DocumentError
from jan.server.dialects import conversations as wire
from jan.server.dialects import responses as responses_wire
from jan.server.dialects.conversations_store import ConversationStore
from jan.server.dialects.responses_store import KeptTurn
from jan.server.document_inputs import read_body_documents
from jan.server.errors import APIError
from jan.server.item_lists import check_include, item_page, list_object, read_page_query
from jan.services.kept_items import off_loop_if_many
from jan.server.jsonio import json_response
from jan.server.keys import MEDIA_FETCHER, SERVICES
from jan.server.media_fetch import fetch_body_images
from jan.server.resolve import service
from jan.server.route_state import CONVERSATION_LOCKS, STORE, UPLOADS
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.routes.files import upload_image
from jan.server.routes.responses import resolve_references
from jan.server.validation import body_step, parse_body
from jan.services.documents import read_message_documents

routes = web.RouteTableDef()

EXTRA_BODIES[("POST", "/v1/conversations")] = wire.ConversationCreate
EXTRA_BODIES[("POST", "/v1/conversations/{conversation_id}")] = wire.ConversationUpdate
EXTRA_BODIES[("POST", "/v1/conversations/{conversation_id}/items")] = wire.ConversationItems


def _store(request: web.Request) -> ConversationStore:
    # conversations are threads: without a conversation store, a 503 naming the extension
    service(request, ConversationalExtension, "stores conversations", "conversational")
    return ConversationStore(request.app[STORE])


def _conversation_id(request: web.Request) -> str:
    conversation_id = request.match_info["conversation_id"]
    if not wire.valid_conversation_id(conversation_id):
        raise APIError(400, f"Invalid 'conversation_id': {conversation_id[:80]!r}. Expected an ID that begins with "
                            "'conv_' followed by letters and digits.", param="conversation_id", code="invalid_value")
    return conversation_id


def _held(request: web.Request, conversation_id: str):
    """The block of a write: 400 ``conversation_locked`` while a response is being made in the conversation or a
    run holds its thread, checked under the thread's claim lock, held for the write (a client's write between a
    response's read of the history and its append would land out of order, or the response's turn in a
    conversation deleted under it)."""
    locks = request.app[CONVERSATION_LOCKS]
    if locks.held(conversation_id):  # (this process's response: on a read-only folder no claim of it is on disk)
        raise locks.refusal()
    return request.app[SERVICES].runs.unheld(conversation_id, locks.refusal)


def _item_id(request: web.Request) -> str:
    item_id = request.match_info["item_id"]
    if not wire.valid_item_id(item_id):
        raise APIError(400, f"Invalid 'item_id': {item_id[:80]!r}. Expected an item's ID, such as 'msg_...'.",
                       param="item_id", code="invalid_value")
    return item_id


async def _messages(request: web.Request, body: wire.ConversationCreate | wire.ConversationItems,
                    conversation_id: str | None = None) -> list[KeptTurn]:
    """What the conversation keeps of the body's ``items`` (checked, images fetched and uploads read, documents read
    as the text a response made in it reads): their chat turns, with the ids and kinds of the items they were made
    of, and the items that are no turn as they were sent (:func:`~jan.server.dialects.conversations.kept_turns`)."""
    # an item_reference is the item it names (of this conversation, else of a stored response), as in a response's
    # input: the conversation keeps the item (the id it has there is taken, so it gets a new one)
    await resolve_references(request.app, body, None, conversation_id, field="items")
    items = body.items or []
    wire.check_items(items)
    await fetch_body_images(body, request.app[MEDIA_FETCHER])
    await responses_wire.resolve_file_images(body, functools.partial(upload_image, request), "items")
    await read_body_documents(body, request.app.get(UPLOADS), request.app[MEDIA_FETCHER])  # input_file by id, URL
    sourced = await body_step(responses_wire.sourced_turns, items, "items")
    try:
        turns = list(await read_message_documents([turn for turn, _, _ in sourced]))
    except DocumentError as exc:  # (said of the item's part, as a response's input is)
        field = sourced[exc.message_index][1] if exc.message_index is not None else "items"
        field += f"[{exc.part_index}]" if exc.part_index is not None else ""
        _, sep, why = str(exc).partition(": ")
        raise DocumentError(f"{field}: {why if sep else exc}", reason=exc.reason, param=field) from None
    await body_step(wire.check_storable, [(turn, field) for turn, (_, field, _) in zip(turns, sourced)])
    listed = await body_step(responses_wire.input_items, items)
    return wire.kept_turns(listed, turns, [sources for _, _, sources in sourced])


@routes.post("/v1/conversations")
async def create_conversation(request: web.Request) -> web.Response:
    """Create a conversation, with up to 20 first ``items`` and its ``metadata``: a Jan thread."""
    store = _store(request)
    body = await parse_body(request, wire.ConversationCreate)
    messages = await _messages(request, body)
    return json_response(await store.create(messages, body.metadata))


@routes.get("/v1/conversations/{conversation_id}")
async def get_conversation(request: web.Request) -> web.Response:
    """A conversation: ``{"id", "object": "conversation", "created_at", "metadata"}``."""
    conversation_id = _conversation_id(request)
    return json_response(await _store(request).get(conversation_id))


@routes.post("/v1/conversations/{conversation_id}")
async def update_conversation(request: web.Request) -> web.Response:
    """Replace the conversation's ``metadata``."""
    # (the body first, as every JSON route reads it: a body too deep to parse is that 400 whatever the path)
    body = await parse_body(request, wire.ConversationUpdate)
    conversation_id = _conversation_id(request)
    store = _store(request)
    async with _held(request, conversation_id):
        return json_response(await store.update(conversation_id, body.metadata))


@routes.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(request: web.Request) -> web.Response:
    """Delete the conversation (its thread, with its messages)."""
    conversation_id = _conversation_id(request)
    store = _store(request)
    async with _held(request, conversation_id):
        await store.delete(conversation_id)
    return json_response({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


@routes.get("/v1/conversations/{conversation_id}/items")
async def list_items(request: web.Request) -> web.Response:
    """The conversation's items (``order`` ``desc`` by default, ``after`` an item id, ``limit`` 1-100)."""
    conversation_id = _conversation_id(request)
    check_include(request)
    order, limit = read_page_query(request)
    items = await _store(request).items(conversation_id)
    # (a long conversation's page is cut in a worker thread)
    return json_response(await off_loop_if_many(len(items), lambda: item_page(
        request, items, order, limit, cursors=("after",), what=f"item in conversation {conversation_id!r}")))


@routes.post("/v1/conversations/{conversation_id}/items")
async def create_items(request: web.Request) -> web.Response:
    """Add up to 20 ``items`` to the conversation (all or none); the items made, as a list."""
    body = await parse_body(request, wire.ConversationItems)  # (first, as above)
    conversation_id = _conversation_id(request)
    check_include(request)
    store = _store(request)
    await store.thread(conversation_id)  # (an unknown conversation is a 404 before any image is fetched)
    messages = await _messages(request, body, conversation_id)
    async with _held(request, conversation_id):
        items = await store.add(conversation_id, messages)
    return json_response(list_object(items))


@routes.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def get_item(request: web.Request) -> web.Response:
    """One item of the conversation, by its id."""
    conversation_id, item_id = _conversation_id(request), _item_id(request)
    check_include(request)
    return json_response(await _store(request).item(conversation_id, item_id))


@routes.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_item(request: web.Request) -> web.Response:
    """Remove one item; the conversation's object."""
    conversation_id, item_id = _conversation_id(request), _item_id(request)
    store = _store(request)
    async with _held(request, conversation_id):
        return json_response(await store.delete_item(conversation_id, item_id))
