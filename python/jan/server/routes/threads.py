"""``/v1/threads`` and ``/v1/threads/{thread_id}/messages``: Jan's conversations, OpenAI-shaped.

Everything goes through ``manager.get(ConversationalExtension)``; the routes
never touch the data folder themselves. Ids in URLs and bodies are validated
by the extension (a malformed id, e.g. one that would climb out of the data
folder, is a 400 ``invalid_id``); unknown ids are 404s.

Lists follow OpenAI: ``?limit=`` (1-100, default 20), ``?order=asc|desc``,
``?after=`` / ``?before=`` (ids, exclusive cursors) and answer
``{"object": "list", "data", "first_id", "last_id", "has_more"}``. A thread's
messages also take ``?run_id=``: only the messages that run wrote (its replies,
and with ``?all=true`` its tool results), filtered before the page is cut, so
the cursors page the filtered list. The thread id ``runs`` is reserved: ``POST /v1/threads/runs``
creates a thread and runs it (``runs.py``).
Messages are OpenAI's objects (:func:`message_object`): ``status`` is
``in_progress``, ``completed`` or ``incomplete`` (with ``incomplete_details``),
mapped from the status the store keeps (``pending``, ``ready``, ``stopped``,
``error``), which a message body may still set. The list and the retrieve
route show the user's and the assistant's messages only, as OpenAI's: a tool's
result and a model turn that only called tools are told by the run's
``tool_calls`` step (:func:`jan.services.tool_loop.tool_bookkeeping`);
``?all=true`` (Jan's) shows every stored message, as Jan's web page and CLI
read a conversation, and each attachment's ``document`` (the thread file holding its text).
Images sent in a message (``image_url`` parts with ``data:`` URLs, or ``image_file``
parts naming a ``file-...`` uploaded with ``POST /v1/files``) are stored as
files in the thread folder and the message keeps ``image_file`` parts naming
them; ``GET /v1/threads/{thread_id}/files/{file_id}`` serves them back.
A message's ``attachments`` (OpenAI's ``[{"file_id": "file-...", "tools": [{"type": "file_search"}]}]``) name
uploads jan reads as documents (PDFs, text files), on a message of any role (OpenAI takes them on an assistant's
message too; the prompt reads them into that turn, before its text): each is read when the message is written (an upload that is
not there or cannot be read is a 400 naming ``attachments[j].file_id``) and its text kept as a thread file, which
every run of the thread reads into that message (:func:`read_attachments`). jan has no vector store, so an
attached file is read whole, never searched; ``tools`` are kept as sent. A ``{"type": "file"}`` content part is
no Assistants content type (OpenAI's are text, image_file and image_url): a 400 that points to ``attachments``.
``GET /v1/threads`` adds ``"problems"``: the damaged thread files the store
found and set aside (``{"path", "error", "time", "moved_to"}``, paths
relative to the data folder), so a client can tell the user why a
conversation is missing while the rest still list.

The helpers here (:func:`conversations`, :func:`list_query`, :func:`page`,
the message body models) are shared with ``assistants.py`` and ``runs.py``.
"""

from __future__ import annotations

import asyncio
import inspect

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, Union

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from jan.core import AssistantExtension, ConversationalExtension, NotFoundError
from jan.errors import DocumentError, not_found_message
from jan.server.jsonio import json_response
from jan.server.errors import APIError
from jan.server.keys import MEDIA_FETCHER, SERVICES
from jan.server.disconnect import while_client_waits
from jan.server.media_fetch import is_data_url
from jan.store.messages import message_sort_key, message_sort_key_of_id
from jan.store.pagination import paginate
from jan.server.schemas import (DESCRIPTION_MAX_CHARS, ImagePart, MessageMetadata, Metadata, StrictModel,
                                ToolResources)
from jan.server.resolve import service
from jan.server.routes.docs import EXTRA_BODIES
from jan.server.document_inputs import _upload
from jan.server.routes.files import upload_data_url, uploads
from jan.server.validation import body_step, parse_body, query_choice, query_int
from jan.services.models import check_format_grammar, check_parameters
from jan.services.documents import document_text
from jan.services.kept_items import off_loop_if_many
# (the wire shapes of a stored thread and message: the CLI's local mode shows them too)
from jan.services.thread_turns import message_object, thread_object
from jan.services.types import DocumentPart, ResponseFormat
from jan.services.tool_checks import check_tool_entries, check_tool_policy
from jan.services.tool_loop import check_tool_schemas, tool_bookkeeping

routes = web.RouteTableDef()

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MESSAGE_STATUSES = ("pending", "ready", "stopped", "error")


# -- extensions ---------------------------------------------------------------
def conversations(request: web.Request) -> ConversationalExtension:
    """The conversation store in charge (503 if every implementation is disabled)."""
    return service(request, ConversationalExtension, "stores threads", "conversational")


def assistant_store(request: web.Request) -> AssistantExtension:
    """The assistant store in charge (503 if every implementation is disabled)."""
    return service(request, AssistantExtension, "stores assistants", "conversational")


# -- lists --------------------------------------------------------------------
def list_query(request: web.Request, *, default_order: str) -> dict[str, Any]:
    """``limit``/``order``/``after``/``before`` from the query string, checked."""
    query = request.query
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    order = query_choice(request, "order", default_order, ("asc", "desc"))
    return {"limit": limit, "order": order, "after": query.get("after") or None,
            "before": query.get("before") or None}


def list_body(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


async def page(fetch: Callable[..., Awaitable[list[dict[str, Any]]]], q: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI list page from an interface ``list_*`` method (asked for one more item to learn ``has_more``)."""
    limit = q["limit"]
    items = await fetch(limit=limit + 1, order=q["order"], after=q["after"], before=q["before"])
    has_more = len(items) > limit
    if has_more:
        # With only ``before`` the page is the items nearest the cursor: drop the far end.
        items = items[-limit:] if q["before"] is not None and q["after"] is None else items[:limit]
    return list_body(items, has_more)


def page_of(items_asc: list[dict[str, Any]], q: dict[str, Any], *,
            key: Callable[[dict[str, Any]], Any] | None = None,
            key_of_id: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The same page cut from a complete list (sorted ascending) held in memory: the stores' cut
    (:func:`jan.store.pagination.paginate`), so a cursor whose item was deleted since the client read it is placed by
    ``key``/``key_of_id`` as the stores place theirs, not refused."""
    cut = paginate(items_asc, limit=q["limit"], order=q["order"], after=q["after"], before=q["before"], key=key,
                   key_of_id=key_of_id)
    return list_body(cut.data, cut.has_more)


async def gone_messages(store: Any, thread_id: str, q: dict[str, Any], listed: list[dict[str, Any]]) -> set[str]:
    """The page's cursors (``after``, ``before``) not in ``listed`` that name no message of the thread any more
    (deleted since the client read them: placed by their ids); one still in the thread that the listing leaves out
    is no place in it, and stays refused."""
    ids = {m["id"] for m in listed}
    wanted = {q[name] for name in ("after", "before") if q[name] is not None and q[name] not in ids}
    if not wanted:
        return set()
    return wanted - {m["id"] for m in await store.list_messages(thread_id, order="asc")}


# -- messages on the wire ------------------------------------------------------
def from_openai_sdk(request: web.Request) -> bool:
    """Whether a request is an OpenAI SDK's Assistants call: OpenAI's SDKs send ``OpenAI-Beta: assistants=v2`` on
    every one (OpenAI's API requires it); Jan's own clients (the chat page, ``jan chat``) send none."""
    return "assistants=" in request.headers.get("OpenAI-Beta", "").replace(" ", "")


def _all_messages(request: web.Request) -> bool:
    """Jan's ``?all=true``: every stored message, tool bookkeeping included (Jan's clients show a tool's call and
    result with the turn that made it); OpenAI's list and retrieve leave them out."""
    return query_choice(request, "all", "false", ("true", "false")) == "true"


# -- bodies -------------------------------------------------------------------
_Strict = StrictModel  # unknown fields refused, no coercion, null means the default


class JanText(_Strict):
    value: str
    annotations: list[Any] = Field(default_factory=list)


class TextContent(_Strict):
    """Jan's ``{"type": "text", "text": {"value", "annotations"}}`` or OpenAI's ``{"type": "text", "text": "..."}``."""

    type: Literal["text"]
    text: Union[str, JanText]


class ImageFileContent(_Strict):
    type: Literal["image_file"]
    image_file: dict[str, Any]


# OpenAI's image part, as a chat message takes it.
ImageUrlContent = ImagePart


class ReasoningContent(_Strict):
    """A reply's thinking (what reasoning models write before the answer), saved beside its text."""

    type: Literal["reasoning"]
    text: Union[str, JanText]
    duration_ms: int | None = Field(default=None, ge=0)


MessageContent = Annotated[Union[TextContent, ReasoningContent, ImageFileContent, ImageUrlContent],
                           Field(discriminator="type")]

#: Other APIs' document parts (chat's ``file``, the Responses API's ``input_file``, Anthropic's ``document``).
_DOCUMENT_PART_TYPES = ("file", "input_file", "document")


def _no_document_part(part: Any) -> Any:
    """A document sent as a content part is no Assistants content type: refused with words that say where a
    thread takes documents (``attachments``), rather than only the list of the part types it takes."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _DOCUMENT_PART_TYPES:
        raise ValueError(f"a part of type {kind!r} is not a thread message content type (those are 'text', "
                         "'image_file' and 'image_url'); attach a document (a PDF, a text file) as an uploaded "
                         "file instead: \"attachments\": [{\"file_id\": \"file-...\", \"tools\": [{\"type\": \"file_search\"}]}] "
                         "(upload it with POST /v1/files)")
    return part


#: A message's ``content``: a string or a list of parts.
Content = Union[str, list[Annotated[MessageContent, BeforeValidator(_no_document_part)]]]


class AttachmentTool(_Strict):
    """An attachment's tool (OpenAI's ``file_search``, ``code_interpreter``): kept as data. jan has no vector
    store nor sandbox: the file is read whole into the message whichever tool is named."""

    type: Literal["file_search", "code_interpreter"]


class Attachment(_Strict):
    """OpenAI's message attachment: an uploaded file (``POST /v1/files``) jan reads as a document."""

    file_id: str = Field(min_length=1)
    tools: list[AttachmentTool] | None = None


class MessageCreate(_Strict):
    """A new message: ``content`` is a string or a list of parts (stored in Jan's shape); ``status`` (Jan's) is the
    stored one, which the answer tells as OpenAI's (:func:`message_object`). Besides OpenAI's roles, Jan's
    ``tool``: a tool's result, ``metadata.tool_call_id`` naming the call of an earlier assistant message's
    ``metadata.tool_calls`` (how ``jan chat`` and the data folder keep a tool loop; a run reads them back as the
    calls' results, OpenAI's plain listing leaves them out as it leaves out run steps)."""

    role: Literal["user", "assistant", "system", "tool"]
    content: Content
    attachments: list[Attachment] | None = None
    metadata: MessageMetadata | None = None
    assistant_id: str | None = None
    status: Literal["pending", "ready", "stopped", "error"] | None = None


class MessageModify(_Strict):
    """Fields a message can change (OpenAI allows ``metadata``; Jan also edits ``content`` and ``status``)."""

    content: Content | None = None
    status: Literal["pending", "ready", "stopped", "error"] | None = None
    metadata: MessageMetadata | None = None


class ThreadModel(BaseModel):
    """The model a thread uses (Jan's ``assistants[0].model``): its id and parameter overrides."""

    model_config = ConfigDict(extra="allow")
    id: str
    settings: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    engine: str | None = None


class ThreadAssistant(BaseModel):
    """One entry of a thread's ``assistants`` (Jan keeps extra fields here, so they are kept)."""

    model_config = ConfigDict(extra="allow")
    assistant_id: str | None = None
    assistant_name: str | None = None
    model: ThreadModel | None = None
    instructions: str | None = None


class ThreadCreate(_Strict):
    id: str | None = None
    title: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)
    assistants: list[ThreadAssistant] | None = None
    metadata: Metadata | None = None
    messages: list[MessageCreate] | None = None
    tool_resources: ToolResources | None = Field(default=None, exclude=True)  # (only an empty one: not kept)


class ThreadModify(_Strict):
    title: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)
    assistants: list[ThreadAssistant] | None = None
    metadata: Metadata | None = None
    tool_resources: ToolResources | None = Field(default=None, exclude=True)  # (only an empty one: not kept)


EXTRA_BODIES[("POST", "/v1/threads")] = ThreadCreate
EXTRA_BODIES[("POST", "/v1/threads/{thread_id}")] = ThreadModify
EXTRA_BODIES[("PATCH", "/v1/threads/{thread_id}")] = ThreadModify
EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/messages")] = MessageCreate
EXTRA_BODIES[("POST", "/v1/threads/{thread_id}/messages/{message_id}")] = MessageModify
EXTRA_BODIES[("PATCH", "/v1/threads/{thread_id}/messages/{message_id}")] = MessageModify


def message_fields(body: MessageCreate) -> dict[str, Any]:
    """A validated message body as the extension's ``create_message`` takes it."""
    fields = body.model_dump(exclude_unset=True)
    for key in ("assistant_id", "status", "attachments"):
        if fields.get(key) is None:
            fields.pop(key, None)
    return fields


def check_thread_parameters(assistants: list[ThreadAssistant] | None, *, where: str = "") -> None:
    """A thread's ``assistants[i].model.parameters`` are a layer every run of the thread reads: a value
    no run could use is a 400 naming it now, not a failed run later (``where``: the body's path to the thread)."""
    for i, entry in enumerate(assistants or ()):
        if entry.model is not None:
            check_parameters(entry.model.parameters, prefix=f"{where}assistants[{i}].model.parameters")
        check_tool_entries((entry.model_extra or {}).get("tools"), param=f"{where}assistants[{i}].tools")
        check_tool_policy((entry.model_extra or {}).get("tool_policy"), param=f"{where}assistants[{i}].tool_policy")


async def check_thread_formats(assistants: list[ThreadAssistant] | None, *, where: str = "") -> None:
    """The ``response_format`` of each ``assistants[i].model.parameters``, which every run of the thread reads: one
    whose schema no grammar takes is a 400 naming it now (:func:`check_format_grammar`), not a failed run later."""
    for i, entry in enumerate(assistants or ()):
        # each tool's parameters schema too (:func:`check_tool_schemas`), made into a grammar by every run
        await check_tool_schemas((entry.model_extra or {}).get("tools"), param=f"{where}assistants[{i}].tools")
        value = entry.model.parameters.get("response_format") if entry.model is not None else None
        if value is not None:
            param = f"{where}assistants[{i}].model.parameters.response_format"
            await check_format_grammar(ResponseFormat.from_mapping(value, param), param)


async def fetch_linked_images(request: web.Request, content: Any, where: str = "") -> Any:
    """``content`` with each image it names rather than holds replaced by the image itself, as a ``data:`` URL,
    which the store keeps as a thread file: an ``image_url`` part that links to an image (an http(s) URL, a file),
    and an ``image_file`` part naming a Files API upload (``file-...``, OpenAI's way to send an uploaded image in
    a thread); ``where``: the body's path to the content, for errors.

    A thread keeps its images, so a run reads them from the data folder: a link kept as it was would be skipped by
    every run (the model never seeing the image) or break once its target moved, and an upload may be deleted. A
    link the server may not follow (``--allow-media-from``) is a 400 now, as in a chat completion
    (:class:`jan.MediaError`, ``not_allowed``); so is an upload that is not there or is no image (naming the part).
    """
    if not isinstance(content, list):
        return content
    fetcher = request.app[MEDIA_FETCHER]
    out = []
    for i, part in enumerate(content):
        url = part.get("image_url", {}).get("url") if isinstance(part, dict) and part.get("type") == "image_url" \
            else None
        if isinstance(url, str) and not is_data_url(url):
            part = {**part, "image_url": {**part["image_url"],
                                          "url": await while_client_waits(
                                              fetcher.data_url(url, f"{where}content[{i}].image_url.url"))}}
        file_id = part.get("image_file", {}).get("file_id") if isinstance(part, dict) \
            and part.get("type") == "image_file" and isinstance(part.get("image_file"), dict) else None
        if isinstance(file_id, str) and file_id.startswith("file-"):  # (a thread's own images are img-...)
            part = {"type": "image_url", "image_url": {
                "url": await upload_data_url(request, file_id, f"{where}content[{i}].image_file.file_id")}}
        out.append(part)
    return out


async def read_attachments(request: web.Request, fields: dict[str, Any], where: str = "") -> None:
    """Read, into each of the message's ``attachments`` (``fields`` as :func:`message_fields` made them), the
    uploaded file's text as the model reads it (``document``: ``{"filename", "text"}``, which the store keeps as
    a thread file); ``where``: the body's path to the message, for errors.

    Read now, not when a run reads the thread: a file that is not there, or is no document jan reads (an image, a
    scanned PDF, an encrypted one...) is the request's 400 naming ``attachments[j].file_id``, with the documents
    module's code (``file_not_found``, ``unsupported_format``, ``no_text``...), never a run that fails later; and
    the thread keeps the text, as it keeps its images, so deleting the upload leaves the thread whole. The text
    is the one path's (:func:`jan.services.documents.document_text`, in a worker thread: a PDF takes a while)."""
    attachments = fields.get("attachments")
    if not attachments:
        return
    store = uploads(request)
    read = []
    for j, attachment in enumerate(attachments):
        param = f"{where}attachments[{j}].file_id"
        data, media_type, filename = await _upload(store, attachment["file_id"], param)
        try:
            text = await asyncio.to_thread(document_text, DocumentPart(data, media_type))
        except DocumentError as exc:
            raise DocumentError(f"{param}: file {attachment['file_id']!r} ({filename}): {exc}", reason=exc.reason,
                                param=param) from None
        read.append({**attachment, "document": {"filename": filename or attachment["file_id"], "text": text}})
    fields["attachments"] = read


async def message_inputs(request: web.Request, fields: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A new message's fields with what it names fetched into it, as the thread keeps them: its linked images
    (:func:`fetch_linked_images`) and its attached documents' text (:func:`read_attachments`)."""
    fields["content"] = await fetch_linked_images(request, fields.get("content"), where)
    await read_attachments(request, fields, where)
    return fields


#: Thread ids that a route under /v1/threads would shadow (``POST /v1/threads/runs`` creates a thread and runs it).
RESERVED_IDS = ("runs",)


def thread_fields(body: ThreadCreate, *, where: str = "") -> dict[str, Any]:
    """A validated new thread as the extension's ``create_thread`` takes it — every check of ``POST /v1/threads``
    done, nothing written (``POST /v1/threads/runs`` checks its ``thread`` this way before it creates anything;
    ``where`` is the body's path to the thread, for the 400's ``param``)."""
    if body.id in RESERVED_IDS:
        raise APIError(400, f"id: '{body.id}' is reserved (it names the route /v1/threads/{body.id})",
                       param=f"{where}id", code="invalid_value")
    check_thread_parameters(body.assistants, where=where)
    thread: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"messages"})
    if body.messages:
        thread["messages"] = [message_fields(m) for m in body.messages]
    return thread


def _changes(body: BaseModel, required_non_null: tuple[str, ...]) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    for key in required_non_null:
        if key in changes and changes[key] is None:
            raise APIError(400, f"{key} cannot be null", param=key, code="invalid_value")
    return changes


# -- threads ------------------------------------------------------------------
@routes.post("/v1/threads")
async def create_thread(request: web.Request) -> web.Response:
    """Create a thread (title, assistants, metadata, initial messages)."""
    body = await parse_body(request, ThreadCreate)
    fields = await body_step(thread_fields, body)  # (thousands of messages: off the loop, as they were validated)
    await check_thread_formats(body.assistants)
    await request.app[SERVICES].runs.check_thread_models(fields.get("assistants"))
    for k, message in enumerate(fields.get("messages") or ()):
        await message_inputs(request, message, f"messages[{k}].")
    return json_response(thread_object(await conversations(request).create_thread(fields)))


@routes.get("/v1/threads")
async def list_threads(request: web.Request) -> web.Response:
    """List threads, most recently updated first; ``problems`` lists damaged thread files set aside."""
    store = conversations(request)
    result = await page(store.list_threads, list_query(request, default_order="desc"))
    result["data"] = [thread_object(t) for t in result["data"]]
    problems = getattr(store, "problems", None)
    result["problems"] = problems("threads/") if callable(problems) else []
    return json_response(result)


@routes.get("/v1/threads/{thread_id}")
async def get_thread(request: web.Request) -> web.Response:
    """Retrieve a thread."""
    return json_response(thread_object(await conversations(request).get_thread(request.match_info["thread_id"])))


@routes.post("/v1/threads/{thread_id}")
@routes.patch("/v1/threads/{thread_id}")
async def modify_thread(request: web.Request) -> web.Response:
    """Modify a thread's title, assistants or metadata (metadata is replaced); refused (``run_active``) while a
    Responses turn is made in the thread's conversation."""
    body = await parse_body(request, ThreadModify)
    check_thread_parameters(body.assistants)
    await check_thread_formats(body.assistants)
    changes = _changes(body, ("title", "assistants"))
    if changes.get("assistants"):
        # (a model the thread names already passes: one removed since leaves the thread editable)
        stored = await conversations(request).get_thread(request.match_info["thread_id"])
        await request.app[SERVICES].runs.check_thread_models(changes["assistants"], stored=stored.get("assistants"))
    thread = await request.app[SERVICES].runs.update_thread(request.match_info["thread_id"], changes)
    return json_response(thread_object(thread))


@routes.delete("/v1/threads/{thread_id}")
async def delete_thread(request: web.Request) -> web.Response:
    """Delete a thread and its messages; refused (``run_active``) while a Responses turn is made in the thread's
    conversation."""
    thread_id = request.match_info["thread_id"]
    await request.app[SERVICES].runs.delete_thread(thread_id)
    return json_response({"id": thread_id, "object": "thread.deleted", "deleted": True})


# -- messages -----------------------------------------------------------------
@routes.post("/v1/threads/{thread_id}/messages")
async def create_message(request: web.Request) -> web.Response:
    """Add a message to a thread (content: a string, Jan's parts or OpenAI's parts).

    Refused (400, ``code: "run_active"``) while a run holds the thread (``queued``, ``in_progress`` or
    ``requires_action``), as OpenAI refuses it: end the run (finish, answer its tool calls, or cancel it) first.
    """
    body = await parse_body(request, MessageCreate)
    fields = await message_inputs(request, message_fields(body))
    message = await request.app[SERVICES].runs.add_message(request.match_info["thread_id"], fields)
    return json_response(message_object(message, sdk=from_openai_sdk(request)))


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name`` (by name or through ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@routes.get("/v1/threads/{thread_id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    """List a thread's messages (``order`` defaults to ``desc``, as OpenAI's): the user's and the assistant's, or with
    ``?all=true`` every stored one; ``?run_id=`` keeps the messages that run wrote (its replies, and with ``all`` its
    tool results). Both filters act before the page is cut, so the cursors page the filtered list."""
    store = conversations(request)
    thread_id = request.match_info["thread_id"]
    # passed only when asked: a third-party store written before the filter still serves unfiltered lists,
    # and one asked to filter that cannot says so (a 400) rather than failing on the argument (a 500)
    by_run = {"run_id": request.query["run_id"]} if request.query.get("run_id") else {}
    if by_run and not _takes(store.list_messages, "run_id"):
        raise APIError(400, f"The conversation store in use ({store.__class__.__name__}) cannot filter messages by "
                            "run_id", param="run_id", code="not_supported")

    q = list_query(request, default_order="desc")
    every = _all_messages(request)
    if every:
        async def fetch(**cut: Any) -> list[dict[str, Any]]:
            return await store.list_messages(thread_id, **cut, **by_run)

        result = await page(fetch, q)
    else:
        stored = await store.list_messages(thread_id, order="asc", **by_run)
        # a long thread's walk, sort and cut run in a worker thread (its messages are all read to cut one page:
        # 100,000 of them held the event loop, and every other request, for a good part of a second)
        shown = await off_loop_if_many(len(stored), lambda: [m for m in stored if not tool_bookkeeping(m)])
        gone = await gone_messages(store, thread_id, q, shown)
        result = await off_loop_if_many(len(stored), lambda: page_of(
            shown, q, key=message_sort_key,
            key_of_id=lambda cursor: message_sort_key_of_id(cursor) if cursor in gone else None))
    sdk = from_openai_sdk(request)
    result["data"] = [message_object(m, jan_view=every, sdk=sdk) for m in result["data"]]
    # Jan's field, as GET /v1/threads has it: the lines of this thread's files the store skipped (a damaged
    # line), so a client can tell why a message is missing from the list
    problems = getattr(store, "problems", None)
    result["problems"] = problems(f"threads/{thread_id}/") if callable(problems) else []
    return json_response(result)


@routes.get("/v1/threads/{thread_id}/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    """Retrieve one message (a tool's result, or a turn that only called tools, is not found unless ``?all=true``,
    as it is not listed)."""
    info = request.match_info
    message = await conversations(request).get_message(info["thread_id"], info["message_id"])
    every = _all_messages(request)
    if tool_bookkeeping(message) and not every:
        raise NotFoundError(not_found_message("message", info["message_id"]), resource="message",
                            id=info["message_id"])
    return json_response(message_object(message, jan_view=every, sdk=from_openai_sdk(request)))


@routes.post("/v1/threads/{thread_id}/messages/{message_id}")
@routes.patch("/v1/threads/{thread_id}/messages/{message_id}")
async def modify_message(request: web.Request) -> web.Response:
    """Modify a message's content, status or metadata (refused, ``run_active``, while a run holds the thread)."""
    body = await parse_body(request, MessageModify)
    changes = _changes(body, ("content", "status"))
    if "content" in changes:
        changes["content"] = await fetch_linked_images(request, changes["content"])
    info = request.match_info
    message = await request.app[SERVICES].runs.update_message(info["thread_id"], info["message_id"], changes)
    return json_response(message_object(message, sdk=from_openai_sdk(request)))


# -- files --------------------------------------------------------------------
@routes.get("/v1/threads/{thread_id}/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    """An image saved with one of the thread's messages (what its ``image_file`` parts name), or the text of a
    document one attached (``doc-...txt``), as stored."""
    info = request.match_info
    data, mime = await conversations(request).read_file(info["thread_id"], info["file_id"])
    # content-addressed: the bytes behind an id never change
    return web.Response(body=data, content_type=mime,
                        headers={"Cache-Control": "private, max-age=31536000, immutable",
                                 "X-Content-Type-Options": "nosniff"})


@routes.delete("/v1/threads/{thread_id}/messages/{message_id}")
async def delete_message(request: web.Request) -> web.Response:
    """Delete one message (refused, ``run_active``, while a run holds the thread)."""
    info = request.match_info
    await request.app[SERVICES].runs.delete_message(info["thread_id"], info["message_id"])
    return json_response({"id": info["message_id"], "object": "thread.message.deleted", "deleted": True})
