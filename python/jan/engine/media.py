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


DEFAULT_LIMITS = MediaLimits()


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
    if isinstance(source, AudioClip):
        source = source.source
    data = _read(source, limits, what)
    if audio_format(data) is None:
        raise MediaError(f"{what}: unsupported format (expected WAV, MP3 or FLAC)", reason="unsupported_format")
    return _engine.MediaInput.audio_file(data, _content_id(b"audio", data))
