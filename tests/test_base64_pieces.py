"""Base64 of a big image or file is decoded and encoded in pieces (jan.image_types): ``binascii`` holds the GIL for a
whole call, so one call on a 16 MiB image held every other request, the event loop's included, for hundreds of
milliseconds, on a worker thread too. The pieces give the same bytes and the same refusals as one call."""

from __future__ import annotations

import base64
import binascii
import os

import pytest

from jan import image_types
from jan.image_types import B64_PIECE_CHARS, b64decode, b64encode_text


@pytest.fixture
def calls(monkeypatch):
    """The sizes each C call of base64 got."""
    seen: list[int] = []
    decode, encode = base64.b64decode, base64.b64encode

    def spy_decode(text, *args, **kw):
        seen.append(len(text))
        return decode(text, *args, **kw)

    def spy_encode(data, *args, **kw):
        seen.append(len(data))
        return encode(data, *args, **kw)

    monkeypatch.setattr(image_types.base64, "b64decode", spy_decode)
    monkeypatch.setattr(image_types.base64, "b64encode", spy_encode)
    return seen


SIZES = [0, 1, 2, B64_PIECE_CHARS // 4 * 3 - 1, B64_PIECE_CHARS // 4 * 3, B64_PIECE_CHARS // 4 * 3 + 1,
         3 * B64_PIECE_CHARS + 5]


@pytest.mark.parametrize("size", SIZES)
def test_the_same_bytes_in_pieces(calls, size):
    data = os.urandom(size)
    text = base64.b64encode(data).decode()
    calls.clear()
    assert b64encode_text(data) == text
    assert b64decode(text) == data and b64decode(text.encode()) == data
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert b64decode(wrapped) == data
    assert max(calls) <= B64_PIECE_CHARS  # (no call is given more than a piece)


def test_a_big_image_is_decoded_in_many_calls(calls):
    text = base64.b64encode(os.urandom(12 * 1024 * 1024)).decode()
    calls.clear()
    b64decode(text)
    assert len(calls) == -(-len(text) // B64_PIECE_CHARS) and max(calls) <= B64_PIECE_CHARS


def _bad(text: str, at: int, what: str) -> str:
    return text[:at] + what + text[at + len(what):]


TEXT = base64.b64encode(os.urandom(3 * B64_PIECE_CHARS)).decode()
BAD = {
    "padding at a piece's end": _bad(TEXT, B64_PIECE_CHARS - 1, "="),
    "two padding at a piece's end": _bad(TEXT, B64_PIECE_CHARS - 2, "=="),
    "padding inside a piece": _bad(TEXT, B64_PIECE_CHARS + 10, "="),
    "a stray character": _bad(TEXT, 2 * B64_PIECE_CHARS + 3, "!"),
    "one character too many": TEXT + "A",
}


@pytest.mark.parametrize("name", BAD)
def test_the_same_refusals_in_pieces(name):
    with pytest.raises(binascii.Error):
        base64.b64decode(BAD[name], validate=True)
    with pytest.raises(binascii.Error):
        b64decode(BAD[name])
