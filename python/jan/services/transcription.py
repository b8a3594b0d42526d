"""Speech to text, as OpenAI's ``/v1/audio/transcriptions`` and ``/v1/audio/translations`` ask for it, from a chat
model that hears audio (a projector with an audio encoder: Qwen2-Audio, Qwen2.5-Omni, Voxtral, Ultravox, ...).

There is no separate speech model here: a transcription is one chat turn with the clip and an instruction, through
the same chat path as every other request (its template, its audio encoder, its queue), as llama-server serves
the endpoint. What is the transcription's own is the instruction (llama-server's words: "Transcribe audio to
text", with ``(language: xx)`` when the caller names the language), thinking turned off where the template can
turn it off (a transcript is the answer), and greedy decoding unless a temperature is given (Whisper's default is
0 as well). OpenAI's ``prompt`` (words to spell as given, or the text before the clip) follows the instruction on
its own line: told to the model, not replacing the task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from jan.services.errors import RequestError
from jan.services.types import AudioPart, ChatMessage, ChatRequest, ReasoningOptions, SamplingOptions, TextPart

#: What the model is told to do with the clip.
INSTRUCTIONS = {
    "transcribe": "Transcribe audio to text",
    "translate": "Translate the audio into English text",
}
#: ISO 639-1 (``en``) or 639-3 (``yue``) codes, as OpenAI's ``language`` takes them.
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")


@dataclass(frozen=True)
class TranscriptionRequest:
    """One clip to turn into text.

    ``task``: ``transcribe`` (the clip's own language) or ``translate`` (into English); ``language``: the clip's
    language as an ISO 639 code (transcriptions only); ``prompt``: text the model is given with the instruction
    (vocabulary, the previous segment); ``temperature``: 0 (the default) decodes greedily, up to 1;
    ``max_tokens``: the transcript's length limit (None: the context's end); ``logprobs``: each token's
    log-probability in the result. Bad values are a :class:`RequestError` naming the field."""

    model: str | None
    audio: AudioPart
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.task not in INSTRUCTIONS:
            raise RequestError(f"task: must be one of {', '.join(INSTRUCTIONS)}, not {self.task!r}", param="task")
        if self.language is not None:
            if self.task != "transcribe":
                raise RequestError("language: only a transcription takes it (a translation is into English)",
                                   param="language")
            if not _LANGUAGE.fullmatch(self.language):
                raise RequestError(f"language: must be an ISO 639-1 code such as 'en' or 'de', not "
                                   f"{self.language[:40]!r}", param="language")
        if self.temperature is not None and not 0 <= self.temperature <= 1:
            raise RequestError(f"temperature: must be from 0 to 1, not {self.temperature}", param="temperature")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise RequestError(f"max_tokens: must be at least 1, not {self.max_tokens}", param="max_tokens")


def transcription_chat(request: TranscriptionRequest) -> ChatRequest:
    """The chat turn that makes ``request``'s transcript: the instruction, then the clip, from the user."""
    instruction = INSTRUCTIONS[request.task]
    if request.language:
        instruction += f" (language: {request.language.lower()})"
    if request.prompt:
        instruction += "\n" + request.prompt
    message = ChatMessage("user", (TextPart(instruction), request.audio))
    return ChatRequest(
        model=request.model, messages=(message,),
        sampling=SamplingOptions(temperature=request.temperature if request.temperature is not None else 0.0,
                                 max_tokens=request.max_tokens),
        reasoning=ReasoningOptions(enabled=False),
        logprobs=request.logprobs,
    )
