"""Request bodies of the OpenAI-compatible endpoints, validated with pydantic.

Unknown fields are refused (``extra="forbid"``) so a typo such as
``max_token`` is a 400 naming the field, not a silently ignored option.
Fields of OpenAI's current reference that change nothing here (``user``,
``store``, ``metadata``, ``prompt_cache_key``, ``safety_identifier``,
``verbosity``, ``prediction``, ...) are accepted and ignored; those whose
meaning jan does not implement (audio output, web search) are a 400 that
says "not supported" and names the field.

Every body is validated strictly (``false`` is not an integer, ``"1"`` is not
a number), an explicit ``null`` for an optional field means its default, and
every number is bounded by what the engine can hold (int32 counts, token
ids), so the OpenAPI description shows exactly what the server accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo,
                      WrapValidator, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from jan.json_text import json_text, json_type_name
from jan.server.dialects.llamacpp_extras import lazy_refusal, logit_bias_ids, without_extras
from jan.engine.params import RANGES, SEED_MAX, SEED_MIN, speculative_mode
from jan.templates.formats.plan import THINK_LEVELS

INT32_MAX = 2**31 - 1
#: A count or length the engine keeps in an int32 (tokens, positions).
Int32Count = Annotated[int, Field(ge=1, le=INT32_MAX)]
#: OpenAI's ``reasoning_effort`` values (chat completions, assistants, runs; the Responses API's ``reasoning.effort``):
#: the keys of jan.templates.formats.plan.EFFORT_LEVELS, the one table (``xhigh`` and ``max`` mean ``high`` locally).
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


def _think_value(value: Any) -> Any:
    # (a union's errors name one alternative: a bad level on the chat route was "Input should be 'low', ... or
    # 'max'", never saying true/false are taken too; one message names them all, on every route that takes think)
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value in THINK_LEVELS):
        return value
    levels = ", ".join(f'"{level}"' for level in THINK_LEVELS)
    raise ValueError(f"invalid think value {json_text(value)} (must be true, false, {levels})")


#: ``think`` (Ollama's, taken on the chat route too): true/false turns thinking on/off, or a level of the one
#: effort table (THINK_LEVELS, Ollama's own levels); a bad value's error names them all.
Think = Annotated[Union[bool, Literal[THINK_LEVELS], None], BeforeValidator(_think_value)]  # type: ignore[valid-type]
#: ``max_tokens`` and its other names in every dialect (``max_completion_tokens``, ``max_output_tokens``).
MaxTokens = Annotated[int, Field(**RANGES["max_tokens"].field())]
#: A token id: llama.cpp's ``llama_token`` is an int32; no vocabulary has a billion entries.
TokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]
TokenList = list[TokenId]
#: OpenAI's seed is an int64 (Ollama's too); jan.engine.params.engine_seed folds it into llama.cpp's 32 bits.
Seed = Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX)]
#: ``logit_bias`` keys: token ids written as JSON object keys.
TokenKey = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,8})$")]


def _speculative(value: Any) -> Any:
    # the engine's one rule and message (model.json's settings give the same), not pydantic's "valid boolean"
    return value if value is None or isinstance(value, bool) else speculative_mode(value)


#: Speculative decoding: none, ngram or draft (any case), or true (ngram) / false (none).
Speculative = Annotated[Union[bool, Literal["none", "ngram", "draft"]], BeforeValidator(_speculative)]


#: OpenAI's limits on ``metadata`` (assistants, threads, messages, runs, responses, chat completions).
#: OpenAI's bounds on an assistant's texts, in characters (Assistants API reference: ``name`` 256, ``description``
#: 512, ``instructions`` 256,000); a thread's ``title`` (Jan's) takes the description's: every thread list carries it.
NAME_MAX_CHARS = 256
DESCRIPTION_MAX_CHARS = 512
INSTRUCTIONS_MAX_CHARS = 256_000
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512


#: Keys of a thread message's ``metadata`` that jan itself writes with values of other JSON types: a run's and
#: ``jan chat``'s records of a turn (:mod:`jan.services.tool_loop`: the calls a turn made, a tool result's call,
#: timing and approval; a reply's model, finish and usage). Jan's own clients send them back through the API
#: (``jan chat`` saving a conversation to a server), so a message body keeps their types; any other key is a
#: client's, a string as OpenAI requires.
JAN_MESSAGE_KEYS = frozenset({"tool_calls", "tool_call_id", "name", "arguments", "duration_ms", "approved_by",
                              "is_error", "run_id", "model", "finish_reason", "stop_reason", "error", "error_code",
                              "usage"})


def check_metadata(value: dict[str, Any], own_keys: frozenset[str] = frozenset()) -> dict[str, Any]:
    """OpenAI's rules for a ``metadata`` object: at most 16 pairs, keys up to 64 characters, values strings of up to
    512. One check for every body that takes metadata, so a client that works against jan also works against
    OpenAI. ``own_keys``: keys jan writes itself whose values may be of any JSON type (:data:`JAN_MESSAGE_KEYS`);
    jan's internal writes (a run's records) do not pass through here."""
    if len(value) > METADATA_MAX_PAIRS:
        raise ValueError(f"at most {METADATA_MAX_PAIRS} key-value pairs are allowed, got {len(value)}")
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            raise ValueError(f"key {key[:METADATA_MAX_KEY_CHARS]!r}... is {len(key)} characters long; "
                             f"keys may be at most {METADATA_MAX_KEY_CHARS}")
        if not isinstance(item, str):
            if key in own_keys:
                continue
            raise ValueError(f"the value of key {key!r} must be a string (got {json_type_name(item)}); "
                             "metadata values are strings")
        if len(item) > METADATA_MAX_VALUE_CHARS:
            raise ValueError(f"the value of key {key!r} is {len(item)} characters long; "
                             f"values may be at most {METADATA_MAX_VALUE_CHARS}")
    return value




#: ``metadata`` as every body takes it (assistants, threads, runs, responses, chat completions): OpenAI's rules.
Metadata = Annotated[dict[str, Any], AfterValidator(check_metadata)]
#: The same (the name the Responses API's schema has used).
StringMetadata = Metadata


def check_tool_resources(value: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``tool_resources`` (assistants, threads, a thread-and-run): the files and vector stores of its hosted
    ``code_interpreter`` and ``file_search`` tools, which jan does not run. An empty one — ``{}``, or each tool's
    lists empty or null, as OpenAI's own assistant and thread objects carry it and an app sends it back — is taken
    (and kept nowhere); one that names a file or vector store is refused, saying why, rather than ignored."""
    for tool, resources in value.items():
        if resources is None:
            continue
        if not isinstance(resources, dict):
            raise ValueError(f"{tool}: must be an object (got {json_type_name(resources)})")
        named = [key for key, ids in resources.items() if ids not in (None, [])]
        if named:
            raise ValueError(f"{tool}.{named[0]}: jan runs no hosted code interpreter or file search, so it has no "
                             "use for their files or vector stores; attach a file to a message (attachments), "
                             "which is read whole, or give the model function tools or MCP servers")
    return value


#: ``tool_resources`` as assistants, threads and a thread-and-run take it (:func:`check_tool_resources`).
ToolResources = Annotated[dict[str, Any], AfterValidator(check_tool_resources)]
def check_record_keys(value: dict[str, Any]) -> dict[str, Any]:
    """The record keys of a message's ``metadata`` that every run of its thread reads back into its prompt
    (:func:`jan.services.tool_loop.chat_messages`): ``tool_calls`` (OpenAI's ``[{"id", "type": "function",
    "function": {"name", "arguments"}}]``), a tool result's ``tool_call_id`` and ``name``, each of the type the run
    takes. A message stored with one of another type (a call's ``id`` a number, its ``arguments`` an object) made
    every later run of the thread a 400 naming a bare ``id`` or ``arguments``, until the message was found."""
    calls = value.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise ValueError(f"tool_calls: expected a list of calls, got {json_type_name(calls)}")
        for i, call in enumerate(calls):
            where = f"tool_calls[{i}]"
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(fn, dict):
                raise ValueError(f"{where}: expected {{\"id\", \"type\": \"function\", \"function\": "
                                 "{\"name\", \"arguments\"}}")
            if not isinstance(call.get("id"), str) or not call["id"]:
                raise ValueError(f"{where}.id: expected a non-empty string")
            if call.get("type", "function") != "function":
                raise ValueError(f"{where}.type: expected 'function', got {call.get('type')!r}")
            if not isinstance(fn.get("name"), str):
                raise ValueError(f"{where}.function.name: expected a string")
            if fn.get("arguments") is not None and not isinstance(fn["arguments"], str):
                raise ValueError(f"{where}.function.arguments: expected a string (the arguments' JSON text), got "
                                 f"{json_type_name(fn['arguments'])}")
    for key in ("tool_call_id", "name"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ValueError(f"{key}: expected a string, got {json_type_name(value[key])}")
    return value


#: A thread message's ``metadata``: :data:`Metadata`, jan's own record keys (:data:`JAN_MESSAGE_KEYS`) of any type,
#: those a run reads back of the type it reads (:func:`check_record_keys`).
MessageMetadata = Annotated[dict[str, Any], AfterValidator(
    lambda value: check_record_keys(check_metadata(value, JAN_MESSAGE_KEYS)))]


def bounded(name: str, default: Any = None, **extra: Any) -> Any:
    """A pydantic ``Field`` bounded by the engine's one table of ranges (:data:`jan.engine.params.RANGES`),
    so every dialect's schema, the Python API and the CLI accept the same values for ``name``."""
    return Field(default, **RANGES[name].field(), **extra)


def required_bounded(name: str, **extra: Any) -> Any:
    """:func:`bounded` for a required field."""
    return Field(**RANGES[name].field(), **extra)


def some_content(value: Any, info: ValidationInfo, part: str = "content part") -> Any:
    """A ``content`` validator's check, shared by every dialect: a non-assistant message of an empty list is no
    message (OpenAI's and Anthropic's 400); an assistant's is an empty turn, as its empty string or null is on
    every jan route (a final one prefills nothing: tests/test_prefill.py)."""
    if isinstance(value, list) and not value and info.data.get("role") != "assistant":
        raise ValueError(f"must hold at least one {part} (or be a string)")
    return value


def not_supported(field: str, what: str) -> ValueError:
    """The error for an OpenAI field whose meaning jan does not implement (a 400 naming ``field``)."""
    return ValueError(f"{field} is not supported by jan ({what})")


class NullMeansDefault(BaseModel):
    """No type coercion (``false`` is not an integer, ``"1"`` not a number), and an explicit ``null`` for an
    optional field means its default. The base of every dialect's request bodies (OpenAI, Anthropic,
    Responses, Ollama — Go's JSON decoder also leaves a field alone on ``null``)."""

    # Validators are built at import (not defer_build): deferring saved 1.4 MiB of resident memory but cost
    # the first request of each body type ~50 ms (CompletionRequest: 47 ms), measured 2026-12-01.
    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # OpenAI marks its optional fields nullable: {"n": null} asks for the default n, like leaving it out.
        if not isinstance(data, dict):
            return data
        defaulted = set()
        for name, info in cls.model_fields.items():
            if not info.is_required() and (info.default is not None or info.default_factory is not None):
                defaulted.add(info.alias or name)
                defaulted.add(name)
        return {k: v for k, v in data.items() if not (v is None and k in defaulted)}


class StrictModel(NullMeansDefault):
    """Base of jan's own and the OpenAI request bodies: unknown fields refused as well."""

    model_config = ConfigDict(extra="forbid", strict=True)


_Strict = StrictModel


class _Part(_Strict):
    # OpenAI's prompt-caching hint ({"mode": "explicit", "ttl": ...}): accepted and ignored, as the request's
    # prompt_cache_key is; jan's KV cache reuses any prefix a slot already holds, with no breakpoints to mark
    prompt_cache_breakpoint: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None  # (Anthropic's breakpoint, as on a Message: there)


class TextPart(_Part):
    type: Literal["text"]
    text: str


#: OpenAI's ``detail`` of an image (chat's ``image_url.detail``, the Responses API's ``input_image.detail``). The
#: projector decides how an image is seen, so jan reads none of them; any other value is a 400, as OpenAI's (a typo
#: that silently changed nothing).
IMAGE_DETAILS = ("auto", "low", "high", "original")


class ImagePart(_Part):
    type: Literal["image_url"]
    image_url: dict[str, Any]

    @field_validator("image_url")
    @classmethod
    def _detail_is_known(cls, value: dict[str, Any]) -> dict[str, Any]:
        detail = value.get("detail")
        if detail is not None and detail not in IMAGE_DETAILS:
            raise ValueError(f"detail: {detail!r} is not one of " + ", ".join(map(repr, IMAGE_DETAILS)))
        return value


class InputAudioPart(_Part):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class RefusalPart(_Strict):
    """An assistant's refusal (an earlier reply's, sent back as history): what the model said, so its text is the
    turn's text for the template. Only an assistant's content holds one (OpenAI's content types)."""

    type: Literal["refusal"]
    refusal: str


def one_source(part: BaseModel, names: tuple[str, ...], *, required: bool = True) -> None:
    """That a media or file part gives its content in at most one of the fields ``names`` (one of OpenAI's
    ``file_data``/``file_id``/``file_url``, ``image_url``/``file_id``), and, when ``required``, in one. Raises
    ``ValueError`` (a 400 naming the part): given two, one was read and the other left unsaid -- a ``file_id`` of
    no upload at all answered as if it were fine, and the client cannot tell which content the model saw."""
    given = [name for name in names if getattr(part, name) is not None]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(names[:-1])} or {names[-1]}, not {' and '.join(given)} together")
    if required and not given:
        raise ValueError(f"give {', '.join(names[:-1])} or {names[-1]}")


class FileInput(_Strict):
    """A file part's ``file``: the document inline (``file_data``: a base64 ``data:`` URL, or bare base64) with
    its ``filename``, or an upload of the Files API by ``file_id``."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "FileInput":
        if self.file_data is None and self.file_id is None:
            raise ValueError("give file_data (the file, base64) or file_id (an uploaded file's id)")
        one_source(self, ("file_data", "file_id"))
        return self


class FilePart(_Part):
    """OpenAI's file input: a PDF or text file, read as text (:mod:`jan.services.documents`)."""

    type: Literal["file"]
    file: FileInput
    #: ``(bytes, media type, file name)`` of the upload ``file.file_id`` names, read by the route
    #: (:func:`jan.server.document_inputs.read_body_documents`).
    _file: tuple[bytes, str, str | None] | None = PrivateAttr(default=None)


ContentPart = Annotated[Union[TextPart, ImagePart, InputAudioPart, FilePart, RefusalPart], Field(discriminator="type")]


class FunctionCall(_Strict):
    name: str
    arguments: str
    # the openai SDK's own parse of ``arguments`` (its parse/stream helpers keep it on the message they return):
    # the arguments text is what the model said, so the copy is ignored
    parsed_arguments: Any = None


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    # a streamed call's position, which a client that accumulated the chunks may keep: the list's order says it
    index: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _functions_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") == "custom":
            raise ValueError("custom tool calls are not supported by jan (its tools are functions, called with "
                             "JSON arguments)")
        return data


def legacy_call_id(name: str) -> str:
    """The tool call id a deprecated ``function_call`` gets, so the ``function`` reply can point at it."""
    return f"call_{name}"


class Message(_Strict):
    """One message as the openai SDK's message params have it (system, developer, user, assistant, tool, and the
    deprecated function), and as it gives an earlier reply back (``ChatCompletionMessage.model_dump()``, which
    adds the reply's ``annotations``, ``audio``, ``function_call`` and its helpers' ``parsed``)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # what an assistant said instead of an answer: its text is the turn's (openai_wire.message_from_openai)
    refusal: str | None = None
    # an earlier assistant turn's thinking (llama-server/DeepSeek field); the template decides whether it is shown
    reasoning_content: str | None = None
    # the same thinking under the name vLLM, OpenRouter and mlx_lm.server give it back by (and so the clients that
    # send an answer back as they got it): read as reasoning_content (one of the two, or both the same)
    reasoning: str | None = None
    # an earlier reply's audio, by id: jan generates none, so only null (no audio) refers to anything
    audio: dict[str, Any] | None = None
    # an earlier reply's web-search citations: positions in its content for the client to show, not a part of
    # the conversation (the content itself is what the model said), so they are ignored
    annotations: list[dict[str, Any]] | None = None
    # the openai SDK's own parse of the content (its parse/stream helpers): the content is the source; ignored
    parsed: Any = None
    # Anthropic's prompt-cache breakpoint, which OpenAI-compatible clients put on messages and their parts for a
    # server that passes it on (opencode and Roo/Kilo Code do for a model they take for Claude, as LiteLLM and
    # OpenRouter forward it): jan's KV cache reuses any prefix a slot holds, with nothing to mark, so it is accepted
    # and ignored, as llama-server and vLLM ignore it.
    cache_control: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_functions(cls, data: Any) -> Any:
        # OpenAI's deprecated function calling: an assistant's function_call is a tool call, and the
        # "function" message answering it is a tool message for that call.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        call = data.pop("function_call", None)
        if call is not None and data.get("role") == "assistant":
            if data.get("tool_calls"):
                raise ValueError("function_call: an assistant message makes its calls in tool_calls or (deprecated) "
                                 "function_call, not both")
            if not isinstance(call, dict):
                raise ValueError("function_call: expected an object with the called function's name and arguments")
            data["tool_calls"] = [{"id": legacy_call_id(str(call.get("name"))), "type": "function", "function": call}]
        elif call is not None:
            data["function_call"] = call  # refused below as an unknown field
        if data.get("role") == "function":
            if not isinstance(data.get("name"), str):
                raise ValueError("name: a function message names the function whose result it holds")
            data["role"] = "tool"
            data.setdefault("tool_call_id", legacy_call_id(data["name"]))
            if data.get("content") is None:  # (the SDK's FunctionMessageParam allows null: an empty result)
                data["content"] = ""
        return data

    @field_validator("content")
    @classmethod
    def _some_content(cls, value: Any, info: ValidationInfo) -> Any:
        value = some_content(value, info)
        if isinstance(value, list) and info.data.get("role") != "assistant" \
                and any(isinstance(part, RefusalPart) for part in value):
            raise ValueError("a refusal content part is an assistant's (what the model said)")
        return value

    @field_validator("audio")
    @classmethod
    def _no_audio(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(f"refers to an earlier audio reply ({value.get('id')!r}), but jan generates text only, "
                             "so there is none; send null or leave it out")
        return value

    @model_validator(mode="after")
    def _check(self) -> "Message":
        # image/audio parts are the model's business: one without a projector answers 400 no_projector
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool messages need a tool_call_id")
        if self.content is None and not self.tool_calls and self.role != "assistant":
            raise ValueError(f"{self.role} messages need content")
        if self.refusal is not None and self.role != "assistant":
            raise ValueError("refusal: only an assistant message has one (what the model said)")
        if self.reasoning is not None:
            if self.reasoning_content is not None and self.reasoning_content != self.reasoning:
                raise ValueError("reasoning and reasoning_content are two names of the turn's thinking, and they "
                                 "differ; send one of them")
            self.reasoning_content = self.reasoning
        return self


#: A tool's name, as OpenAI and Anthropic take it (and so every dialect here: a name one route refuses is refused by
#: all; templates and the tool-call parsers rely on it too).
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


def tool_kind_check(taken: str) -> Callable[[Any, Any], Any]:
    """A wrap validator of a tool's ``type``: a kind not taken names itself and what is (``taken``).

    An agent's other tool kinds (Codex's freeform ``custom`` apply_patch, ``web_search``, ``local_shell``...)
    would otherwise meet pydantic's bare "Input should be 'function'": say that jan runs no such tool and what
    it does take, as the Anthropic dialect says of Anthropic's own tools.
    (The error kind must not end in "_type": from_validation_error takes such an error for a wrong-typed
    union alternative and prefers a sibling field's.)"""
    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            if not isinstance(value, str):
                raise
            raise PydanticCustomError("unsupported_tool_kind", "'{kind}' tools are not run by jan; its tools are "
                                      + taken, {"kind": value}) from None
    return check


#: The ``type`` of a tool, a named tool choice or an allowed tool, in every OpenAI dialect (chat completions,
#: Responses): jan's only tools are functions (the Responses API's custom tools aside: its own kinds).
FunctionKind = Annotated[Literal["function"],
                         WrapValidator(tool_kind_check("functions (type 'function', called with JSON arguments)"))]


class FunctionDef(_Strict):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: FunctionKind
    function: FunctionDef
    cache_control: dict[str, Any] | None = None  # (Anthropic's breakpoint, as on a Message: there)


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: FunctionKind
    function: NamedFunction


class AllowedFunction(_Strict):
    type: FunctionKind
    function: NamedFunction


class AllowedToolsSpec(_Strict):
    mode: Literal["auto", "required"]
    tools: list[AllowedFunction]


class AllowedToolsChoice(_Strict):
    """``{"type": "allowed_tools", "allowed_tools": {"mode": ..., "tools": [...]}}``: only these of ``tools``
    may be called, with ``mode`` as the choice (OpenAI's chat completions shape)."""

    type: Literal["allowed_tools"]
    allowed_tools: AllowedToolsSpec


class JSONSchemaFormat(_Strict):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None
    # llama.cpp's server accepts {"type": "json_object", "schema": {...}}
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema: required when type is 'json_schema'")
        return self


class StreamOptions(_Strict):
    include_usage: bool | None = False
    include_obfuscation: bool | None = None


Stop = Union[Annotated[list[str], Field(max_length=16)], str, None]  # (the list first: its error says "at most 16")
#: The most stop strings a body may give where its API names no count (Anthropic's ``stop_sequences``, Ollama's
#: ``options.stop``; OpenAI's ``stop`` keeps its 16: :data:`Stop`). Each is matched against every token of the
#: reply, by the engine and, for a reply its chat format parses, on the event loop: a million of them in a 14 MB
#: body held every other request for seconds.
MAX_STOP_STRINGS = 256
#: Such a list: non-empty strings (an empty one would end every answer), at most :data:`MAX_STOP_STRINGS`.
StopStrings = Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP_STRINGS)]
#: A model id; omitted (or null) when exactly one model is loaded or a default model is configured.
ModelId = Annotated[Union[str, None], Field(min_length=1,
                                            description="Model id; may be omitted when exactly one model is "
                                                        "loaded or the server has a default model")]


def _n_probs_as_logprobs(data: dict[str, Any], chat: bool) -> None:
    """llama-server's ``n_probs`` on its OpenAI routes (it copies the field into the request it runs) as their own
    fields: on a chat, the tokens' ``logprobs`` with ``n_probs`` alternatives, unless ``logprobs: true`` asked with
    its own ``top_logprobs`` (which llama-server reads first); on a text completion, ``logprobs: n_probs`` (llama-server
    reads ``logprobs`` only where ``n_probs`` is not given). Null is the default, none; out of range a ValueError
    naming ``n_probs`` (was: refused as an unknown field)."""
    n = data.pop("n_probs")
    if n is None:
        return
    low, high = RANGES["top_logprobs"].ge, RANGES["top_logprobs"].le  # (the engine's one range for alternatives)
    if type(n) is float and n.is_integer():
        n = int(n)
    if type(n) is not int or not low <= n <= high:
        raise ValueError(f"n_probs: must be a whole number from {low} to {high}, got {n!r}")
    if chat:
        # (a top_logprobs without logprobs: true stays the 400 it is, as llama-server refuses it whatever n_probs)
        if n > 0 and data.get("logprobs") is not True and data.get("top_logprobs") is None:
            data["logprobs"], data["top_logprobs"] = True, n
    else:
        data["logprobs"] = n or None


class SamplingFields(_Strict):
    """Fields shared by chat and text completions (OpenAI's plus llama.cpp's extras)."""

    model: ModelId = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = bounded("n", 1)
    stop: Stop = None
    max_tokens: MaxTokens | None = None
    temperature: float | None = bounded("temperature")
    top_p: float | None = bounded("top_p")
    frequency_penalty: float | None = bounded("frequency_penalty")
    presence_penalty: float | None = bounded("presence_penalty")
    seed: Seed | None = None
    logit_bias: dict[TokenKey, Annotated[float, Field(**RANGES["logit_bias"].field())]] | None = None
    # accepted and ignored: they change nothing on a local server
    user: str | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    service_tier: str | None = None
    # llama.cpp extras
    top_k: int | None = bounded("top_k")
    min_p: float | None = bounded("min_p")
    typical_p: float | None = bounded("typical_p")
    mirostat: int | None = bounded("mirostat")
    mirostat_tau: float | None = bounded("mirostat_tau")
    mirostat_eta: float | None = bounded("mirostat_eta")
    repeat_penalty: float | None = bounded("repeat_penalty")
    repeat_last_n: int | None = bounded("repeat_last_n")
    grammar: str | None = None
    ignore_eos: bool | None = None
    # speculative decoding (n-gram drafts or the model's draft model; llama-server's names)
    speculative: Speculative | None = None
    draft_max: int | None = bounded("draft_max")
    draft_min: int | None = bounded("draft_min")
    ngram: int | None = bounded("ngram")
    draft_p_min: float | None = bounded("draft_p_min")
    # llama-server's sampler chain (llama.cpp's names or letters, as /completion takes them): a sampler left out is off
    samplers: Union[list[str], str, None] = None
    # llama-server's: the output constrained to this JSON schema ({} any JSON object), as /completion takes it
    json_schema: dict[str, Any] | None = None
    # llama-server's per-request LoRA scales, [{"id": adapter id, "scale": number}] (the model's other adapters at
    # 0; GET /lora-adapters lists the ids), checked by jan.engine.params.lora_request
    lora: list[Any] | None = None
    # llama-server's id_slot, as its OpenAI routes take it: the engine slot the request runs in, waiting while it is
    # busy (-1 any; one the model does not have is a 400). The OpenAI answer has no field to tell the slot back.
    id_slot: int | None = Field(None, ge=-1, le=INT32_MAX)
    # llama-server's lazy grammar and preserved tokens, as its /completion takes them (read by
    # jan.server.dialects.llamacpp_extras.client_grammar): the grammar (or json_schema) holds from a trigger on
    grammar_lazy: bool = False
    grammar_triggers: list[Any] | None = None
    # control tokens whose text the output shows where they are generated
    preserved_tokens: list[str] | None = None
    # llama-server's: each streamed chunk of generated text carries the timings so far (its web UI shows the speed
    # live), not only the last one
    timings_per_token: bool | None = None
    # llama-server's output rules for code completion, which it applies on these routes too (jan.services.types.
    # LineRules): a line less indented than n_indent ends the answer; past t_max_predict_ms, the next newline does
    n_indent: int | None = Field(None, ge=0, le=INT32_MAX)
    t_max_predict_ms: int | None = Field(None, ge=-1, le=2**63 - 1)

    @model_validator(mode="before")
    @classmethod
    def _llama_server_fields(cls, data: Any) -> Any:
        # llama-server's own fields, which its clients send to its OpenAI routes too (its web UI sends cache_prompt,
        # timings_per_token, dry_multiplier: 0...): taken as /completion takes them, not refused as unknown
        if not isinstance(data, dict):
            return data
        declared = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
        data = dict(data)
        if "n_predict" in data and "n_predict" not in declared:  # (llama-server's name for max_tokens)
            n_predict = data.pop("n_predict")
            if n_predict is not None and data.get("max_tokens") is None:
                data["max_tokens"] = n_predict
        if "n_cmpl" in data and "n_cmpl" not in declared:
            # llama-server's name for n on every route, read first (n is its fallback alias): was an unknown field
            n_cmpl = data.pop("n_cmpl")
            if n_cmpl is not None:
                data["n"] = n_cmpl
        if "n_probs" in data and "n_probs" not in declared:
            _n_probs_as_logprobs(data, "top_logprobs" in declared)
        if isinstance(data.get("logit_bias"), list):
            # llama-server's list of [token id, bias] pairs (false bans the token), which it takes on these routes
            # too: as OpenAI's object of them (was: "Input should be a valid dictionary")
            ids = logit_bias_ids(data["logit_bias"], "this route takes token ids (/completion tokenizes text)")
            data["logit_bias"] = {str(token): bias for token, bias in (ids or {}).items()}
        if type(data.get("max_tokens")) is int and data["max_tokens"] == -1:
            # llama-server's "no cap" (its web UI sends it by default): until the end of generation or of the
            # context, not this route's default (16 on completions)
            data["max_tokens"] = INT32_MAX
        return without_extras(data, declared)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        return v

    @model_validator(mode="after")
    def _stream_options_only_when_streaming(self) -> "SamplingFields":
        # OpenAI's 400 ("The 'stream_options' parameter is only allowed when 'stream' is enabled."): a client
        # asking for include_usage on a whole reply would otherwise be told nothing here and refused there
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true")
        if self.json_schema is not None and self.grammar:
            raise ValueError("json_schema: cannot be used with grammar (both constrain the output); give one of them")
        why = lazy_refusal(self.grammar_lazy, bool(self.grammar) or self.json_schema is not None,
                           self.grammar_triggers)
        if why is not None:
            raise ValueError(why)
        return self



class PredictionContent(_Strict):
    """OpenAI's predicted output: a speed hint only, so it is accepted and ignored."""

    type: Literal["content"]
    content: Union[str, list[TextPart]]


# OpenAI's request fields jan refuses unless null, with why (the error says it).
_REFUSED_UNLESS_NULL = {"audio": "it generates text only", "web_search_options": "it has no web search",
                        "moderation": "it has no moderation model"}


class ChatCompletionRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: MaxTokens | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = bounded("top_logprobs")
    # llama-server's: the logprobs' probabilities as the sampler chain left them, told as its "prob"/"top_probs"
    post_sampling_probs: bool | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Union[Literal["none", "auto", "required"], NamedToolChoice, AllowedToolsChoice, None] = None
    parallel_tool_calls: bool | None = None
    # chat template variables (llama.cpp's server calls it chat_template_kwargs)
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: ReasoningEffort | None = None
    # thinking control as llama-server / Ollama / Anthropic accept it (jan.templates.formats.ReasoningRequest)
    reasoning_format: Literal["none", "auto", "deepseek", "deepseek-legacy"] | None = None
    think: Think = None  # (Ollama's)
    # llama-server's continuation controls (its web UI's "continue" sends both): jan continues a final assistant
    # message and answers every other conversation after the generation prompt, so only what agrees with that is taken
    continue_final_message: Union[bool, Literal["content", "reasoning_content"], None] = None
    add_generation_prompt: bool | None = None
    reasoning_budget: int | None = Field(default=None, ge=-1, le=INT32_MAX)
    # llama-server's name of the budget on its chat route (read before thinking_budget_tokens, as it reads them; -1:
    # the model's own budget)
    reasoning_budget_tokens: int | None = Field(default=None, ge=-1, le=INT32_MAX)
    thinking_budget_tokens: int | None = Field(default=None, ge=0, le=INT32_MAX)
    # llama-server's: the thinking can be ended while it runs (POST /v1/chat/completions/control, by the reply's id)
    reasoning_control: bool | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    # jan's, named and valued as the Responses API's: "auto" drops the oldest turns of a conversation longer than
    # the context (jan.services.fit); "disabled" (the default, as OpenAI's chat completions) answers 400
    truncation: Literal["auto", "disabled"] | None = None
    # OpenAI's, accepted and ignored: caching, abuse-tracking and length hints with no local meaning
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prediction: PredictionContent | None = None
    # OpenAI's, refused unless null: jan produces no audio, has no web search and no moderation model
    audio: dict[str, Any] | None = Field(default=None, description="Not supported (audio output); only null")
    web_search_options: dict[str, Any] | None = Field(default=None, description="Not supported; only null")
    moderation: dict[str, Any] | None = Field(default=None, description="Not supported; only null")
    # OpenAI's deprecated function calling, mapped onto tools / tool_choice (and answered in its own shape:
    # legacy_functions)
    functions: list[FunctionDef] | None = Field(default=None, max_length=128, description="Deprecated: use tools")
    function_call: Union[Literal["none", "auto"], NamedFunction, None] = Field(
        default=None, description="Deprecated: use tool_choice")

    @field_validator(*_REFUSED_UNLESS_NULL)
    @classmethod
    def _refused_unless_null(cls, v, info: ValidationInfo):
        if v is not None:
            raise not_supported(info.field_name, _REFUSED_UNLESS_NULL[info.field_name])
        return v

    @field_validator("modalities")
    @classmethod
    def _text_only(cls, v):
        if v and "audio" in v:
            raise not_supported("modalities", "it generates text only")
        return v

    _legacy_functions: bool = PrivateAttr(default=False)

    @property
    def legacy_functions(self) -> bool:
        """Whether the request offered its tools as the deprecated ``functions``: the reply then calls one in the
        same deprecated shape (``message.function_call``, finish_reason ``function_call``), as OpenAI answers;
        it has no parallel calls."""
        return self._legacy_functions

    @model_validator(mode="after")
    def _map_legacy_functions(self) -> "ChatCompletionRequest":
        if self.functions is not None:
            if self.tools is not None:
                raise ValueError("functions: cannot be used together with tools (functions is their deprecated form)")
            self.tools = [Tool(type="function", function=f) for f in self.functions] or None
            self.functions = None
            self._legacy_functions = True
        if self.function_call is not None:
            if self.tool_choice is not None:
                raise ValueError("function_call: cannot be used together with tool_choice (its deprecated form)")
            if not self.tools and self.function_call != "none":  # (OpenAI's words for its deprecated pair)
                raise ValueError("function_call: only allowed when functions are specified")
            fc = self.function_call
            self.tool_choice = fc if isinstance(fc, str) else NamedToolChoice(type="function", function=fc)
            self.function_call = None
        return self

    @model_validator(mode="after")
    def _check(self) -> "ChatCompletionRequest":
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs: requires logprobs to be true")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice: names the function '{self.tool_choice.function.name}', "
                                 "which is not in tools")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice: 'required' needs tools (the request has none)")
        # OpenAI's 400s ("'tool_choice' is only allowed when 'tools' are specified", the same of
        # parallel_tool_calls): a choice of tools, or of how to call them, with none to call is a client's mistake
        # (tool_choice 'none' says nothing of tools, and is taken)
        if not self.tools and self.tool_choice not in (None, "none"):
            raise ValueError("tool_choice: only allowed when tools are specified")
        if not self.tools and self.parallel_tool_calls is not None:
            raise ValueError("parallel_tool_calls: only allowed when tools are specified")
        return self


class CompletionRequest(SamplingFields):
    prompt: Union[str, list[str], TokenList, list[TokenList]]
    # 0: nothing generated (OpenAI's legacy completions: with echo and logprobs, the prompt scored alone). Not sent:
    # the model.json's parameters.max_tokens, else OpenAI's 16 (openai_wire.COMPLETION_DEFAULTS, below the model's)
    max_tokens: int | None = Field(default=None, ge=0, le=INT32_MAX)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool | None = False
    best_of: int | None = Field(default=None, ge=1, le=16)
    # fill in the middle (a model with FIM tokens): the code after the gap, the prompt the code before it
    suffix: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_prompt_object(cls, body: Any) -> Any:
        # llama-server's prompt objects (media in multimodal_data) are its /completion's: its /v1/completions reads
        # a string prompt on a model with a projector, as this route does. Said so, where the union's own error
        # named a string the object is not ("prompt[1]: Input should be a valid string"). (Of the body: the message
        # names the item, prompt[i].)
        value = body.get("prompt") if isinstance(body, dict) else None
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, dict) and ("prompt_string" in item or "multimodal_data" in item):
                where = f"prompt[{i}]" if isinstance(value, list) else "prompt"
                raise ValueError(f"{where}: a prompt object (prompt_string, multimodal_data) goes to /completion, "
                                 "llama-server's native route; this one takes text or token ids (send images in "
                                 "a chat message to /v1/chat/completions)")
        return body

    @model_validator(mode="after")
    def _check(self) -> "CompletionRequest":
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of: must equal n (each choice is generated once)")
        if isinstance(self.prompt, list) and len(self.prompt) == 0:
            raise ValueError("prompt: must not be empty")
        if isinstance(self.prompt, list):
            # (an empty token list among several reached the engine, whose refusal named no item and had no code)
            empty = next((i for i, p in enumerate(self.prompt) if isinstance(p, list) and not p), None)
            if empty is not None:
                raise ValueError(f"prompt[{empty}]: a token list must not be empty")
        return self


class MediaPrompt(NullMeansDefault):
    """llama-server's prompt object with media: ``prompt_string`` holds one ``<__media__>`` (libmtmd's default
    marker) per item of ``multimodal_data`` (base64 of an image or audio file), each standing for its item in
    order. (Its ``/completion`` and ``/embedding`` take it, and its OpenAI ``/v1/embeddings`` as well.)"""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt_string: str
    multimodal_data: list[str]


#: The parts of an embedding input's ``content`` (llama-server's): text, images and audio as a chat message's.
EmbeddingContentPart = Annotated[Union[TextPart, ImagePart, InputAudioPart], Field(discriminator="type")]


class ContentPrompt(NullMeansDefault):
    """llama-server's embedding input as an OpenAI message's content: ``{"content": [parts]}``, its text parts' text
    and one media marker per image or audio part, in order, read as one prompt with those media (its embedding
    endpoints take it, never its ``/completion``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    content: list[EmbeddingContentPart] = Field(min_length=1)


class EmbeddingRequest(_Strict):
    model: ModelId = None
    # (prompt objects with media: llama-server's, which its /v1/embeddings takes as its /embedding does)
    input: Union[str, MediaPrompt, ContentPrompt, list[Union[str, MediaPrompt, ContentPrompt]], TokenList,
                 list[TokenList]]
    encoding_format: Literal["float", "base64"] | None = "float"
    # OpenAI's (text-embedding-3): the Matryoshka cut, done by the embedding service for every front end
    dimensions: Int32Count | None = Field(
        default=None, description="The first N components of each embedding, L2-normalized again (OpenAI's "
                                  "text-embedding-3 dimensions; Matryoshka-trained models such as nomic-embed-text "
                                  "v1.5 keep their quality). 1 to the model's size; its size is the whole vector; "
                                  "more is a 400 naming dimensions.")
    user: str | None = None
    # llama-server's, which its /v1/embeddings reads as its /embedding does: -1 none, 0 int16's range, 1 taxicab,
    # 2 euclidean (OpenAI's, the default), above 2 that p-norm
    embd_normalize: int | None = Field(None, ge=-1, le=INT32_MAX)

    @model_validator(mode="after")
    def _one_normalization(self) -> "EmbeddingRequest":
        if self.dimensions is not None and self.embd_normalize not in (None, 2):
            # (the cut is L2-normalized again: another norm asked beside it would be undone or mixed)
            raise ValueError("embd_normalize: only 2 (euclidean) goes with dimensions, whose cut is L2-normalized "
                             "again; leave one of them out")
        return self

    @field_validator("input")
    @classmethod
    def _not_empty(cls, v):
        if isinstance(v, list) and len(v) == 0:
            raise ValueError("input must not be empty")
        if isinstance(v, list) and any(isinstance(x, list) and not x for x in v):
            raise ValueError("token lists must not be empty")
        if isinstance(v, str) and v == "":
            raise ValueError("input must not be an empty string")
        if isinstance(v, list) and any(x == "" for x in v):
            raise ValueError("input strings must not be empty")
        return v


class RerankRequest(_Strict):
    """``POST /v1/rerank`` (and ``/rerank``, ``/v1/reranking``, ``/reranking``, as llama-server serves it): Jina's and
    Cohere's body (``query``, ``documents``, ``top_n``, ``return_documents``, Cohere's ``rank_fields``,
    ``max_tokens_per_doc`` and ``max_chunks_per_doc``) or Text Embeddings Inference's (``query``, ``texts``,
    ``return_text``, ``truncate``, ``truncation_direction``, ``raw_scores``: answered as a bare list, ``score`` for
    ``relevance_score``). Every
    option is honoured whichever shape the body has; the shape (``texts`` or ``documents``) decides the answer's
    form and the default of ``raw_scores``."""

    model: ModelId = None
    query: str = Field(min_length=1)
    # a document is a string or an object (Cohere's and Jina's {"text": ...}, any other keys kept: Cohere's
    # semi-structured documents, read by rank_fields)
    documents: list[Union[str, dict[str, Any]]] | None = Field(default=None, min_length=1)
    texts: list[str] | None = Field(default=None, min_length=1)
    top_n: Int32Count | None = None
    # (false as Cohere's and llama-server's: a Jina client that wants them back says so; the body cannot tell)
    return_documents: bool | None = False
    return_text: bool | None = False
    # Cohere's: the keys of an object document read, in this order, as "key: value" lines; without it its "text"
    rank_fields: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    # Cohere's: each document read to at most this many tokens (its own default, 4096, is no cut for jan's
    # rerankers' contexts, and a Jina or TEI body has no such cut: none unless given)
    max_tokens_per_doc: Int32Count | None = None
    # Cohere v1's: a document too long for the context read as chunks, at most this many, scored as its best (its
    # default, 10, is not applied unless given: a Jina or TEI body has no chunking)
    max_chunks_per_doc: Int32Count | None = None
    # TEI's: a document too long to read with the query is cut to fit instead of refused; which end is kept
    truncate: bool | None = False
    truncation_direction: Literal["Right", "Left", "right", "left"] | None = "Right"
    # TEI's: the classifier's logit as it is, or its sigmoid (TEI's default, for a texts body); a documents body's
    # default is the logit, as llama-server answers Jina's and Cohere's shape
    raw_scores: bool | None = None
    # accepted and meaningless here, as in the APIs the body comes from
    user: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "RerankRequest":
        if (self.documents is None) == (self.texts is None):
            raise ValueError("documents: give the documents to rank (or texts, Text Embeddings Inference's name), "
                             "one of them")
        for i, d in enumerate(self.documents or []):
            if isinstance(d, dict):
                _object_document_text(d, i, self.rank_fields)  # (said now: a 400 naming the document)
        return self

    @property
    def tei(self) -> bool:
        """The body is Text Embeddings Inference's (``texts``): the answer is its bare list."""
        return self.texts is not None

    @property
    def document_texts(self) -> list[str]:
        """Each document's text as the reranker reads it (an object's by ``rank_fields``)."""
        given = self.texts if self.texts is not None else self.documents or []
        return [d if isinstance(d, str) else _object_document_text(d, i, self.rank_fields)
                for i, d in enumerate(given)]

    @property
    def scores_raw(self) -> bool:
        """Whether the scores are the logits: as asked, else a TEI body's sigmoid and any other body's logit."""
        return self.raw_scores if self.raw_scores is not None else not self.tei


def _object_document_text(document: dict[str, Any], index: int, rank_fields: list[str] | None) -> str:
    """An object document's text: its ``text`` (a string), or with ``rank_fields`` the named keys it has, in that
    order, as ``key: value`` lines (the YAML-like form Cohere reads structured documents in; a value that is no
    string written as JSON). ValueError naming the document when there is nothing to read."""
    if rank_fields is None:
        text = document.get("text")
        if not isinstance(text, str):
            got = "has none" if text is None else f"got {type(text).__name__}"
            raise ValueError(f"documents[{index}]: an object document is read by its text field, a string ({got}); "
                             "or name the fields to read in rank_fields")
        return text
    lines = [f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
             for k in rank_fields if (v := document.get(k)) is not None]
    if not lines:
        raise ValueError(f"documents[{index}]: has none of the rank_fields {rank_fields}: nothing to read")
    return "\n".join(lines)


class TokenizeRequest(_Strict):
    """llama-server's ``/tokenize``: ``content`` text, or a list of text pieces and token ids (its mixed prompt:
    the pieces tokenized, the ids kept, ``add_special`` only before a leading text piece); none (``{}``) is
    nothing to tokenize, ``{"tokens": []}``, as llama-server answers it."""

    model: ModelId = None
    content: str | list[str | TokenId] | None = None
    text: str | None = None
    add_special: bool | None = False
    parse_special: bool | None = True
    with_pieces: bool | None = False

    @model_validator(mode="after")
    def _check(self) -> "TokenizeRequest":
        if self.content is not None and self.text is not None and self.content != self.text:
            # (text is another name for it): tokenizing one and dropping the other silently answers a wrong question
            raise ValueError("text: content and text are one field by two names: give one")
        return self


class ChatControlRequest(_Strict):
    """llama-server's ``POST /v1/chat/completions/control``: an ``action`` on the running completion ``id``."""

    id: str = Field(min_length=1, max_length=256)
    action: Literal["reasoning_end"]


class DetokenizeRequest(_Strict):
    """llama-server's ``/detokenize``: no ``tokens`` (``{}``) spells nothing, ``{"content": ""}``, as it answers."""

    model: ModelId = None
    tokens: TokenList = Field(default_factory=list)

    @field_validator("tokens", mode="before")
    @classmethod
    def _whole_floats(cls, v: Any) -> Any:
        # an id written as a whole float ([15043.0], a Python float or a NumPy array's) is that id, as llama-server's
        # JSON reading takes it (a fraction stays refused)
        if isinstance(v, list):
            return [int(t) if type(t) is float and t.is_integer() else t for t in v]
        return v
