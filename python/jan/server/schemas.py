"""Request bodies of the OpenAI-compatible endpoints, validated with pydantic.

Unknown fields are refused (``extra="forbid"``) so a typo such as
``max_token`` is a 400 naming the field, not a silently ignored option.
Fields OpenAI clients send that change nothing here (``user``, ``store``,
``metadata``, ...) are accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: dict[str, Any]


class InputAudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


ContentPart = Annotated[Union[TextPart, ImagePart, InputAudioPart], Field(discriminator="type")]


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    # an earlier assistant turn's thinking (llama-server/DeepSeek field); the template decides whether it is shown
    reasoning_content: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "Message":
        if isinstance(self.content, list):
            for part in self.content:
                if not isinstance(part, TextPart):
                    raise ValueError(f"content parts of type '{part.type}' are not supported by local text models")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool messages need a tool_call_id")
        if self.content is None and not self.tool_calls and self.role != "assistant":
            raise ValueError(f"{self.role} messages need content")
        return self


class FunctionDef(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


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
            raise ValueError("response_format.json_schema is required when type is 'json_schema'")
        return self


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


Stop = Union[str, Annotated[list[str], Field(max_length=16)], None]


class SamplingFields(_Strict):
    """Fields shared by chat and text completions (OpenAI's plus llama.cpp's extras)."""

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=16)
    stop: Stop = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # llama.cpp extras
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    typical_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    repeat_last_n: int | None = Field(default=None, ge=-1)
    grammar: str | None = None
    ignore_eos: bool | None = None
    # speculative decoding (n-gram drafts; llama-server's names)
    speculative: Union[bool, Literal["none", "ngram"], None] = None
    draft_max: int | None = Field(default=None, ge=0, le=256)
    draft_min: int | None = Field(default=None, ge=0)
    ngram: int | None = Field(default=None, ge=1, le=64)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _token_keys(cls, v):
        for key in v or {}:
            if not key.lstrip("-").isdigit():
                raise ValueError(f"logit_bias keys must be token ids, got '{key}'")
        return v


class ChatCompletionRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Union[Literal["none", "auto", "required"], NamedToolChoice, None] = None
    parallel_tool_calls: bool | None = None
    # chat template variables (llama.cpp's server calls it chat_template_kwargs)
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    # thinking control as llama-server / Ollama / Anthropic accept it (jan.templates.formats.ReasoningRequest)
    reasoning_format: Literal["none", "auto", "deepseek", "deepseek-legacy"] | None = None
    think: Union[bool, Literal["low", "medium", "high"], None] = None
    reasoning_budget: int | None = Field(default=None, ge=-1)
    thinking_budget_tokens: int | None = Field(default=None, ge=0)
    modalities: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> "ChatCompletionRequest":
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice names '{self.tool_choice.function.name}', which is not in tools")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self


TokenList = list[Annotated[int, Field(ge=0)]]


class CompletionRequest(SamplingFields):
    prompt: Union[str, list[str], TokenList, list[TokenList]]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1, le=16)
    suffix: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "CompletionRequest":
        if self.suffix:
            raise ValueError("suffix (fill-in-the-middle) is not supported")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of must equal n (each choice is generated once)")
        if isinstance(self.prompt, list) and len(self.prompt) == 0:
            raise ValueError("prompt must not be empty")
        return self


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1)
    input: Union[str, list[str], TokenList, list[TokenList]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

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


class TokenizeRequest(_Strict):
    model: str = Field(min_length=1)
    content: str | None = None
    text: str | None = None
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False

    @model_validator(mode="after")
    def _check(self) -> "TokenizeRequest":
        if self.content is None and self.text is None:
            raise ValueError("content is required")
        return self


class DetokenizeRequest(_Strict):
    model: str = Field(min_length=1)
    tokens: TokenList
