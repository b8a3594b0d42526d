"""OpenAI Responses (``POST /v1/responses``) on jan's typed chat path.

Request: :class:`ResponsesRequest` -> :func:`input_messages` (the ``input`` items as
``ChatMessage``\\ s) and :func:`to_chat_request` (with the stored conversation before them).
Answer: :func:`output_items` (a whole ``ChatResult``) or :class:`ResponseStream` (``ChatDelta``
in, the typed event stream out, each event with its ``sequence_number``), and
:func:`response_object` for the ``response`` object itself. Field names follow OpenAI's API.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (ConfigDict, Discriminator, Field, PrivateAttr, Tag, TypeAdapter, ValidationError, ValidationInfo,
                      WrapValidator, field_validator, model_validator)

from jan.json_text import loads_json
from jan.errors import DocumentError, EngineError, MediaError
from jan.image_types import data_url_media
from jan.server.body_size import body_step
from jan.server.document_inputs import data_url_bytes
from jan.templates.formats.reasoning import joined_thoughts
from jan.templates.formats.text import WS
from jan.templates.grammar import GrammarError, whole_match_pattern, whole_match_problem
from jan.server.schemas import (TOOL_NAME_PATTERN, one_source, StringMetadata, tool_kind_check, MaxTokens, NullMeansDefault, ReasoningEffort, bounded, not_supported,
                                some_content)

from jan.server.dialects.unknown_fields import responses_unknown
from jan.server.dialects.responses_store import ITEM_PREFIXES, KeptTurn, mcp_call_turns, output_item_ids
from jan.services.encrypted_reasoning import encrypted_reasoning, reasoning_item_text, reasoning_of_encrypted
from jan.services.kept_items import continued, listed_names
from jan.services import types as typed
from jan.services.errors import PrefillGrammarError, RequestError
from jan.services.tool_pairs import ToolPairError, check_tool_pairs
from jan.services.token_counts import token_counts

if TYPE_CHECKING:
    from jan.services.mcp_use import McpEvent

__all__ = [
    "InputTokensRequest",
    "ResponseStream",
    "ResponsesRequest",
    "encrypted_reasoning",
    "input_items",
    "input_messages",
    "input_sources",
    "input_turns",
    "new_id",
    "output_items",
    "output_message",
    "reasoning_of_encrypted",
    "resolve_file_images",
    "sourced_turns",
    "response_object",
    "schema_error",
    "to_chat_request",
    "tool_pair_error",
    "valid_response_id",
]

_RESPONSE_ID = re.compile(r"^resp_[A-Za-z0-9]{1,64}\Z")


def new_id(prefix: str) -> str:
    """``resp``, ``msg``, ``fc``, ``rs``... followed by 32 hex digits."""
    return f"{prefix}_{secrets.token_hex(16)}"


def valid_response_id(value: str) -> bool:
    """Whether ``value`` can be a response id (so no id reaches outside the data folder)."""
    return bool(_RESPONSE_ID.match(value))


class _Wire(NullMeansDefault):
    # OpenAI adds request fields often (prompt_cache_key, safety_identifier, ...): unused ones are ignored.
    # Values are not coerced ("1" is no integer) and null means the default, as on every jan route.
    model_config = ConfigDict(extra="ignore", strict=True)


# -- request ------------------------------------------------------------------------------------
class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class OutputText(_Wire):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(_Wire):
    type: Literal["refusal"]
    refusal: str


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    #: (jan.server.schemas.IMAGE_DETAILS) OpenAI's default when none is given: an item listed back
    #: (``input_items``) has one, which the SDK's ``ResponseInputImage`` requires (without it the SDK took the part
    #: for another kind).
    detail: Literal["auto", "low", "high", "original"] = "auto"
    #: ``(bytes, media type)`` of the upload ``file_id`` names, read by the route (:func:`resolve_file_images`).
    _file: tuple[bytes, str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_source(self) -> "InputImage":
        one_source(self, ("image_url", "file_id"), required=False)  # (neither: :func:`_image` says it, as before)
        return self


class InputFile(_Wire):
    """A document (a PDF, a text file), read as text (:mod:`jan.services.documents`): inline as ``file_data``
    (a base64 ``data:`` URL, or bare base64) with its ``filename``, an upload by ``file_id``, or by ``file_url``
    (fetched only where image URLs are: ``--allow-media-from``)."""

    type: Literal["input_file"]
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: str | None = None
    #: ``(bytes, media type, file name)`` of the upload or URL named, read by the route
    #: (:func:`jan.server.document_inputs.read_body_documents`).
    _file: tuple[bytes, str, str | None] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_source(self) -> "InputFile":
        if self.file_data is None and self.file_id is None and self.file_url is None:
            raise ValueError("give file_data (the file, base64), file_id (an uploaded file's id) or file_url")
        one_source(self, ("file_data", "file_id", "file_url"))
        return self


ContentPart = Annotated[Union[InputText, OutputText, Refusal, InputImage, InputFile], Field(discriminator="type")]


class MessageItem(_Wire):
    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: Union[str, list[ContentPart]]

    @field_validator("content")
    @classmethod
    def _some_content(cls, value: Any, info: Any) -> Any:
        return some_content(value, info)


class FunctionCallItem(_Wire):
    type: Literal["function_call"]
    id: str | None = None
    call_id: str
    name: str
    arguments: str


#: What a tool's output item holds: text, or content parts (OpenAI's function_call_output / custom_tool_call_output).
ToolOutput = Union[str, list[Annotated[Union[InputText, InputImage, InputFile], Field(discriminator="type")]]]


class FunctionCallOutputItem(_Wire):
    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str
    output: ToolOutput


class CustomToolCallItem(_Wire):
    """A call the model made of a ``custom`` (freeform) tool, sent back: its ``input`` is the tool's text."""

    type: Literal["custom_tool_call"]
    id: str | None = None
    call_id: str
    name: str
    input: str


class CustomToolCallOutputItem(_Wire):
    type: Literal["custom_tool_call_output"]
    id: str | None = None
    call_id: str
    output: ToolOutput


class ReasoningText(_Wire):
    # (a part of another type was taken for thinking, whatever it held: OpenAI's content parts are reasoning_text;
    # its type is required, as OpenAI's API requires it)
    type: Literal["reasoning_text"]
    text: str


class SummaryText(_Wire):
    type: Literal["summary_text"]  # (required, as OpenAI's API requires it)
    text: str


class ReasoningItem(_Wire):
    """An earlier answer's reasoning sent back. ``summary`` is required (``[]`` where there is none), as OpenAI's
    API requires it (a 400, code ``missing_required_parameter``); every reasoning item jan answers has one."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[SummaryText]
    content: list[ReasoningText] | None = None
    #: What ``include: ["reasoning.encrypted_content"]`` returned (:func:`encrypted_reasoning`): stateless
    #: clients (Codex, ``store: false``) send a reasoning item back with only this, its text left out.
    encrypted_content: str | None = None


class WebSearchCallItem(_Wire):
    """A hosted web search an earlier response made (OpenAI's: a conversation carried over to jan, or a client that
    keeps every output item). The item holds the search's action, never its results, so the model has nothing to
    read in it: accepted, and left out of the prompt (what the search found is in the message that followed it)."""

    type: Literal["web_search_call"]
    id: str | None = None
    status: str | None = None
    action: dict[str, Any] | None = None


class McpItem(_Wire):
    """An MCP item: an earlier answer's ``mcp_list_tools``, ``mcp_call`` or ``mcp_approval_request`` sent back
    (kept out of the prompt: the answer that followed a call holds what the model made of it), or the client's
    ``mcp_approval_response`` to a request of the previous response (read by the route: :func:`approvals`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response"]
    id: str | None = None
    approval_request_id: str | None = None
    approve: bool | None = None
    reason: str | None = None


MCP_ITEMS = ("mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response")


def mcp_call_error(text: str | None) -> dict[str, Any] | None:
    """An ``mcp_call`` item's ``error`` as OpenAI's API types it (``McpToolExecutionError`` of its OpenAPI document:
    ``{"type": "mcp_tool_execution_error", "content": [...]}``, the MCP tool result's content): every failure jan
    reports for a call is the call's own (the tool's error result, a timeout, a call not run), never an HTTP status
    or protocol code it could give (OpenAI's ``http_error`` / ``mcp_protocol_error`` need one)."""
    if text is None:
        return None
    return {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": text}]}


class ItemReference(_Wire):
    """An earlier item by its id (an input or output item of a stored response), in place of the item itself:
    :func:`item_references` finds them, the route reads each from the store (:func:`resolve_item_references`)."""

    type: Literal["item_reference"] = "item_reference"
    id: str


def _item_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind is None and isinstance(value, dict) and "role" not in value and "id" in value:
        return "item_reference"  # (the SDK's ItemReference may leave its type out)
    return kind or "message"


InputItem = Annotated[
    Union[Annotated[MessageItem, Tag("message")], Annotated[FunctionCallItem, Tag("function_call")],
          Annotated[FunctionCallOutputItem, Tag("function_call_output")], Annotated[ReasoningItem, Tag("reasoning")],
          Annotated[CustomToolCallItem, Tag("custom_tool_call")],
          Annotated[CustomToolCallOutputItem, Tag("custom_tool_call_output")],
          Annotated[WebSearchCallItem, Tag("web_search_call")], Annotated[ItemReference, Tag("item_reference")],
          *(Annotated[McpItem, Tag(kind)] for kind in MCP_ITEMS)],
    # (pydantic's own message would name the function above; a client needs the types it may send)
    Discriminator(_item_kind, custom_error_type="invalid_item_type",
                  custom_error_message="unknown input item type: expected 'message', 'function_call', "
                                       "'function_call_output', 'custom_tool_call', 'custom_tool_call_output', "
                                       "'reasoning', 'web_search_call', 'mcp_approval_response' (or another MCP "
                                       "item) or 'item_reference'"),
]


#: What the Responses API's tools are, said of a kind it does not take.
_TOOLS_TAKEN = ("functions (type 'function', called with JSON arguments) and custom tools (type 'custom', called with "
                "free-form text)")
_tool_kind = tool_kind_check(_TOOLS_TAKEN)


#: A function's ``type`` (``"custom"`` is told apart first, by :func:`_tool_tag`).
FunctionKind = Annotated[Literal["function"], WrapValidator(_tool_kind)]
#: The ``type`` of a tool an ``allowed_tools`` choice names: either kind.
ToolKind = Annotated[Literal["function", "custom"], WrapValidator(_tool_kind)]


#: OpenAI's hosted web search, by each of its names. Codex declares it in every request (its default web search
#: mode) beside the function tools it runs itself: it lets the model search, never makes it. jan has no search to run,
#: so the declaration is accepted and the model is offered nothing for it: it answers from what it has, as OpenAI's
#: model does when it chooses not to search. A request that forces a search (a ``tool_choice`` naming it) is still a
#: 400, as is every other hosted tool (file search, code interpreter, MCP...), whose results the answer would need.
WEB_SEARCH_KINDS = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11")


def _tool_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind == "mcp":
        return "mcp"
    return "custom" if kind == "custom" else "web_search" if kind in WEB_SEARCH_KINDS else "function"


def _not_deferred(value: bool | None) -> bool | None:
    # (OpenAI's rule: a deferred tool is loaded only by a tool_search tool, which jan does not run; offering it at
    # once would be another prompt than the one asked for, and no search could ever load it)
    if value:
        raise ValueError("Deferred tools require tools.tool_search, which jan does not run: send the tool without "
                         "defer_loading")
    return value


class FunctionTool(_Wire):
    type: FunctionKind
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None

    _deferred = field_validator("defer_loading")(_not_deferred)


class CustomFormat(_Wire):
    """A custom tool's input format: free ``text``, or a ``grammar``, enforced (``regex``: as a JSON schema
    ``pattern`` of the input; ``lark``: as the input's :class:`~jan.services.types.TextGrammar`, and shown to the
    model in the tool's description)."""

    type: Literal["text", "grammar"]
    syntax: Literal["lark", "regex"] | None = None
    definition: str | None = None

    @model_validator(mode="after")
    def _grammar(self) -> "CustomFormat":
        if self.type == "grammar" and (self.syntax is None or self.definition is None):
            raise ValueError("a grammar format needs its syntax ('lark' or 'regex') and its definition")
        return self

    @field_validator("definition")
    @classmethod
    def _regex(cls, definition: str | None, info: ValidationInfo) -> str | None:
        if definition is not None and info.data.get("type") == "grammar" and info.data.get("syntax") == "regex":
            # The grammar holds the input to it, or the request is refused, as a Lark definition's construct GBNF
            # cannot express is: a lookaround, a word boundary or an inner anchor was let through as a JSON schema
            # pattern is (unenforced, logged), and the call's input was any text.
            problem = whole_match_problem(definition)
            if problem is not None:
                raise ValueError(problem)
        return definition


class CustomTool(_Wire):
    """A freeform tool (Codex's ``apply_patch``): the model calls it with text, not JSON arguments."""

    type: Literal["custom"]
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    format: CustomFormat | None = None
    defer_loading: bool | None = None

    _deferred = field_validator("defer_loading")(_not_deferred)


class WebSearchTool(_Wire):
    """OpenAI's hosted web search (:data:`WEB_SEARCH_KINDS`): accepted and not offered to the model. Its settings
    (``external_web_access``, ``search_context_size``, ``user_location``, ``filters``...) are kept only to be echoed
    in the response's ``tools``, as OpenAI echoes them."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11"]


class McpToolFilter(_Wire):
    tool_names: list[str] | None = None
    read_only: bool | None = None

    @field_validator("read_only")
    @classmethod
    def _no_read_only(cls, v):
        # (jan does not keep a tool's annotations: the filter would be ignored, and every tool let through)
        if v is not None:
            raise ValueError("read_only filters are not supported: name the tools in tool_names")
        return v


class McpApprovalFilter(_Wire):
    always: McpToolFilter | None = None
    never: McpToolFilter | None = None


class McpTool(_Wire):
    """OpenAI's remote MCP tool: the server connects to ``server_url`` (allowed by ``--allow-media-from``, as a
    media URL is) or, with no URL, to the ``mcp.json`` server named ``server_label``, and runs the model's calls
    itself (:mod:`jan.services.mcp_use`)."""

    type: Literal["mcp"]
    server_label: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    server_url: str | None = None
    connector_id: str | None = None
    headers: dict[str, str] | None = None
    authorization: str | None = None
    allowed_tools: Union[list[str], McpToolFilter, None] = None
    require_approval: Union[Literal["always", "never"], McpApprovalFilter, None] = None
    server_description: str | None = None
    defer_loading: bool | None = None

    _deferred = field_validator("defer_loading")(_not_deferred)

    @field_validator("connector_id")
    @classmethod
    def _no_connector(cls, v):
        if v is not None:
            raise ValueError("OpenAI's connectors are not run by jan: give a server_url, or a server_label that "
                             "names a server of mcp.json")
        return v


Tool = Annotated[Union[Annotated[FunctionTool, Tag("function")], Annotated[CustomTool, Tag("custom")],
                       Annotated[WebSearchTool, Tag("web_search")], Annotated[McpTool, Tag("mcp")]],
                 Discriminator(_tool_tag)]


class McpChoice(_Wire):
    """``{"type": "mcp", "server_label": ..., "name": ...}``: the first turn calls that tool of that server."""

    type: Literal["mcp"]
    server_label: str
    name: str | None = None


class FunctionChoice(_Wire):
    type: FunctionKind
    name: str


class CustomChoice(_Wire):
    type: Literal["custom"]
    name: str


NamedChoice = Annotated[Union[Annotated[FunctionChoice, Tag("function")], Annotated[CustomChoice, Tag("custom")],
                              Annotated[McpChoice, Tag("mcp")]],
                        Discriminator(_tool_tag)]


class AllowedTool(_Wire):
    type: ToolKind
    name: str


class AllowedMcpTool(_Wire):
    """An MCP server's tools in an ``allowed_tools`` choice: all of ``server_label``'s, or its tool ``name``
    (applied once the servers are listed: :func:`jan.server.dialects.responses_mcp.with_tools`)."""

    type: Literal["mcp"]
    server_label: str
    name: str | None = None


def _allowed_tool_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "mcp" if kind == "mcp" else "tool"


class AllowedToolsChoice(_Wire):
    """``{"type": "allowed_tools", "mode": "auto" | "required", "tools": [...]}``: only these of ``tools``
    may be called (OpenAI keeps the full list in the prompt for its cache; jan shows the model only these)."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[Annotated[Union[Annotated[AllowedTool, Tag("tool")], Annotated[AllowedMcpTool, Tag("mcp")]],
                          Discriminator(_allowed_tool_tag)]]

    @property
    def mcp(self) -> list[AllowedMcpTool]:
        return [t for t in self.tools if isinstance(t, AllowedMcpTool)]


ReasoningSummary = Literal["auto", "concise", "detailed"]


class ReasoningParam(_Wire):
    # every level of the one table (jan.templates.formats.plan.EFFORT_LEVELS): Codex sends xhigh
    effort: ReasoningEffort | None = None
    # Asks for a summary of the reasoning. A local model writes its reasoning and no summary of it, so an asked-for
    # summary is the reasoning itself: the reasoning item's ``summary`` (one ``summary_text`` part, streamed with the
    # ``response.reasoning_summary_*`` events) in place of its ``reasoning_text`` content, as Ollama's Responses API
    # gives a thinking model's; clients that show only summaries (OpenAI's Agents SDK, Codex by default) show it.
    # Any level gives all of it: nothing is left out to make it "concise".
    summary: ReasoningSummary | None = None
    generate_summary: ReasoningSummary | None = None  # its older name


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextParam(_Wire):
    format: TextFormat | None = None
    # A length hint for OpenAI's GPT-5 models, no setting of a local model: accepted and echoed, as
    # /v1/chat/completions accepts its ``verbosity``.
    verbosity: Literal["low", "medium", "high"] | None = None


class StreamOptions(_Wire):
    # OpenAI pads stream events with an ``obfuscation`` field against network side channels; jan's events
    # carry none, so there is nothing to turn off. The text is the same either way.
    include_obfuscation: bool | None = None


#: ``include`` values (OpenAI's whole list). jan produces the two marked; the others name output of
#: built-in tools jan does not have or input echoes it keeps anyway, so asking for them changes nothing.
Includable = Literal[
    "message.output_text.logprobs",  # logprobs on output_text parts and deltas (with top_logprobs alternatives)
    "reasoning.encrypted_content",  # reasoning items carry encrypted_content, to be sent back statelessly
    "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
    "message.input_image.image_url", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
]
LOGPROBS = "message.output_text.logprobs"
ENCRYPTED_REASONING = "reasoning.encrypted_content"

# Request fields jan refuses unless null, with why: ignoring them would answer a different request.
_REFUSED_UNLESS_NULL = {
    "prompt": "it stores no prompt templates; send the prompt as instructions and input",
}


class ConversationRef(_Wire):
    """``conversation: {"id": "conv_..."}`` (or the id alone): the conversation (``/v1/conversations``) the
    response reads before its input and adds its input and output to."""

    id: str


class _Prompt(_Wire):
    """What a prompt is made of: shared by a response request and an input token count.

    A top-level field the body does not declare is OpenAI's 400 ``unknown_parameter``, so a typo (or a field of
    chat completions) is never dropped; every field of the SDK's ``ResponseCreateParams`` is declared. Inside the
    body (items, tools) what jan has no use for is ignored: OpenAI adds item fields often."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    input: Union[str, list[InputItem], None] = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Union[Literal["auto", "none", "required"], NamedChoice, AllowedToolsChoice, None] = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningParam | None = None
    text: TextParam | None = None
    previous_response_id: str | None = None
    #: "auto": a conversation longer than the context loses its oldest turns (jan.services.fit); "disabled"
    #: (the default, as OpenAI's): it is a 400.
    truncation: Literal["auto", "disabled"] | None = None
    #: The conversation the response belongs to (:class:`ConversationRef`): not with ``previous_response_id``.
    conversation: Union[str, ConversationRef, None] = None
    # refused unless null (_REFUSED_UNLESS_NULL)
    prompt: dict[str, Any] | None = None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _no_forced_search(cls, v):
        # (a hosted tool's choice, {"type": "web_search"}, names no tool; without this, pydantic's union error)
        if isinstance(v, dict) and v.get("type") in WEB_SEARCH_KINDS:
            raise not_supported("tool_choice", "it has no web search to run: a declared web_search tool is accepted "
                                "and not offered to the model, so a search cannot be forced")
        return v

    @field_validator(*_REFUSED_UNLESS_NULL)
    @classmethod
    def _refused_unless_null(cls, v, info):
        if v is not None:
            raise not_supported(info.field_name, _REFUSED_UNLESS_NULL[info.field_name])
        return v

    @classmethod
    def unknown_field(cls, field: str) -> tuple[str, str]:
        return responses_unknown(field)

    @property
    def conversation_id(self) -> str | None:
        """The id ``conversation`` names (given as a string or as ``{"id": ...}``); ``None`` without one."""
        return self.conversation.id if isinstance(self.conversation, ConversationRef) else self.conversation


class _Answer(_Wire):
    """What a response request asks of the answer, beyond its prompt."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_output_tokens: MaxTokens | None = None
    temperature: float | None = bounded("temperature")
    top_p: float | None = bounded("top_p")
    store: bool = True
    metadata: StringMetadata | None = None
    stream: bool = False
    background: bool = False
    include: list[Includable] | None = None
    #: Alternatives per token in the logprobs that ``include: ["message.output_text.logprobs"]`` asks for
    #: (without that, none are returned, as OpenAI's).
    top_logprobs: int | None = bounded("top_logprobs")
    #: A cap on calls to built-in tools (web search, ...), which jan does not have; function calls are not
    #: counted by OpenAI either. Echoed.
    max_tool_calls: int | None = Field(default=None, ge=1)
    stream_options: StreamOptions | None = None
    # OpenAI's caching, abuse-tracking and billing hints, with no local meaning: accepted and echoed
    # (service_tier as the tier that served the request, "default").
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    service_tier: str | None = None
    # Accepted and ignored, as the hints above: OpenAI's prompt-cache breakpoints and diagnostics (jan's KV cache
    # reuses any prefix a slot holds), its access programs, its background completion windows (a background
    # response here starts as soon as the model is free), its image compression, and its compaction of a long
    # context (truncation: "auto" is jan's way of keeping one within the model's).
    prompt_cache_options: dict[str, Any] | None = None
    # Codex's tags of a request for OpenAI's side (its installation, its window of the conversation), sent by current
    # Codex CLIs; nothing the model reads: accepted and ignored, as the hints above.
    client_metadata: dict[str, str] | None = None
    access_programs: dict[str, Any] | None = None
    background_options: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    #: Refused unless null, as chat completions' own: jan has no moderation model, and a response that should
    #: have been blocked must not pass for a moderated one.
    moderation: dict[str, Any] | None = None

    @field_validator("moderation")
    @classmethod
    def _no_moderation(cls, value: Any) -> Any:
        if value is not None:
            raise not_supported("moderation", "it has no moderation model")
        return value

    def includes(self, value: str) -> bool:
        return value in (self.include or ())

    @property
    def summarized(self) -> bool:
        """Whether the reasoning is answered as its summary (``reasoning.summary`` or ``generate_summary`` set)."""
        return self.reasoning is not None and bool(self.reasoning.summary or self.reasoning.generate_summary)


class ResponsesRequest(_Prompt, _Answer):
    """The body of ``POST /v1/responses``."""

    @model_validator(mode="after")
    def _stream_options_only_when_streaming(self) -> "ResponsesRequest":
        # OpenAI's 400, as chat completions' ("The 'stream_options' parameter is only allowed when 'stream' is
        # enabled."): options for a stream that is not sent are a client's mistake, not a setting (an input token
        # count takes the body a response would be made of, and ignores both)
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true")
        return self


class InputTokensRequest(_Prompt, _Answer):
    """The body of ``POST /v1/responses/input_tokens``: a response request's prompt, counted, not answered. A
    response request's other fields are taken (checked, and ignored), so a client counts the body it will send."""

    # a style preset of OpenAI's own models: accepted and ignored
    personality: str | None = None


# -- request -> typed --------------------------------------------------------------------------
_INPUT_ITEM: TypeAdapter[Any] = TypeAdapter(InputItem)


def item_references(body: Any, field: str = "input") -> list[tuple[int, str]]:
    """``(index in the items, item id)`` of each ``item_reference`` of the body's ``input`` (``field``: the body's
    field that holds the items, a conversation's ``items``)."""
    items = getattr(body, field)
    if not isinstance(items, list):
        return []
    return [(i, item.id) for i, item in enumerate(items) if isinstance(item, ItemReference)]


async def resolve_item_references(body: Any, find: Callable[[str], Awaitable[dict[str, Any] | None]],
                                  field: str = "input") -> None:
    """Put in place of each ``item_reference`` of ``input`` (``field``) the item it names, ``find(id)`` (the stored
    item, or ``None``: a 400 naming the reference). Done before :func:`input_messages`, which takes items only. An
    item that is no input (an output of a kind a request cannot send) is a 400 too."""
    items = getattr(body, field)
    for index, item_id in item_references(body, field):
        found = await find(item_id)
        where = f"{field}[{index}].id"
        if found is None:
            raise RequestError(f"{where}: no stored item with id '{item_id}' (an item of a response stored with "
                               "store: true)", param=where, code="invalid_value")
        try:
            item = _INPUT_ITEM.validate_python(found)
        except ValidationError:
            raise RequestError(f"{where}: the item '{item_id}' ({found.get('type')}) cannot be sent as input",
                               param=where, code="invalid_value") from None
        if isinstance(item, ItemReference):  # (a stored item is never a reference: the store keeps them resolved)
            raise RequestError(f"{where}: '{item_id}' names another reference", param=where, code="invalid_value")
        items[index] = item


async def resolve_file_images(body: Any, read: Callable[[str, str], Awaitable[tuple[bytes, str]]],
                              field: str = "input") -> None:
    """Read, into each ``input_image`` of ``input`` given by ``file_id`` alone, the upload it names (OpenAI's Files
    API), with ``read(file_id, param)``: the route's, which refuses (a 400 naming ``param``) a file that is not
    there or is no image. Done before :func:`input_messages`, which turns them into image parts."""
    for part, param in await body_step(_file_images, body, field):  # a walk over the whole input: off the loop when big
        part._file = await read(part.file_id, param)


def _file_images(body: Any, name: str = "input") -> list[tuple[InputImage, str]]:
    """Each ``input_image`` of the items of the body's field ``name`` given by ``file_id`` alone, with the field
    that names it."""
    items = getattr(body, name)
    if not isinstance(items, list):
        return []
    found = []
    for i, item in enumerate(items):
        if isinstance(item, MessageItem):
            parts, field = item.content, f"{name}[{i}].content"
        elif isinstance(item, (FunctionCallOutputItem, CustomToolCallOutputItem)):
            parts, field = item.output, f"{name}[{i}].output"
        else:
            continue
        for j, part in enumerate(parts if isinstance(parts, list) else ()):
            if isinstance(part, InputImage) and part.image_url is None and part.file_id is not None:
                found.append((part, f"{field}[{j}].file_id"))
    return found


def _image(part: InputImage, where: str) -> typed.ImagePart:
    r"""An ``input_image`` (at ``where``) as an image part: a base64 ``data:`` URL, or the upload ``file_id`` names
    (read before, :func:`resolve_file_images`); any other URL was fetched or refused before (jan.server.media_fetch).
    Refusals are :class:`MediaError`\ s naming the field, with the codes every dialect gives them."""
    if part.image_url is None:
        if part._file is not None:
            return typed.ImagePart(data=part._file[0], mime_type=part._file[1])
        if part.file_id is not None:  # (a caller that did not read the uploads first)
            raise MediaError(f"{where}.file_id: the file was not read; send the image as a base64 data: URL "
                             "(image_url)", reason="not_allowed", param=f"{where}.file_id")
        raise MediaError(f"{where}: an input_image needs image_url (a base64 data: URL) or file_id (an uploaded "
                         "image's id)", reason="unsupported_format",
                         param=f"{where}.image_url")
    data, mime = data_url_media(part.image_url, f"{where}.image_url")  # (every dialect's reading: jan.image_types)
    return typed.ImagePart(data=data, mime_type=mime or "application/octet-stream")


def _document(part: InputFile, where: str) -> typed.DocumentPart:
    """An ``input_file`` (at ``where``) as a document: its ``file_data``, or what ``file_id`` / ``file_url`` name
    (read by the route first: :func:`jan.server.document_inputs.read_body_documents`)."""
    if part.file_data is not None:
        data, media_type = data_url_bytes(part.file_data, f"{where}.file_data", raw_base64=True)
        return typed.DocumentPart(data, media_type, title=part.filename)
    if part._file is None:  # (a caller that did not read them first)
        field = f"{where}.file_id" if part.file_id is not None else f"{where}.file_url"
        raise DocumentError(f"{field}: the file was not read; send it as file_data", reason="not_allowed",
                            param=field)
    data, media_type, filename = part._file
    return typed.DocumentPart(data, media_type, title=part.filename or filename)


def _document_field(part: Any) -> str:
    """The field of an ``input_file`` that held its document (what a refusal of it names); "" for another part."""
    if not isinstance(part, InputFile):
        return ""
    return ".file_data" if part.file_data is not None else ".file_id" if part.file_id is not None else ".file_url"


def _parts(content: str | list, where: str) -> tuple[typed.Part, ...]:
    if isinstance(content, str):
        # "" is one empty text part, as [{"type": "input_text", "text": ""}] is: kept so, a conversation lists it back
        # as OpenAI's does (it listed "content": [] for the one and an empty input_text for the other)
        return (typed.TextPart(content),)
    parts: list[typed.Part] = []
    for j, part in enumerate(content):
        if isinstance(part, (InputText, OutputText)):
            parts.append(typed.TextPart(part.text))
        elif isinstance(part, Refusal):
            parts.append(typed.TextPart(part.refusal))
        elif isinstance(part, InputFile):
            parts.append(_document(part, f"{where}[{j}]"))
        else:
            parts.append(_image(part, f"{where}[{j}]"))
    return tuple(parts)


def _input_turns(items: str | list | None, name: str = "input") -> list[tuple[typed.ChatMessage, str]]:
    """:func:`input_messages`, each with the field of ``input`` it came from (what an error about it names);
    ``name``: the body's field that holds the items (a conversation's ``items``)."""
    return [(turn, field) for turn, field, _ in _sourced_turns(items, name)]


def _sourced_turns(items: str | list | None, name: str = "input") -> list[tuple[typed.ChatMessage, str, list[int]]]:
    """:func:`_input_turns`, each turn with the indices of the items it was made of (a conversation keeps each
    item's id and kind with its turn: :func:`input_sources`)."""
    if items is None:
        return []
    if isinstance(items, str):
        return [(typed.ChatMessage.of_text("user", items), name, [0])]
    out: list[tuple[typed.ChatMessage, str, list[int]]] = []
    reasoning: str | None = None
    reasoning_at: list[int] = []  # (the reasoning item's index, which goes with the turn after it)
    names: dict[str, dict[str, str]] = {}  # (MCP calls' names, as their servers' last listings offered them)
    # Calls that join the assistant turn last in ``out`` (with the thinking given before each), folded into it once
    # the run of calls ends: rebuilt call by call, a turn of n calls cost n^2 (10,000 function_call items, a 1 MB
    # body, took seconds of the server's time; 20,000 half a minute).
    open_calls: list[typed.ToolCall] = []
    open_reasoning: list[str | None] = []

    def fold_calls() -> None:
        if open_calls:
            last, field, sources = out[-1]
            out[-1] = (typed.ChatMessage("assistant", last.content, tool_calls=(*last.tool_calls, *open_calls),
                                         reasoning=joined_thoughts([last.reasoning, *open_reasoning]) or None),
                       field, sources)
            open_calls.clear()
            open_reasoning.clear()

    # The thinking of reasoning items not yet given to a turn, joined once the run of them ends: joined item by
    # item, 40,000 of them (a 3 MB body) took seconds, the text copied at each.
    thoughts: list[str | None] = []
    for i, item in enumerate(items):
        if thoughts and not isinstance(item, ReasoningItem):
            reasoning = joined_thoughts([reasoning, *thoughts]) or None
            thoughts.clear()
        if not isinstance(item, (FunctionCallItem, CustomToolCallItem, ReasoningItem)):
            fold_calls()  # (a reasoning item between calls, as jan streams a turn's, only goes with the next call)
        if isinstance(item, ItemReference):  # (a caller that did not resolve them first)
            raise ValueError(f"{name}[{i}]: the item_reference '{item.id}' was not read; send the item itself")
        if isinstance(item, McpItem) and item.type == "mcp_list_tools":
            listed = listed_names({"type": item.type, **(item.model_extra or {})})
            if listed is not None:
                names[listed[0]] = listed[1]
        if isinstance(item, McpItem) and item.type == "mcp_call":
            # an earlier answer's MCP call sent back (a client that keeps its items: store false): the model reads
            # it as the call it made and its result, as it did then (and as a stored one's: mcp_call_turns)
            # what the model wrote before the call (the assistant turn before it, with no call of its own, and the
            # reasoning items since) is the call's turn, as a stored response's is read (kept_items.history_turns)
            last, field, sources = out[-1] if out else (None, f"{name}[{i}]", [])
            before = continued(last)
            if before is None:
                field, sources = f"{name}[{i}]", []
            before = typed.ChatMessage("assistant", before.content if before else (), reasoning=joined_thoughts(
                [before.reasoning if before else None, reasoning]) or None)
            try:
                call, result = mcp_call_turns(item.model_extra or {}, item.id or f"mcp_{i}", before, names)
            except ValueError as exc:
                raise ValueError(f"{name}[{i}]: {exc}") from None
            if sources:
                out.pop()
            out.append((call, field, [*sources, *reasoning_at, i]))
            out.append((result, f"{name}[{i}]", [i]))
            reasoning, reasoning_at = None, []
            continue
        if isinstance(item, (WebSearchCallItem, McpItem)):
            continue  # (nothing in it for the model: WebSearchCallItem, an MCP listing or approval)
        if isinstance(item, ReasoningItem):
            try:  # (read as a conversation's kept item is: kept_items.kept_item_turns)
                thought = reasoning_item_text((p.text for p in (item.content or item.summary)),
                                              item.encrypted_content)
            except ValueError:
                raise ValueError(f"{name}[{i}].encrypted_content: damaged (it is not the one jan gave)") from None
            # several reasoning items before one turn (and a summary's parts, paragraphs of their own) are all of
            # its thinking: each joined to the last, none lost
            thoughts.append(thought)
            reasoning_at.append(i)
        elif isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            if role != "assistant" and reasoning is not None:
                # reasoning that was the whole of an answer (cut off while thinking: jan's own output then is a
                # reasoning item alone) is that answer's turn, as a stored response keeps it and as the other
                # dialects' thinking-only assistant turn is: carried on, it was the next answer's thinking
                out.append((typed.ChatMessage("assistant", (), reasoning=reasoning), f"{name}[{reasoning_at[0]}]",
                            reasoning_at))
                reasoning, reasoning_at = None, []
            mine = reasoning_at + [i] if role == "assistant" else [i]
            out.append((typed.ChatMessage(role, _parts(item.content, f"{name}[{i}].content"),
                                          reasoning=reasoning if role == "assistant" else None),
                        f"{name}[{i}].content", mine))
            if role == "assistant":
                reasoning, reasoning_at = None, []
        elif isinstance(item, (FunctionCallItem, CustomToolCallItem)):
            arguments = item.arguments if isinstance(item, FunctionCallItem) else custom_arguments(item.input)
            call = typed.ToolCall(item.call_id, item.name, arguments)
            last, field, sources = out[-1] if out else (None, "", [])
            if last is not None and last.role == "assistant":
                # a reasoning item between the turn's message and this call (jan streams thinking the model
                # wrote between its text and its call as an item of its own) is this turn's thinking too, never
                # the next turn's
                open_calls.append(call)
                open_reasoning.append(reasoning)
                sources.extend(reasoning_at)
                sources.append(i)
                reasoning, reasoning_at = None, []
            else:
                out.append((typed.ChatMessage("assistant", (), tool_calls=(call,), reasoning=reasoning),
                            f"{name}[{i}]", reasoning_at + [i]))
                reasoning, reasoning_at = None, []
        else:
            out.append((typed.ChatMessage("tool", _parts(item.output, f"{name}[{i}].output"),
                                          tool_call_id=item.call_id), f"{name}[{i}].output", [i]))
    fold_calls()
    reasoning = joined_thoughts([reasoning, *thoughts]) or None if thoughts else reasoning
    if reasoning is not None:
        # reasoning with no turn after it (an answer cut off while thinking, sent back to go on): the answer's turn,
        # a thought the request continues (to_chat_request), as every dialect's thinking-only final assistant
        # turn is; it was dropped, and the model answered afresh as though it had never thought it
        out.append((typed.ChatMessage("assistant", (), reasoning=reasoning), f"{name}[{reasoning_at[0]}]",
                    reasoning_at))
    return out


def sourced_turns(items: str | list | None, field: str = "input") -> list[tuple[typed.ChatMessage, str, list[int]]]:
    """:func:`input_turns`, each turn with the indices of the items it was made of (:func:`input_sources`)."""
    return _sourced_turns(items, field)


def input_sources(items: str | list | None) -> list[list[int]]:
    """For each turn :func:`input_messages` makes of ``items``, the indices of the items it was made of (a string:
    its one item, ``[0]``), in order: what a conversation keeps of each item (its id, its kind) goes with its turn.
    An item in no turn (a ``web_search_call``) is in none; reasoning with no turn after it is a thinking-only
    assistant turn of its own (the thought the request continues)."""
    return [sources for _, _, sources in _sourced_turns(items)]


def input_turns(items: str | list | None, field: str = "input") -> list[tuple[typed.ChatMessage, str]]:
    """:func:`input_messages`, each with the field it came from (``items[i].content``...)."""
    return _input_turns(items, field)


def input_messages(items: str | list | None, field: str = "input") -> list[typed.ChatMessage]:
    """The ``input`` as chat messages: a string is one user message; consecutive
    ``function_call`` items join the assistant turn before them (as one message's tool calls),
    a ``reasoning`` item goes to the assistant turn after it. Raises ``ValueError`` (a
    :class:`MediaError` for images) naming the field for content jan cannot take (image URLs, file ids)."""
    return [message for message, _ in _input_turns(items, field)]


def _part_of(body: _Prompt, field: str, part: int | None) -> str:
    """``[j]``: the index of the part at fault (``part``, the typed message's) of the list of parts at ``field``
    (``input[i].content`` or ``.output``: one typed part each, in order); "" for none, or a string's one part."""
    match = re.fullmatch(r"input\[(\d+)\]\.(content|output)", field)
    if part is None or match is None or not isinstance(body.input, list):
        return ""
    content = getattr(body.input[int(match.group(1))], match.group(2), None)
    return f"[{part}]{_document_field(content[part])}" if isinstance(content, list) and part < len(content) else ""


def media_error(exc: MediaError, body: _Prompt, history: int) -> MediaError:
    """A refusal of the typed request's media (a model without a projector, an image that does not decode, a
    media marker in the text) naming the field it came from in the Responses API's terms: ``input[i].content``
    (or ``.output``; ``[j]`` the part, where the error names one), ``previous_response_id`` for a turn of the
    stored conversation (``history`` turns of it come after the ``instructions``), not the typed message."""
    if exc.message_index is None:
        return exc
    index = exc.message_index - (1 if body.instructions else 0)
    if index < 0:
        field = "instructions"
    elif index < history:
        field = "conversation" if body.conversation_id else "previous_response_id"
    else:
        turns = _input_turns(body.input)
        field = turns[index - history][1] if index - history < len(turns) else "input"
        field += _part_of(body, field, exc.part_index)
    _, sep, why = str(exc).partition(": ")
    why = why if sep else str(exc)
    if field in ("previous_response_id", "conversation"):
        why = f"in the stored conversation, {why}"
    return MediaError(f"{field}: {why}", reason=exc.reason, param=field)


def schema_error(exc: GrammarError, body: ResponsesRequest, chat_request: typed.ChatRequest) -> GrammarError:
    """A schema the grammar cannot take (``schema_too_complex``...) naming its field in the Responses API's terms:
    a tool's ``tools[i].parameters`` (a custom tool's regex: ``tools[i].format.definition``, as it was written), the
    format's ``text.format.schema``; the typed request names OpenAI chat's."""
    err = renamed_schema_error(exc, body.tools, chat_request, "tools[{i}].parameters", "text.format.schema")
    tool = re.fullmatch(r"tools\[(\d+)\]\.parameters", err.param or "")
    i = int(tool[1]) if tool else -1
    if not 0 <= i < len(body.tools or ()) or not isinstance(body.tools[i], CustomTool):
        return err
    definition = (body.tools[i].format.definition if body.tools[i].format else None) or ""
    field = f"tools[{i}].format.definition"
    # the regex is all of the tool's format: said of that field, not of the string schema jan made of it
    why = err.problem.replace(repr(whole_match_pattern(definition)), repr(definition))  # (jan's anchoring)
    renamed = GrammarError(why, code=err.code)
    return renamed.said_of(field)


def renamed_schema_error(exc: GrammarError, body_tools: Any, chat_request: typed.ChatRequest, tool_field: str,
                         format_field: str) -> GrammarError:
    """``exc`` with its OpenAI chat field (``tools[i].function.parameters``, ``response_format...schema``) said as
    ``tool_field`` (``{i}``: the tool's index among the body's own tools, found by name, as the typed request may
    hold fewer) or ``format_field``; any other field as it was."""
    if isinstance(exc, PrefillGrammarError):  # (said of the prefill; the format it names is this dialect's field)
        return exc.said_as(format_field.removesuffix(".schema"))
    param = exc.param or ""
    tool = re.fullmatch(r"tools\[(\d+)\]\.function\.parameters", param)
    if tool:
        i, typed_tools = int(tool[1]), chat_request.tools
        name = typed_tools[i].name if i < len(typed_tools) else None
        i = next((k for k, t in enumerate(body_tools or ()) if getattr(t, "name", None) == name), i)
        field = tool_field.format(i=i)
    elif param.startswith("response_format"):
        field = format_field
    else:
        return exc
    return exc.said_of(field)


def _item_id(item: Any, seen: set[str]) -> str:
    """The id the item is listed with: its own, or a new one for none or one an earlier item of the input has (one
    item, one id: a list's cursor, a conversation's retrieve, name one)."""
    prefix = ITEM_PREFIXES[item.type]
    item_id = item.id if item.id and item.id not in seen else new_id(prefix)
    seen.add(item_id)
    return item_id


def input_items(items: str | list | None) -> list[dict[str, Any]]:
    """The ``input`` as the items ``GET /v1/responses/{id}/input_items`` lists (each with an id)."""
    if items is None:
        return []
    if isinstance(items, str):
        return [{"id": new_id("msg"), "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": items}]}]
    out, seen = [], set()
    for item in items:
        data = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["id"] = _item_id(item, seen)
        if isinstance(item, MessageItem):
            data["status"] = "completed"
            if isinstance(item.content, str):  # as the part it stands for, with that part's defaults (annotations)
                part = (OutputText(type="output_text", text=item.content) if item.role == "assistant"
                        else InputText(type="input_text", text=item.content))
                data["content"] = [part.model_dump(mode="json", exclude_none=True)]
        elif not isinstance(item, ReasoningItem):
            data["status"] = "completed"
        out.append(data)
    return out


#: The one argument a custom tool is called with, as the model sees it: its text, in a JSON string.
CUSTOM_INPUT = "input"


def _custom_spec(tool: CustomTool) -> typed.ToolSpec:
    """A custom tool as the function the model is shown: one string argument, its text (a model calls tools with JSON
    arguments; the call's ``input`` is that string again, :func:`custom_input`). A ``regex`` grammar constrains it,
    as the string's ``pattern`` (whole: anchored); a ``lark`` one is the string's
    :class:`~jan.services.types.TextGrammar` (the call grammar holds it to it; one GBNF cannot express is a 400), and
    is shown to the model in the description, as the model must know the format it is held to."""
    fmt = tool.format
    text: dict[str, Any] = {"type": "string", "description": "The tool's input: free-form text, not JSON."}
    description, grammar = tool.description, None
    if fmt is not None and fmt.type == "grammar" and fmt.syntax == "regex":
        text["pattern"] = whole_match_pattern(fmt.definition or "")
    elif fmt is not None and fmt.type == "grammar":
        rule = f"The input must follow this Lark grammar:\n{fmt.definition}"
        description = f"{description}\n\n{rule}" if description else rule
        grammar = typed.TextGrammar(CUSTOM_INPUT, fmt.definition or "")
    return typed.ToolSpec(tool.name, description, {"type": "object", "properties": {CUSTOM_INPUT: text},
                                                   "required": [CUSTOM_INPUT], "additionalProperties": False},
                          strict=True, text_grammar=grammar)


def custom_arguments(text: str) -> str:
    """A custom tool call's ``input`` as the JSON arguments of the call the model is shown (:func:`_custom_spec`)."""
    return json.dumps({CUSTOM_INPUT: text}, ensure_ascii=False)


def custom_input(arguments: str) -> str:
    """The ``input`` of a custom tool call made with JSON ``arguments`` (its one string; of arguments the token limit
    cut off, the string so far); arguments of another shape (a model that did not follow the schema) are the input
    themselves, as said, rather than lost."""
    try:
        value = loads_json(arguments)
    except ValueError:
        partial = _PartialInput()
        text = partial.more(arguments)
        return text if partial.started else arguments
    if isinstance(value, dict) and set(value) == {CUSTOM_INPUT} and isinstance(value[CUSTOM_INPUT], str):
        return value[CUSTOM_INPUT]
    return arguments


def custom_names(body: _Prompt) -> frozenset[str]:
    """The names of the request's custom tools (a call of one is a ``custom_tool_call``)."""
    return frozenset(t.name for t in body.tools or () if isinstance(t, CustomTool))


def _tools(body: _Prompt) -> tuple[tuple[typed.ToolSpec, ...], typed.ToolChoice | None]:
    """The tools the model is shown and the tool choice. ``allowed_tools`` narrows ``tools`` to the ones it
    names (a name not among them is a 400) and its ``mode`` is the choice."""
    # (web searches are not offered: above; MCP tools are listed from their servers: jan.services.mcp_use)
    callable_tools = [t for t in body.tools or () if not isinstance(t, (WebSearchTool, McpTool))]
    tools = tuple(_custom_spec(t) if isinstance(t, CustomTool) else typed.ToolSpec(t.name, t.description,
                                                                                    t.parameters, t.strict)
                  for t in callable_tools)
    choice = body.tool_choice
    # as OpenAI's: a choice that makes the model call a tool needs one to call
    if isinstance(choice, McpChoice) or (choice == "required" and any(isinstance(t, McpTool) for t in body.tools
                                                                         or ())):
        return tools, None  # (set once the servers' tools are known: mcp_use.forced)
    if choice == "required" and not tools:
        why = "the request has none" if not body.tools else "its only ones are web searches, which jan does not run"
        raise RequestError(f"tool_choice: 'required' needs tools ({why})", param="tool_choice", code="invalid_value")
    kinds = {t.name: t.type for t in callable_tools}
    if isinstance(choice, (FunctionChoice, CustomChoice)):
        if kinds.get(choice.name) != choice.type:
            raise RequestError(f"tool_choice: names the {choice.type} tool '{choice.name}', which is not in tools",
                               param="tool_choice", code="invalid_value")
        return tools, typed.NamedToolChoice(choice.name)
    if isinstance(choice, AllowedToolsChoice):
        for i, allowed in enumerate(choice.tools):
            if isinstance(allowed, AllowedMcpTool):
                if not any(isinstance(t, McpTool) and t.server_label == allowed.server_label for t in body.tools or ()):
                    raise RequestError(f"tool_choice.tools[{i}].server_label: no mcp tool '{allowed.server_label}' "
                                       "in tools", param=f"tool_choice.tools[{i}].server_label",
                                       code="invalid_value")
                continue
            if allowed.name in kinds and kinds[allowed.name] != allowed.type:
                raise RequestError(f"tool_choice.tools[{i}].type: '{allowed.name}' is a {kinds[allowed.name]} tool, "
                                   f"not a {allowed.type} one", param=f"tool_choice.tools[{i}].type",
                                   code="invalid_value")
        names = [t.name if isinstance(t, AllowedTool) else None for t in choice.tools]
        # (a function left out said of its own place in the body's tools, which hold web searches and MCP servers too)
        at = [k for k, t in enumerate(body.tools or ()) if not isinstance(t, (WebSearchTool, McpTool))]
        narrowed = typed.allowed_tools(tools, [n for n in names if n is not None], param="tool_choice.tools[{i}].name",
                                       schema_field=lambda i: f"tools[{at[i]}].parameters")
        # (an MCP server's tools join the request once listed, narrowed there; mode "required" is applied then)
        return narrowed, ("auto" if choice.mcp else choice.mode)
    return tools, choice


def _response_format(text: TextParam | None) -> typed.ResponseFormat | None:
    if text is None or text.format is None:
        return None
    fmt = text.format
    if fmt.type == "json_schema" and fmt.schema_ is None:
        raise ValueError("text.format.schema: required when text.format.type is 'json_schema'")
    return typed.ResponseFormat(fmt.type, fmt.schema_, fmt.name, fmt.strict)


def tool_pair_error(exc: ToolPairError, field: str = "input") -> RequestError:
    """Function calls and their outputs that do not pair up, in OpenAI's words (``param``: ``input``, as its own;
    ``field``: where the one at fault is, ``conversation`` or ``previous_response_id`` for a stored one's)."""
    where = "" if field == "input" else f" (in the stored conversation, {field})"
    if exc.kind == "duplicate":
        return RequestError(f"Duplicate value for 'call_id' of '{exc.ids[0]}' in {field}: a function call's call_id "
                            "must differ from every call not answered yet.", param=field, code=exc.code)
    if exc.kind == "unexpected":
        return RequestError(f"No tool call found for function call output with call_id {exc.ids[0]}{where}.",
                            param=field, code=exc.code)
    return RequestError(f"No tool output found for function call {', '.join(exc.ids)}{where}.", param=field,
                        code=exc.code)


def to_chat_request(body: _Prompt, history: list[typed.ChatMessage],
                    inputs: list[typed.ChatMessage]) -> typed.ChatRequest:
    """The typed chat request for a response (or input token count) body: ``instructions`` (as the system
    message), the stored conversation ``history`` (from ``previous_response_id``), then this request's
    ``inputs``."""
    system = [typed.ChatMessage.of_text("system", body.instructions)] if body.instructions else []
    messages = system + history + inputs
    if not messages:  # none given, or only items that are no turn of the conversation (reasoning alone)
        raise ValueError("input: no message to answer (a string, or a list of items with at least one message or "
                         "function_call_output; reasoning items only go with the turns they belong to)"
                         if body.input else "input: required (a string or a list of items)")
    try:  # with the stored conversation: an output may answer a call of the previous response
        check_tool_pairs(messages, "earlier")
    except ToolPairError as exc:
        # (a conversation's items are added as sent, and one of a pair can be deleted: the fault may be there, not
        # in the input, and the client must hear which)
        # (a stored call left unanswered is the input's to answer: said of the input, as OpenAI's)
        stored = exc.kind != "unanswered" and len(system) <= exc.index < len(system) + len(history)
        raise tool_pair_error(exc, ("conversation" if body.conversation_id else "previous_response_id")
                              if stored else "input") from None
    tools, tool_choice = _tools(body)
    effort = body.reasoning.effort if body.reasoning else None
    reasoning = typed.ReasoningOptions(effort=effort) if effort else None
    answer: dict[str, Any] = {}  # what only a request to answer has (a count is of the prompt alone)
    if isinstance(body, ResponsesRequest):
        # logprobs only when included, as OpenAI's (top_logprobs alone returns none)
        answer = {"sampling": typed.SamplingOptions(max_tokens=body.max_output_tokens, temperature=body.temperature,
                                                    top_p=body.top_p),
                  "logprobs": body.includes(LOGPROBS), "top_logprobs": body.top_logprobs or 0,
                  "wait_for_room": body.background}
    # (only a thought is continued: an input that ends in an assistant message is answered after it, as OpenAI's;
    # the thought may be the stored response's, previous_response_id's or the conversation's, cut off while
    # thinking, that an input with no turn of its own goes on from, as it goes on from one sent back in the input)
    return typed.ChatRequest(model=body.model, messages=tuple(messages), tools=tools,
                             tool_choice=tool_choice, parallel_tool_calls=body.parallel_tool_calls,
                             response_format=_response_format(body.text), reasoning=reasoning,
                             continue_final_message=bool(typed.thought_prefill(messages)),
                             truncation=body.truncation or "disabled", **answer)


# -- answer ----------------------------------------------------------------------------------------
def _usage(usage: typed.Usage | None, reasoning_tokens: int = 0) -> dict[str, Any]:
    """Responses' ``usage``: :class:`TokenCounts` in its names (``input_tokens_details.cached_tokens``: the prompt's
    cached prefix; ``output_tokens_details.reasoning_tokens``: the thinking's share of the output)."""
    counts = token_counts(usage, reasoning_tokens)
    return {"input_tokens": counts.prompt_tokens,
            "input_tokens_details": {"cached_tokens": counts.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": counts.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": counts.reasoning_tokens},
            "total_tokens": counts.total_tokens}


def _reasoning_item(item_id: str, text: str, status: str, encrypted: bool = False,
                    summarized: bool = False) -> dict[str, Any]:
    """A ``reasoning`` output item: its text as ``reasoning_text`` content, or (``summarized``: the request asked
    for a summary, :attr:`ResponsesRequest.summarized`) as its one ``summary_text`` part, never both (a client
    that shows either would show the thinking twice)."""
    ended = status != "in_progress"
    parts = [{"type": "summary_text" if summarized else "reasoning_text", "text": text}] if text or ended else []
    item = {"id": item_id, "type": "reasoning", "summary": parts if summarized else [],
            "content": [] if summarized else parts, "status": status}
    if encrypted:  # include: ["reasoning.encrypted_content"]; known once the reasoning has ended (cut off: its part)
        item["encrypted_content"] = encrypted_reasoning(text) if ended else None
    return item


def _logprobs(items: Any, top: int, *, with_bytes: bool = True) -> list[dict[str, Any]]:
    """Tokens' logprobs in the Responses shape, ``top`` alternatives each. An ``output_text`` part's carry
    ``bytes``; a ``response.output_text.delta`` event's do not (OpenAI's two shapes)."""
    def entry(t: Any) -> dict[str, Any]:
        return {"token": t.token, **({"bytes": list(t.bytes)} if with_bytes else {}), "logprob": t.logprob}
    return [{**entry(lp), "top_logprobs": [entry(t) for t in lp.top[:top]]} for lp in items]


def _message_item(item_id: str, text: str | None, status: str,
                  logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [],
                                        "logprobs": logprobs or []}]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def _custom_call_item(item_id: str, call_id: str, name: str, text: str) -> dict[str, Any]:
    # (OpenAI's custom_tool_call has no status)
    return {"id": item_id, "type": "custom_tool_call", "call_id": call_id, "name": name, "input": text}


class _PartialInput:
    """The text of a custom tool call's streamed JSON arguments (``{"input": "..."}``), decoded as far as it has
    come: each :meth:`more` gives what is new. The string is decoded a whole escape at a time (a ``\\u`` pair
    too), so no delta splits one; arguments of another shape give nothing here (the ``done`` event has them)."""

    _START = re.compile(r'\s*\{\s*"' + CUSTOM_INPUT + r'"\s*:\s*"')

    def __init__(self) -> None:
        self.raw = ""  # the arguments so far
        self.sent = ""  # the text decoded (and sent) so far
        self._at: int | None = None  # where in raw the undecoded rest of the string begins
        self._ended = False

    @property
    def started(self) -> bool:
        """Whether the arguments so far begin as the input's string."""
        return self._at is not None

    def more(self, arguments: str) -> str:
        self.raw += arguments
        if self._at is None:
            start = self._START.match(self.raw)
            if start is None:
                return ""
            self._at = start.end()
        if self._ended:
            return ""
        rest, end = self.raw[self._at:], 0
        while end < len(rest):  # a whole run of plain characters and complete escapes
            char = rest[end]
            if char == '"':
                self._ended = True
                break
            if char != "\\":
                end += 1
                continue
            size = 6 if rest[end + 1:end + 2] == "u" else 2
            if end + size > len(rest):
                break
            if size == 6 and re.fullmatch("[dD][89abAB][0-9a-fA-F]{2}", rest[end + 2:end + 6]):  # a pair's 1st half
                if end + 12 > len(rest):
                    break
                size = 12
            end += size
        try:
            text = loads_json(f'"{rest[:end]}"')
        except ValueError:  # (not JSON after all: the done event has the arguments as said)
            self._ended = True
            return ""
        self._at += end
        self.sent += text
        return text


#: The response's status for each way the chat path ends a choice (``typed.FINISH_REASONS``): cut off by the token
#: limit or a remote upstream's filter, ``incomplete``; cut off by the server (the model stopped or unloaded under
#: it), ``cancelled``, as a cancel request's: never ``completed``, which would pass a cut-off answer for a whole one.
STATUSES = {"stop": "completed", "tool_calls": "completed", "length": "incomplete", "content_filter": "incomplete",
            "cancelled": "cancelled"}
#: An incomplete response's ``incomplete_details.reason``, per finish reason (OpenAI's two).
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _status(finish_reason: str | None) -> str:
    """The response's status for the chat path's ``finish_reason`` (None, a stream that told none, reads as
    ``stop``, as the chat path's aggregate does)."""
    reason = finish_reason or "stop"
    if reason not in STATUSES:
        raise EngineError(f"the generation ended with finish_reason {reason!r}, which jan does not know")
    return STATUSES[reason]


def _item_status(finish_reason: str | None) -> str:
    """An output item's status: ``completed``, or ``incomplete`` when the answer was cut off (however)."""
    return "completed" if _status(finish_reason) == "completed" else "incomplete"


def output_items(result: typed.ChatResult, *, top_logprobs: int | None = None, encrypted_reasoning: bool = False,
                 custom: frozenset[str] = frozenset(),
                 summarized: bool = False) -> tuple[list[dict[str, Any]], str]:
    """The ``output`` items of a whole answer (reasoning, message, function calls) and the
    response's status (``completed``, or ``incomplete`` when it ran out of tokens). ``top_logprobs``:
    the message's logprobs are included, with that many alternatives (``None``: not included);
    ``encrypted_reasoning``: reasoning items carry ``encrypted_content``; ``custom``: the names of the custom
    tools (a call of one is a ``custom_tool_call``); ``summarized``: the reasoning is given as its summary
    (:func:`_reasoning_item`)."""
    choice = result.choices[0]
    message = choice.message
    status, item_status = _status(choice.finish_reason), _item_status(choice.finish_reason)
    items: list[dict[str, Any]] = []
    if message.reasoning:
        # the reasoning ended the answer (no text or call after it): the token limit cut it off when it cut the answer
        last = not message.text and not message.tool_calls
        items.append(_reasoning_item(new_id("rs"), message.reasoning, item_status if last else "completed",
                                     encrypted_reasoning, summarized))
    if message.text or not (message.tool_calls or message.reasoning):  # (as the stream: no empty message after it)
        logprobs = _logprobs(choice.logprobs or (), top_logprobs) if top_logprobs is not None else None
        items.append(_message_item(new_id("msg"), message.text, item_status, logprobs))
    for k, call in enumerate(message.tool_calls):
        # the last call is the one the token limit can have cut off (OpenAI marks it incomplete)
        last = k == len(message.tool_calls) - 1
        if call.name in custom:
            items.append(_custom_call_item(new_id("ctc"), call.id, call.name, custom_input(call.arguments)))
        else:
            items.append(_call_item(new_id("fc"), call.id, call.name, call.arguments,
                                    item_status if last else "completed"))
    return items, status


def output_turns(items: list[dict[str, Any]], call_turns: dict[str, int] | None = None,
                 call_parts: dict[str, tuple[typed.Part, ...]] | None = None,
                 call_ids: dict[str, str] | None = None) -> list[KeptTurn]:
    """What a stored response or a conversation keeps of a response's ``output`` items, in order: the model's turns
    (:func:`output_message` of the items between its MCP items, with their ids: ``output_item_ids``) and each MCP
    item as it is, an ``mcp_call`` read again as the call and its result (``mcp_call_turns``), a listing as the
    server listed for that conversation (the route does not list it again). ``call_turns``, ``call_parts``,
    ``call_ids``: each ``mcp_call``'s model turn, result parts and the model's call id, by item id (the encoder's:
    :class:`KeptTurn`), so that a turn's parallel calls read back as that one turn, a result's images as images, and
    each call by the id the model gave it."""
    out: list[KeptTurn] = []
    group: list[dict[str, Any]] = []
    turns, parts = call_turns or {}, call_parts or {}
    last_turn: int | None = None  # (the model turn of the mcp_call kept right before, none once anything else is)

    def said() -> None:
        message = output_message(group)
        if message.content or message.tool_calls or message.reasoning:
            out.append(KeptTurn(message, item_ids=output_item_ids(group)))
        group.clear()

    for item in items:
        if isinstance(item, dict) and item.get("type") in MCP_ITEMS:
            said()
            turn = turns.get(item.get("id")) if item.get("type") == "mcp_call" else None
            out.append(KeptTurn(None, item=item, joins=turn is not None and turn == last_turn and not group,
                                result=parts.get(item.get("id"), ()), call_id=(call_ids or {}).get(item.get("id"))))
            last_turn = turn
        elif isinstance(item, dict):
            group.append(item)
            last_turn = None
    said()
    return out


def output_message(items: list[dict[str, Any]]) -> typed.ChatMessage:
    """The assistant turn the ``output`` items make (one of the turns a later ``previous_response_id`` continues:
    :func:`output_turns`)."""
    text, reasoning, calls = [], [], []
    for item in items:
        if item["type"] == "message":
            text += [p["text"] for p in item["content"] if p.get("type") == "output_text"]
        elif item["type"] == "reasoning":  # (its text is its content's, or its summary's where one was asked for)
            reasoning += [p["text"] for p in item.get("content") or item.get("summary") or []]
        elif item["type"] == "function_call":
            calls.append(typed.ToolCall(item["call_id"], item["name"], item["arguments"]))
        elif item["type"] == "custom_tool_call":  # (stored as the call the model made: its JSON arguments)
            calls.append(typed.ToolCall(item["call_id"], item["name"], custom_arguments(item["input"])))
    joined = "".join(text)
    return typed.ChatMessage("assistant", (typed.TextPart(joined),) if joined else (), tool_calls=tuple(calls),
                       reasoning=joined_thoughts(reasoning) or None)


def response_object(response_id: str, body: ResponsesRequest, model: str, *, status: str,
                    output: list[dict[str, Any]] | None = None, usage: typed.Usage | None = None,
                    created_at: int | None = None, error: dict[str, Any] | None = None,
                    incomplete_reason: str = "max_output_tokens", reasoning_tokens: int = 0) -> dict[str, Any]:
    """The ``response`` object (``object: "response"``) with the request's settings echoed; an ``incomplete``
    one says why (``incomplete_reason``). ``reasoning_tokens``: of the usage's output tokens, the thinking's."""
    fmt = body.text.format if body.text and body.text.format else None
    text = {"format": fmt.model_dump(mode="json", by_alias=True, exclude_none=True) if fmt else {"type": "text"},
            "verbosity": (body.text.verbosity if body.text else None) or "medium"}
    tool_choice = body.tool_choice or "auto"
    if isinstance(tool_choice, (FunctionChoice, CustomChoice, McpChoice, AllowedToolsChoice)):
        tool_choice = tool_choice.model_dump(mode="json")
    reasoning = body.reasoning or ReasoningParam()
    final = status in ("completed", "incomplete", "failed", "cancelled")
    return {
        "id": response_id, "object": "response", "created_at": created_at or int(time.time()),
        "status": status, "background": body.background, "error": error,
        "incomplete_details": {"reason": incomplete_reason} if status == "incomplete" else None,
        "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "model": model,
        "output": output or [], "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": reasoning.effort, "summary": reasoning.summary,
                      "generate_summary": reasoning.generate_summary},
        "store": body.store, "temperature": body.temperature, "text": text, "tool_choice": tool_choice,
        # (an MCP tool's headers and authorization hold credentials: never echoed, nor stored with the response)
        "tools": [t.model_dump(mode="json", exclude_none=True,
                               exclude={"headers", "authorization"} if isinstance(t, McpTool) else None)
                  for t in body.tools or ()],
        "top_p": body.top_p, "truncation": body.truncation or "disabled",
        "top_logprobs": body.top_logprobs or 0, "max_tool_calls": body.max_tool_calls,
        "user": body.user, "safety_identifier": body.safety_identifier, "prompt_cache_key": body.prompt_cache_key,
        "prompt_cache_retention": body.prompt_cache_retention,
        # every request is served the same way: the tier that served it, whatever was asked
        "service_tier": "default", "prompt": None,
        "conversation": {"id": body.conversation_id} if body.conversation_id else None,
        "usage": _usage(usage, reasoning_tokens) if final and usage is not None else None,
        "metadata": body.metadata or {}, "completed_at": int(time.time()) if status == "completed" else None,
    }


class ResponseStream:
    """Turns the chat path's deltas (choice 0) into the Responses event stream.

    Each event is a dict with ``type`` and ``sequence_number`` (from 0, one per event).
    An output item opens when the kind of output changes (reasoning, message text, a new
    function call) and the open one is finished first: ``output_item.added``,
    ``content_part.added``, deltas, ``..._text.done``/``function_call_arguments.done``,
    ``content_part.done``, ``output_item.done``. :meth:`finish` closes the open item; the
    items so far are in :attr:`output`. The route sends ``response.created``/``in_progress``
    and ``response.completed``/``incomplete`` through :meth:`event` around them.

    ``top_logprobs`` (not ``None``: ``include`` asked for logprobs): each text delta carries its tokens'
    logprobs and the finished ``output_text`` part all of them; ``encrypted_reasoning``: a finished
    reasoning item carries ``encrypted_content``; ``summarized``: the reasoning streams as its summary
    (``response.reasoning_summary_part.added``, ``response.reasoning_summary_text.delta``/``.done``,
    ``response.reasoning_summary_part.done``, ``summary_index`` 0) in place of ``reasoning_text`` content.
    :meth:`for_request` reads them from the request.
    """

    def __init__(self, *, top_logprobs: int | None = None, encrypted_reasoning: bool = False,
                 custom: frozenset[str] = frozenset(), summarized: bool = False) -> None:
        self.output: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.usage: typed.Usage | None = None
        self.reasoning_tokens = 0  # of the usage's output tokens, the thinking's
        self._top = top_logprobs
        self._encrypted = encrypted_reasoning
        self._summarized = summarized
        self._custom = custom  # the custom tools' names: a call of one streams its input text, not JSON
        self._seq = 0
        self._open: str | None = None  # "reasoning", "message" or "call:<n>"
        self._input: _PartialInput | None = None  # the open call's input text, when it is a custom tool's
        self._text = ""
        self._logprobs: list[Any] = []  # the open message's tokens (TokenLogprob)
        self._pending: list[Any] = []  # tokens whose text the chat path still holds back (a possible stop string)
        self._calls: dict[str, dict[str, Any]] = {}  # the MCP calls running, by their call's id
        #: What a store keeps beside each ``mcp_call`` item, by the item's id (the item itself is the client's):
        #: the model turn that made it (:attr:`jan.services.mcp_use.McpCallStarted.turn`) and its result's parts where
        #: it held images (:func:`output_turns` reads them)
        self.call_turns: dict[str, int] = {}
        self.call_parts: dict[str, tuple[typed.Part, ...]] = {}
        self.call_ids: dict[str, str] = {}  # (the model's call id: the prompt's, where a template shows it)

    def kept(self, output: list[dict[str, Any]]) -> list[KeptTurn]:
        """What a store keeps of the answer's ``output`` (:func:`output_turns`, with what this stream knows of each
        ``mcp_call`` beside its item)."""
        return output_turns(output, self.call_turns, self.call_parts, self.call_ids)

    @classmethod
    def for_request(cls, body: ResponsesRequest) -> ResponseStream:
        top = (body.top_logprobs or 0) if body.includes(LOGPROBS) else None
        return cls(top_logprobs=top, encrypted_reasoning=body.includes(ENCRYPTED_REASONING),
                   custom=custom_names(body), summarized=body.summarized)

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        data = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return data

    @property
    def _item(self) -> dict[str, Any]:
        return self.output[-1]

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._item["id"], "output_index": len(self.output) - 1}

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        item, where, text = self._item, self._where(), self._text
        events = []
        if self._open == "reasoning" and self._summarized:
            part = {"type": "summary_text", "text": text}
            events.append(self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=text))
            events.append(self.event("response.reasoning_summary_part.done", **where, summary_index=0, part=part))
        elif self._open == "reasoning":
            part = {"type": "reasoning_text", "text": text}
            events.append(self.event("response.reasoning_text.done", **where, content_index=0, text=text))
            events.append(self.event("response.content_part.done", **where, content_index=0, part=part))
        if self._open == "reasoning":
            # closed by the next item: complete; closed at the end: cut off when the answer was
            item.update(_reasoning_item(item["id"], text, _item_status(self.finish_reason), self._encrypted,
                                        self._summarized))
        elif self._open == "message":
            logprobs = _logprobs(self._logprobs, self._top) if self._top is not None else []
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}
            events.append(self.event("response.output_text.done", **where, content_index=0, text=text,
                                     logprobs=logprobs))
            events.append(self.event("response.content_part.done", **where, content_index=0, part=part))
            item.update(_message_item(item["id"], text, _item_status(self.finish_reason), logprobs))
            self._logprobs = []
        elif self._input is not None:
            full = custom_input(text)
            if full.startswith(self._input.sent) and len(full) > len(self._input.sent):  # (a string left open)
                events.append(self.event("response.custom_tool_call_input.delta", **where,
                                         delta=full[len(self._input.sent):]))
            events.append(self.event("response.custom_tool_call_input.done", **where, input=full))
            item.update(input=full)
            self._input = None
        else:
            events.append(self.event("response.function_call_arguments.done", **where, arguments=text))
            # closed by the next item: complete; closed at the end: cut off when the token limit ended it
            item.update(arguments=text, status=_item_status(self.finish_reason))
        events.append(self.event("response.output_item.done", output_index=where["output_index"], item=dict(item)))
        self._open, self._text, self._pending = None, "", []  # tokens still held back made no text (a stop string)
        return events

    def _start(self, key: str, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.output.append(item)
        self._open = key
        events.append(self.event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item)))
        if key == "reasoning" and self._summarized:
            events.append(self.event("response.reasoning_summary_part.added", **self._where(), summary_index=0,
                                     part={"type": "summary_text", "text": ""}))
        elif key == "reasoning":
            events.append(self.event("response.content_part.added", **self._where(), content_index=0,
                                     part={"type": "reasoning_text", "text": ""}))
        elif key == "message":
            events.append(self.event("response.content_part.added", **self._where(), content_index=0,
                                     part={"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
        return events

    def feed(self, delta: typed.ChatDelta | McpEvent) -> list[dict[str, Any]]:
        if not isinstance(delta, typed.ChatDelta):
            return self._mcp(delta)
        events: list[dict[str, Any]] = []
        if delta.usage is not None:
            self.usage, self.reasoning_tokens = delta.usage, delta.reasoning_tokens
        if delta.choice != 0:
            return events
        if self._top is not None and delta.logprobs:
            # A token's logprob comes with the delta that holds its text; one whose text is held back (it may
            # begin a stop string) waits for the text delta that releases it. Reasoning and tool-call tokens
            # get none, as OpenAI gives logprobs of output_text only.
            if delta.content or not (delta.reasoning or delta.tool_calls):
                self._pending += delta.logprobs
            else:
                self._pending = []  # the held-back text was this reasoning's or call's
        # an item of its own: the blank line that parts this thinking from the output's earlier thinking (as one
        # text: typed.ChatMessage.reasoning) is no text of this item (joined_thoughts puts it back)
        thought = delta.reasoning if self._open == "reasoning" else delta.reasoning.lstrip(WS)
        if thought:
            if self._open != "reasoning":
                events += self._start("reasoning", _reasoning_item(new_id("rs"), "", "in_progress", self._encrypted,
                                                                   self._summarized))
            self._text += thought
            if self._summarized:
                events.append(self.event("response.reasoning_summary_text.delta", **self._where(), summary_index=0,
                                         delta=thought))
            else:
                events.append(self.event("response.reasoning_text.delta", **self._where(), content_index=0,
                                         delta=thought))
        if delta.content:
            if self._open != "message":
                events += self._start("message", _message_item(new_id("msg"), None, "in_progress"))
            self._text += delta.content
            tokens, self._pending = self._pending, []
            self._logprobs += tokens
            logprobs = _logprobs(tokens, self._top, with_bytes=False) if self._top is not None else []
            events.append(self.event("response.output_text.delta", **self._where(), content_index=0,
                                     delta=delta.content, logprobs=logprobs))
        for call in delta.tool_calls:
            key = f"call:{call.index}"
            if self._open != key and call.name in self._custom:
                events += self._start(key, _custom_call_item(new_id("ctc"), call.id or new_id("call"), call.name, ""))
                self._input = _PartialInput()
            elif self._open != key:
                events += self._start(key, _call_item(new_id("fc"), call.id or new_id("call"), call.name or "", "",
                                                      "in_progress"))
            if call.arguments and self._input is not None:
                self._text += call.arguments
                text = self._input.more(call.arguments)
                if text:
                    events.append(self.event("response.custom_tool_call_input.delta", **self._where(), delta=text))
            elif call.arguments:
                self._text += call.arguments
                events.append(self.event("response.function_call_arguments.delta", **self._where(),
                                         delta=call.arguments))
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        return events

    def _done_item(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.output.append(item)
        index = len(self.output) - 1
        events.append(self.event("response.output_item.added", output_index=index, item=dict(item)))
        return events

    def _mcp(self, event: McpEvent) -> list[dict[str, Any]]:
        """The items and events of the server's own MCP work (:mod:`jan.services.mcp_use`), OpenAI's."""
        from jan.services import mcp_use

        if isinstance(event, mcp_use.McpListed):
            item = {"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": event.server_label,
                    "tools": [dict(t) for t in event.tools]}
            if event.error is not None:
                item["error"] = event.error
            events = self._done_item(item)
            where = {"item_id": item["id"], "output_index": len(self.output) - 1}
            events.append(self.event("response.mcp_list_tools.in_progress", **where))
            events.append(self.event("response.mcp_list_tools." + ("failed" if event.error else "completed"),
                                     **where))
            events.append(self.event("response.output_item.done", output_index=where["output_index"], item=dict(item)))
            return events
        if isinstance(event, mcp_use.McpApprovalAsked):
            item = {"id": event.id, "type": "mcp_approval_request", "server_label": event.server_label,
                    "name": event.name, "arguments": event.arguments}
            events = self._done_item(item)
            events.append(self.event("response.output_item.done", output_index=len(self.output) - 1,
                                     item=dict(item)))
            return events
        if isinstance(event, mcp_use.McpCallStarted):
            item = {"id": new_id("mcp"), "type": "mcp_call", "server_label": event.server_label, "name": event.name,
                    "arguments": event.arguments, "output": None, "error": None, "status": "in_progress"}
            self._calls[event.id] = item
            self.call_ids[item["id"]] = event.id  # (the model's call's, or an approved call's: its request's id)
            if event.turn is not None:
                self.call_turns[item["id"]] = event.turn
            events = self._done_item(item)
            where = {"item_id": item["id"], "output_index": len(self.output) - 1}
            events.append(self.event("response.mcp_call.in_progress", **where))
            if event.arguments:
                events.append(self.event("response.mcp_call_arguments.delta", **where, delta=event.arguments))
            events.append(self.event("response.mcp_call_arguments.done", **where, arguments=event.arguments))
            return events
        # McpCallDone: of a call started above, or of one an approval let run (its item begins and ends here)
        events = []
        item = self._calls.pop(event.id, None)
        if item is None:
            events += self.feed(mcp_use.McpCallStarted(event.id, event.server_label, event.name, event.arguments))
            item = self._calls.pop(event.id)
            item["approval_request_id"] = event.id
        index = next(i for i, it in enumerate(self.output) if it is item)
        item.update(output=event.output, error=mcp_call_error(event.error),
                    status="failed" if event.error else "completed")
        if event.parts and event.error is None:
            self.call_parts[item["id"]] = event.parts
        where = {"item_id": item["id"], "output_index": index}
        events.append(self.event("response.mcp_call." + ("failed" if event.error else "completed"), **where))
        events.append(self.event("response.output_item.done", output_index=index, item=dict(item)))
        return events

    def finish(self) -> list[dict[str, Any]]:
        """Close the open item; an answer with no output at all still gets its (empty) message — unless it was
        cancelled (a cancel request, the model stopped under it) before producing anything: then its ``output`` is
        empty, as OpenAI's (a response cancelled while ``queued`` wrote nothing), never an empty ``incomplete``
        message a client would read as a cut-off answer."""
        if not self.output and self.finish_reason != "cancelled":
            events = self._start("message", _message_item(new_id("msg"), None, "in_progress"))
            return events + self._close()
        return self._close()

    def cancelled(self) -> None:
        """The generation was cancelled (a cancel request, a shutdown) before it told how it ended: the items
        still open close ``incomplete``."""
        if self.finish_reason is None:
            self.finish_reason = "cancelled"
        for item in self._calls.values():  # MCP calls cut off under way
            item["status"] = "incomplete"

    @property
    def status(self) -> str:
        return _status(self.finish_reason)

    @property
    def incomplete_reason(self) -> str:
        """``incomplete_details.reason`` when :attr:`status` is ``incomplete``."""
        return INCOMPLETE_REASONS.get(self.finish_reason or "", "max_output_tokens")
