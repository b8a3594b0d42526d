"""Which image file a byte string is, from its magic bytes: one check for the engine's media
decoding, the thread file store and the server's URL fetcher (no dependencies, so the store and the
server can use it without loading the native engine)."""

from __future__ import annotations

__all__ = ["sniff_image"]


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
