"""Anthropic Messages (``POST /v1/messages``) on jan's typed chat path.

Request: :class:`MessagesRequest` (the body, validated) -> :func:`to_chat_request` ->
``ChatRequest``. Answer: :func:`message_from_result` (one ``message`` object) or
:class:`MessageStream` (``ChatDelta`` in, Anthropic's streamed events out:
``message_start``, ``ping``, ``content_block_start``/``_delta``/``_stop``,
``message_delta``, ``message_stop``). Field names follow Anthropic's API exactly.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Discriminator, Field, PrivateAttr, Tag, field_validator, model_validator

from jan.json_text import loads_json
from jan.image_types import b64decode, b64encode_text, sniff_image
from jan.server.body_size import body_step
from jan.server.dialect_errors import (anthropic_error_body, anthropic_error_status, anthropic_error_type,
                                       from_anthropic_sdk)
from jan.server.errors import API_SETTING_NAMES, path_text
from jan.server.schemas import (INT32_MAX, TOOL_NAME_PATTERN, MaxTokens, NullMeansDefault, StopStrings, bounded,
                                not_supported, some_content)

from jan.errors import ContextOverflowError, EngineError, MediaError
from jan.server.dialects.responses import renamed_schema_error
from jan.server.dialects.unknown_fields import anthropic_unknown
from jan.templates.grammar import GrammarError
from jan.services import types as typed
from jan.services.encrypted_reasoning import encrypted_reasoning, reasoning_of_encrypted
from jan.services.errors import GenerationCancelledError, RequestError
from jan.services.token_counts import token_counts
from jan.services.tool_pairs import ToolPairError, check_tool_pairs
from jan.services.untrusted import UntrustedTextPart
from jan.store._util import as_millis, as_seconds
from jan.templates.formats.reasoning import joined_thoughts
from jan.templates.formats.text import WS, closed_json, shown_json

__all__ = [
    "CountTokensRequest",
    "MessageStream",
    "MessagesRequest",
    "SystemMessageParam",
    "ToolSet",
    "error_body",
    "error_type",
    "file_deleted",
    "file_metadata",
    "file_page",
    "from_anthropic_sdk",
    "message_from_result",
    "model_info",
    "model_page",
    "schema_error",
    "new_message_id",
    "stop_reason",
    "to_chat_request",
    "tool_pair_error",
    "tool_set",
    "resolve_file_images",
]


class _Wire(NullMeansDefault):
    # Anthropic adds fields often (cache_control, citations, ...): what jan has no use for is ignored.
    # Values are not coerced ("1" is no integer) and null means the default, as on every jan route.
    model_config = ConfigDict(extra="ignore", strict=True)


# -- request ---------------------------------------------------------------------------------
class TextBlock(_Wire):
    type: Literal["text"]
    text: str


#: The image types Anthropic takes (and the engine decodes): an image block's ``source.media_type``.
ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


class Base64Source(_Wire):
    type: Literal["base64"]
    media_type: ImageMediaType
    data: str

    @field_validator("data")
    @classmethod
    def _data_is_that_image(cls, data: str, info: Any) -> str:
        # As Anthropic: the data must be base64 (said here, so the error names source.data, not the whole
        # message) of an image of the type it is said to be (its magic bytes).
        media_type = info.data.get("media_type")
        try:
            head = b64decode(data)[:12]
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        if not head:  # (said as empty, not as data of another type, as the other dialects say it)
            raise ValueError("no data (the image is empty)")
        found = sniff_image(head)
        if media_type is not None and found != media_type:
            what = f"{found} data" if found else "no JPEG, PNG, GIF or WebP image"
            raise ValueError(f"the image is sent as media_type {media_type}, but the data is {what}")
        return data


class URLSource(_Wire):
    type: Literal["url"]
    url: str


class FileSource(_Wire):
    """An upload of jan's Files API (``POST /v1/files``: OpenAI's, or Anthropic's ``client.beta.files``) by its id."""

    type: Literal["file"]
    file_id: str


class ImageBlock(_Wire):
    type: Literal["image"]
    source: Annotated[Union[Base64Source, URLSource, FileSource], Field(discriminator="type")]
    #: ``(bytes, media type)`` of the upload a ``file`` source names, read by the route (:func:`resolve_file_images`).
    _file: tuple[bytes, str] | None = PrivateAttr(default=None)


class ToolUseBlock(_Wire):
    # (every field required, ``input`` too ({} for a call without arguments), as Anthropic's API requires them)
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class McpToolUseBlock(_Wire):
    """A call the server made to a tool of an MCP server of ``mcp_servers`` (an earlier answer's, sent back)."""

    type: Literal["mcp_tool_use"]
    id: str
    name: str
    server_name: str
    input: dict[str, Any]  # (required, as Anthropic's API requires it)


class McpToolResultBlock(_Wire):
    """That call's result, in the same assistant turn (Anthropic's connector puts both in the answer); with the
    images the tool returned (image blocks, as jan's answer gives them: a vision model reads them again)."""

    type: Literal["mcp_tool_result"]
    tool_use_id: str
    is_error: bool = False
    content: Union[str, list[Annotated[Union[TextBlock, ImageBlock], Field(discriminator="type")]]] = ""


class McpToolListingBlock(_Wire):
    """A server's tool listing an earlier answer carried (``mcp_tool_listing``), sent back with its assistant turn:
    no text the model reads; the last one of a server pins its tools, as a toolset's ``tools`` does
    (:func:`jan.server.dialects.anthropic_mcp.server_uses`)."""

    type: Literal["mcp_tool_listing"]
    mcp_server_name: str
    tools: list[McpListedTool] = Field(default_factory=list)


class SearchResultBlock(_Wire):
    """A ``search_result`` block (a search's result, with its source, in a turn or a tool result): read as a text
    document, its title and source on lines of their own before its text, as a document's title and context are."""

    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlock]


class ToolReferenceBlock(_Wire):
    """A tool search's find (``tool_reference`` in a tool result: a client's own search tool answers so): the
    deferred tool it names is offered from this turn on (:func:`tool_set`); the model reads its name."""

    type: Literal["tool_reference"]
    tool_name: str = Field(min_length=1)


class ToolResultBlock(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str
    content: Union[str, list[Annotated[Union[TextBlock, ImageBlock, DocumentBlock, SearchResultBlock,
                                             ToolReferenceBlock],
                                       Field(discriminator="type")]]] = ""
    is_error: bool | None = None


class PlainTextSource(_Wire):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class ContentSource(_Wire):
    type: Literal["content"]
    # Anthropic's custom-content document: text and image blocks (the images go to the model as images, after the
    # document's text: a model without a projector refuses them as it refuses any image, never drops them)
    content: Union[str, list[Annotated[Union[TextBlock, ImageBlock], Field(discriminator="type")]]]


class DocumentBase64Source(_Wire):
    """A document's bytes, base64 (Anthropic's: a PDF, ``application/pdf``; a text file is read as well)."""

    type: Literal["base64"]
    media_type: str = "application/pdf"
    data: str


class DocumentBlock(_Wire):
    """A ``document`` block, read as text (:mod:`jan.services.documents`): a PDF or text file (``base64``),
    plain text (``text`` or ``content`` sources), an upload (``file``), or a ``url`` (fetched only where image
    URLs are: ``--allow-media-from``). ``title`` and ``context`` come before the text the model reads."""

    type: Literal["document"]
    source: Annotated[Union[DocumentBase64Source, PlainTextSource, ContentSource, URLSource, FileSource],
                      Field(discriminator="type")]
    title: str | None = None
    context: str | None = None
    #: ``(bytes, media type, file name)`` of the upload or URL the source names, read by the route
    #: (:func:`jan.server.document_inputs.read_body_documents`).
    _file: tuple[bytes, str, str | None] | None = PrivateAttr(default=None)


class ThinkingBlock(_Wire):
    """An earlier answer's thinking sent back. ``signature`` is required, as Anthropic's API requires it (a 400
    naming ``...signature: Field required``); every block jan answers has one (:func:`_thinking_block`), and one
    jan did not make (another server's) is taken with its ``thinking`` text as it stands."""

    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Wire):
    type: Literal["redacted_thinking"]
    data: str  # (required, as Anthropic's API requires it; never read: another provider's encryption)


ContentBlock = Annotated[
    Union[TextBlock, ImageBlock, DocumentBlock, SearchResultBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock,
          RedactedThinkingBlock, McpToolUseBlock, McpToolResultBlock, McpToolListingBlock],
    Field(discriminator="type"),
]


def _text_said(blocks: Any) -> Any:
    """Anthropic's 400s for a text block that says nothing, in the words of its own errors: a prompt whose text
    is empty differs from the one the client meant, and a client tried here is refused there."""
    for block in blocks if isinstance(blocks, list) else ():
        if isinstance(block, TextBlock):
            if not block.text:
                raise ValueError("text content blocks must be non-empty")
            if not block.text.strip():
                raise ValueError("text content blocks must contain non-whitespace text")
    return blocks


class MessageParam(_Wire):
    role: Literal["user", "assistant"]
    content: Union[str, list[ContentBlock]]

    @field_validator("content")
    @classmethod
    def _some_content(cls, value: Any, info: Any) -> Any:
        value = some_content(value, info, "content block")
        # What the user says must say something, as on Anthropic ("all messages must have non-empty content
        # except for the optional final assistant message"). An assistant's turn is not checked: a local model
        # does answer with nothing or whitespace (jan's reply then holds no block, or a blank one, which a client
        # sends back with the history), and an empty assistant turn is an empty turn on every jan route
        # (tests/test_prefill.py).
        if info.data.get("role") == "user":
            if value == "":
                raise ValueError("all messages must have non-empty content except for the optional final "
                                 "assistant message")
            _text_said(value)
        return value


class ToolParam(_Wire):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    #: Held back from the prompt until a tool search finds it (a ``tool_reference`` in a tool result): jan has no
    #: tool search of its own, so only a client's search tool loads one (:func:`tool_set`).
    defer_loading: bool | None = None
    # Anthropic's own tools (web search, bash, text editor, ...) carry a versioned type; jan runs none
    # of them, and says so (see _tools).
    type: str | None = None


class McpToolConfig(_Wire):
    enabled: bool | None = None
    #: Held back from the prompt until a tool search finds it (a ``tool_reference`` naming it): jan has no tool search
    #: of its own (:func:`jan.server.dialects.anthropic_mcp.server_uses`).
    defer_loading: bool | None = None


class McpListedTool(_Wire):
    """A tool as an MCP server lists it (an ``mcp_toolset``'s pinned ``tools``, an ``mcp_tool_listing`` block's)."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any]


class McpToolset(_Wire):
    """``{"type": "mcp_toolset", "mcp_server_name": ...}`` (the ``mcp-client-2025-11-20`` beta): which tools of a
    server of ``mcp_servers`` the model may call (``default_config``, then ``configs`` per tool name; ``tools``, a
    listing pinned from an earlier answer: only the tools it names)."""

    type: Literal["mcp_toolset"]
    mcp_server_name: str
    default_config: McpToolConfig | None = None
    configs: dict[str, McpToolConfig] | None = None
    tools: list[McpListedTool] | None = None


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "mcp_toolset" if kind == "mcp_toolset" else "tool"


AnyTool = Annotated[Union[Annotated[ToolParam, Tag("tool")], Annotated[McpToolset, Tag("mcp_toolset")]],
                    Discriminator(_tool_kind)]


class McpToolConfiguration(_Wire):
    enabled: bool | None = None
    allowed_tools: list[str] | None = None


class McpServerDefinition(_Wire):
    """One of ``mcp_servers`` (the MCP connector beta): a server reached over streamable HTTP (or HTTP+SSE) whose
    tools the model calls, run by this server within the answer (:mod:`jan.server.dialects.anthropic_mcp`)."""

    type: Literal["url"]
    url: str
    name: str = Field(min_length=1)
    authorization_token: str | None = None
    tool_configuration: McpToolConfiguration | None = None


# -- system-role messages: text, and the tool set changed mid-conversation ----------------------------
class ToolReference(_Wire):
    """A tool by its name: one of ``tools`` (or the thread's) or one defined or removed earlier."""

    type: Literal["tool_reference"]
    name: str = Field(min_length=1)


class ToolDefinition(_Wire):
    """A tool by value (the SDK tool runner's ``add_tools()``): a ``tools`` entry."""

    type: Literal["tool_definition"]
    definition: ToolParam


class MCPToolReference(_Wire):
    type: Literal["mcp_tool_reference"]
    server_name: str | None = None
    name: str | None = None


class MCPToolsetReference(_Wire):
    type: Literal["mcp_toolset_reference"]
    server_name: str | None = None


class ToolAdditionBlock(_Wire):
    """``tool_addition``: the tool is offered from here on (a definition replaces a tool of its name)."""

    type: Literal["tool_addition"]
    tool: Annotated[Union[ToolReference, ToolDefinition, MCPToolReference, MCPToolsetReference],
                    Field(discriminator="type")]


class ToolRemovalBlock(_Wire):
    """``tool_removal``: the tool is no longer offered from here on."""

    type: Literal["tool_removal"]
    tool: Annotated[Union[ToolReference, MCPToolReference, MCPToolsetReference], Field(discriminator="type")]


SystemContentBlock = Annotated[Union[TextBlock, ToolAdditionBlock, ToolRemovalBlock], Field(discriminator="type")]


class SystemOutputConfig(_Wire):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None

    @field_validator("effort")
    @classmethod
    def _no_effort(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("jan takes effort for the whole request only: set the request's output_config.effort")
        return value


class SystemMessageParam(_Wire):
    """A ``system``-role message in ``messages`` (what the SDK's tool runner sends for ``add_tools()`` /
    ``remove_tools()``). Its text is a system message at its place in the conversation (as on the chat completions
    route; a chat template that takes a system message only first refuses it); its ``tool_addition`` /
    ``tool_removal`` blocks change the tools offered (:func:`tool_set`), and are no message of their own."""

    role: Literal["system"]
    content: Union[str, list[SystemContentBlock]]
    clear_at: Literal["next_user_message", "never"] | None = None
    output_config: SystemOutputConfig | None = None

    @field_validator("content")
    @classmethod
    def _some_blocks(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("a system message must hold at least one content block (or a string)")
        return _text_said(value)

    @field_validator("clear_at")
    @classmethod
    def _shown_on_every_turn(cls, value: Any) -> Any:
        if value == "next_user_message":
            raise ValueError("jan shows a system message's text on every turn that holds it ('never'), and a "
                             "thread holds it; 'next_user_message' is not taken: send such text only with its turn, "
                             "without a thread")
        return value


AnyMessageParam = Annotated[Union[MessageParam, SystemMessageParam], Field(discriminator="role")]


class ToolChoiceParam(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


#: Anthropic's highest ``temperature``.
ANTHROPIC_MAX_TEMPERATURE = 1.0
#: Anthropic's least ``thinking.budget_tokens``.
MIN_THINKING_BUDGET = 1024


class ThinkingParam(_Wire):
    """``thinking``: ``enabled`` (with a ``budget_tokens`` cap), ``adaptive`` (the model decides: thinking on, no
    cap), ``disabled``, and ``between_tools`` (Anthropic's: thinking off, only short progress notes between tool
    calls, which a local model does not write: off). ``display: "omitted"`` returns thinking blocks without their
    text, its ``signature`` carrying it for the next turn (Anthropic's way); ``summarized`` (and the beta's
    ``updates``) returns the thinking itself, which is what a local model's is."""

    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = Field(default=None, ge=MIN_THINKING_BUDGET, le=INT32_MAX)
    display: Literal["summarized", "omitted", "updates"] | None = None

    @model_validator(mode="after")
    def _budget_when_enabled(self) -> "ThinkingParam":
        if self.type == "enabled" and self.budget_tokens is None:
            raise ValueError("budget_tokens: required when thinking.type is 'enabled'")
        return self


class JSONOutputFormat(_Wire):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Wire):
    """Structured output (``format``) and how hard a reasoning model thinks (``effort``)."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONOutputFormat | None = None


class AnthropicMetadata(_Wire):
    user_id: str | None = None


class ThreadCreate(_Wire):
    """``thread: {"type": "create"}`` (beta ``message-threads-2026-08-12``): hold this conversation under the reply's id."""

    type: Literal["create"]


class ThreadContinue(_Wire):
    """``thread: {"type": "continue", "previous_message_id"}``: go on from a held reply; only the new turn is sent."""

    type: Literal["continue"]
    previous_message_id: str


ThreadParam = Annotated[Union[ThreadCreate, ThreadContinue], Field(discriminator="type")]


class _Prompt(_Wire):
    """What a prompt is made of: shared by a message request and a token count.

    A top-level field the body does not declare is Anthropic's 400 ("...: Extra inputs are not permitted"), so a
    typo is never dropped; every field of the SDK's ``MessageCreateParams`` (its beta's too) is declared. Inside
    the body (blocks, tools) what jan has no use for is ignored: Anthropic adds block fields often."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    messages: list[AnyMessageParam]
    system: Union[str, list[TextBlock], None] = None
    tools: list[AnyTool] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None
    output_config: OutputConfig | None = None
    # the structured-outputs beta's name for output_config.format (older SDKs and agents send it)
    output_format: JSONOutputFormat | None = None
    # remote MCP servers per request (the MCP connector beta): run by the server (jan.server.dialects.anthropic_mcp)
    mcp_servers: list[McpServerDefinition] | None = None
    # server-held conversation state (see jan.server.dialects.anthropic_threads)
    thread: ThreadParam | None = None
    # Accepted and ignored: hints on Anthropic's own caching, routing, billing and context editing, none of which
    # changes what a local model answers (jan's KV cache reuses any prefix a slot holds, without breakpoints).
    # ``betas``, ``user_profile_id`` and ``workspace_id`` are headers the SDK sends; a body may hold them too.
    cache_control: dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None
    speed: str | None = None
    billing_policy: dict[str, Any] | None = None
    betas: list[str] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None
    #: A compaction request (beta): refused by a messages request (:class:`MessagesRequest`), whose answer would
    #: be a summary block; a token count ignores it, as Anthropic's does.
    compaction: dict[str, Any] | None = None

    @classmethod
    def unknown_field(cls, field: str) -> tuple[str, str]:
        return anthropic_unknown(field)

    @model_validator(mode="after")
    def _some_messages(self) -> _Prompt:
        # a thread's `continue` may send none: after a `pause_turn` it resumes the held reply
        if not self.messages and not isinstance(self.thread, ThreadContinue):
            raise ValueError("messages: at least one message is required")
        return self

    @field_validator("system")
    @classmethod
    def _system_says_something(cls, value: Any) -> Any:
        # blocks as Anthropic checks them ("system: text content blocks must be non-empty"); a system string may
        # be empty there, and is here
        return _text_said(value)

    @model_validator(mode="after")
    def _mcp_names(self) -> _Prompt:
        # (a server's tools are offered as "<name>__<tool>": two servers of one name would be one)
        names: set[str] = set()
        for i, server in enumerate(self.mcp_servers or ()):
            if server.name in names:
                raise ValueError(f"mcp_servers[{i}].name: '{server.name}' names a server given already; each MCP "
                                 "server needs its own name")
            names.add(server.name)
        toolsets: set[str] = set()
        for i, tool in enumerate(self.tools or ()):
            if not isinstance(tool, McpToolset):
                continue
            if tool.mcp_server_name not in names:
                raise ValueError(f"tools[{i}].mcp_server_name: no MCP server named '{tool.mcp_server_name}' in "
                                 "mcp_servers")
            if tool.mcp_server_name in toolsets:
                raise ValueError(f"tools[{i}].mcp_server_name: MCP server '{tool.mcp_server_name}' has a "
                                 "mcp_toolset already")
            toolsets.add(tool.mcp_server_name)
        return self

    @property
    def custom_tools(self) -> list[ToolParam] | None:
        """``tools`` less the ``mcp_toolset`` entries (which configure ``mcp_servers``); None: no ``tools``."""
        return None if self.tools is None else [t for t in self.tools if isinstance(t, ToolParam)]


class MessagesRequest(_Prompt):
    """The body of ``POST /v1/messages``. ``max_tokens`` is required, as Anthropic requires it."""

    max_tokens: MaxTokens
    stop_sequences: StopStrings | None = None
    # Anthropic's range is 0-1 (the engine takes up to 2: OpenAI's): a 400 above it, as Anthropic's
    temperature: float | None = Field(default=None, ge=0.0, le=ANTHROPIC_MAX_TEMPERATURE)
    top_p: float | None = bounded("top_p")
    top_k: int | None = bounded("top_k")
    stream: bool = False
    metadata: AnthropicMetadata | None = None
    # Accepted and ignored: Anthropic's routing and billing (one local model serves every request the same way),
    # its diagnostics of its own prompt cache, its code-execution container, and its retries on other models
    # after a policy refusal (a local model's refusal is its answer).
    container: Union[str, dict[str, Any], None] = None
    diagnostics: dict[str, Any] | None = None
    inference_geo: str | None = None
    service_tier: str | None = None
    fallback_credit_token: Union[str, dict[str, Any], None] = None
    fallbacks: Union[str, list[Any], None] = None

    @field_validator("compaction")
    @classmethod
    def _no_compaction(cls, value: Any) -> Any:
        if value is not None:
            raise not_supported("compaction", "a compaction request's summary; jan answers the "
                                "conversation as sent")
        return value


class CountTokensRequest(_Prompt):
    """The body of ``POST /v1/messages/count_tokens``.

    (With ``mcp_servers``, the servers are reached and their tools counted as ``/v1/messages`` offers them.)
    """


# -- request -> ChatRequest -------------------------------------------------------------------
async def resolve_file_images(body: _Prompt, read: Callable[[str, str], Awaitable[tuple[bytes, str]]]) -> None:
    """Read, into each image block given by a ``file`` source, the upload it names, with ``read(file_id, param)``:
    the route's, which refuses (a 400 naming ``param``) a file that is not there or is no image. Done before
    :func:`to_chat_request`, which turns them into image parts, as the other dialects' file images are."""
    found: list[tuple[ImageBlock, str]] = []
    await body_step(_file_images, body.messages, "messages", found)  # a walk over the whole body: off the loop
    for block, param in found:
        block._file = await read(block.source.file_id, param)


def _file_images(node: Any, where: str, found: list[tuple[ImageBlock, str]]) -> None:
    """Each image block with a ``file`` source under ``node`` (a turn's, a tool result's, a document's), with the
    field that names the file."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _file_images(item, f"{where}[{i}]", found)
    elif isinstance(node, ImageBlock):
        if isinstance(node.source, FileSource):
            found.append((node, f"{where}.source.file_id"))
    elif isinstance(node, _Wire):
        for name in type(node).model_fields:
            value = getattr(node, name)
            if isinstance(value, (list, _Wire)):
                _file_images(value, f"{where}.{name}", found)


def _image(block: ImageBlock) -> typed.ImagePart:
    source = block.source
    if isinstance(source, URLSource):
        raise ValueError("image blocks with a 'url' source are not fetched by jan; send the image as base64")
    if isinstance(source, FileSource):
        if block._file is None:  # (a caller that did not read the uploads first)
            raise ValueError("an image block's 'file' source was not read; send the image as base64")
        return typed.ImagePart(data=block._file[0], mime_type=block._file[1])
    try:
        data = b64decode(source.data)  # (the decoding every dialect shares: jan.image_types)
    except (binascii.Error, ValueError):
        raise ValueError("an image block's source.data is not valid base64") from None
    return typed.ImagePart(data=data, mime_type=source.media_type)


def _tool_result(block: ToolResultBlock) -> typed.ChatMessage:
    if isinstance(block.content, str):
        parts: tuple[typed.Part, ...] = (typed.TextPart(block.content),) if block.content else ()
    else:
        parts = tuple(part for b in block.content for part in (
            (typed.TextPart(b.text),) if isinstance(b, TextBlock) else _document(b) if isinstance(b, DocumentBlock)
            else (typed.TextPart(f"Tool loaded: {b.tool_name}"),) if isinstance(b, ToolReferenceBlock)
            else (_search_result(b),) if isinstance(b, SearchResultBlock) else (_image(b),)))
    if block.is_error:
        # The chat path has no error flag on a tool message: say it in the text the model reads.
        parts = (typed.TextPart("Error: "), *parts)
    return typed.ChatMessage("tool", parts, tool_call_id=block.tool_use_id)


def _document(block: DocumentBlock) -> tuple[typed.Part, ...]:
    """A document block as a document part, read as text on the typed path (title and context first), and a
    ``content`` source's images after it; a ``file`` or ``url`` source's bytes were read by the route
    (:func:`jan.server.document_inputs.read_body_documents`). Base64 that does not decode is a ``ValueError``
    (the caller names the message)."""
    source = block.source
    if isinstance(source, ContentSource):
        blocks = [TextBlock(type="text", text=source.content)] if isinstance(source.content, str) else source.content
        text = "\n\n".join(b.text for b in blocks if isinstance(b, TextBlock))
        images = tuple(_image(b) for b in blocks if isinstance(b, ImageBlock))
        return (typed.DocumentPart(text.encode(), "text/plain", title=block.title, context=block.context), *images)
    return (_document_part(block),)


def _search_result(block: SearchResultBlock) -> typed.DocumentPart:
    """A search result as a text document (the typed path reads it as text, title and source first)."""
    text = "\n\n".join(b.text for b in block.content)
    return typed.DocumentPart(text.encode(), "text/plain", title=block.title or None, context=block.source or None)


def _document_part(block: DocumentBlock) -> typed.DocumentPart:
    source = block.source
    if isinstance(source, PlainTextSource):
        data, media_type = source.data.encode(), source.media_type
    elif isinstance(source, DocumentBase64Source):
        try:
            data = b64decode(source.data)
        except (binascii.Error, ValueError):
            raise ValueError("a document block's source.data is not valid base64") from None
        media_type = source.media_type
    elif block._file is not None:
        data, media_type, filename = block._file
        return typed.DocumentPart(data, media_type, title=block.title or filename, context=block.context)
    else:  # (a caller that did not read them first)
        raise ValueError(f"a document block's '{source.type}' source was not read; send the document as base64")
    return typed.DocumentPart(data, media_type, title=block.title, context=block.context)


def _user_messages(content: list) -> list[typed.ChatMessage]:
    """One Anthropic user turn: its tool results become tool messages (in order), the rest one user message."""
    out: list[typed.ChatMessage] = []
    parts: list[typed.Part] = []
    for block in content:
        if isinstance(block, ToolResultBlock):
            if parts:
                out.append(typed.ChatMessage("user", tuple(parts)))
                parts = []
            out.append(_tool_result(block))
        elif isinstance(block, TextBlock):
            parts.append(typed.TextPart(block.text))
        elif isinstance(block, ImageBlock):
            parts.append(_image(block))
        elif isinstance(block, DocumentBlock):
            parts += _document(block)
        elif isinstance(block, SearchResultBlock):
            parts.append(_search_result(block))
        else:
            raise ValueError(f"a user message cannot hold a '{block.type}' block")
    if parts:
        out.append(typed.ChatMessage("user", tuple(parts)))
    return out


def _assistant_messages(content: list) -> list[typed.ChatMessage]:
    """One assistant turn; the MCP connector's calls and results in it (``mcp_tool_use``, ``mcp_tool_result``:
    run by the server within the answer) become the calling turn, the results' tool messages and the turn going
    on, as the model read them when it wrote the answer."""
    from jan.services.mcp_use import jan_name

    out: list[typed.ChatMessage] = []
    blocks: list = []
    # (a result is named by its call, as the answer's loop named it: templates that show a result's tool read it)
    names = {block.id: jan_name(block.server_name, block.name) for block in content
             if isinstance(block, McpToolUseBlock)}
    for block in content:
        if isinstance(block, McpToolResultBlock):
            if blocks:
                out.append(_assistant_message(blocks))
                blocks = []
            out.append(typed.ChatMessage("tool", _mcp_result_parts(block), tool_call_id=block.tool_use_id,
                                         name=names.get(block.tool_use_id)))
        else:
            blocks.append(block)
    if blocks or not out:
        out.append(_assistant_message(blocks))
    return out


def _mcp_result_parts(block: McpToolResultBlock) -> tuple[typed.Part, ...]:
    """An ``mcp_tool_result``'s content as the answer's loop fed it to the model (jan.services.mcp_use._turn): the
    MCP server's output, third-party text, and its images as a tool's images
    (:class:`~jan.services.tool_images.ToolImagePart`: a model with no projector reads each as its note, never a
    400: nobody chose to send it), in order; an error's text after ``Error:``."""
    from jan.services.tool_images import ToolImagePart

    if isinstance(block.content, str) or block.is_error:
        text = block.content if isinstance(block.content, str) else "".join(
            b.text for b in block.content if isinstance(b, TextBlock))
        return (UntrustedTextPart(f"Error: {text}" if block.is_error else text, source="tool"),)
    parts: list[typed.Part] = []
    texts: list[str] = []
    for b in block.content:
        if isinstance(b, TextBlock):
            texts.append(b.text)
            continue
        if texts:  # (texts in a row are one part, as jan.services.tool_images.result_parts made them)
            parts.append(UntrustedTextPart("".join(texts), source="tool"))
            texts = []
        image = _image(b)
        parts.append(ToolImagePart(image.data, image.mime_type))
    if texts or not parts:
        parts.append(UntrustedTextPart("".join(texts), source="tool"))
    return tuple(parts)


def _assistant_message(content: list) -> typed.ChatMessage:
    text: list[typed.Part] = []
    reasoning: list[str] = []
    calls: list[typed.ToolCall] = []
    for block in content:
        if isinstance(block, TextBlock):
            text.append(typed.TextPart(block.text))
        elif isinstance(block, ThinkingBlock):
            # sent back without its text (display "omitted"): jan's signature holds it
            reasoning.append(block.thinking or _thinking_of_signature(block.signature))
        elif isinstance(block, ToolUseBlock):
            calls.append(typed.ToolCall(block.id, block.name, json.dumps(block.input, ensure_ascii=False)))
        elif isinstance(block, McpToolUseBlock):
            from jan.services.mcp_use import jan_name  # (the name the server's tool is offered by: mcp_use)

            calls.append(typed.ToolCall(block.id, jan_name(block.server_name, block.name),
                                        json.dumps(block.input, ensure_ascii=False)))
        elif isinstance(block, (RedactedThinkingBlock, McpToolListingBlock)):
            # encrypted by another provider: nothing a local model can read; a listing: it chooses the tools the
            # servers offer (anthropic_mcp), which the prompt shows as every request's
            continue
        else:
            raise ValueError(f"an assistant message cannot hold a '{block.type}' block")
    # several thinking blocks (interleaved with text and tool uses) are one turn's thinking, a paragraph each
    return typed.ChatMessage("assistant", tuple(text), tool_calls=tuple(calls),
                       reasoning=joined_thoughts(reasoning) or None)


def _thinking_of_signature(signature: str | None) -> str:
    """The thinking a thinking block's ``signature`` carries: jan's (display ``omitted``) has its text; another
    server's (Anthropic's, encrypted with its keys) none a local model can read. A damaged one of jan's is a
    ValueError, as the Responses API's damaged ``encrypted_content`` is: read as none, the turn's thinking was lost
    without a word (Anthropic's API refuses a signature it did not make too)."""
    try:
        return reasoning_of_encrypted(signature) or ""
    except ValueError:
        raise ValueError("a thinking block's signature is damaged (it is not the one jan gave); send the block "
                         "back as it was returned") from None


def _turn(message: MessageParam | SystemMessageParam) -> list[typed.ChatMessage]:
    """One Anthropic message as chat messages (a user turn's tool results are messages of their own; a system
    message's tool changes none: they change the tools, see :func:`tool_set`)."""
    if isinstance(message, SystemMessageParam):
        text = message.content if isinstance(message.content, str) else "\n\n".join(
            block.text for block in message.content if isinstance(block, TextBlock))
        return [typed.ChatMessage.of_text("system", text)] if text else []
    if isinstance(message.content, str):
        return [typed.ChatMessage.of_text(message.role, message.content)]
    if message.role == "user":
        return _user_messages(message.content)
    return _assistant_messages(message.content)


@dataclasses.dataclass(frozen=True)
class _Piece:
    """What one of ``body.messages`` gave a typed message: the message's index, which of the typed messages
    :func:`_turn` made of it (``sub``), and how many of the typed message's parts and tool calls it gave."""

    index: int
    sub: int
    parts: int
    calls: int


def _same_turn(before: MessageParam | SystemMessageParam, message: MessageParam | SystemMessageParam) -> bool:
    """Whether ``message`` goes on the turn ``before`` began: Anthropic combines consecutive ``user`` (or
    ``assistant``) messages into one turn, as if their blocks were sent in one message. A system-role message
    between them (a tool change) is a turn of its own."""
    return isinstance(before, MessageParam) and isinstance(message, MessageParam) and before.role == message.role


def _joinable(a: typed.ChatMessage, b: typed.ChatMessage) -> bool:
    """Whether ``b`` continues ``a`` within one Anthropic turn: two assistant messages, or two user messages
    (never a tool result, which is a message of its own on the chat path wherever it stands in its turn)."""
    return a.role == b.role and a.role in ("user", "assistant") and a.tool_call_id is None and b.tool_call_id is None


def _joined(a: typed.ChatMessage, b: typed.ChatMessage) -> typed.ChatMessage:
    """One typed message of two of one turn: the parts, tool calls and thinking in order, as
    :func:`_user_messages` and :func:`_assistant_message` make them of one message's blocks."""
    reasoning = joined_thoughts([a.reasoning, b.reasoning]) or None
    return dataclasses.replace(a, content=(*a.content, *b.content), tool_calls=(*a.tool_calls, *b.tool_calls),
                               reasoning=reasoning)


def _conversation(body: _Prompt) -> list[tuple[typed.ChatMessage, tuple[_Piece, ...]]]:
    """The body's messages as typed messages, each with the pieces of ``body.messages`` it came from (what an
    error about it names). Consecutive messages of one role are one turn, as on Anthropic's API ("consecutive
    user or assistant turns in your request will be combined into a single turn"): sent as two, a chat template
    that insists on user/assistant alternation (Mistral's, Gemma's, Llama 2's) would refuse a request Anthropic
    answers."""
    out: list[tuple[typed.ChatMessage, tuple[_Piece, ...]]] = []
    for i, message in enumerate(body.messages):
        try:
            turn = _turn(message)
        except ValueError as exc:
            if type(exc) is not ValueError:
                raise
            raise ValueError(f"messages[{i}].content: {exc}") from None  # the message at fault, by its field
        for sub, typed_message in enumerate(turn):
            piece = _Piece(i, sub, len(typed_message.content), len(typed_message.tool_calls))
            if sub == 0 and out and _same_turn(body.messages[i - 1], message) \
                    and _joinable(out[-1][0], typed_message):
                joined, pieces = out[-1]
                out[-1] = (_joined(joined, typed_message), (*pieces, piece))
            else:
                out.append((typed_message, (piece,)))
    return out


def _messages(body: _Prompt) -> tuple[typed.ChatMessage, ...]:
    out: list[typed.ChatMessage] = []
    if body.system:
        system = body.system if isinstance(body.system, str) else "\n\n".join(b.text for b in body.system)
        out.append(typed.ChatMessage.of_text("system", system))
    return (*out, *(message for message, _ in _conversation(body)))


def message_field(body: _Prompt, index: int, part: int | None = None, *, block: bool = True) -> str:
    """The field of ``body`` the typed request's message ``index`` came from (what an error about it names):
    ``system``, or ``messages[i].content`` (a user turn with tool results is several typed messages; consecutive
    messages of one role are one); with ``part`` (that typed message's part at fault) the block:
    ``messages[i].content[j]``, a tool result's ``messages[i].content[j].content[k]``; ``block`` False: only the
    message of the part (``messages[i].content``)."""
    if index < (1 if body.system else 0):
        return "system"
    pieces = _pieces(body, index)
    if not pieces:
        return "messages"
    piece = pieces[0]
    if part is not None:  # the piece that gave the part, and the part's place in it
        for piece in pieces:
            if part < piece.parts:
                break
            part -= piece.parts
        else:
            piece, part = pieces[0], None
    field = f"messages[{piece.index}].content"
    return field + _block_path(body.messages[piece.index], piece.sub, part) if block else field


def _pieces(body: _Prompt, index: int) -> tuple[_Piece, ...]:
    """The pieces of ``body.messages`` the typed request's message ``index`` came from (:func:`_conversation`);
    none for the system prompt, or past the end."""
    at = index - (1 if body.system else 0)
    conversation = _conversation(body)
    return conversation[at][1] if 0 <= at < len(conversation) else ()


def _groups(content: list) -> list[int | list[int]]:
    """A user turn's blocks as the typed messages they became (:func:`_user_messages`): each a tool result's block
    index, or the list of the other blocks' indexes between them."""
    groups: list[int | list[int]] = []
    for j, block in enumerate(content):
        if isinstance(block, ToolResultBlock):
            groups.append(j)
        elif groups and isinstance(groups[-1], list):
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups


def _block_path(message: MessageParam, sub: int, part: int | None) -> str:
    """Where under a message's ``content`` the part ``part`` of the ``sub``-th typed message it became came from
    (:func:`_turn`'s grouping): ``[j]``, ``[j].content[k]`` (a tool result's block), ``[j].content`` (a tool
    result's string); "" for no part, or a string content."""
    if part is None or isinstance(message.content, str):
        return ""
    if message.role != "user":  # one typed message, of the text blocks in order
        texts = [j for j, block in enumerate(message.content) if isinstance(block, TextBlock)]
        return f"[{texts[part]}]" if part < len(texts) else ""
    groups = _groups(message.content)
    if sub >= len(groups):
        return ""
    group = groups[sub]
    if isinstance(group, list):
        owners = _part_owners(message.content, group)
        return f"[{owners[part]}]" if part < len(owners) else ""
    result = message.content[group]
    k = part - (1 if result.is_error else 0)  # (an error's "Error: " part comes first)
    if isinstance(result.content, list):
        owners = _part_owners(result.content, range(len(result.content)))
        if 0 <= k < len(owners):
            return f"[{group}].content[{owners[k]}]"
    return f"[{group}].content" if k >= 0 else f"[{group}]"


def _part_owners(blocks: list, indexes) -> list[int]:
    """The block index of each typed part the blocks at ``indexes`` became, in order: one part a block, but a
    document with a ``content`` source is its text and then each of its images (:func:`_document`)."""
    owners = []
    for j in indexes:
        block = blocks[j]
        parts = 1
        if isinstance(block, DocumentBlock) and isinstance(block.source, ContentSource) \
                and not isinstance(block.source.content, str):
            parts += sum(isinstance(b, ImageBlock) for b in block.source.content)
        owners += [j] * parts
    return owners


def tool_pair_error(exc: ToolPairError, body: _Prompt, held: int = 0) -> RequestError:
    """Tool calls and results that do not pair up, in Anthropic's words (what clients see and match; its error body
    writes the path dotted, as every Anthropic error: :data:`jan.server.dialect_errors.PATH_STYLES`). ``held``: the typed messages before the body's
    own, a thread's held conversation (``thread.previous_message_id`` names them)."""
    ids = ", ".join(exc.ids)
    pieces = _pieces(body, exc.index - held) if exc.index >= held else ()
    if not pieces:
        where = "thread.previous_message_id"
    elif exc.kind == "unexpected":
        i, sub = pieces[0].index, pieces[0].sub  # (a tool message is one piece: a user turn's tool_result block)
        j = _groups(body.messages[i].content)[sub]
        where = path_text(("messages", i, "content", j))
    elif exc.kind == "duplicate":  # the call's tool_use block, in the message of its turn that holds it
        call, i = exc.call_index, pieces[-1].index
        for piece in pieces:
            if call < piece.calls:
                i = piece.index
                break
            call -= piece.calls
        j = [j for j, block in enumerate(body.messages[i].content) if isinstance(block, ToolUseBlock)][call]
        where = path_text(("messages", i, "content", j))
    else:  # the turn's tool uses: the first message of it that holds one
        i = next((p.index for p in pieces if p.calls), pieces[0].index)
        where = path_text(("messages", i))
    if exc.kind == "duplicate":
        message = f"{where}: `tool_use` ids must be unique"
    elif exc.kind == "unexpected":
        message = (f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {ids}. Each `tool_result` "
                   "block must have a corresponding `tool_use` block in the previous message.")
    else:
        message = (f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: {ids}. "
                   "Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
    return RequestError(message, param=where, code=exc.code)


def media_error(exc: MediaError, body: _Prompt, chat_request: typed.ChatRequest) -> MediaError:
    """A refusal of ``chat_request``'s media (a model without a projector, an image that does not decode, a media
    marker in the text) naming the field of ``body`` it came from (its block, where the error names a part), not
    the typed message it became. Messages before the body's own are a thread's held conversation
    (``thread.previous_message_id`` names them)."""
    if exc.message_index is None:
        return exc
    index = exc.message_index - (len(chat_request.messages) - len(_messages(body)))
    part, block = exc.part_index, True
    if part is None and 0 <= exc.message_index < len(chat_request.messages):
        # said of the message's media as a whole (no projector): its content is named, that of the message of a
        # joined turn (:func:`_conversation`) that holds the first of them
        content = chat_request.messages[exc.message_index].content
        part = next((j for j, p in enumerate(content) if isinstance(p, (typed.ImagePart, typed.AudioPart))), None)
        block = False
    field = "thread.previous_message_id" if index < 0 else message_field(body, index, part, block=block)
    field += _source_field(body, field)
    _, sep, why = str(exc).partition(": ")
    return MediaError(f"{field}: {why if sep else exc}", reason=exc.reason, param=field)


def _source_field(body: _Prompt, field: str) -> str:
    """Where in the document block at ``field`` (``messages[i].content[j]``, or a tool result's
    ``...content[j].content[k]``) its document was: ``.source.data``, ``.source.file_id``, ``.source.url``; ""
    for a block that is no document."""
    match = re.fullmatch(r"messages\[(\d+)\]\.content\[(\d+)\](?:\.content\[(\d+)\])?", field)
    if match is None:
        return ""
    block: Any = body.messages[int(match.group(1))].content[int(match.group(2))]
    if match.group(3) is not None:
        block = block.content[int(match.group(3))]
    if not isinstance(block, DocumentBlock):
        return ""
    return {"file": ".source.file_id", "url": ".source.url", "content": ".source.content"}.get(
        block.source.type, ".source.data")


def too_long_message(exc: ContextOverflowError) -> str:
    """A prompt the context cannot hold, in Anthropic's words: "prompt is too long: N tokens > M maximum". Claude
    Code (and other agents) read that prefix and its numbers to compact the conversation and try again; jan's own
    words follow. The maximum is the context less the one token the answer needs at least."""
    text = exc.message(API_SETTING_NAMES)  # (the setting to change, as the HTTP APIs name it)
    if exc.n_tokens is None or exc.n_ctx is None:  # (a remote upstream's refusal: no numbers to tell)
        return f"prompt is too long: {text}"
    return f"prompt is too long: {exc.n_tokens} tokens > {max(exc.n_ctx - 1, 0)} maximum; {text}"


def schema_error(exc: GrammarError, body: _Prompt, chat_request: typed.ChatRequest) -> GrammarError:
    """A schema the grammar cannot take (``schema_too_complex``...) naming its field in Anthropic's terms: a
    tool's ``tools[i].input_schema``, the format's ``output_config.format.schema`` (``output_format.schema`` where
    the body gave it by its beta name)."""
    beta = getattr(body, "output_format", None) is not None
    return renamed_schema_error(exc, getattr(body, "tools", None), chat_request, "tools[{i}].input_schema",
                                "output_format.schema" if beta else "output_config.format.schema")


def _reasoning(thinking: ThinkingParam | None, effort: str | None) -> typed.ReasoningOptions:
    """``effort`` as the client gave it (a local template's levels are chat plan's business: EFFORT_LEVELS).
    In Anthropic's API thinking is off unless ``thinking`` turns it on, so a model that thinks by default (Qwen3)
    does not think for a request that leaves it out; ``output_config.effort`` alone does not turn it on either
    (Anthropic's effort "doesn't require thinking to be enabled": it spends more or fewer tokens on the answer,
    and on thinking when that is on)."""
    if thinking is None or thinking.type in ("disabled", "between_tools"):
        return typed.ReasoningOptions(effort=effort, enabled=False)
    return typed.ReasoningOptions(effort=effort, enabled=True,
                            budget_tokens=thinking.budget_tokens if thinking.type == "enabled" else None)


def _tool_choice(choice: ToolChoiceParam | None, names: Sequence[str] = (), mcp: bool = False):
    """The typed tool choice; ``mcp``: the request has MCP servers, whose tools a name may name (resolved once they
    are listed: :func:`jan.server.dialects.anthropic_mcp.offer`)."""
    if choice is None:
        return None
    if choice.type == "tool":
        if not choice.name:
            raise ValueError("tool_choice.name: required when tool_choice.type is 'tool'")
        if choice.name not in names and not mcp:
            raise ValueError(f"tool_choice.name: no tool named '{choice.name}' in tools")
        return typed.NamedToolChoice(choice.name)
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def _check_tool(tool: ToolParam, field: str) -> None:
    if tool.type not in (None, "custom"):
        raise ValueError(f"{field}: '{tool.type}' is one of Anthropic's own tools, which jan does not run; "
                         "send custom tools (name, description, input_schema)")
    if tool.input_schema is None:
        raise ValueError(f"{field}.input_schema: required")
    if tool.input_schema.get("type", "object") != "object":  # a tool's input is an object (Anthropic's rule)
        raise ValueError(f"{field}.input_schema.type: must be 'object', got {tool.input_schema.get('type')!r}")


def _tools(tools: Sequence[ToolParam]) -> tuple[typed.ToolSpec, ...]:
    """The tools offered, each checked already (:func:`tool_set`)."""
    return tuple(typed.ToolSpec(tool.name, tool.description, tool.input_schema) for tool in tools)


@dataclasses.dataclass(frozen=True)
class ToolSet:
    """The tools a turn offers (``tools``; None: the request has none and changes none) and the ones removed on the
    way (``removed``: a ``tool_reference`` addition offers one again). A thread keeps both for its later turns."""

    tools: list[ToolParam] | None
    removed: list[ToolParam] = dataclasses.field(default_factory=list)


def tool_set(body: _Prompt, removed: Sequence[ToolParam] = ()) -> ToolSet:
    """The tools the turn offers: ``tools`` (a thread's ``continue``: the thread's) but the deferred ones
    (``defer_loading``), then in message order the ``tool_addition`` / ``tool_removal`` blocks of the ``system``
    messages and the ``tool_reference`` blocks of tool results (a tool search's finds: the deferred tool named is
    loaded, offered from then on, as Anthropic's). A local chat template shows the tools once (in the system prompt,
    mostly), so the prompt is rendered with this set, the last one. An addition by definition replaces a tool of
    its name in place, or comes last; one by reference offers a tool of ``tools``, of ``removed`` or defined earlier
    again; a removal takes a known tool away (twice is nothing). The deferred tools not loaded are ``removed`` (a
    thread's later turn may load them). An MCP server's tool or toolset named by a change is the server's business
    (:func:`jan.server.dialects.anthropic_mcp.server_uses`), as is a reference naming no tool here when the request
    has ``mcp_servers``. ``ValueError`` naming the field for a block that names no known tool, a server not in
    ``mcp_servers``, or a tool jan does not run."""
    for i, tool in enumerate(body.tools or ()):
        if isinstance(tool, ToolParam):
            _check_tool(tool, f"tools[{i}]")
    changes: list[tuple[str, Any]] = []
    for i, message in enumerate(body.messages):
        if isinstance(message.content, str):
            continue
        for j, block in enumerate(message.content):
            if isinstance(block, (ToolAdditionBlock, ToolRemovalBlock)):
                changes.append((f"messages[{i}].content[{j}].tool", block))
            elif isinstance(block, ToolResultBlock) and not isinstance(block.content, str):
                changes += [(f"messages[{i}].content[{j}].content[{k}]", ref) for k, ref in enumerate(block.content)
                            if isinstance(ref, ToolReferenceBlock)]
    custom = body.custom_tools
    if not changes and not any(tool.defer_loading for tool in custom or ()):
        return ToolSet(custom, list(removed))
    offered = {tool.name: tool for tool in custom or () if not tool.defer_loading}
    known = {**{tool.name: tool for tool in removed}, **{tool.name: tool for tool in custom or ()}}
    for field, block in changes:
        if isinstance(block, ToolReferenceBlock):
            if block.tool_name in known:  # (loaded for good: a thread's later turns keep it, undeferred)
                offered.setdefault(block.tool_name, known[block.tool_name].model_copy(update={"defer_loading": None}))
            elif not body.mcp_servers:  # (else it may name a server's deferred tool: anthropic_mcp.server_uses)
                raise ValueError(f"{field}.tool_name: Tool reference '{block.tool_name}' has no corresponding tool "
                                 "definition")
            continue
        tool = block.tool
        if isinstance(tool, (MCPToolReference, MCPToolsetReference)):
            _check_mcp_reference(body, tool, field)
            continue  # (the server's tools the turn offers: anthropic_mcp.server_uses applies it)
        if isinstance(tool, ToolDefinition):
            _check_tool(tool.definition, f"{field}.definition")
            known[tool.definition.name] = offered[tool.definition.name] = tool.definition
        elif tool.name not in known:
            raise ValueError(f"{field}.name: no tool named '{tool.name}' in tools or added earlier")
        elif isinstance(block, ToolAdditionBlock):
            offered.setdefault(tool.name, known[tool.name])
        else:
            offered.pop(tool.name, None)
    return ToolSet(list(offered.values()), [tool for name, tool in known.items() if name not in offered])


def _check_mcp_reference(body: _Prompt, tool: MCPToolReference | MCPToolsetReference, field: str) -> None:
    if not tool.server_name:
        raise ValueError(f"{field}.server_name: required")
    if isinstance(tool, MCPToolReference) and not tool.name:
        raise ValueError(f"{field}.name: required")
    if tool.server_name not in {server.name for server in body.mcp_servers or ()}:
        raise ValueError(f"{field}: '{tool.type}' names the MCP server '{tool.server_name}', which is not one of the "
                         "request's mcp_servers (send the server with each turn that uses it)")


def mcp_tool_changes(body: _Prompt) -> list[tuple[bool, str, str | None]]:
    """The ``tool_addition`` (True) / ``tool_removal`` (False) blocks naming an MCP server's tool (its name) or
    toolset (None), in message order, as ``(added, server, tool)``; each checked by :func:`tool_set`."""
    return [(isinstance(block, ToolAdditionBlock), block.tool.server_name, getattr(block.tool, "name", None))
            for message in body.messages if isinstance(message, SystemMessageParam)
            and not isinstance(message.content, str) for block in message.content
            if isinstance(block, (ToolAdditionBlock, ToolRemovalBlock))
            and isinstance(block.tool, (MCPToolReference, MCPToolsetReference))]


@dataclasses.dataclass(frozen=True)
class McpChoices:
    """What a conversation's messages chose of its MCP servers' tools: the names ``tool_reference`` blocks gave (a
    deferred tool a search found is loaded for good), the tools the last ``mcp_tool_listing`` block of each server
    pinned (by server), and the system messages' ``tool_addition`` / ``tool_removal`` of a server's tools, in order.
    A replay sends them with every turn (they are in its messages), so a thread keeps them for its later turns
    (:class:`jan.server.dialects.anthropic_threads.MessageThreads`), which send only the new messages. The servers
    (``mcp_servers``) and their toolsets' ``enabled`` / ``defer_loading`` are fields of the request, not of its
    messages: per request in Anthropic's API, sent with each turn, kept by no thread."""

    referenced: frozenset[str] = frozenset()
    listings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    changes: tuple[tuple[bool, str, str | None], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.referenced or self.listings or self.changes)

    def then(self, later: McpChoices) -> McpChoices:
        """These choices, then ``later``'s (a later turn's): references added, a server's listing the later one,
        the changes in order."""
        return McpChoices(self.referenced | later.referenced, tuple({**dict(self.listings), **dict(later.listings)}
                                                                   .items()), (*self.changes, *later.changes))

    def dump(self) -> dict[str, Any]:
        """As a thread's index file keeps them (JSON)."""
        return {"referenced": sorted(self.referenced), "listings": {k: list(v) for k, v in self.listings},
                "changes": [list(c) for c in self.changes]}

    @classmethod
    def load(cls, value: Any) -> McpChoices:
        """:meth:`dump`'s; anything else (none kept, a hand edit's) is no choice."""
        if not isinstance(value, dict):
            return cls()
        referenced = value.get("referenced") if isinstance(value.get("referenced"), list) else []
        listings = value.get("listings") if isinstance(value.get("listings"), dict) else {}
        changes = value.get("changes") if isinstance(value.get("changes"), list) else []
        return cls(frozenset(n for n in referenced if isinstance(n, str)),
                   tuple((k, tuple(n for n in v if isinstance(n, str))) for k, v in listings.items()
                         if isinstance(v, list)),
                   tuple((c[0], c[1], c[2]) for c in changes if isinstance(c, list) and len(c) == 3
                         and isinstance(c[0], bool) and isinstance(c[1], str) and isinstance(c[2], (str, type(None)))))


def mcp_choices(body: _Prompt, held: McpChoices | None = None) -> McpChoices:
    """The MCP choices of ``body``'s messages (:class:`McpChoices`), after ``held`` (a thread's, of its earlier
    turns)."""
    listings = {block.mcp_server_name: tuple(t.name for t in block.tools) for message in body.messages
                if isinstance(message, MessageParam) and not isinstance(message.content, str)
                for block in message.content if isinstance(block, McpToolListingBlock)}
    mine = McpChoices(frozenset(referenced_tools(body)), tuple(listings.items()), tuple(mcp_tool_changes(body)))
    return mine if held is None else held.then(mine)


def referenced_tools(body: _Prompt) -> set[str]:
    """The names the ``tool_reference`` blocks of ``body``'s tool results give (a tool search's finds)."""
    return {ref.tool_name for message in body.messages if not isinstance(message.content, str)
            for block in message.content if isinstance(block, ToolResultBlock) and not isinstance(block.content, str)
            for ref in block.content if isinstance(ref, ToolReferenceBlock)}


def to_chat_request(body: _Prompt, removed_tools: Sequence[ToolParam] = (),
                    history: Sequence[typed.ChatMessage] = ()) -> typed.ChatRequest:
    """The typed chat request for a messages (or count_tokens) body, after ``history`` (a thread's held
    conversation); its tools: :func:`tool_set` (``removed_tools``: a thread's, that a ``tool_reference`` addition
    may offer again).

    Raises ``ValueError`` for content jan cannot take (an image URL, invalid base64,
    a block in the wrong role, a named tool_choice without a name, Anthropic's server tools,
    a tool change naming no known tool, tool uses and results that do not pair up).
    """
    sampling = typed.SamplingOptions()
    if isinstance(body, MessagesRequest):
        sampling = typed.SamplingOptions(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                                   top_k=body.top_k,
                                   stop=tuple(body.stop_sequences) if body.stop_sequences else None)
    offered = tool_set(body, removed_tools).tools or ()
    tools = _tools(offered)
    custom = body.custom_tools or ()
    if custom and all(tool.defer_loading for tool in custom) and not body.mcp_servers:  # (anthropic_mcp: with them)
        raise RequestError("All tools have defer_loading set. At least one tool must be non-deferred.",
                           param="tools")
    choice = body.tool_choice
    if choice is not None and choice.type == "tool" and choice.name not in {t.name for t in offered} \
            and any(t.name == choice.name and t.defer_loading for t in custom):
        raise ValueError(f"tool_choice.name: '{choice.name}' is deferred (defer_loading) and no tool_reference "
                         "loaded it (jan has no tool search of its own: a client's search tool loads one)")
    forced = body.tool_choice is not None and body.tool_choice.type in ("any", "tool")
    if forced and not tools and not body.mcp_servers:  # (the servers' tools join at the route: anthropic_mcp)
        raise ValueError(f"tool_choice: '{body.tool_choice.type}' needs tools")
    if forced and body.thinking is not None and body.thinking.type in ("enabled", "adaptive"):
        raise RequestError("Thinking may not be enabled when tool_choice forces tool use.", param="thinking")
    parallel = None
    if body.tool_choice is not None and body.tool_choice.disable_parallel_tool_use is not None:
        parallel = not body.tool_choice.disable_parallel_tool_use
    output = body.output_config or OutputConfig()
    if output.format is not None and body.output_format is not None:
        raise ValueError("output_format: give output_config.format or output_format (its beta name), not both")
    fmt = output.format or body.output_format
    response_format = typed.ResponseFormat("json_schema", fmt.schema_) if fmt else None
    messages = (*history, *_messages(body))
    if not tools and not body.mcp_servers and any(m.role == "tool" or m.tool_calls for m in messages):
        # (a template shows tool calls and results with the tools they belong to; Anthropic's rule besides)
        raise RequestError("Requests which include `tool_use` or `tool_result` blocks must define tools.",
                           param="tools")
    try:  # checked with the held conversation: a continued thread's results answer the held reply's tool uses
        check_tool_pairs(messages)
    except ToolPairError as exc:
        raise tool_pair_error(exc, body, len(history)) from None
    # A final assistant message is a prefill: the answer continues it (Anthropic's documented behaviour)
    return typed.ChatRequest(model=body.model, messages=messages, tools=tools,
                       tool_choice=_tool_choice(body.tool_choice, [t.name for t in tools], bool(body.mcp_servers)),
                       parallel_tool_calls=parallel,
                       response_format=response_format, sampling=sampling,
                       reasoning=_reasoning(body.thinking, output.effort),
                       continue_final_message=typed.ends_in_prefill(messages))


# -- answer -----------------------------------------------------------------------------------
def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


#: Anthropic's ``stop_reason`` for each way the chat path ends a choice (``typed.FINISH_REASONS``) but ``cancelled``:
#: Anthropic has no stop reason for an answer the server cut off, and any would pass it for a whole one, so it is
#: an error (:class:`GenerationCancelledError`: a streamed message's ``error`` event after what was sent, else the
#: error response). ``stop`` is ``stop_sequence`` when one of the request's ``stop_sequences`` ended it; a remote
#: upstream's ``content_filter`` is Anthropic's ``refusal`` (its classifiers stopped the answer). A ``length`` end
#: because the context window filled up (:attr:`typed.ChatDelta.context_full`) is ``model_context_window_exceeded``.
STOP_REASONS: Mapping[str, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                   "content_filter": "refusal"}


def stop_reason(finish_reason: str | None, stop_sequence: str | None = None, *, context_full: bool = False) -> str:
    """Anthropic's ``stop_reason`` for the chat path's ``finish_reason`` (None, a stream that told none, reads as
    ``stop``, as the chat path's aggregate does); ``context_full``: a ``length`` end came from the context window,
    not ``max_tokens``. Raises :class:`GenerationCancelledError` for ``cancelled``."""
    reason = finish_reason or "stop"
    if reason == "cancelled":
        raise GenerationCancelledError()
    if reason not in STOP_REASONS:
        raise EngineError(f"the generation ended with finish_reason {reason!r}, which jan does not know")
    if reason == "length" and context_full:
        return "model_context_window_exceeded"
    return "stop_sequence" if reason == "stop" and stop_sequence else STOP_REASONS[reason]


def thinking_omitted(body: _Prompt) -> bool:
    """Whether the request asks for thinking blocks without their text (``thinking.display: "omitted"``)."""
    return body.thinking is not None and body.thinking.display == "omitted"


def check_thinking_budget(body: MessagesRequest, betas: str = "") -> None:
    """Anthropic's rule: ``thinking.budget_tokens`` is less than ``max_tokens`` (thinking is part of the answer),
    except with interleaved thinking (the ``anthropic-beta`` header's ``interleaved-thinking-...``), where the budget
    spans the tool calls' turns. ``ValueError`` naming the field otherwise."""
    thinking = body.thinking
    if thinking is None or thinking.type != "enabled" or thinking.budget_tokens is None:
        return
    if thinking.budget_tokens >= body.max_tokens and "interleaved-thinking" not in betas:
        raise ValueError(f"thinking.budget_tokens: must be less than max_tokens ({body.max_tokens}), "
                         f"got {thinking.budget_tokens}")


def _usage(usage: typed.Usage | None) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` are the prompt tokens *not* read from the cache; the prompt is
    ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens`` (what Claude Code adds up as
    the context used), so a reused prefix is counted once, as ``cache_read_input_tokens``. ``output_tokens``
    counts the thinking too (Anthropic has no separate reasoning count)."""
    counts = token_counts(usage)
    return {"input_tokens": counts.uncached_prompt_tokens, "output_tokens": counts.completion_tokens,
            "cache_read_input_tokens": counts.cached_tokens, "cache_creation_input_tokens": 0}


def _tool_input(arguments: str) -> dict[str, Any]:
    """A call's ``input`` object. Arguments a token limit cut off are closed (:func:`closed_json`): the input the
    stream's ``input_json_delta`` pieces add up to (:class:`MessageStream`), not ``{}``."""
    try:
        value = loads_json(closed_json(arguments)) if arguments.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _thinking_block(text: str, omitted: bool) -> dict[str, Any]:
    """A thinking block, signed as Anthropic signs every one: the signature carries the thinking, so the block sent
    back in a later turn gives the model its thinking again; ``omitted`` (display "omitted"): without its text,
    which only the signature carries then."""
    return {"type": "thinking", "thinking": "" if omitted else text, "signature": encrypted_reasoning(text)}


def message_from_result(result: typed.ChatResult, message_id: str, model: str,
                        stop_sequence: str | None = None, *, omit_thinking: bool = False) -> dict[str, Any]:
    """The ``message`` object for a whole (non-streamed) answer, content blocks in the order
    a model writes them: thinking, text, tool uses."""
    choice = result.choices[0]
    message = choice.message
    content: list[dict[str, Any]] = []
    # (a cut-off answer is no message: raises)
    reason = stop_reason(choice.finish_reason, stop_sequence, context_full=choice.context_full)
    # a block of its own, as the stream's (MessageStream.feed): the whitespace that joins a continued thought to
    # the one the request ended in is no text of this block (joined_thoughts parts the two blocks)
    thought = (message.reasoning or "").lstrip(WS)
    if thought:
        content.append(_thinking_block(thought, omit_thinking))
    if message.text:
        content.append({"type": "text", "text": message.text})
    for call in message.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)})
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": reason, "stop_sequence": stop_sequence if reason == "stop_sequence" else None,
            "usage": _usage(result.usage)}


class MessageStream:
    """Turns the chat path's deltas (choice 0) into Anthropic's streamed events.

    ``start()`` gives ``message_start`` and a ``ping``; each :meth:`feed` the events for one
    delta (a content block opens when the kind of output changes: thinking, text, or a new
    tool call, and the open one closes first); :meth:`finish` closes the open block and gives
    ``message_delta`` (stop reason, usage) and ``message_stop``; with the request's
    ``stop_sequences``, the one that ended the answer is reported. An answer the server cut off
    (``cancelled``) ends with an ``error`` event instead, after what was sent (Anthropic's stop
    reasons have none for it). Events are ``(name, data)`` pairs; ``data["type"]`` equals the
    name, as Anthropic sends them. A thinking block ends with a ``signature_delta`` (the thinking, for the next
    turn: the signature a whole answer's block has) before its ``content_block_stop``, as Anthropic's always do;
    ``omit_thinking`` (display ``omitted``): it carries no ``thinking_delta``, only that signature.
    """

    def __init__(self, message_id: str, model: str, stop_sequences: Sequence[str] = (), *,
                 omit_thinking: bool = False):
        self.message_id = message_id
        self.model = model
        self.omit_thinking = omit_thinking
        self._thinking = ""  # the open thinking block's text (its signature, sent before the block closes)
        # Only these count as Anthropic's stop_sequence (not the model's own end-of-turn text).
        self.stop_sequences = tuple(stop_sequences)
        self._index = -1
        self._open: str | None = None  # "thinking", "text" or "tool:<n>"
        self._args = ""  # the open tool_use block's arguments as written so far
        self._args_sent = 0  # how much of them went out (input_json_delta)
        self._finish_reason: str | None = None
        self._context_full = False
        self._stop_sequence: str | None = None
        self._usage: typed.Usage | None = None

    def start(self, prompt_tokens: int | None = None, cached_tokens: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``message_start`` (with the prompt's size where known, as Anthropic sends it: clients read the
        context used from it) and a ``ping``. The size is split as in ``message_delta`` (the same numbers):
        ``input_tokens`` what was evaluated, ``cache_read_input_tokens`` what the KV cache held."""
        usage: dict[str, int] = _usage(typed.Usage(prompt_tokens=prompt_tokens or 0, cached_tokens=cached_tokens or 0))
        if cached_tokens is None:  # not known yet (a remote engine): told in message_delta
            del usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
        message = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def _close(self, *, whole: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """Close the open block; ``whole`` False: the answer was cut off (an ``error`` event follows), and a tool
        call's held-back arguments are not closed for it."""
        if self._open is None:
            return []
        events = []
        if self._open == "thinking":
            events.append(self._delta({"type": "signature_delta", "signature": encrypted_reasoning(self._thinking)}))
        if whole and self._open.startswith("tool:") and self._args.strip():
            # a call cut off mid-arguments: what was held back goes out closed, so that the pieces add up to valid
            # JSON, the input a whole answer gives (:func:`_tool_input`)
            rest = closed_json(self._args)[self._args_sent:]
            if rest:
                events.append(self._delta({"type": "input_json_delta", "partial_json": rest}))
        self._open, self._thinking, self._args, self._args_sent = None, "", "", 0
        return events + [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _open_block(self, key: str, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._close()
        self._index += 1
        self._open = key
        events.append(("content_block_start", {"type": "content_block_start", "index": self._index,
                                               "content_block": block}))
        return events

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def feed(self, delta: Any) -> list[tuple[str, dict[str, Any]]]:
        """The events of one delta, or of one of the MCP connector's calls (:mod:`jan.services.mcp_use`)."""
        if not isinstance(delta, typed.ChatDelta):
            return self._mcp(delta)
        events: list[tuple[str, dict[str, Any]]] = []
        if delta.usage is not None:
            self._usage = delta.usage
        if delta.choice != 0:
            return events
        # a block of its own: the blank line that parts this thinking from the output's earlier thinking (as one
        # text: typed.ChatMessage.reasoning) is no text of this block (joined_thoughts puts it back)
        thought = delta.reasoning if self._open == "thinking" else delta.reasoning.lstrip(WS)
        if thought:
            if self._open != "thinking":
                events += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._thinking += thought
            if not self.omit_thinking:
                events.append(self._delta({"type": "thinking_delta", "thinking": thought}))
        if delta.content:
            if self._open != "text":
                events += self._open_block("text", {"type": "text", "text": ""})
            events.append(self._delta({"type": "text_delta", "text": delta.content}))
        for call in delta.tool_calls:
            key = f"tool:{call.index}"
            if self._open != key:
                events += self._open_block(key, {"type": "tool_use", "id": call.id or f"toolu_{secrets.token_hex(12)}",
                                                 "name": call.name or "", "input": {}})
            if call.arguments:
                # only what can be finished by closers alone goes out (arguments cut off by the token limit are
                # kept as written by the parser: a stream could not take their broken tail back)
                self._args += call.arguments
                shown = shown_json(self._args)
                if len(shown) > self._args_sent:
                    events.append(self._delta({"type": "input_json_delta", "partial_json": shown[self._args_sent:]}))
                    self._args_sent = len(shown)
        if delta.finish_reason is not None:
            self._finish_reason, self._context_full = delta.finish_reason, delta.context_full
            self._stop_sequence = delta.stop if delta.stop in self.stop_sequences else None
        return events

    def _mcp(self, event: Any) -> list[tuple[str, dict[str, Any]]]:
        """A call the server runs as the ``mcp_tool_use`` block (its input streamed as a tool_use's is) and its
        result as the ``mcp_tool_result`` block, whole in its ``content_block_start`` (Anthropic's)."""
        from jan.services import mcp_use

        if isinstance(event, mcp_use.McpCallStarted):
            events = self._open_block(f"mcp:{event.id}", {"type": "mcp_tool_use", "id": event.id, "name": event.name,
                                                          "server_name": event.server_label, "input": {}})
            arguments = json.dumps(_tool_input(event.arguments), ensure_ascii=False)
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            return events + self._close()
        if isinstance(event, mcp_use.McpCallDone):
            text = event.output if event.error is None else event.error
            # a result with images: its text and images in order, as the model read them (mcp_use._turn), so that
            # the reply sent back (or held by a thread) gives a vision model the images again
            content = [{"type": "image", "source": {"type": "base64", "media_type": p.mime_type,
                                                    "data": b64encode_text(p.data)}}
                       if isinstance(p, typed.ImagePart) else {"type": "text", "text": p.text}
                       for p in event.parts] if event.parts and event.error is None \
                else [{"type": "text", "text": text or ""}]
            events = self._open_block(f"mcp:{event.id}:result", {
                "type": "mcp_tool_result", "tool_use_id": event.id, "is_error": event.error is not None,
                "content": content})
            return events + self._close()
        return []  # (a listing: Anthropic's connector shows none; no approvals: every call runs)

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        events = self._close(whole=self._finish_reason != "cancelled")
        if self._finish_reason == "cancelled":
            err = GenerationCancelledError()
            return events + [("error", error_body(err.http_status, str(err)))]
        reason = stop_reason(self._finish_reason, self._stop_sequence, context_full=self._context_full)
        usage = _usage(self._usage)
        events.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": self._stop_sequence if reason == "stop_sequence" else None},
            "usage": {"output_tokens": usage["output_tokens"], "input_tokens": usage["input_tokens"],
                      "cache_read_input_tokens": usage["cache_read_input_tokens"],
                      "cache_creation_input_tokens": usage["cache_creation_input_tokens"]},
        }))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


# -- models (GET /v1/models, /v1/models/{id} as Anthropic's SDK asks) ---------------------------------
#: ``limit`` of a model list page: Anthropic's default and bounds.
MODELS_DEFAULT_LIMIT, MODELS_MAX_LIMIT = 20, 1000
#: A model's ``lifecycle`` stages; jan serves what it has, so all of its models are ``active``.
LIFECYCLES = ("active", "deprecated", "retired")


def model_info(model: Mapping[str, Any], context_window: int | None = None) -> dict[str, Any]:
    """Anthropic's ``ModelInfo`` for a model.json: ``display_name`` its ``name``; ``created_at`` (RFC 3339) its
    ``created``, the epoch when it has none (Anthropic's own answer for an unknown release date);
    ``max_input_tokens`` and ``max_tokens`` the model's ``context_window`` (None: unknown), as a local model's
    prompt and answer share its context. ``capabilities`` (Anthropic's table of its own features, server tools
    and PDFs among them) is left out: jan says what a model can do in ``/v1/models``' OpenAI answer."""
    try:
        created = datetime.datetime.fromtimestamp(max(as_seconds(model.get("created")) or 0, 0), datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):  # a model.json's nonsense date reads as unknown
        created = datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
    return {"type": "model", "id": model["id"], "display_name": str(model.get("name") or model["id"]),
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "lifecycle": "active",
            "deprecated_at": None, "retires_at": None,
            "max_input_tokens": context_window, "max_tokens": context_window}


def _created_ms(model: Mapping[str, Any]) -> int:
    """A model.json's ``created`` in milliseconds (Jan writes milliseconds; seconds are read as such); 0 for none or a
    value that is no time (a hand-edited ``"created": "yesterday"``, an infinity)."""
    try:
        return as_millis(model.get("created")) or 0
    except (OverflowError, ValueError):
        return 0


def model_page(models: Sequence[Mapping[str, Any]], *, context_windows: Mapping[str, int | None] | None = None,
               limit: int = MODELS_DEFAULT_LIMIT,
               after_id: str | None = None, before_id: str | None = None,
               lifecycle: Sequence[str] | None = None) -> dict[str, Any]:
    """One page of Anthropic's model list: newest first (as Anthropic lists), ``limit`` models after the one
    ``after_id`` names or right before ``before_id`` (``has_more``: more lie that way); ``lifecycle`` keeps the
    stages asked for (Anthropic's default: active and deprecated); ``context_windows``: each model's by id
    (:func:`model_info`). ``ValueError`` naming the field for a cursor
    that names no model, or both cursors."""
    if after_id is not None and before_id is not None:
        raise ValueError("before_id: give after_id or before_id, not both")
    # newest first by the model.json's ``created`` in milliseconds (the data folder's clock: later for each model
    # made after another), not by ``created_at``'s seconds: models imported within one second (a server's
    # ``--model`` files at start) listed in id order among them (stable: the store's order among true equals)
    ordered = sorted(models, key=_created_ms, reverse=True)
    listed = [model_info(m, (context_windows or {}).get(m["id"])) for m in ordered]
    if lifecycle is not None:
        listed = [info for info in listed if info["lifecycle"] in lifecycle]
    ids = [info["id"] for info in listed]
    for name, cursor in (("after_id", after_id), ("before_id", before_id)):
        if cursor is not None and cursor not in ids:
            raise ValueError(f"{name}: no model '{cursor}' in the list")
    if before_id is not None:
        end = ids.index(before_id)
        page, has_more = listed[max(0, end - limit):end], end > limit
    else:
        start = ids.index(after_id) + 1 if after_id is not None else 0
        page, has_more = listed[start:start + limit], len(listed) > start + limit
    return {"data": page, "has_more": has_more, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None}


# -- files (/v1/files as Anthropic's SDK asks: client.beta.files) ---------------------------------------
# from_anthropic_sdk: jan.server.dialect_errors (imported above)


#: ``limit`` of a file list page: Anthropic's default and bounds.
FILES_DEFAULT_LIMIT, FILES_MAX_LIMIT = 20, 1000
#: The most file ids a file list's ``ids`` filter takes.
FILES_MAX_IDS = 100
#: Anthropic's bounds of an upload's ``expires_in_seconds`` (an hour to ninety days).
FILE_EXPIRY_SECONDS = (3600, 7_776_000)
#: The prefix of a file list's ``next_page`` cursor (Anthropic's are opaque and start so): the last id listed.
PAGE_PREFIX = "page_"


def _rfc3339(seconds: Any) -> str | None:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


#: RFC 3339 time of epoch seconds, as Anthropic's objects tell times (None for none).
rfc3339 = _rfc3339


def file_metadata(file: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic's ``FileMetadata`` of an upload's file object (its ``media_type`` too: ``TYPED_FIELDS`` of
    :mod:`jan.store.uploads`). ``downloadable``: jan serves every upload's bytes back (``/v1/files/{id}/content``)."""
    return {"type": "file", "id": file["id"], "filename": file.get("filename") or "", "size_bytes": file.get("bytes"),
            "mime_type": file.get("media_type") or "application/octet-stream",
            "created_at": _rfc3339(file.get("created_at")), "expires_at": _rfc3339(file.get("expires_at")),
            "downloadable": True}


def file_page(files: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
    """A page of Anthropic's file list: the cursors of the SDK's that pages by ``before_id``/``after_id``
    (``first_id``, ``last_id``, ``has_more``) and of the one that follows ``next_page`` (the next page's ``page``)."""
    data = [file_metadata(file) for file in files]
    last = data[-1]["id"] if data else None
    return {"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None, "last_id": last,
            "next_page": PAGE_PREFIX + last if has_more and last else None}


def file_deleted(file_id: str) -> dict[str, Any]:
    return {"id": file_id, "type": "file_deleted"}


# -- errors ---------------------------------------------------------------------------------
# (in jan.server.dialect_errors: an error before any of this module's code runs still leaves in Anthropic's shape)
error_status = anthropic_error_status
error_type = anthropic_error_type
error_body = anthropic_error_body
