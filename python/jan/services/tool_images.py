"""Images a tool jan ran returned (an MCP server's screenshot tool), as the model reads them.

A client's own tool results reach the model with their images in every dialect (an OpenAI ``tool`` message's
``image_url`` parts, an Anthropic ``tool_result``'s image blocks); a tool jan runs itself (a run's, the Responses
API's ``mcp`` tools, Anthropic's ``mcp_servers``) is fed back the same way: its result as a ``tool`` message of an
:class:`~jan.services.untrusted.UntrustedTextPart` and a :class:`ToolImagePart` per image (:func:`result_parts`).

The difference is who chose to send the image: a client that sends a model without a projector an image is told
so (a 400), but nobody asked for an MCP server's screenshot. So the chat service shows a model that cannot see
images each :class:`ToolImagePart` as the note it always read (``[image image/png, 1234 bytes]``:
:func:`seen_as_text`), and sends one that can the image itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from jan.core import ToolImage, ToolResult
from jan.core.interfaces.tools import image_note
from jan.errors import MediaError
from jan.image_types import MAX_PIXELS, load_image, sniff_image
from jan.services.types import ChatMessage, ImagePart, Part
from jan.services.untrusted import UntrustedTextPart

__all__ = ["ToolImagePart", "has_tool_images", "result_parts", "seen_as_text"]


@dataclass(frozen=True)
class ToolImagePart(ImagePart):
    """An image a tool jan ran returned: an :class:`ImagePart` to everything else; a model without a projector
    reads :func:`image_note` in its place (:func:`seen_as_text`)."""


def result_parts(result: ToolResult) -> tuple[Part, ...]:
    """``result`` as a tool message's parts: its text (text and JSON parts, as :meth:`ToolResult.as_text` joins
    them) as untrusted text, each image that jan can decode as a :class:`ToolImagePart`, in order; an image that
    does not decode (damaged, a format jan does not read, over the pixel limit) stays its note, so that one bad
    image costs only itself, never the request. Blocking (each image is decoded once, as the engine will):
    call it off the event loop."""
    parts: list[Part] = []
    texts: list[str] = []

    def flush() -> None:
        if texts:
            parts.append(UntrustedTextPart("\n".join(texts), source="tool"))
            texts.clear()

    for part in result.parts:
        if isinstance(part, ToolImage):
            mime = sniff_image(part.data)
            try:
                if mime is None:
                    raise MediaError(f"not a PNG, JPEG, WebP or GIF image ({part.mime_type})",
                                     reason="unsupported_format")
                load_image(part.data, MAX_PIXELS)
            except MediaError as exc:
                texts.append(f"[image {part.mime_type}, {len(part.data)} bytes, that cannot be read: {exc}]")
                continue
            flush()
            parts.append(ToolImagePart(part.data, mime))
        else:
            texts.append(ToolResult((part,)).as_text())
    flush()
    return tuple(parts)


def has_tool_images(messages: Sequence[ChatMessage]) -> bool:
    """Whether a tool message of ``messages`` holds a :class:`ToolImagePart`."""
    return any(isinstance(p, ToolImagePart) for m in messages if m.role == "tool" for p in m.content)


def seen_as_text(messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """``messages`` with each :class:`ToolImagePart` its note (:func:`image_note`), for a model without a
    projector (or a vision encoder)."""
    out = []
    for message in messages:
        if message.role == "tool" and any(isinstance(p, ToolImagePart) for p in message.content):
            message = replace(message, content=tuple(
                UntrustedTextPart(image_note(p.mime_type, len(p.data)), source="tool")
                if isinstance(p, ToolImagePart) else p for p in message.content))
        out.append(message)
    return tuple(out)
