"""Images as every front end takes them: which file a byte string is (its magic bytes), base64 and
``data:`` URLs, and opening one with Pillow. One place for the engine's media decoding, the thread
file store, the server's URL fetcher and the dialects (no native engine here, so the store and the
server can use it without loading it; Pillow is imported only when an image is opened)."""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import TYPE_CHECKING

from jan.errors import MediaError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["IMAGE_FORMATS", "MAX_PIXELS", "B64_PIECE_CHARS", "b64decode", "b64encode_text", "base64_media",
           "data_url_media", "header_pixels", "load_image", "parse_data_url", "sniff_image"]

#: The most pixels (width * height) of one image the engine takes (``jan.engine.media.MediaLimits``); the
#: thread store checks images it keeps against it too.
MAX_PIXELS = 40_000_000

#: Pillow's format name -> MIME type, for the formats jan decodes.
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def sniff_image(data: bytes) -> str | None:
    """The MIME type of a PNG/JPEG/WebP/GIF file from its magic bytes, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


_WHITESPACE = re.compile(r"[ \t\r\n]+")


#: Characters of base64 one C call decodes (or, times 3/4, bytes one call encodes): ``binascii`` holds the GIL for
#: a whole call, so decoding a 16 MiB image in one held every other thread, the event loop with every other request
#: included, for a few hundred milliseconds (on a worker thread too); a piece this size is a few milliseconds, and
#: between two pieces the interpreter lets other threads run. A multiple of 4 (whole base64 quanta).
B64_PIECE_CHARS = 1024 * 1024


def b64decode(text: str | bytes) -> bytes:
    """Strict base64, except that line breaks and spaces are skipped: ``base64`` on Linux wraps its output at 76
    columns, MIME does too, and Go's decoder (Ollama's) skips them, so a client pasting such output means the same
    bytes. Anything else that is not base64 raises ``binascii.Error``. A long text is decoded in pieces of
    :data:`B64_PIECE_CHARS` (the same bytes, the same errors), letting other threads run between them."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if " " in text or "\n" in text or "\r" in text or "\t" in text:
        text = "".join(_WHITESPACE.sub("", text[i:i + B64_PIECE_CHARS]) for i in range(0, len(text), B64_PIECE_CHARS))
    if len(text) <= B64_PIECE_CHARS:
        return base64.b64decode(text, validate=True)
    pieces = []
    for start in range(0, len(text), B64_PIECE_CHARS):
        piece = text[start:start + B64_PIECE_CHARS]
        if piece.endswith("=") and start + B64_PIECE_CHARS < len(text):
            # (padding is the text's end: what one call says of base64 with more after it)
            raise binascii.Error("Non-base64 digit found")
        pieces.append(base64.b64decode(piece, validate=True))
    return b"".join(pieces)


def b64encode_text(data: bytes) -> str:
    """``data`` as base64 text (``base64.b64encode(data).decode()``), encoded in pieces of :data:`B64_PIECE_CHARS`
    characters: a 20 MB file in one call held every other thread for its whole time."""
    step = B64_PIECE_CHARS // 4 * 3
    if len(data) <= step:
        return base64.b64encode(data).decode("ascii")
    view = memoryview(data)
    return "".join(base64.b64encode(view[i:i + step]).decode("ascii") for i in range(0, len(data), step))


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 payload)`` of a base64 ``data:`` URL, else None. The scheme and the ``;base64``
    flag are case-insensitive (RFC 2397), and parameters before it (``;name=a.png``) are skipped."""
    head, sep, payload = url.partition(",")
    if not sep or head[:5].lower() != "data:":
        return None
    params = head[5:].split(";")
    if len(params) < 2 or params[-1].strip().lower() != "base64":
        return None
    return params[0].strip().lower(), payload


def data_url_media(url: str, param: str) -> tuple[bytes, str]:
    """``(bytes, media type)`` of the base64 ``data:`` URL a request gives an image (or clip) in, as every dialect
    reads one (OpenAI's ``image_url.url``, the Responses API's ``input_image.image_url``, an Anthropic ``url``
    source): :func:`parse_data_url`'s rules (scheme and ``;base64`` in any case, parameters skipped), the type as
    declared in lower case (``""`` when none is; the engine tells an image by its bytes) and the data by
    :func:`b64decode`'s. Raises :class:`~jan.MediaError` naming ``param``: ``not_allowed`` for no ``data:`` URL (a
    link this reader does not fetch), ``unsupported_format`` for one that is not base64 or whose data is not."""
    if url[:5].lower() != "data:":
        raise MediaError(f"{param}: only base64 data URLs (data:<type>;base64,...) are accepted", reason="not_allowed",
                         param=param)
    parsed = parse_data_url(url)
    if parsed is None:
        raise MediaError(f"{param}: the data: URL must be base64-encoded (data:<type>;base64,...)",
                         reason="unsupported_format", param=param)
    try:
        return b64decode(parsed[1]), parsed[0]
    except ValueError:  # (binascii.Error is one)
        raise MediaError(f"{param}: the data URL is not valid base64", reason="unsupported_format",
                         param=param) from None


def base64_media(text: str) -> tuple[bytes, str | None]:
    """The bytes of a media item sent as text where a dialect takes bare base64 (llama-server's ``multimodal_data``,
    Ollama's ``images``), and the media type it declares: clients paste a base64 ``data:`` URL there as often as
    they paste the base64 alone (OpenAI-style code makes the URLs), so one is read as the other, in every dialect
    alike (``(bytes, None)`` for bare base64). A ``ValueError`` saying which it is not: a ``data:`` URL that is
    not base64 (``data:image/png,%89PNG...``), or text that is not base64 (:func:`b64decode`'s rules)."""
    if text[:5].lower() == "data:":
        parsed = parse_data_url(text)
        if parsed is None:
            raise ValueError("a data: URL here must be base64 (data:<media type>;base64,<data>)")
        try:
            return b64decode(parsed[1]), parsed[0] or None
        except ValueError:
            raise ValueError("the data: URL's data is not valid base64") from None
    try:
        return b64decode(text), None
    except ValueError:
        raise ValueError("not valid base64") from None


def load_image(data: bytes, max_pixels: int, what: str = "image") -> "Image.Image":
    """``data`` (a PNG, JPEG, WebP or GIF file; an animation's first frame) decoded by Pillow into an RGB image,
    turned upright as its EXIF orientation says and with any transparency laid over white. Raises
    :class:`~jan.MediaError`: ``unsupported_format`` for another format or damaged data, ``too_large`` for more
    than ``max_pixels`` pixels (checked from the header, before decoding)."""
    from PIL import Image, UnidentifiedImageError

    if sniff_image(data) is None:
        raise MediaError(f"{what}: unsupported format (expected PNG, JPEG, WebP or GIF)", reason="unsupported_format")
    try:
        image = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
        _check_pixels(image.size, max_pixels, what)
        image.seek(0)  # an animation's first frame
        image.load()
        return to_rgb(_upright(image))
    except (MediaError, MemoryError):  # (out of memory is the server's state, not a fault of the caller's data)
        raise
    except Image.DecompressionBombError:
        # Pillow's own bound (twice its MAX_IMAGE_PIXELS) comes before ours can be checked; say ours, not Pillow's
        raise MediaError(f"{what}: the image has more than the {max_pixels} pixels accepted",
                         reason="too_large") from None
    except Exception as e:  # noqa: BLE001 - see below
        # Damaged data makes Pillow's decoders raise more than OSError and ValueError (struct.error, IndexError,
        # TypeError... from a header's fields): every one is the caller's bad image, never a server error.
        # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" names our buffer, not the
        # caller's input: say what is wrong with the data instead.
        detail = "the data is damaged or incomplete" if isinstance(e, UnidentifiedImageError) else str(e) or \
            "the data is damaged or incomplete"
        raise MediaError(f"{what}: cannot decode the image: {detail}", reason="unsupported_format") from None


def header_pixels(data: bytes) -> int | None:
    """``width * height`` of a PNG, JPEG, WebP or GIF file as its header says, read without decoding a pixel
    (Pillow opens lazily: a few hundred bytes); None for other data, a header that does not read, or a size past
    Pillow's own bound (:func:`load_image` says what is wrong with each of those)."""
    from PIL import Image

    if sniff_image(data) is None:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - any damage: the decoding, in its turn, says it
        return None
    return width * height if width > 0 and height > 0 else None


#: The EXIF tag holding how a picture is stored turned (1-8: the EXIF spec's table, in _upright).
_ORIENTATION_TAG = 0x0112


def _upright(image: "Image.Image") -> "Image.Image":
    """``image`` turned upright as its EXIF orientation says. A phone's photo is stored sideways with an EXIF tag
    saying how to turn it (browsers and image viewers honour it): without this the model sees it lying on its side.
    Damaged EXIF is ignored, the picture used as stored, as a browser shows it (Pillow's ``exif_transpose`` also
    rewrites the EXIF block, and raises on a damaged one: a good picture refused for its metadata)."""
    from PIL import Image

    methods = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - EXIF too damaged to read: no orientation
        return image
    method = methods.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def to_rgb(image: "Image.Image") -> "Image.Image":
    """``image`` in RGB. Transparent pixels are laid over white, as a page shows them: dropping the alpha channel
    (``convert("RGB")``) shows whatever colour they happen to hold, mostly black, so black text or a black logo on
    a transparent background vanishes. 16-bit greyscale is scaled to 8 bits, not clipped to white."""
    from PIL import Image

    # (an RGB PNG can hold a transparent colour too, a tRNS chunk Pillow keeps in ``info``: checked before
    # the plain RGB return, which otherwise showed those pixels in their stored colour, mostly black)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode in ("P", "L", "RGB") and
                                                           "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        # pasted onto white through its alpha: a third of the memory and time of compositing two RGBA copies and
        # converting the result (an image at the pixel limit took 600 MB more, one of a request's many)
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I"):  # a 16-bit PNG (Pillow's "I;16" or "I"): 0..65535, not 0..255
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def _check_pixels(size: tuple[int, int], max_pixels: int, what: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise MediaError(f"{what}: the image is empty", reason="unsupported_format")
    if width * height > max_pixels:
        raise MediaError(f"{what}: {width}x{height} pixels; at most {max_pixels} are accepted", reason="too_large")
