"""A stored thread's messages read as the model's turns: the one reading every path takes, whichever continues the
thread (a run of the web page or the Assistants API, ``jan chat``, a Responses ``previous_response_id``, a
conversation), so a thread's prompt is the same whoever goes on with it.

:func:`thread_turn` reads one message (its text, images, attached documents, thinking, calls, a tool's result);
:func:`prompt_entries` says what a message stands for in a prompt (its turn, the item it keeps, or nothing: a
pending, failed or interrupted reply); :func:`thread_history` reads a whole thread so, through
:func:`jan.services.kept_items.history_turns`, which holds the rules across messages (an MCP call's turn, parallel
calls, a tool result whose call is missing, one turn split over several messages). A run's prompt is its dict form
(:func:`jan.services.tool_loop.chat_messages`), the thread's files named by id (:class:`ImageFileRef`,
:class:`DocumentFileRef`) until the run reads them. Nothing here knows HTTP or a store: a message is a dict, as a
thread store keeps it.
"""

from __future__ import annotations

import asyncio
import binascii
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from jan.errors import MediaError
from jan.image_types import b64decode, parse_data_url
from jan.services.kept_items import KeptEntry, history_turns, kept_entry, kept_item
from jan.services.types import ChatMessage, DocumentPart, ImagePart, Part, TextPart, ToolCall
from jan.services.untrusted import UntrustedTextPart, text_part_of
from jan.templates.formats.reasoning import joined_thoughts

__all__ = ["DocumentFileRef", "FetchImage", "ImageFileRef", "ImageLinkRef", "fetch_linked_images", "linked_images", "TOOL_IMAGES_KEY", "attached_documents", "data_url_image", "file_refs",
           "from_thread_message", "openai_status", "part_field", "prompt_entries", "RECORD_KEYS", "stored_calls", "stored_metadata",
           "thread_history",
           "thread_parts", "thread_turn"]

#: The metadata flag of a stored tool message whose images a tool jan ran returned (to_thread_message).
TOOL_IMAGES_KEY = "tool_images"

#: The keys of a stored message's ``metadata`` that jan writes itself, its records of a turn, read back by every run
#: of the thread and by the message's status (``openai_status``): a reply's run, step, model, finish and usage, the
#: calls a turn made, a tool result's call, timing, approval and result. A client's ``metadata`` (OpenAI's: it
#: replaces the whole object) keeps those it does not give (:func:`kept_records`).
RECORD_KEYS = frozenset({"run_id", "step", "model", "tool_calls", "finish_reason", "stop_reason", "error", "error_code",
                         "interrupted_at", "usage", "tool_call_id", "name", "arguments", "duration_ms", "approved_by",
                         "is_error", "truncated", "result", "reasoning_content", "tool_images"})


def metadata_text(value: Any) -> str:
    """A metadata value as a string, as OpenAI's SDKs type a message's ``metadata`` (``Dict[str, str]``): a string
    as it is, any other value (a record's ``step``, ``usage``, ``tool_calls``) as its compact JSON text."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def kept_records(stored: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metadata`` a message modified with ``given`` (a client's ``metadata``) keeps: ``given``, and the
    :data:`RECORD_KEYS` of ``stored`` (the message as stored) that ``given`` leaves out. A client tagging a run's
    reply with ``{"tag": "x"}`` erased its records: an incomplete reply then read ``completed``, its usage was
    gone from the run's steps and a turn's calls from the prompt of every later run, leaving its tool results
    answering nothing. A record ``given`` back as the text OpenAI's SDKs were shown (:func:`metadata_text`) keeps
    its stored value: an SDK's ``messages.update(metadata={**message.metadata, ...})`` changes no record's type."""
    had = stored_metadata(stored)
    records = {k: v for k, v in had.items() if k in RECORD_KEYS and k not in given}
    sent_back = {k: had[k] for k, v in given.items() if k in RECORD_KEYS and k in had and isinstance(v, str)
                 and not isinstance(had[k], str) and v == metadata_text(had[k])}
    return {**records, **given, **sent_back}


#: ``stop_reason`` of a reply whose turn was not started because the run's ``max_prompt_tokens`` had too little
#: left for its prompt (the run ends ``incomplete``; OpenAI's ``incomplete_details.reason``).
PROMPT_BUDGET = "max_prompt_tokens"
#: ``stop_reason`` of a reply whose turn was not started because the run's earlier turns had generated its
#: ``max_completion_tokens`` (``max_tokens``) already (the run ends ``incomplete``, for that reason).
COMPLETION_BUDGET = "max_completion_tokens"
#: Why a turn was not started: a token limit of the run spent (the run ends ``incomplete``, for that reason).
BUDGET_STOPS = (PROMPT_BUDGET, COMPLETION_BUDGET)


def openai_status(message: Mapping[str, Any]) -> tuple[str, str | None]:
    """A stored message's status as OpenAI's ``thread.message`` tells it, with ``incomplete_details.reason``:
    ``pending`` is ``in_progress``; a whole reply ``completed``; a cut or failed one ``incomplete``. The reason of
    a failed reply is ``run_failed``; a token limit's cut (a reply the model's ``length`` ended, a turn a spent
    budget never started) ``max_tokens``; an upstream's filter ``content_filter``; any other stop (a cancel, a
    client gone, a stop of jan) ``run_cancelled``. One reading for the server's messages and `jan threads show`
    of a data folder, so both tell a message alike."""
    status = message.get("status")
    metadata = stored_metadata(message)
    # (a reason that is no string, a hand edit's list, is none: looked up, it failed the thread's listing with a 500)
    stop_reason, finish_reason = (value if isinstance(value, str) else None
                                  for value in (metadata.get("stop_reason"), metadata.get("finish_reason")))
    reason = None
    if status == "error":
        reason = "run_failed"
    elif status == "stopped":
        reason = "max_tokens" if stop_reason in BUDGET_STOPS else \
            {"length": "max_tokens", "content_filter": "content_filter"}.get(finish_reason, "run_cancelled")
    elif status == "ready":
        reason = {"length": "max_tokens", "content_filter": "content_filter"}.get(finish_reason)
    if status == "pending":
        return "in_progress", None
    return ("incomplete" if reason else "completed"), reason


@dataclass(frozen=True)
class ImageFileRef(ImagePart):
    """An image a thread keeps as a file (an ``image_file`` part), named by ``file_id``, its bytes not read: what a
    run's prompt in dict form sends (:func:`file_refs`); the run reads the file before the model does."""

    file_id: str = ""


@dataclass(frozen=True)
class ImageLinkRef(ImagePart):
    """An image a thread message links to (an ``image_url`` part whose URL is ``http(s)://`` or a file, which the
    store keeps as it was given), named by ``url``, not fetched: a run fetches it before the model reads it
    (:func:`jan.services.runs.thread_files`), or fails naming the part; never left out unsaid."""

    url: str = ""


@dataclass(frozen=True)
class DocumentFileRef(DocumentPart):
    """A document attached to a thread message (its ``attachments``), named by the thread file keeping its text,
    not read (:class:`ImageFileRef`'s twin)."""

    file_id: str = ""


def file_refs(messages: Iterable[dict[str, Any]]) -> dict[str, ImagePart | DocumentPart]:
    """The files the thread ``messages`` name (their ``image_file`` parts, their attached documents) as references,
    by id: a ``files`` mapping for :func:`thread_turn` that reads none of them."""
    refs: dict[str, ImagePart | DocumentPart] = {}
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            file_id = part_field(part, "image_file", "file_id") if isinstance(part, dict) \
                and part.get("type") == "image_file" else None
            if isinstance(file_id, str):
                refs.setdefault(file_id, ImageFileRef(b"", "", file_id=file_id))
            url = part_field(part, "image_url", "url") if isinstance(part, dict) \
                and part.get("type") == "image_url" else None
            if isinstance(url, str) and url[:5].lower() != "data:":  # (keyed by the URL: file ids are img-/doc-)
                refs.setdefault(url, ImageLinkRef(b"", "", url=url))
        for file_id, _ in attached_documents(message):
            refs.setdefault(file_id, DocumentFileRef(b"", "text/plain", file_id=file_id))
    return refs


def link_refs(messages: Iterable[dict[str, Any]]) -> dict[str, ImageLinkRef]:
    """The images the thread ``messages`` link to (``image_url`` parts of an ``http(s)://`` or file URL), as
    references by URL, nothing fetched (:func:`file_refs`'s links): what a listing of the messages shows of them
    (a conversation's items: an ``input_image`` with that ``image_url``), where a prompt fetches them instead."""
    return {url: ref for url, ref in file_refs(messages).items() if isinstance(ref, ImageLinkRef)}


def attached_documents(message: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The documents a message's ``attachments`` hold, in order: the thread file keeping the text the server read
    from the upload, and the upload's file name. Attachments without one (an older jan's) are data only."""
    out = []
    attachments = message.get("attachments")
    for attachment in attachments if isinstance(attachments, list) else ():
        document = attachment.get("document") if isinstance(attachment, dict) else None
        if isinstance(document, dict) and isinstance(document.get("file_id"), str):
            title = document.get("filename")
            out.append((document["file_id"], title if isinstance(title, str) else None))
    return out


def thread_history(messages: Iterable[dict[str, Any]], files: Mapping[str, ImagePart | DocumentPart] | None = None,
                   *, stray_results: bool = True) -> list[ChatMessage]:
    """The turns the model reads of a thread's ``messages``, in order (:func:`prompt_entries` of each, read across
    by :func:`~jan.services.kept_items.history_turns`). ``files``: the thread's image files and attached documents
    by id (:func:`file_refs` for references); a file not there is left out of its turn. ``stray_results``: a tool
    result whose call is in no turn before it is kept (for the Responses API to refuse), else left out (a run's)."""
    return history_turns((entry for message in messages for entry in prompt_entries(message, files)),
                         stray_results=stray_results)


def prompt_entries(message: dict[str, Any],
                   files: Mapping[str, ImagePart | DocumentPart] | None = None) -> list[ChatMessage | KeptEntry]:
    """What a thread message stands for in a prompt (:func:`~jan.services.kept_items.history_turns` reads them):
    the item it keeps (:func:`kept_entry`), its turn (:func:`thread_turn`, its attached documents first), or nothing:
    a pending or failed reply, one cut off by a restart (``metadata.stop_reason: "interrupted"``: until resumed it
    stands for the pending reply it was), a message of an unknown role. A call whose arguments are no text (a hand
    edit's: the API refuses them) is left out (and so, in a run, the result that answers it)."""
    metadata = stored_metadata(message)
    if metadata.get("stop_reason") == "interrupted":
        return []
    kept = kept_entry(message)
    if kept is not None:
        return [kept]
    turn = thread_turn(message, files, documents=True)
    if turn is None:
        return []
    if turn.tool_calls:
        usable = {c["id"] for c in stored_calls(metadata) if _usable_call(c)}
        turn = replace(turn, tool_calls=tuple(c for c in turn.tool_calls if c.id in usable))
    if turn.role != "assistant" and turn.reasoning:  # (thinking is an answer's: a hand edit's elsewhere is none)
        turn = replace(turn, reasoning=None)
    return [turn]


def stored_metadata(message: Mapping[str, Any]) -> dict[str, Any]:
    """A stored message's ``metadata``; {} where it is no object (a hand edit's)."""
    metadata = message.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def stored_calls(metadata: Mapping[str, Any]) -> list[Any]:
    """A stored message's calls (its ``metadata.tool_calls``, entries unchecked); [] where that is no list: a hand
    edit's ``5`` or ``true`` failed every reader of the thread (its conversation's items, each response continuing
    it, ``jan threads show``) with a 500 or a traceback, where a call of another shape is left out."""
    calls = metadata.get("tool_calls")
    return calls if isinstance(calls, list) else []


def _usable_call(call: Any) -> bool:
    """Whether a stored call (an entry of a message's ``metadata.tool_calls``) is one a prompt can hold: OpenAI's
    ``{"id", "function": {"name", "arguments"}}`` with strings there (an empty id or name is still a call: a
    conversation keeps what the Responses API takes as input)."""
    if not isinstance(call, dict) or not isinstance(call.get("id"), str):
        return False
    fn = call.get("function")
    return isinstance(fn, dict) and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments") or "", str)


def thread_turn(message: dict[str, Any], files: Mapping[str, ImagePart | DocumentPart] | None = None, *,
                documents: bool = False) -> ChatMessage | None:
    """A Jan message as a chat turn (``None`` for one that is no turn: pending, failed, unknown role, or one that
    keeps an item, :func:`kept_item`). ``files``: the thread's image files (and attached documents) by id, for its
    ``image_file`` parts (the store keeps images as files, see :mod:`jan.store.files`); ``documents``: its attached
    documents are its first parts (a prompt's; a conversation lists the items it was sent, with none)."""
    role = message.get("role")
    if (role not in ("user", "assistant", "system", "tool") or message.get("status") in ("pending", "error")
            or kept_item(message) is not None):
        return None
    parts = [part for part, _ in thread_parts(message, files)]
    metadata = stored_metadata(message)
    if role == "tool" and (isinstance(metadata.get("result"), dict) or metadata.get(TOOL_IMAGES_KEY) is True):
        # a result a run's tool loop saved (jan.services.tool_loop.save_tool_messages), or an MCP result a thread
        # keeps (to_thread_message): its images are a tool's that jan ran, which a model without a projector reads as
        # their notes (jan.services.tool_images), never a 400 (a reference stays one: the run reads it so); its text
        # is the tool's output, third-party text (a run stores it unmarked: a Responses continuation of the thread
        # read it as a client's own text, its control tokens' text parsed)
        from jan.services.tool_images import ToolImagePart

        parts = [ToolImagePart(p.data, p.mime_type) if isinstance(p, ImagePart) and not isinstance(p, ImageFileRef)
                 else UntrustedTextPart(p.text, source="tool") if type(p) is TextPart else p for p in parts]
    if documents and files:
        # attached documents are read into the turn of any role (OpenAI attaches files to an assistant's too), first:
        # the question after the long text it is about, where models answer it best
        attached = [(files.get(file_id), title) for file_id, title in attached_documents(message)]
        parts = [replace(doc, title=title) for doc, title in attached if isinstance(doc, DocumentPart)] + parts
    thinking: list[str] = []
    content = message.get("content")
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "reasoning":
            text = part.get("text")
            value = text.get("value") if isinstance(text, dict) else text
            if isinstance(value, str):
                thinking.append(value)
    calls = []
    for call in stored_calls(metadata):
        function = call.get("function") if isinstance(call, dict) else None
        # (a call kept as sent, its name or id empty, is still the call: a conversation lists what it was given)
        if isinstance(function, dict) and isinstance(call.get("id"), str) and isinstance(function.get("name"), str):
            calls.append(ToolCall(str(call["id"]), str(function["name"]), str(function.get("arguments") or "{}")))
    # (a field of another type, a hand edit's, is read as absent: a ChatMessage refuses it, and the conversation,
    # every listing of its items and every response continuing it failed)
    call_id, kept_reasoning = metadata.get("tool_call_id"), metadata.get("reasoning_content")
    name = metadata.get("name") if role == "tool" else None
    return ChatMessage(role, tuple(parts), tool_calls=tuple(calls),
                       tool_call_id=call_id if role == "tool" and isinstance(call_id, str) else None,
                       name=name if isinstance(name, str) else None,
                       # metadata.reasoning_content: where responses stored before kept it
                       reasoning=joined_thoughts(thinking)
                       or (kept_reasoning if isinstance(kept_reasoning, str) else None) or None)


def from_thread_message(message: dict[str, Any],
                        images: Mapping[str, ImagePart | DocumentPart] | None = None) -> ChatMessage | None:
    """:func:`thread_turn` without its attached documents (a conversation's item listing reads it so)."""
    return thread_turn(message, images)


def thread_parts(message: dict[str, Any],
                 images: Mapping[str, ImagePart | DocumentPart] | None = None) -> list[tuple[Part, dict[str, Any]]]:
    """The content parts of a Jan message as a chat turn's (:func:`thread_turn`), each with the stored part it was
    read from (a document's text keeps the ``input_file`` it came from there)."""
    parts: list[tuple[Part, dict[str, Any]]] = []
    content = message.get("content")
    if isinstance(content, str):
        parts.append((TextPart(content), {"type": "text", "text": content}))
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            text = part.get("text")
            value = text.get("value") if isinstance(text, dict) else text
            if isinstance(value, str) and value:
                parts.append((text_part_of(value, part), part))
        elif part.get("type") == "image_url":
            url = str(part_field(part, "image_url", "url") or "")
            # a link is read from ``images`` (by its URL: a run's reference, ImageLinkRef, or the fetched image)
            image = data_url_image(url) if url[:5].lower() == "data:" else (images or {}).get(url)
            if isinstance(image, ImagePart):
                parts.append((image, part))
        elif part.get("type") == "image_file" and images:
            image = images.get(str(part_field(part, "image_file", "file_id") or ""))
            if isinstance(image, ImagePart):
                parts.append((image, part))
    return parts


def data_url_image(url: str) -> ImagePart | None:
    """The image a ``data:...;base64,`` URL holds (a thread keeps a conversation's images so); ``None`` for another
    URL or one that does not decode."""
    parsed = parse_data_url(url)  # (as every dialect reads one: ``DATA:``, ``;BASE64``, parameters: jan.image_types)
    if parsed is None:
        return None
    try:
        return ImagePart(b64decode(parsed[1]), parsed[0])  # (in pieces: image_types.b64decode)
    except (binascii.Error, ValueError):
        return None


def part_field(part: Mapping[str, Any], key: str, field: str) -> Any:
    """``part[key][field]``, or ``None`` where ``part[key]`` is no object (a hand edit's ``"image_file": "x"`` was
    a 500 on every read of its conversation)."""
    inner = part.get(key)
    return inner.get(field) if isinstance(inner, dict) else None


#: Reads a linked image: ``(url, param)`` -> a ``data:`` URL; raises :class:`jan.MediaError` naming ``param`` (the
#: server's ``--allow-media-from`` fetcher, ``jan.server.media_fetch.MediaFetcher.data_url``).
FetchImage = Callable[[str, str], Awaitable[str]]


def linked_images(message: Mapping[str, Any]) -> list[tuple[int, str]]:
    """``(index, url)`` of each ``image_url`` part of a stored message whose URL is a link (``http(s)://``, a
    file), not the image itself (a ``data:`` URL)."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    out = []
    for i, part in enumerate(content):
        url = part_field(part, "image_url", "url") if isinstance(part, dict) and part.get("type") == "image_url" \
            else None
        if isinstance(url, str) and url[:5].lower() != "data:":
            out.append((i, url))
    return out


async def fetch_linked_images(messages: Iterable[Mapping[str, Any]],
                              fetch_image: FetchImage | None) -> dict[str, ImagePart]:
    """The images the stored ``messages`` link to (:func:`linked_images`; a tool's are kept items, not links), by
    URL, fetched at once with ``fetch_image``: what a prompt of the thread reads (:func:`thread_parts` finds a
    link's image by its URL). Raises :class:`jan.MediaError` naming the first message and part that links to a
    URL (``message msg_... content[i].image_url.url``): ``not_allowed`` without ``fetch_image`` (the library's
    runs: no server, no ``--allow-media-from``) or for a URL it may not fetch, ``fetch_failed``, ``too_large``,
    ``unsupported_format`` — never an image left out of the prompt unsaid."""
    links: dict[str, str] = {}  # url -> the first part naming it, for errors
    for message in messages:
        if message.get("role") != "tool":
            for i, url in linked_images(message):
                links.setdefault(url, f"message {message.get('id')} content[{i}].image_url.url")
    if not links:
        return {}

    async def fetch(url: str, param: str) -> ImagePart:
        if fetch_image is None:
            raise MediaError(f"{param}: {url} is a link to an image, and this runtime fetches none (a server "
                             "started with --allow-media-from does; or send the image itself as a data: URL)",
                             reason="not_allowed", param=param)
        image = data_url_image(await fetch_image(url, param))
        if image is None:  # (a fetcher hands back a data: URL of an image: not reached)
            raise MediaError(f"{param}: {url} is not a PNG, JPEG, WebP or GIF image", reason="unsupported_format",
                             param=param)
        return image

    fetched = await asyncio.gather(*(fetch(url, param) for url, param in links.items()))
    return dict(zip(links, fetched))


# -- threads and messages as OpenAI's API shows them (the server's routes; the CLI without a server) --------
def thread_object(thread: dict[str, Any]) -> dict[str, Any]:
    """A stored thread as OpenAI's ``thread`` object: with its ``tool_resources``, which OpenAI's spec requires
    (null: jan has no vector stores nor code interpreter files to name), and Jan's own fields (``title``,
    ``assistants``, ``created``, ``updated``) as stored. Clients generated from the spec refuse a thread without it."""
    out = dict(thread)
    out.setdefault("tool_resources", None)
    out.setdefault("metadata", {})
    return out


def string_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """``metadata`` as OpenAI's ``Message`` types it, every value a string: Jan's records on a message (a reply's
    ``step`` and ``usage``, a turn's ``tool_calls``) as their compact JSON text. The typed SDKs read a number or an
    object there as a wrong type (Python's warns on every ``model_dump``/``to_json`` of the message; the typed
    languages' decoders refuse it), while Jan's own clients read them as stored."""
    return {key: metadata_text(value) for key, value in metadata.items()}


def message_object(message: dict[str, Any], *, jan_view: bool = False, sdk: bool = False) -> dict[str, Any]:
    """A stored message as OpenAI's ``thread.message``: its status one of OpenAI's (``pending`` is ``in_progress``;
    a whole reply ``completed``; a cut or failed one ``incomplete``, with ``incomplete_details`` and
    ``incomplete_at``), the optional fields present. Jan's own fields (``metadata.stop_reason``, ``.error``,
    ``.finish_reason``, ``.tool_calls``) stay as stored: they say more than OpenAI's status can.

    ``jan_view`` (``?all=true``, how Jan's clients read a conversation) keeps each attachment's ``document``
    (``{"filename", "file_id"}``: the thread file holding the text the model reads, served by the files route),
    so a client that continues the conversation itself (``jan chat --thread``) gives the model the documents a
    run of the thread reads.

    ``sdk`` (:func:`from_openai_sdk`): the metadata as OpenAI's SDKs type it (:func:`string_metadata`)."""
    out = dict(message)
    status, reason = openai_status(message)
    ended_at = message.get("completed_at")
    out.update(status=status, incomplete_details={"reason": reason} if reason else None,
               completed_at=ended_at if status == "completed" else None,
               incomplete_at=ended_at if status == "incomplete" else None)
    for key in ("assistant_id", "run_id", "attachments"):
        out.setdefault(key, None)
    if isinstance(out["attachments"], list) and not jan_view:
        # as the client sent them (OpenAI's {"file_id", "tools"}): the thread file holding the text the model
        # reads is jan's own bookkeeping (a client that sends an attachment back must not send it too)
        out["attachments"] = [{k: v for k, v in a.items() if k != "document"} if isinstance(a, dict) else a
                              for a in out["attachments"]]
    out.setdefault("metadata", {})
    if sdk and isinstance(out["metadata"], dict):
        out["metadata"] = string_metadata(out["metadata"])
    return out
