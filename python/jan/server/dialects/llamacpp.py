"""llama-server's native API (``POST /completion``, ``POST /infill``, ``GET /props``, ``POST /embedding``, ``GET
/slots``, router mode's ``POST /models/load`` and ``/models/unload``): its bodies, its answers.

What editor plugins speak (llama.vscode, llama.vim, Continue's llama.cpp provider): llama-server's field names in,
its result objects out, over jan's one completion path (:class:`~jan.services.types.CompletionRequest` → the
completion service → :class:`~jan.services.types.CompletionDelta`). HTTP stays in ``routes/llamacpp.py``.

Fields, as llama-server reads them (``tools/server/server-schema.cpp``): each is honoured, ignored where ignoring
changes nothing a client could see in the output, or refused (a 400 naming it) where jan's engine cannot do what it
asks — see :data:`IGNORED`, :data:`REFUSED_UNLESS` and :data:`IGNORED_WHILE_OFF`. A field llama-server does not know is ignored, as
llama-server ignores it (clients spread their own options into the body).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import ConfigDict, Field, field_validator, model_validator

from jan.server.dialect_errors import llamacpp_error_body, llamacpp_error_status
from jan.server.openai_wire import timings_dict
from jan.server.schemas import (INT32_MAX, MAX_STOP_STRINGS, ContentPrompt, MediaPrompt, ModelId, NullMeansDefault, Seed,
                                Speculative, TokenId, bounded)
from jan.errors import MediaError
from jan.image_types import base64_media, sniff_image
from jan.engine.media import audio_format
from jan.engine.params import RANGES, lora_request
from jan.services.types import (MEDIA_MARKER, AudioPart, CompletionDelta, CompletionRequest, EmbeddingRequest,
                                EmbeddingResult, ImagePart, InfillChunk, LineRules, MediaText, SamplingOptions,
                                TokenLogprob, Usage)

__all__ = ["CompletionBody", "EmbeddingBody", "InfillBody", "MediaPrompt", "ModelNameBody", "NativeResults",
           "completion_request", "media_error", "media_text", "prompt_field",
           "embedding_request", "embedding_results", "error_body", "error_status", "generation_settings", "slots"]


# -- errors -------------------------------------------------------------------------------------
#: llama-server's error ``type`` by HTTP status (``format_error_response``).
# llama-server's error shape: in jan.server.dialect_errors (an error before any of this module's code runs, a 401 or
# 404, still leaves in it)
error_status = llamacpp_error_status
error_body = llamacpp_error_body


# -- request bodies -----------------------------------------------------------------------------
# llama-server's fields accepted and ignored or refused unless off: in jan.server.dialects.llamacpp_extras (every chat
# body reads them: imported at start, this module on first use)
from jan.server.dialects.llamacpp_extras import (IGNORED, IGNORED_WHILE_OFF, REFUSED_UNLESS, TRIGGER_TYPES,  # noqa: E402,F401
                                                 UNREAD, bias_text, bias_texts, biases_with_ids, client_grammar,
                                                 ignored_refusal, lazy_refusal, lazy_triggers,
                                                 logit_bias_ids as _logit_bias, refusal, speculative_fields,
                                                 without_extras)


#: llama.cpp's sampler names -> jan's; their aliases (``top-k``, ``topk``, ``nucleus``, ``temp``, ``typ``) as
#: ``common_sampler_types_from_names`` takes them, case-insensitively.
_SAMPLER_NAMES = {"penalties": "penalties", "dry": "dry", "top_n_sigma": "top_n_sigma", "top_k": "top_k",
                  "typ_p": "typical_p", "top_p": "top_p", "min_p": "min_p", "xtc": "xtc", "temperature": "temperature",
                  "infill": "infill", "adaptive_p": "adaptive_p"}
_SAMPLER_NAMES |= {alias: sampler for name, sampler in list(_SAMPLER_NAMES.items()) if "_" in name
                   for alias in (name.replace("_", "-"), name.replace("_", ""))}
_SAMPLER_NAMES |= {"nucleus": "top_p", "temp": "temperature", "typ": "typical_p",
                   "typical_p": "typical_p", "typical-p": "typical_p", "typical": "typical_p"}  # (older llama.cpp's)
_CANONICAL_SAMPLERS = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature",
                       "infill", "adaptive_p")
#: Their one-letter forms (``common_sampler_types_from_chars``).
_SAMPLER_CHARS = {"e": "penalties", "d": "dry", "s": "top_n_sigma", "k": "top_k", "y": "typical_p", "p": "top_p",
                  "m": "min_p", "x": "xtc", "t": "temperature", "i": "infill", "a": "adaptive_p"}
#: The order jan's engine applies its samplers in (llama.cpp's default chain, cpp/sampling.cpp; ``infill``, in no
#: default chain, after the others, as llama.vscode and llama.vim list it: ``["top_k", "top_p", "infill"]``).
_ENGINE_ORDER = ("penalties", "top_k", "typical_p", "top_p", "min_p", "temperature", "infill")
#: A sampler left out of ``samplers`` is off: the value of its options that turns it off.
_OFF: dict[str, dict[str, Any]] = {
    "penalties": {"repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0},
    "top_k": {"top_k": 0}, "typical_p": {"typical_p": 1.0}, "top_p": {"top_p": 1.0}, "min_p": {"min_p": 0.0},
    # without a temperature sampler llama.cpp samples the distribution as it is: temperature 1
    "temperature": {"temperature": 1.0},
}
#: Samplers that are on only where ``samplers`` lists them (a flag of the request, no option of their own).
_ONLY_LISTED = ("infill",)

#: One part of a prompt: text or a token id (llama-server's "mixed" prompt: ``[12, 34, "text", 56]``).
PromptPiece = Union[TokenId, str]
#: A prompt: text, token ids (mixed with text), text with media, or a list of prompts (one result each).
Prompt = Union[str, MediaPrompt, list[Union[PromptPiece, list[PromptPiece], MediaPrompt]]]
#: An embedding input: a prompt, or also (llama-server's embedding endpoints take it) an OpenAI message's content
#: (``{"content": [parts]}``), alone or in the list.
EmbeddingPrompt = Union[str, MediaPrompt, ContentPrompt,
                        list[Union[PromptPiece, list[PromptPiece], MediaPrompt, ContentPrompt]]]


def _one_mixed_prompt(v: Any, field: str = "prompt") -> None:
    """A list holding a token id at its top level is one prompt, llama-server's mixed prompt (token ids and text
    pieces, :func:`prompts_of`): a list or a prompt object in it has no place there (read as one "token", it failed
    the tokenizer: a 500). A ValueError naming the item."""
    if not isinstance(v, list) or not any(isinstance(p, int) for p in v):
        return
    for i, p in enumerate(v):
        if isinstance(p, (int, str)):
            continue
        if isinstance(p, (MediaPrompt, ContentPrompt)):
            what = "a prompt object with media" if isinstance(p, MediaPrompt) else "a content object"
            raise ValueError(f"{field}[{i}]: {what} is a prompt of its own: it cannot be among token ids")
        raise ValueError(f"{field}[{i}]: a list holding a token id is one prompt of token ids and text pieces; "
                         "it cannot hold a list (give a list of prompts, each a list or a text, without bare ids)")


def _int_fields(model: type) -> frozenset[str]:
    """The fields of ``model`` whose value is one integer (``int``, ``int | None``, a bounded int)."""
    def is_int(tp: Any) -> bool:
        if tp is int:
            return True
        if get_origin(tp) is Annotated:
            return is_int(get_args(tp)[0])
        args = get_args(tp)
        return get_origin(tp) in (Union, UnionType) and bool(args) and all(is_int(a) or a is type(None) for a in args)
    return frozenset(name for name, info in model.model_fields.items() if is_int(info.annotation))


class WholeNumbers(NullMeansDefault):
    """A body that reads a whole number written as a float (``"n_predict": 4.0``, Python's or Vim's float) as that
    integer, as llama-server's JSON reading does; a fraction stays refused (llama-server drops it unsaid)."""

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            ints = _int_fields(cls)
            data = {k: int(v) if k in ints and type(v) is float and v.is_integer() else v for k, v in data.items()}
        return data


class CompletionBody(WholeNumbers):
    """``POST /completion``: llama-server's native completion (``tools/server/README.md``)."""

    # llama-server ignores fields it does not know; clients spread their own options into the body
    model_config = ConfigDict(extra="allow", strict=True)

    model: ModelId = None
    prompt: Prompt
    stream: bool = False
    # -1: until the end of generation or of the context; 0: the prompt is evaluated and nothing generated
    n_predict: int | None = Field(None, ge=-1, le=INT32_MAX)
    n_cmpl: int | None = bounded("n")
    # llama-server's "off" values beyond jan's one range table (as Ollama's, ollama_schemas.OLLAMA_BOUNDS): a
    # temperature below 0 is greedy, a top_k <= 0 no top-k (llama.cpp's sampler chain reads them so); taken as jan's
    # 0 by completion_request
    temperature: float | None = Field(None, ge=-float(INT32_MAX), le=RANGES["temperature"].le)
    top_k: int | None = Field(None, ge=-INT32_MAX - 1, le=INT32_MAX)
    top_p: float | None = bounded("top_p")
    min_p: float | None = bounded("min_p")
    typical_p: float | None = bounded("typical_p")
    repeat_penalty: float | None = bounded("repeat_penalty")
    repeat_last_n: int | None = bounded("repeat_last_n")
    presence_penalty: float | None = bounded("presence_penalty")
    frequency_penalty: float | None = bounded("frequency_penalty")
    mirostat: int | None = bounded("mirostat")
    mirostat_tau: float | None = bounded("mirostat_tau")
    mirostat_eta: float | None = bounded("mirostat_eta")
    seed: Seed | None = None  # -1: a random one
    # (llama-server's stop names no count: the bound of such APIs, not OpenAI's 16, which refused a 17th here)
    stop: Union[Annotated[list[str], Field(max_length=MAX_STOP_STRINGS)], str, None] = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    n_probs: int | None = Field(None, ge=0, le=20)
    # n_probs' probabilities after the sampler chain (``prob``/``top_probs``: the candidates it left), not the
    # model's own (``logprob``/``top_logprobs``)
    post_sampling_probs: bool | None = None
    # each partial result tells the timings so far (the engine's), as the last one does
    timings_per_token: bool | None = None
    ignore_eos: bool | None = None
    logit_bias: Union[dict[str, Union[float, bool]], list[list[Any]], None] = None
    return_tokens: bool = False
    samplers: Union[list[str], str, None] = None
    n_indent: int | None = Field(None, ge=0, le=INT32_MAX)
    t_max_predict_ms: int | None = Field(None, ge=-1, le=2**63 - 1)
    response_fields: list[str] | None = None
    # the LoRA adapters' scales for this request: [{"id": adapter id, "scale": number}], others at 0
    lora: list[Any] | None = None
    # the slot (0 .. --parallel - 1) the request runs in, waiting while it is busy; -1: any (one the model does not
    # have is a 400, where llama-server wraps it around: a client saving "its" slot would act on another one)
    id_slot: int | None = Field(None, ge=-1, le=INT32_MAX)
    # jan's own speculative decoding options, as its OpenAI routes take them (llama-server's "speculative.n_max", ...
    # are read too, from the extra fields; jan's name wins where both are given, as there). Undeclared, they were
    # extra fields ignored as llama-server ignores what it does not know: "speculative": "none" drafted on, and
    # "speculative": "bogus" or "draft_max": -1 answered 200.
    speculative: Speculative | None = None
    draft_max: int | None = bounded("draft_max")
    draft_min: int | None = bounded("draft_min")
    ngram: int | None = bounded("ngram")
    draft_p_min: float | None = bounded("draft_p_min")
    # a lazy grammar: free text until a trigger ({"type": 0-3 or its name, "value": ...}) matches, the grammar's
    # from there on (:func:`lazy_triggers`)
    grammar_lazy: bool = False
    grammar_triggers: list[Any] | None = None
    # control tokens whose text the output shows where they are generated (each a text the vocabulary spells as one
    # token; the others dropped as ever)
    preserved_tokens: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        # llama-server's other names: max_tokens/max_completion_tokens for n_predict (n_predict wins), n for n_cmpl,
        # logprobs for n_probs
        if isinstance(data, dict):
            data = dict(data)
            for alias, name in (("max_completion_tokens", "n_predict"), ("max_tokens", "n_predict"), ("n", "n_cmpl"),
                                ("logprobs", "n_probs")):
                if alias == "logprobs" and type(data.get(alias)) not in (int, float):
                    continue  # (a count, as llama-server reads it; OpenAI's logprobs: true is no count)
                if data.get(alias) is not None and data.get(name) is None:
                    data[name] = data.pop(alias)
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_objects(cls, v: Any) -> Any:
        """llama-server's prompt object, ``{"prompt_string": ..., "multimodal_data": [base64, ...]}`` (alone or in
        a list of prompts): without media (none listed, no marker) its text is the prompt, as llama-server reads
        it; with them a :class:`MediaPrompt` (else the object was a bare "Input should be a valid string")."""
        def text_of(p: Any) -> Any:
            if not isinstance(p, dict):
                return p
            text, media = p.get("prompt_string"), p.get("multimodal_data")
            if not isinstance(text, str) or set(p) - {"prompt_string", "multimodal_data"}:
                raise ValueError('a prompt object is {"prompt_string": "text"}, or with media {"prompt_string": '
                                 f'"text with a {MEDIA_MARKER} marker per item", '
                                 '"multimodal_data": ["<base64>", ...]}')
            if media is None or (media == [] and MEDIA_MARKER not in text):
                return text
            return p  # (a MediaPrompt: its own check names a multimodal_data that is not a list of strings)
        return [text_of(p) for p in v] if isinstance(v, list) else text_of(v)

    @field_validator("prompt")
    @classmethod
    def _some_prompt(cls, v: Any) -> Any:
        if isinstance(v, list) and (not v or any(isinstance(p, list) and not p for p in v)):
            raise ValueError("prompt must not be empty")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Any) -> Any:
        stops = [s for s in ([v] if isinstance(v, str) else v or []) if s]  # (an empty one llama-server skips)
        return stops or None

    @model_validator(mode="after")
    def _refused(self) -> "CompletionBody":
        _one_mixed_prompt(self.prompt)  # (here, not in the field's check: its message names the item, prompt[i])
        extra = self.model_extra or {}
        for name in REFUSED_UNLESS:
            why = refusal(name, extra.get(name))
            if why is not None:
                raise ValueError(why)
        for name in IGNORED:  # (taken and ignored, but of llama-server's type: its 400 otherwise)
            why = ignored_refusal(name, extra.get(name))
            if why is not None:
                raise ValueError(why)
        if self.grammar and self.json_schema is not None:
            raise ValueError("grammar: cannot be used with json_schema (both constrain the output); give one of them")
        why = lazy_refusal(self.grammar_lazy, bool(self.grammar) or self.json_schema is not None,
                           self.grammar_triggers)
        if why is not None:
            raise ValueError(why)
        return self


class ExtraChunk(NullMeansDefault):
    """One item of ``input_extra``: another file's code (``filename`` optional)."""

    model_config = ConfigDict(extra="allow", strict=True)

    text: str
    filename: str | None = None


class InfillBody(CompletionBody):
    """``POST /infill``: code between ``input_prefix`` and ``input_suffix``, after ``input_extra``'s files;
    ``prompt`` is the text typed after the prefix (the current line up to the cursor)."""

    prompt: str = ""  # type: ignore[assignment]
    input_prefix: str
    input_suffix: str
    input_extra: list[ExtraChunk] = Field(default_factory=list)


#: A body's ``input`` and ``content`` both given (on /embedding, /embeddings and /v1/embeddings alike).
BOTH_EMBEDDING_INPUTS = ('"input" and "content" are both given: they are two names of one field (llama-server\'s '
                         '"content" is OpenAI\'s "input"); send one of them')


class EmbeddingBody(WholeNumbers):
    """``POST /embedding``: llama-server's native embeddings: ``input`` (or ``content``) in the forms of
    ``/completion``'s ``prompt`` (text, token ids, both mixed, or a list of them: one result each), and
    ``embd_normalize`` (llama.cpp's: -1 none, 0 int16's range, 1 taxicab, 2 euclidean, above 2 that p-norm)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: ModelId = None
    input: EmbeddingPrompt | None = None
    content: EmbeddingPrompt | None = None
    embd_normalize: int = Field(2, ge=-1, le=INT32_MAX)
    # (checked as llama-server checks it; its native answer has no other form than float lists)
    encoding_format: Literal["float", "base64"] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> "EmbeddingBody":
        if self.input is not None and self.content is not None:
            # two names of one field: llama-server embeds ``input`` and drops ``content`` unsaid, which hides a
            # client's mistake (which of the two did it mean?); every embedding path refuses it in these words
            raise ValueError(BOTH_EMBEDDING_INPUTS)
        given = self.input if self.input is not None else self.content
        if given is None:
            raise ValueError('"input" or "content" must be provided')
        if isinstance(given, list) and (not given or any(isinstance(p, list) and not p for p in given)):
            raise ValueError(f'"{self.inputs_field}" must not be empty')
        # an empty string, one input or one of a list of inputs (in a mixed prompt of ids and text it is a piece):
        # refused as /v1/embeddings and jan.Model.embed refuse it, where llama-server embeds the BOS alone of a model
        # that adds one and refuses it for the others; its vector says nothing of any text
        if given == "" or (isinstance(given, list) and not any(isinstance(p, int) for p in given)
                           and any(p == "" for p in given)):
            raise ValueError(f'"{self.inputs_field}" must not be empty: an empty string has no text to embed')
        _one_mixed_prompt(given, self.inputs_field)
        return self

    @property
    def inputs(self) -> EmbeddingPrompt:
        return self.input if self.input is not None else self.content  # (input wins, as in llama-server)

    @property
    def inputs_field(self) -> str:
        """The field :attr:`inputs` came from."""
        return "input" if self.input is not None else "content"


class ModelNameBody(NullMeansDefault):
    """``POST /models/load`` and ``/models/unload`` (llama-server's router mode): the model's name."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)


# -- to jan's typed request ---------------------------------------------------------------------
def _listed_samplers(samplers: list[str] | str) -> list[str]:
    """The samplers ``samplers`` names, in jan's names; a ValueError (``samplers: ...``) for a name llama.cpp does
    not know or an order jan's engine cannot apply."""
    names = list(samplers) if isinstance(samplers, list) else [_SAMPLER_CHARS.get(c, c) for c in samplers]
    listed = []
    for name in names:
        known = _SAMPLER_NAMES.get(name.lower())
        if known is None:
            raise ValueError(f"samplers: unknown sampler {name!r} (llama.cpp's: {', '.join(_CANONICAL_SAMPLERS)})")
        listed.append(known)
    applied = [s for s in listed if s in _ENGINE_ORDER]
    if applied != sorted(applied, key=_ENGINE_ORDER.index):
        raise ValueError(f"samplers: jan applies its samplers in llama.cpp's default order "
                         f"({', '.join(_ENGINE_ORDER)}); give them in that order")
    return listed


def off_samplers(samplers: list[str] | str) -> dict[str, Any]:
    """The options that turn off the samplers ``samplers`` leaves out (ValueErrors as :func:`_listed_samplers`).
    Samplers jan does not have, listed with their options off (DRY, XTC, ...), change nothing, as in llama.cpp."""
    listed = _listed_samplers(samplers)
    off: dict[str, Any] = {}
    for sampler in _ENGINE_ORDER:
        if sampler not in listed and sampler not in _ONLY_LISTED:
            off.update(_OFF[sampler])
    return off


def infill_sampler(samplers: list[str] | str | None) -> bool:
    """Whether ``samplers`` lists llama.cpp's infill sampler (llama.vscode's and llama.vim's chain does)."""
    return samplers is not None and "infill" in _listed_samplers(samplers)


def prompts_of(prompt: Any) -> tuple[list[Union[str, int]] | str | MediaPrompt | ContentPrompt, ...]:
    """llama-server's prompt forms as prompts: one text; one prompt object with media (or an embedding's content
    object); one list of token ids (mixed with text pieces); or, for a list holding no token id at top level, one
    prompt per item."""
    if isinstance(prompt, (str, MediaPrompt, ContentPrompt)):
        return (prompt,)
    if any(isinstance(p, int) for p in prompt):
        return (list(prompt),)
    return tuple(p if isinstance(p, (str, MediaPrompt, ContentPrompt)) else list(p) for p in prompt)


def listed(prompt: Any) -> bool:
    """Whether a body's ``prompt`` is a list of prompts (:func:`prompts_of`), not one prompt."""
    return isinstance(prompt, list) and not any(isinstance(p, int) for p in prompt)


def prompt_field(prompt: Any, index: int, name: str = "prompt") -> str:
    """The field that holds prompt ``index`` of a body's ``prompt`` (:func:`prompts_of`; ``name``: the field, an
    embedding body's ``input`` or ``content``): ``prompt`` itself, or ``prompt[index]`` in a list of prompts."""
    return f"{name}[{index}]" if listed(prompt) else name


def media_text(prompt: MediaPrompt, where: str) -> MediaText:
    """A prompt object's media decoded (base64) into a typed prompt: each item an image or an audio clip as its
    bytes tell (libmtmd tells them so for llama-server: WAV, MP3, FLAC are audio, PNG, JPEG, WebP, GIF images for
    the engine to decode or refuse). A :class:`MediaError` (400) naming ``where``'s ``multimodal_data[i]`` for an
    item that is not base64 or is neither (``unsupported_format``), and ``where``'s ``multimodal_data`` when its
    markers and items are not as many."""
    media: list[Union[ImagePart, AudioPart]] = []
    for i, data in enumerate(prompt.multimodal_data):
        field_ = f"{where}.multimodal_data[{i}]"
        try:
            # bare base64, as llama-server reads it, or a base64 data: URL, which llama-server read as garbage bytes
            # (its decoder stops at the ':') but jan takes where Ollama's images and OpenAI's image URLs are read:
            # the decoding every dialect shares (jan.image_types)
            raw, _ = base64_media(data)
        except ValueError as exc:
            raise MediaError(f"{field_}: {exc}", reason="unsupported_format", param=field_) from None
        fmt, mime = audio_format(raw), sniff_image(raw)
        if fmt is None and mime is None:
            # Said here, of the item, before a model's abilities are: the bytes of neither were taken for an image,
            # so a model that hears but cannot see answered "does not accept images" of a text file or an empty
            # item, and one that sees said only what images it takes (llama-server: it failed to load the file).
            why = "no data (the file is empty)" if not raw else \
                "not a PNG, JPEG, WebP or GIF image nor a WAV, MP3 or FLAC audio file"
            raise MediaError(f"{field_}: {why}", reason="unsupported_format", param=field_)
        media.append(AudioPart(raw, fmt) if fmt is not None else ImagePart(raw, mime))
    markers = prompt.prompt_string.count(MEDIA_MARKER)
    if markers != len(media):
        field_ = f"{where}.multimodal_data"
        raise MediaError(f"{field_}: {len(media)} items for {markers} media markers ({MEDIA_MARKER}) in "
                         f"{where}.prompt_string; give one marker per item, where it stands in the text",
                         reason="unsupported_format", param=field_)
    return MediaText(prompt.prompt_string, tuple(media))


def media_error(exc: MediaError, prompt: Any, name: str = "prompt") -> MediaError:
    """The completion (or embedding) service's refusal of a prompt's media (``message_index``: which prompt,
    ``part_index``: which item) said of the body's field ``name``: ``prompt.multimodal_data[i]`` (``prompt[k]...``
    in a list of prompts; ``input[k].content[j]`` for an embedding's content input, ``j`` the item's part)."""
    if exc.message_index is None or exc.param:
        return exc
    where = prompt_field(prompt, exc.message_index, name)
    given = prompts_of(prompt)[exc.message_index] if exc.message_index < len(prompts_of(prompt)) else None
    if isinstance(given, ContentPrompt):  # (an embedding's content input: its media are some of its parts)
        where += ".content"
        if exc.part_index is not None:
            media = [i for i, part in enumerate(given.content) if part.type != "text"]
            where += f"[{media[exc.part_index]}]" if exc.part_index < len(media) else ""
    else:
        where += ".multimodal_data"
        if exc.part_index is not None:
            where += f"[{exc.part_index}]"
    _, sep, why = str(exc).partition(": ")
    # (the engine's "image 2: ..." names the item by its place among all media: the field says which it is)
    why = why if sep and str(exc).split(": ", 1)[0].split(" ")[0] in ("image", "audio") else str(exc)
    return MediaError(f"{where}: {why}", reason=exc.reason, param=where)


def completion_request(body: CompletionBody, prompts: tuple[Union[str, tuple[int, ...]], ...],
                       suffix: str | None = None, extra: tuple[InfillChunk, ...] = ()) -> CompletionRequest:
    """The body as jan's typed request, its ``prompts`` already text or token ids (the route tokenizes the text
    pieces of a mixed prompt). ValueErrors name the field at fault."""
    given = {name: getattr(body, name) for name in ("temperature", "top_k", "top_p", "min_p", "typical_p",
                                                    "repeat_penalty", "repeat_last_n", "presence_penalty",
                                                    "frequency_penalty", "mirostat", "mirostat_tau", "mirostat_eta",
                                                    "seed", "ignore_eos")
             if getattr(body, name) is not None}
    for name in ("temperature", "top_k"):  # llama-server's "off" (greedy, no top-k) as jan's, over a model.json's too
        if given.get(name) is not None and given[name] < 0:
            given[name] = type(given[name])(0)
    if body.samplers is not None:
        for name, value in off_samplers(body.samplers).items():
            given[name] = value  # a sampler left out is off, whatever its option says (llama.cpp's chain)
    if body.n_predict is not None and body.n_predict > 0:
        given["max_tokens"] = body.n_predict
    grammar, patterns, trigger_tokens = client_grammar(body.grammar, body.json_schema, body.grammar_lazy,
                                                       body.grammar_triggers)
    if body.lora is not None:
        given["lora"] = lora_request(body.lora)
    if body.id_slot is not None:
        given["id_slot"] = body.id_slot
    # llama-server's "speculative.n_max", ..., then jan's own names, which win (as on the OpenAI routes)
    given.update(speculative_fields(body.model_extra or {}))
    given.update({name: getattr(body, name) for name in ("speculative", "draft_max", "draft_min", "ngram",
                                                          "draft_p_min") if getattr(body, name) is not None})
    sampling = SamplingOptions(stop=tuple(body.stop) if body.stop else None, logit_bias=_logit_bias(body.logit_bias),
                               **given)
    return CompletionRequest(model=body.model, prompts=prompts, listed=listed(body.prompt), sampling=sampling,
                             n=body.n_cmpl or 1,
                             logprobs=body.n_probs or None, grammar=grammar, prompt_only=body.n_predict == 0,
                             grammar_triggers=patterns, grammar_trigger_tokens=trigger_tokens,
                             preserved_tokens=tuple(body.preserved_tokens or ()), token_ids=True, suffix=suffix,
                             infill_extra=extra, infill_fit=suffix is not None,
                             infill_sampler=infill_sampler(body.samplers),
                             post_sampling_probs=bool(body.post_sampling_probs) and bool(body.n_probs),
                             line_rules=LineRules(n_indent=body.n_indent or 0,
                                                  t_max_predict_ms=body.t_max_predict_ms
                                                  if body.t_max_predict_ms is not None else -1))


def embedding_request(body: EmbeddingBody, inputs: tuple[Union[str, tuple[int, ...], MediaText], ...]
                      ) -> EmbeddingRequest:
    """The body as jan's typed request, its inputs already text, token ids or text with media (as ``/completion``'s
    prompts): every
    vector of a model loaded with pooling none, llama.cpp's normalization of a pooled one."""
    return EmbeddingRequest(model=body.model, inputs=inputs, p_norm=body.embd_normalize, per_token=True,
                            listed=listed(body.inputs), field=body.inputs_field)


def embedding_results(result: EmbeddingResult) -> list[dict[str, Any]]:
    """llama-server's native answer: a list of ``{"index", "embedding"}``, ``embedding`` a list of vectors (the one
    pooled vector, or with pooling none a vector per token)."""
    out = []
    for i, vector in enumerate(result.vectors):
        rows = vector.tolist() if hasattr(vector, "tolist") else vector
        out.append({"index": i, "embedding": rows if rows and isinstance(rows[0], list) else [rows]})
    return out


#: The ``params`` keys llama-server's ``GET /slots`` tells of a slot's request (its task params "only metrics",
#: without ``LLAMA_SERVER_SLOTS_DEBUG``): of :func:`generation_settings`, those.
SLOT_PARAMS = ("seed", "temperature", "dynatemp_range", "dynatemp_exponent", "top_k", "top_p", "min_p", "top_n_sigma",
               "xtc_probability", "xtc_threshold", "typical_p", "repeat_last_n", "repeat_penalty", "presence_penalty",
               "frequency_penalty", "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
               "mirostat", "mirostat_tau", "mirostat_eta", "adaptive_target", "adaptive_decay", "max_tokens",
               "n_predict", "n_keep", "n_discard", "ignore_eos", "stream", "n_probs", "min_keep", "chat_format",
               "reasoning_format", "reasoning_in_content", "generation_prompt", "samplers", "speculative.types",
               "timings_per_token", "post_sampling_probs", "backend_sampling", "lora")


def slots(n_slots: int, n_busy: int, n_ctx: int, speculative: bool, infos: Sequence[Any] | None = None
          ) -> list[dict[str, Any]]:
    """``GET /slots``: each slot's ``id``, ``n_ctx``, ``speculative`` and ``is_processing``, and, as llama-server
    tells them, of the request it runs (else the last one it ran) ``id_task``, ``n_prompt_tokens`` (what the slot
    holds), ``n_prompt_tokens_processed``, ``n_prompt_tokens_cache``, its ``params`` and ``next_token``.
    ``infos``: the engine's slots (``jan.Model.slots_info``); without them (an engine that tells only how many
    slots are busy, not which) the first ``n_busy`` are told processing, and no slot tells a task."""
    out = []
    for i in range(n_slots):
        info = infos[i] if infos is not None and i < len(infos) else None
        busy = info.is_processing if infos is not None and info is not None else i < n_busy
        slot: dict[str, Any] = {"id": i, "n_ctx": n_ctx, "speculative": speculative, "is_processing": bool(busy)}
        if info is not None and info.has_task:
            slot.update({
                "id_task": info.id_task,
                # (llama-server's n_prompt_tokens counts the slot's tokens, its prompt and what it generated)
                "n_prompt_tokens": info.n_cache_tokens,
                "n_prompt_tokens_processed": info.n_prompt_processed,
                "n_prompt_tokens_cache": info.n_prompt_cached,
                "params": slot_params(info.params, list(info.lora)),
                "next_token": [{"has_next_token": info.has_next_token, "has_new_line": info.has_new_line,
                                "n_remain": info.n_remain, "n_decoded": info.n_decoded}],
            })
        out.append(slot)
    return out


def slot_params(params: Any, lora: list[float]) -> dict[str, Any]:
    """A slot's request's sampling (the engine's ``SamplingParams``) as llama-server's ``GET /slots`` tells it
    (:data:`SLOT_PARAMS`), ``lora`` every adapter with the scale it runs under."""
    sampling = SamplingOptions(
        temperature=params.temperature, top_k=params.top_k, top_p=params.top_p, min_p=params.min_p,
        typical_p=params.typical_p, repeat_penalty=params.repeat_penalty, repeat_last_n=params.repeat_last_n,
        presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
        mirostat=params.mirostat, mirostat_tau=params.mirostat_tau, mirostat_eta=params.mirostat_eta,
        ignore_eos=params.ignore_eos, seed=params.seed)
    mode = "draft" if params.use_draft_model and params.draft_max > 0 else "ngram" if params.draft_max > 0 else "none"
    told = generation_settings(sampling, params.max_tokens, n_probs=params.n_probs, speculative=mode, adapters=lora,
                               post_sampling_probs=bool(getattr(params, "post_sampling_probs", False)))
    return {key: told[key] for key in SLOT_PARAMS}


#: The slot actions ``POST /slots/{id}?action=`` takes (llama-server's).
SLOT_ACTIONS = ("save", "restore", "erase")
#: Characters a slot file's name may not hold, as llama-server's ``fs_validate_filename`` refuses them: path
#: separators and their look-alikes (fullwidth full stop, division slash, set minus), those Windows file systems
#: refuse, the replacement character and the byte order mark (C0 and C1 controls are checked apart).
_NOT_IN_FILENAMES = set('/\\:*?"<>|\uff0e\u2215\u2216\ufffd\ufeff')


def slot_file(folder: str, filename: Any) -> str | None:
    """The path of the slot file ``filename`` names in ``folder`` (``--slot-save-path``), or None for a name that
    is not one plain file name there, as llama-server's ``fs_validate_filename`` judges it (so that a name one
    server takes, the other takes too, on a folder both use): text of 1 to 255 bytes (UTF-8), no path separator or
    look-alike, control character (C0 or C1) or character Windows refuses, no ``..`` anywhere, not ``.``, neither
    starting with a space nor ending in a dot or a space; and one that, followed through any link, stays in
    ``folder``."""
    if not isinstance(filename, str) or filename == "." or ".." in filename or filename.endswith((".", " ")) \
            or filename.startswith(" "):
        return None
    try:
        size = len(filename.encode("utf-8"))
    except UnicodeEncodeError:  # (a lone surrogate)
        return None
    if not 0 < size <= 255 or any(c in _NOT_IN_FILENAMES or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F
                                  for c in filename):
        return None
    root = os.path.realpath(folder)
    path = os.path.join(root, filename)
    if os.path.dirname(os.path.realpath(path)) != root:
        return None  # (a link that leads out of the folder)
    return path


def slot_result(action: str, filename: str | None, result: Mapping[str, Any]) -> dict[str, Any]:
    """A slot action's answer in llama-server's shape: a save's ``n_saved``/``n_written`` and ``timings.save_ms``, a
    restore's ``n_restored``/``n_read`` and ``timings.restore_ms``, an erase's ``n_erased``."""
    if action == "erase":
        return {"id_slot": result["id_slot"], "n_erased": result["n_tokens"]}
    if action == "save":
        return {"id_slot": result["id_slot"], "filename": filename, "n_saved": result["n_tokens"],
                "n_written": result["n_bytes"], "timings": {"save_ms": result["ms"]}}
    return {"id_slot": result["id_slot"], "filename": filename, "n_restored": result["n_tokens"],
            "n_read": result["n_bytes"], "timings": {"restore_ms": result["ms"]}}


def infill_extra(body: InfillBody) -> tuple[InfillChunk, ...]:
    return tuple(InfillChunk(c.text, c.filename if c.filename is not None else "tmp") for c in body.input_extra)


def applied_samplers(samplers: list[str] | str | None) -> list[str]:
    """The samplers jan applies for a body's ``samplers`` (all of its chain when not given), in llama.cpp's names."""
    off = off_samplers(samplers) if samplers is not None else {}
    kept = [s for s in _ENGINE_ORDER if s not in _ONLY_LISTED and not all(off.get(k) == v for k, v in _OFF[s].items())]
    if infill_sampler(samplers):
        kept.append("infill")
    return ["typ_p" if s == "typical_p" else s for s in kept]


#: jan's speculative modes in llama-server's ``speculative.types`` names (common_speculative_type_to_str).
SPECULATIVE_TYPES = {"none": "none", "ngram": "ngram-simple", "draft": "draft-simple"}


def speculation(requested: Any, model_default: Any, draft_model: str | None) -> str:
    """What a model's requests draft with, as jan's mode: the request's (or model.json parameters') ``speculative``,
    else the model's load option, else its draft model's ("draft" where it has one). "draft" without a draft model
    in use (the server's left out of this model) drafts nothing."""
    from jan.engine.params import speculative_mode

    mode = requested if requested is not None else model_default
    try:
        mode = speculative_mode(mode) if mode is not None else ("draft" if draft_model else "none")
    except ValueError:
        return "none"  # (a bad stored value is its load's or its request's own 400)
    return "none" if mode == "draft" and not draft_model else mode


def generation_settings(sampling: SamplingOptions, n_predict: int, n_ctx: int | None = None, model: str = "",
                        samplers: list[str] | None = None, n_probs: int = 0, stream: bool = False,
                        post_sampling_probs: bool = False, timings_per_token: bool = False,
                        grammar: str = "", speculative: str = "none",
                        lazy: CompletionBody | None = None, adapters: list[float] | None = None,
                        preserved: tuple[int, ...] = ()) -> dict[str, Any]:
    """The effective sampling in llama-server's names (``generation_settings``, ``/props``'
    ``default_generation_settings.params``): every field llama-server tells, those of what jan does not have
    (DRY, XTC, context shifting, reasoning) at the value that is off, a ``lazy`` grammar's fields from the body,
    ``preserved`` the ids of the body's preserved tokens, ``lora`` every adapter of the model (``adapters``: their
    default scales) with the scale the request runs under, as llama-server lists them (:func:`told_lora`). ``speculative``: jan's mode
    (:func:`speculation`), told as llama-server's ``speculative.types``."""
    s = sampling
    return {
        "n_predict": n_predict, "max_tokens": n_predict,
        "seed": s.seed if s.seed not in (None, -1) else 0xFFFFFFFF,  # (llama.cpp's "random")
        "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p, "typical_p": s.typical_p,
        "repeat_last_n": s.repeat_last_n, "repeat_penalty": s.repeat_penalty, "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty, "mirostat": s.mirostat, "mirostat_tau": s.mirostat_tau,
        "mirostat_eta": s.mirostat_eta, "stop": list(s.stop or ()), "ignore_eos": bool(s.ignore_eos),
        "logit_bias": [{"token": t, "bias": b} for t, b in (s.logit_bias or {}).items()],
        "samplers": samplers if samplers is not None else applied_samplers(None),
        "dynatemp_range": 0.0, "dynatemp_exponent": 1.0, "top_n_sigma": -1.0, "xtc_probability": 0.0,
        "xtc_threshold": 0.1, "dry_multiplier": 0.0, "dry_base": 1.75, "dry_allowed_length": 2,
        "dry_penalty_last_n": s.repeat_last_n, "dry_sequence_breakers": ["\n", ":", "\"", "*"],
        "adaptive_target": -1.0, "adaptive_decay": 0.9, "min_keep": 0, "n_probs": n_probs,
        "post_sampling_probs": post_sampling_probs, "n_keep": 0, "n_discard": 0, "stream": stream, "grammar": grammar,
        "grammar_lazy": bool(lazy and lazy.grammar_lazy), "grammar_triggers": told_triggers(lazy),
        "preserved_tokens": list(preserved), "chat_format": "Content-only",
        "reasoning_format": "none", "reasoning_in_content": False, "generation_prompt": "",
        "speculative.types": SPECULATIVE_TYPES[speculative], "timings_per_token": timings_per_token,
        "backend_sampling": False,
        "lora": told_lora(s.lora, adapters),
        **({"n_ctx": n_ctx} if n_ctx else {}), **({"model": model} if model else {}),
    }


def told_lora(requested: tuple[tuple[int, float], ...] | None, adapters: list[float] | None
              ) -> list[dict[str, Any]]:
    """``lora`` as llama-server tells it: every adapter of the model with the scale the request runs under (its
    default, or the request's own, the adapters it does not name at 0). Where the model's adapters are unknown (not
    loaded), those the request names."""
    if adapters is None:
        return [{"id": i, "scale": scale} for i, scale in requested or ()]
    scales = list(adapters) if requested is None else [0.0] * len(adapters)
    for i, scale in requested or ():
        if 0 <= i < len(scales):
            scales[i] = scale
    return [{"id": i, "scale": scale} for i, scale in enumerate(scales)]


def told_triggers(body: CompletionBody | None) -> list[dict[str, Any]]:
    """A lazy grammar's ``grammar_triggers`` as llama-server tells them: ``type`` a number, ``token`` a token's id."""
    if body is None or not body.grammar_lazy:
        return []
    out = []
    for t in body.grammar_triggers or ():  # (checked already, by the request's conversion)
        kind = t["type"] if type(t["type"]) is int else TRIGGER_TYPES.index(t["type"])
        out.append({"type": kind, "value": t["value"], **({"token": t["token"]} if kind == 0 else {})})
    return out


def resolved(sampling: SamplingOptions, model_params: Mapping[str, Any] | None) -> SamplingOptions:
    """The request's sampling over the model.json's ``parameters`` over the defaults (the completion service's
    precedence), for ``generation_settings``."""
    from jan.services.types import resolve_sampling

    return resolve_sampling(sampling, SamplingOptions.from_mapping(model_params))


# -- answers -----------------------------------------------------------------------------------
def _probabilities(logprobs: tuple[TokenLogprob, ...], post_sampling: bool = False) -> list[dict[str, Any]]:
    """``completion_probabilities``: each token with its log-probability and the best alternatives; with
    ``post_sampling`` (llama-server's ``post_sampling_probs``: the engine scored them in the distribution its
    sampler chain drew from) each as its probability, ``prob`` and ``top_probs``, as llama-server tells them."""
    if post_sampling:
        def prob(t: Any) -> dict[str, Any]:
            return {"id": t.token_id, "token": t.token, "bytes": list(t.bytes),
                    "prob": math.exp(t.logprob) if t.logprob is not None else 0.0}
        return [{**prob(t), "top_probs": [prob(a) for a in t.top]} for t in logprobs]

    def one(t: Any) -> dict[str, Any]:
        return {"id": t.token_id, "token": t.token, "bytes": list(t.bytes),
                "logprob": t.logprob if t.logprob is not None else -1e30}
    return [{**one(t), "top_logprobs": [one(a) for a in t.top]} for t in logprobs]


def _timings(usage: Usage | None) -> dict[str, Any]:
    """A native result's ``timings`` (told always, as llama-server tells them on /completion), as the OpenAI
    routes tell them (:func:`jan.server.openai_wire.timings_dict`)."""
    return timings_dict(usage or Usage())


_STOP_TYPES = {"length": "limit", "cancelled": "none"}


@dataclass
class _Choice:
    """One result's state: its text and tokens so far, how it ended."""

    content: str = ""
    tokens: list[int] = field(default_factory=list)
    probabilities: list[dict[str, Any]] = field(default_factory=list)
    started_at: float | None = None  # when its first token came (its generation time, where no usage tells it)
    finished: bool = False
    stop_type: str = "none"
    stopping_word: str = ""
    usage: Usage | None = None
    prompt_ids: tuple[int, ...] | None = None  # told for a prompt of token ids (an infill prompt is made of them)
    id_slot: int = -1  # the engine slot it runs in, as the engine told it (-1: not known)
    # tokens of deltas that showed no text (held back, as a stop string's possible start is), told with the next
    # partial that goes out: a stream's partials' tokens spell its partials' content, however the deltas came
    unsent_tokens: list[int] = field(default_factory=list)


class NativeResults:
    """Typed completion deltas as llama-server's native results: :meth:`add` gives the stream's partial objects
    (``stop: false``), :meth:`finals` each result's last object (``stop: true``) once it ended.

    (llama-server's output rules, ``n_indent`` and ``t_max_predict_ms``, are the completion service's, as on every
    route that takes them: a result one ended comes ``length``, told ``stop_type: "limit"``.)
    """

    def __init__(self, model: str, settings: Callable[[], dict[str, Any]], *, n_results: int,
                 return_tokens: bool = False, prompt_texts: list[str] | None = None,
                 clock: Callable[[], float], post_sampling: bool = False, timings_per_token: bool = False):
        self.model = model
        self.settings = settings
        self.choices = [_Choice() for _ in range(n_results)]
        self.return_tokens = return_tokens
        self.prompt_texts = prompt_texts or [""] * n_results
        self.clock = clock
        self.post_sampling = post_sampling  # (the engine scored the tokens after sampling: _probabilities)
        self.timings_per_token = timings_per_token
        self.usage: Usage | None = None

    def add(self, delta: CompletionDelta) -> dict[str, Any] | None:
        """The partial result ``delta`` makes (None when it shows nothing yet); finals come from :meth:`finals`."""
        if delta.choice < 0:
            self.usage = delta.usage
            return None
        c = self.choices[delta.choice]
        if c.started_at is None and (delta.text or delta.token_ids):
            c.started_at = self.clock()
        if delta.prompt_token_ids is not None:
            c.prompt_ids = delta.prompt_token_ids
        if delta.id_slot is not None and delta.id_slot >= 0:
            c.id_slot = delta.id_slot
        shown = delta.text
        c.content += shown
        c.tokens += delta.token_ids
        probs = _probabilities(delta.logprobs, self.post_sampling) if delta.logprobs else []
        c.probabilities += probs
        if delta.finish_reason is not None:
            c.usage = delta.choice_usage
            c.stop_type = "word" if delta.stop else _STOP_TYPES.get(delta.finish_reason, "eos")
            c.stopping_word = delta.stop or ""
            c.finished = True
        if not shown and not probs:
            c.unsent_tokens += delta.token_ids
            return None
        tokens, c.unsent_tokens = c.unsent_tokens + list(delta.token_ids), []
        # (a partial's tokens are told whatever return_tokens says, as llama-server tells them)
        out: dict[str, Any] = {"index": delta.choice, "content": shown, "tokens": tokens, "stop": False,
                               # (llama-server tells the slot on the final object only: its partials say -1)
                               "id_slot": -1, "tokens_predicted": len(c.tokens)}
        if c.prompt_ids is not None:  # (a text prompt's length is told by the engine's usage, at the end)
            out["tokens_evaluated"] = len(c.prompt_ids)
        if self.timings_per_token and delta.progress is not None:
            out["timings"] = _timings(delta.progress)
        if probs:
            out["completion_probabilities"] = probs
        return out

    def finals(self, prompt_counts: Callable[[int], int | None] | None = None) -> list[dict[str, Any]]:
        """Each result's last object, in llama-server's shape (``stop: true``)."""
        out = []
        single = len(self.choices) == 1
        for i, c in enumerate(self.choices):
            usage = c.usage or (self.usage if single else None)
            if usage is None:  # ended here before the engine's usage came: what is known of it
                prompt = len(c.prompt_ids) if c.prompt_ids is not None else (
                    (prompt_counts(i) if prompt_counts else None) or 0)
                elapsed = (self.clock() - c.started_at) * 1000.0 if c.started_at is not None else 0.0
                usage = Usage(prompt_tokens=prompt, completion_tokens=len(c.tokens), cached_tokens=0, queue_ms=0.0,
                              prompt_ms=0.0, generation_ms=elapsed)
            out.append({
                "index": i, "content": c.content, "tokens": c.tokens if self.return_tokens else [], "id_slot": c.id_slot,
                "stop": True, "model": self.model, "tokens_predicted": usage.completion_tokens,
                "tokens_evaluated": usage.prompt_tokens, "generation_settings": self.settings(),
                "prompt": self.prompt_texts[i], "has_new_line": "\n" in c.content, "truncated": False,
                "stop_type": c.stop_type, "stopping_word": c.stopping_word,
                # llama-server's: the tokens its slot holds after the request (the prompt and what was generated,
                # less the last token, never evaluated), what llama.vim shows as the context used
                "tokens_cached": usage.prompt_tokens + max(usage.completion_tokens - 1, 0),
                "timings": _timings(usage),
                **({"completion_probabilities": c.probabilities} if c.probabilities else {}),
            })
        return out


def pick_fields(result: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """``response_fields``: only the fields listed, as llama-server answers them: ``a/b`` is ``b`` of ``a``, under
    the key ``"a/b"`` (what llama.vim reads: ``timings/prompt_n``); a field not there is left out."""
    if not fields:
        return result
    out: dict[str, Any] = {}
    for path in fields:
        value: Any = result
        for part in path.split("/"):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            out[path] = value
    return out
