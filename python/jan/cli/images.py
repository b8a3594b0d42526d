"""Images for ``jan run --image`` and ``jan chat``'s ``/image``, and audio clips for ``jan run --audio``: files read
into OpenAI ``image_url`` parts (base64 ``data:`` URLs) and ``input_audio`` parts, the shapes both the server and the
in-process services take.

A thread saved from the chat keeps them as files in the thread folder (``jan.store.files``),
never as base64 in ``messages.jsonl``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jan.local_files import expand_home
from jan.cli.common import CLIError



def _read_media(path: str | Path, kind: str) -> tuple[Path, bytes]:
    """The bytes of the ``kind`` ("image", "audio") file at ``path``, at most the engine's limit for one encoded
    file (:data:`jan.engine.media.DEFAULT_LIMITS`); :class:`CLIError` naming the path for a missing or unreadable
    file, an empty one, or one over the limit."""
    from jan.engine.media import DEFAULT_LIMITS
    from jan.local_files import meant_file, open_regular_file

    limit = DEFAULT_LIMITS.max_bytes
    p = expand_home(path)
    try:
        if p.stat().st_size > limit:
            raise CLIError(f"{kind} '{p}' is over {limit // (1024 * 1024)} MiB")
        with open_regular_file(p) as f:  # (a named pipe is refused, not waited on)
            data = f.read()
    except OSError as exc:
        meant = meant_file(p) if isinstance(exc, FileNotFoundError) else None  # (a name one letter off)
        raise CLIError(f"cannot read {kind} '{p}': {exc.strerror or exc}"
                       + (f": did you mean {meant!r}?" if meant else "")) from None
    if not data:  # (not "not a PNG..." / "not a WAV...": nothing of any format is there)
        raise CLIError(f"{kind} '{p}' is empty")
    return p, data


def image_part(path: str | Path) -> dict[str, Any]:
    """An ``image_url`` content part holding the image file at ``path``.

    Raises :class:`CLIError` for a missing or unreadable file, one over 20 MiB, one that is
    not a PNG, JPEG, WebP or GIF image, or one that does not decode (cut off, damaged, over the
    pixel limit)."""
    from jan.errors import MediaError
    from jan.image_types import MAX_PIXELS, load_image, sniff_image

    p, data = _read_media(path, "image")
    mime = sniff_image(data)
    if mime is None:
        raise CLIError(f"'{p}' is not a PNG, JPEG, WebP or GIF image")
    # Decoded now, as the model will: a damaged file is said of its path, not of the request's
    # "messages[0].content[1]" the user never wrote (and /image in a chat refuses it before it is sent)
    try:
        load_image(data, MAX_PIXELS, f"image '{p}'")
    except MediaError as exc:
        raise CLIError(str(exc)) from None
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64," + base64.b64encode(data).decode()}}


def image_link_part(url: str) -> dict[str, Any]:
    """An ``image_url`` content part that links to the image at ``url`` (``http(s)://``, ``file://``): fetched as
    the request is made, by the local runtime's fetcher under the command's ``--allow-media-from`` or by the server's
    under its own (:class:`jan.MediaError` ``not_allowed`` for a link no entry allows)."""
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(path: str | Path) -> dict[str, Any]:
    """An ``input_audio`` content part (OpenAI's) holding the WAV, MP3 or FLAC clip at ``path``.

    Raises :class:`CLIError` for a missing or unreadable file, one over 20 MiB, or one that is not WAV, MP3 or
    FLAC (what libmtmd's decoder reads; a clip that is cut off is the model's error when it is decoded)."""
    from jan.engine.media import AUDIO_FORMATS, audio_format

    p, data = _read_media(path, "audio")
    fmt = audio_format(data)
    if fmt is None:
        raise CLIError(f"'{p}' is not a {', '.join(f.upper() for f in AUDIO_FORMATS)} clip (convert it first, e.g. "
                       f"`ffmpeg -i {p.name} clip.wav`)")
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def user_content(text: str, images: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A user turn's content: the text alone, or the text followed by the images."""
    if not images:
        return text
    return ([{"type": "text", "text": text}] if text else []) + list(images)


def content_text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if isinstance(content, str) or content is None:
        return content or ""
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                   and isinstance(p.get("text"), str))
