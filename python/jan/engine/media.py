"""Images and audio for models with a projector (mmproj): decode, check, hand to the engine.

Images are decoded with Pillow (PNG, JPEG, WebP, GIF's first frame; :func:`jan.image_types.load_image`)
into RGB pixels; the native side only ever sees raw pixels. Audio clips (WAV, MP3,
FLAC) go to libmtmd's own decoder, which also resamples them to the rate the
audio encoder wants. Every item gets a content hash, which the engine uses to
recognise the same image in a follow-up turn and reuse its KV cache.

All of this is slow for big inputs: call it off the event loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from jan import _engine
from jan.errors import MediaError
from jan.image_types import IMAGE_FORMATS, MAX_PIXELS, load_image, to_rgb  # noqa: F401 (IMAGE_FORMATS: kept importable here)
from jan.image_types import sniff_image as image_format  # noqa: F401 (MIME type from the magic bytes: kept importable here)
from jan.local_files import open_regular_file
AUDIO_FORMATS = ("wav", "mp3", "flac")

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Any]  # + numpy arrays, PIL images


@dataclass(frozen=True)
class MediaLimits:
    """Bounds on what one request may carry; breaking one raises :class:`~jan.MediaError`."""

    # Images + audio clips per request: Anthropic's cap. A chat sends a conversation's every image again each
    # turn, so a cap of a few (it was 8) made a conversation with a ninth picture impossible to go on with.
    max_items: int = 100
    max_bytes: int = 20 * 1024 * 1024     # one encoded file
    max_pixels: int = MAX_PIXELS          # one decoded image (width * height)
    # All of a request's decoded images together (3 bytes a pixel, held until the prompt is made): what bounds a
    # request's memory now that it may hold many images -- 8 images at the pixel limit, as 8 items did before.
    max_total_pixels: int = 8 * MAX_PIXELS
    # One audio clip's length, read from its headers before it is decoded. A clip is decoded whole into float
    # samples at the encoder's rate (16 kHz: 230 MB an hour), and the size of that buffer is what the file's
    # header says: a 200-byte FLAC whose STREAMINFO claims billions of samples, or a 40 KB WAV at 1 Hz (which
    # resamples to 16,000 times as many samples), took gigabytes and minutes, or the process, before the clip
    # could be found too long for any context.
    max_audio_seconds: float = 3600.0
    # All of a request's clips together: each is decoded and held at once while the prompt is tokenized, so 100
    # clips just under the limit (100 KB of FLAC headers) would have held 23 GB.
    max_total_audio_seconds: float = 3600.0


DEFAULT_LIMITS = MediaLimits()


class MediaCancelled(Exception):
    """Making a prompt's media stopped between two items: nobody waits for it any more (:data:`MEDIA_CANCEL` set)."""


#: An event a caller running :meth:`jan.Model.prepare_media` (or ``encode_media``) on a worker thread sets in the
#: thread's context and sets when nobody waits for the result any more (its client left): the work stops at the
#: next item (:class:`MediaCancelled`) instead of decoding the rest of a request's images for nobody -- seconds of
#: CPU each, on a media worker the next request's pictures waited for (jan.services.media_workers sets it).
MEDIA_CANCEL: "ContextVar[threading.Event | None]" = ContextVar("jan_media_cancel", default=None)


def check_media_cancel() -> None:
    """Raise :class:`MediaCancelled` where this context's :data:`MEDIA_CANCEL` is set."""
    cancel = MEDIA_CANCEL.get()
    if cancel is not None and cancel.is_set():
        raise MediaCancelled("nobody waits for this prompt's media any more")


@dataclass(frozen=True)
class AudioClip:
    """An encoded audio file (WAV, MP3 or FLAC) given as bytes or a path."""

    source: Union[str, os.PathLike, bytes]


def _content_id(kind: bytes, *parts: bytes) -> str:
    h = hashlib.sha256(kind)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def _read(source: Union[str, os.PathLike, bytes, bytearray, memoryview], limits: MediaLimits, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif not isinstance(source, (str, os.PathLike)):
        # (said of the item, as every other refusal of one: Path(5)'s TypeError named neither the item nor what it
        # takes)
        raise MediaError(f"{what}: expected a file path or the file's bytes, got {type(source).__name__}",
                         reason="unsupported_format")
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > limits.max_bytes:
                raise MediaError(f"{what}: '{path}' is {size} bytes; at most {limits.max_bytes} are accepted",
                                 reason="too_large")
            # (read inside the try: a folder, or a file the process may not read, is as unreadable as a missing one;
            # a named pipe too, which a plain open() waited on forever for a writer)
            with open_regular_file(path) as f:
                data = f.read(limits.max_bytes + 1)  # bounded: a size the stat did not tell (/proc)
        except OSError as e:
            raise MediaError(f"{what}: cannot read '{path}': {e.strerror or e}", reason="unreadable") from None
        except UnicodeEncodeError:
            # a lone surrogate (a JSON "\\ud800", a name read with surrogateescape past its range): no file system
            # name can hold it, and it escaped as the bare UnicodeEncodeError of os.stat
            raise MediaError(f"{what}: cannot read {str(path)!r}: the path holds a lone UTF-16 surrogate, which is no "
                             "character of a file name", reason="unreadable") from None
        except ValueError as e:  # ("embedded null byte": a NUL no file name can hold)
            if isinstance(e, MediaError):
                raise
            raise MediaError(f"{what}: cannot read {str(path)!r}: {e}", reason="unreadable") from None
    if len(data) > limits.max_bytes:
        raise MediaError(f"{what}: {len(data)} bytes; at most {limits.max_bytes} are accepted", reason="too_large")
    if not data:
        raise MediaError(f"{what}: no data (the file is empty)", reason="unsupported_format")
    return data


def audio_format(data: bytes) -> str | None:
    """``wav``, ``mp3`` or ``flac`` from the magic bytes, else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0):
        return "mp3"
    return None


def decode_image(source: ImageSource, limits: MediaLimits = DEFAULT_LIMITS, what: str = "image") -> tuple[bytes, int, int]:
    """``(rgb, width, height)``: 8-bit RGB pixels, row-major.

    ``source`` is a path, the bytes of a PNG/JPEG/WebP/GIF file (a GIF's first
    frame is used), a PIL image, or a numpy array of shape (H, W), (H, W, 3) or
    (H, W, 4) (uint8, or floats in [0, 1]). Raises :class:`~jan.MediaError`.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        image = source
    elif type(source).__module__ == "numpy" and hasattr(source, "shape"):
        image = _from_array(source, what)
    else:
        # the one decoding every front end shares: Pillow, EXIF orientation, transparency over white
        image = load_image(_read(source, limits, what), limits.max_pixels, what)
    _check_pixels(image.size, limits, what)
    image = to_rgb(image)
    width, height = image.size
    return image.tobytes(), width, height


def _check_pixels(size: tuple[int, int], limits: MediaLimits, what: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise MediaError(f"{what}: the image is empty", reason="unsupported_format")
    if width * height > limits.max_pixels:
        raise MediaError(f"{what}: {width}x{height} pixels; at most {limits.max_pixels} are accepted",
                         reason="too_large")


def _from_array(array: Any, what: str):
    import numpy as np
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise MediaError(f"{what}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}",
                         reason="unsupported_format")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def image_input(source: ImageSource, limits: MediaLimits = DEFAULT_LIMITS, what: str = "image") -> "_engine.MediaInput":
    """One image as the engine takes it (decoded RGB plus its content hash)."""
    return sized_image_input(source, limits, what)[0]


def sized_image_input(source: ImageSource, limits: MediaLimits = DEFAULT_LIMITS,
                      what: str = "image") -> "tuple[_engine.MediaInput, int]":
    """:func:`image_input` and its number of pixels (what :attr:`MediaLimits.max_total_pixels` adds up)."""
    rgb, width, height = decode_image(source, limits, what)
    return _engine.MediaInput.image(rgb, width, height, _content_id(b"rgb:%dx%d" % (width, height), rgb)), \
        width * height


def audio_input(source: Union[AudioClip, str, os.PathLike, bytes], limits: MediaLimits = DEFAULT_LIMITS,
                what: str = "audio") -> "_engine.MediaInput":
    """One audio clip (WAV, MP3 or FLAC file) as the engine takes it."""
    return sized_audio_input(source, limits, what)[0]


def sized_audio_input(source: Union[AudioClip, str, os.PathLike, bytes], limits: MediaLimits = DEFAULT_LIMITS,
                      what: str = "audio", budget: float | None = None) -> "tuple[_engine.MediaInput, float]":
    """:func:`audio_input` and the clip's length in seconds as its headers say (0 where they do not: libmtmd's
    decoder then refuses the clip or finds it empty), refused over :attr:`MediaLimits.max_audio_seconds` or over
    ``budget`` (what the request's other clips left of :attr:`MediaLimits.max_total_audio_seconds`)."""
    if isinstance(source, AudioClip):
        source = source.source
    data = _read(source, limits, what)
    fmt = audio_format(data)
    if fmt is None:
        raise MediaError(f"{what}: unsupported format (expected WAV, MP3 or FLAC)", reason="unsupported_format")
    seconds = audio_seconds(data, fmt, limits.max_audio_seconds) or 0.0
    if seconds > limits.max_audio_seconds:
        raise MediaError(f"{what}: the clip is {seconds:,.0f} seconds long (as its header says); at most "
                         f"{limits.max_audio_seconds:g} are accepted", reason="too_large")
    if budget is not None and seconds > budget:
        raise MediaError(f"{what}: the request's audio clips are longer than the {limits.max_total_audio_seconds:g} "
                         "seconds accepted together", reason="too_large")
    return _engine.MediaInput.audio_file(data, _content_id(b"audio", data)), seconds


def audio_seconds(data: bytes, fmt: str, bound: float = float("inf")) -> float | None:
    """How long the ``fmt`` clip ``data`` decodes to, as libmtmd's decoder (miniaudio) will size its buffer: a WAV's
    sample frames in the bytes it holds (its data chunk, no more than the file has) at its rate; a FLAC's STREAMINFO
    total (which the decoder trusts); an MP3's frames, walked (only until they pass ``bound``: the length is then
    some value over it). None when the header does not say (the decoder then refuses the clip or finds it
    empty)."""
    if fmt == "wav":
        return _wav_seconds(data)
    if fmt == "flac":
        return _flac_seconds(data)
    return _mp3_seconds(data, bound)


def _wav_seconds(data: bytes) -> float | None:
    pos, rate, frame_bits = 12, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and size >= 16:
            channels = int.from_bytes(data[body + 2:body + 4], "little")
            rate = int.from_bytes(data[body + 4:body + 8], "little")
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            # (compressed WAVs, ADPCM, give their bits per sample too: 4; a header saying 0 is counted as 1 bit)
            frame_bits = max(channels, 1) * max(bits, 1)
        elif chunk == b"data":
            if not rate or not frame_bits:
                return None
            held = min(size, len(data) - body)
            return held * 8 / frame_bits / rate
        pos = body + size + (size & 1)  # (chunks are padded to an even size)
    return None


def _flac_seconds(data: bytes) -> float | None:
    # "fLaC", then the STREAMINFO block (type 0, 34 bytes): its bytes 10-17 hold the sample rate (20 bits), the
    # channels and bits per sample (3 + 5) and the total of samples (36 bits; 0: not said)
    if len(data) < 8 + 18 or data[4] & 0x7F != 0:
        return None
    packed = int.from_bytes(data[8 + 10:8 + 18], "big")
    rate, total = packed >> 44, packed & ((1 << 36) - 1)
    if not rate or not total:
        return None
    return total / rate


#: MPEG audio frame headers (ISO 11172-3 / 13818-3): kbit/s by [MPEG-1?][layer][index], and sample rates.
_MP3_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


#: A frame header's first three bytes: the sync bits, a version and a layer that exist, a bitrate index that is
#: not 15 (0 is a free-format frame, whose length no header says) and a sample rate index that exists. Searched for
#: with ``re`` (in C): a walk byte by byte in Python took 12 s over 20 MB of 0xFF.
_MP3_HEADER = re.compile(
    b"\xff[" + re.escape(bytes(b for b in range(0xE0, 0x100) if (b >> 3) & 3 != 1 and (b >> 1) & 3 != 0)) + b"]["
    + re.escape(bytes(b for b in range(256) if b >> 4 != 15 and (b >> 2) & 3 != 3)) + b"]")


def _mp3_seconds(data: bytes, bound: float) -> float | None:
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # an ID3v2 tag first: its size is 4 x 7 bits, plus a footer's 10
        pos = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10])) + (10 if data[5] & 0x10 else 0)
    seconds = 0.0
    while seconds <= bound:  # (past the bound the clip is refused: no need to count the rest)
        found = _MP3_HEADER.search(data, pos)
        if found is None:
            break
        pos = found.start()
        b1, b2 = data[pos + 1], data[pos + 2]
        version, mpeg1, layer = (b1 >> 3) & 3, (b1 >> 3) & 3 == 3, 4 - ((b1 >> 1) & 3)
        bitrate = _MP3_BITRATES[(mpeg1, layer)][b2 >> 4] * 1000
        rate = _MP3_RATES[version][(b2 >> 2) & 3]
        padding = (b2 >> 1) & 1
        samples = 384 if layer == 1 else 1152 if layer == 2 or mpeg1 else 576
        seconds += samples / rate
        if not bitrate:  # free format: the frame runs to the next header (counted, as the decoder decodes it)
            pos += 4
        elif layer == 1:
            pos += (12 * bitrate // rate + padding) * 4
        else:
            pos += samples // 8 * bitrate // rate + padding
    return seconds or None
