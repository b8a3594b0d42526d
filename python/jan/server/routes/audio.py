"""OpenAI's speech to text: ``POST /v1/audio/transcriptions`` and ``/v1/audio/translations`` (also without ``/v1``,
as llama-server serves the first), answered by a chat model that hears audio (:mod:`jan.services.transcription`).

HTTP only: the multipart form the SDKs send (``client.audio.transcriptions.create(file=..., model=...)``) becomes a
typed :class:`~jan.services.transcription.TranscriptionRequest`, the chat service makes the transcript, and it goes
back in OpenAI's shapes: ``json`` (``{"text", "usage"}``, with ``logprobs`` for ``include[]=logprobs``), ``text``
(the transcript as the body), or with ``stream=true`` (transcriptions) ``transcript.text.delta`` events and a last
``transcript.text.done``. The clip is WAV, MP3 or FLAC (what libmtmd's decoder reads; OpenAI also takes m4a, ogg
and webm: those are a 400 naming the formats). Formats with timestamps (``srt``, ``vtt``, ``verbose_json``) and
speaker diarization are a 400: a chat model's transcript carries no times, and jan does not make them up.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from jan.engine.media import AUDIO_FORMATS, DEFAULT_LIMITS, audio_format
from jan.errors import MediaError
from jan.server.body_read import FORM_OVERHEAD_BYTES, BodyLimit, body_limit, file_too_large
from jan.server.disconnect import unless_disconnected
from jan.server.errors import APIError, prompt_param
from jan.server.forms import SmallForm, read_small_form
from jan.server.jsonio import json_response
from jan.server.keys import SERVICES
from jan.server.routes.docs import JSON, RESPONSES, SSE, UNPREFIXED
from jan.server.routes.openai import first_delta, stream_sse
from jan.services.transcription import TranscriptionRequest, transcription_chat
from jan.services.types import AudioPart, ChatDelta, ChatResult

routes = web.RouteTableDef()

#: The form's parts besides ``file``, by task (OpenAI's; ``max_tokens`` is llama-server's)
_FIELDS = {
    "transcribe": ("model", "language", "prompt", "response_format", "temperature", "stream", "include[]",
                   "timestamp_granularities[]", "chunking_strategy", "known_speaker_names[]",
                   "known_speaker_references[]", "max_tokens"),
    "translate": ("model", "prompt", "response_format", "temperature", "max_tokens"),
}
#: What ``prompt`` may hold (OpenAI's Whisper reads its last 224 tokens; a chat model reads it all)
_PROMPT_BYTES = 16 * 1024
_TIMED = ("srt", "vtt", "verbose_json", "diarized_json")

#: A clip's form: the clip (the most the engine reads of one) and its small fields; a larger body, declared or sent
#: (chunked, or without Expect), is the file's 413 before more of it is read.
CLIP_BODY = BodyLimit(lambda config: DEFAULT_LIMITS.max_bytes + FORM_OVERHEAD_BYTES,
                      lambda config, size: file_too_large("file", DEFAULT_LIMITS.max_bytes))

UNPREFIXED.update({"/audio/transcriptions", "/audio/translations"})
for _path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
    # (the request is a multipart form, described in the handlers' docstrings)
    RESPONSES[("POST", _path)] = {"200": ("The transcript: a JSON object, the text itself (response_format text), "
                                          "or with stream: true its events", {JSON: None, "text/plain": None,
                                                                              SSE: None})}


@routes.post("/v1/audio/transcriptions")
@routes.post("/audio/transcriptions")
@body_limit(CLIP_BODY)
@prompt_param("file")  # (a clip too long for the context is the file's fault: there are no messages here)
async def transcriptions(request: web.Request) -> web.StreamResponse:
    """Transcribe an audio clip (OpenAI's form: ``file`` (WAV, MP3 or FLAC), ``model`` (a model with an audio
    projector), ``language``, ``prompt``, ``response_format`` (json or text), ``temperature`` (0-1), ``stream``,
    ``include[]=logprobs``; llama-server's ``max_tokens``)."""
    return await _answer(request, "transcribe")


@routes.post("/v1/audio/translations")
@routes.post("/audio/translations")
@body_limit(CLIP_BODY)
@prompt_param("file")
async def translations(request: web.Request) -> web.StreamResponse:
    """Translate an audio clip into English text (OpenAI's form: ``file``, ``model``, ``prompt``,
    ``response_format`` (json or text), ``temperature``)."""
    return await _answer(request, "translate")


async def _answer(request: web.Request, task: str) -> web.StreamResponse:
    form = await read_small_form(request, file="file", known=_FIELDS[task], max_file_bytes=DEFAULT_LIMITS.max_bytes,
                                 long_fields={"prompt": _PROMPT_BYTES})
    response_format = _response_format(form)
    stream = _flag(form, "stream")
    typed = _typed(form, task)
    if typed.logprobs and response_format != "json" and not stream:
        # (OpenAI's: "logprobs only works with response_format set to json"; a text body has no place for them)
        raise APIError(400, "include[]: logprobs need response_format 'json' (a text answer has no place for them)",
                       param="include", code="invalid_value")
    chat = transcription_chat(typed)
    service = request.app[SERVICES].chat
    try:
        if stream:
            first, deltas = await first_delta(request, service.stream(chat), chat.model)
            return await stream_sse(request, deltas, first, _StreamEncoder(typed.logprobs).encode)
        result = await unless_disconnected(request, service.complete(chat), chat.model)
    except MediaError as exc:  # the model hears no audio, the clip does not decode: said of the form's file
        _, sep, why = str(exc).partition(": ")
        raise MediaError(f"file: {why if sep else exc}", reason=exc.reason, param="file") from None
    if response_format == "text":
        return web.Response(text=_text(result), content_type="text/plain")
    return json_response(_json(result, typed.logprobs, task))


def _typed(form: SmallForm, task: str) -> TranscriptionRequest:
    if form.data is None:
        raise APIError(400, "file: required (the audio clip, as a part with a file name)", param="file",
                       code="missing_required_parameter")
    if not form.data:  # (an empty file is not a clip of another format: said as the chat routes say it)
        raise APIError(400, "file: no data (the file is empty)", param="file", code="unsupported_format")
    fmt = audio_format(form.data)
    if fmt is None:
        name = f" ({form.filename[:80]})" if form.filename else ""
        raise APIError(400, f"file: the clip{name} is not {', '.join(f.upper() for f in AUDIO_FORMATS)} (the formats "
                            "the audio decoder reads); convert it first, e.g. `ffmpeg -i clip.m4a clip.wav`",
                       param="file", code="unsupported_format")  # (the code of a clip the decoder cannot read)
    for name, why in (("timestamp_granularities[]", "timestamps need response_format verbose_json, which is not "
                                                    "served: a chat model's transcript carries no times"),
                      ("known_speaker_names[]", "speaker diarization is not served"),
                      ("known_speaker_references[]", "speaker diarization is not served")):
        if form.fields.get(name):
            raise APIError(400, f"{name}: {why}", param=name.rstrip("[]"), code="unsupported_value")
    chunking = form.one("chunking_strategy")
    if chunking not in (None, "", "auto"):
        # "auto" is what a chat model does anyway (the encoder reads the clip in its own windows); server_vad's
        # boundaries are not computed here
        raise APIError(400, "chunking_strategy: only 'auto' is served (the clip is read whole, in the audio "
                            "encoder's own windows)", param="chunking_strategy", code="unsupported_value")
    include = form.fields.get("include[]", [])
    for item in include:
        if item != "logprobs":
            raise APIError(400, f"include[]: {item[:40]!r} is not one of 'logprobs'", param="include",
                           code="invalid_value")
    return TranscriptionRequest(
        model=form.one("model") or None, audio=AudioPart(form.data, fmt), task=task,  # type: ignore[arg-type]
        language=form.one("language") or None, prompt=form.one("prompt") or None,
        temperature=_number(form, "temperature", float), max_tokens=_number(form, "max_tokens", int),
        logprobs=bool(include))


def _response_format(form: SmallForm) -> str:
    value = form.one("response_format") or "json"
    if value in _TIMED:
        raise APIError(400, f"response_format: {value!r} needs timestamps (or speakers), which a chat model's "
                            "transcript does not carry; use 'json' or 'text'", param="response_format",
                       code="unsupported_value")
    if value not in ("json", "text"):
        raise APIError(400, f"response_format: must be 'json' or 'text', not {value[:40]!r}",
                       param="response_format", code="invalid_value")
    return value


def _flag(form: SmallForm, name: str) -> bool:
    value = (form.one(name) or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise APIError(400, f"{name}: must be true or false, not {value[:40]!r}", param=name, code="invalid_value")
    return value in ("true", "1")


def _number(form: SmallForm, name: str, kind: type) -> Any:
    value = form.one(name)
    if value is None or value == "":
        return None
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or (kind is float and not math.isfinite(number)):
        raise APIError(400, f"{name}: must be a {'number' if kind is float else 'whole number'}, not {value[:40]!r}",
                       param=name, code="invalid_value")
    return number


def _text(result: ChatResult) -> str:
    return result.choices[0].message.text.strip() if result.choices else ""


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"type": "tokens", "input_tokens": prompt_tokens, "output_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _logprobs(items: Any) -> list[dict[str, Any]]:
    return [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in items or ()]


def _json(result: ChatResult, logprobs: bool, task: str) -> dict[str, Any]:
    body: dict[str, Any] = {"text": _text(result)}
    if task == "transcribe":  # (OpenAI's Translation object is its text alone)
        body["usage"] = _usage(result.usage.prompt_tokens, result.usage.completion_tokens)
        if logprobs:
            body["logprobs"] = _logprobs(result.choices[0].logprobs if result.choices else ())
    return body


class _StreamEncoder:
    """Chat deltas as OpenAI's transcription events: each piece of the answer a ``transcript.text.delta``, and after
    the last one (the usage delta) ``transcript.text.done`` with the whole text. Thinking, where a model cannot turn
    it off, is no part of the transcript: left out."""

    def __init__(self, logprobs: bool):
        self.logprobs = logprobs
        self.parts: list[str] = []
        self.all_logprobs: list[dict[str, Any]] = []
        self.started = False

    def encode(self, delta: ChatDelta) -> dict[str, Any] | None:
        if delta.choice == -1:
            if delta.usage is None:
                return None
            done: dict[str, Any] = {"type": "transcript.text.done", "text": "".join(self.parts).strip(),
                                    "usage": _usage(delta.usage.prompt_tokens, delta.usage.completion_tokens)}
            if self.logprobs:
                done["logprobs"] = self.all_logprobs
            return done
        text = delta.content
        if not self.started:  # (the transcript starts at its first word, as the whole answer's is stripped)
            text = text.lstrip()
            self.started = bool(text)
        if not text:
            return None
        self.parts.append(text)
        event: dict[str, Any] = {"type": "transcript.text.delta", "delta": text}
        if self.logprobs:
            event["logprobs"] = _logprobs(delta.logprobs)
            self.all_logprobs.extend(event["logprobs"])
        return event
