"""Checking a conversation's images before any model sees them: for work accepted before its prompt is made.

A chat request's images are decoded when its prompt is (:func:`jan.services.local.build_prompt`), and a bad one is
the request's 400 then. Work answered before that happens -- a background response, accepted while its model may
still be loading -- would otherwise learn of a damaged image only after the client was given an id, as a failed
response. :func:`check_images` decodes them now, with the same decoder and pixel limit the engine uses
(:func:`jan.image_types.load_image`), so such a request is refused as a foreground one is.
"""

from __future__ import annotations

from collections.abc import Sequence

from jan.errors import MediaError
from jan.image_types import MAX_PIXELS, load_image
from jan.services.types import ChatMessage, ImagePart

__all__ = ["check_images"]


def check_images(messages: Sequence[ChatMessage], first_index: int = 0) -> None:
    """Decode every image of ``messages`` (message ``i`` is the request's ``first_index + i``). Raises
    :class:`~jan.MediaError` naming the first that does not decode or is over the pixel limit by its
    ``message_index`` and ``part_index``, as the prompt would (a dialect says it of its own field). Slow for big
    images: call it off the event loop."""
    for i, message in enumerate(messages):
        for j, part in enumerate(message.content):
            if not isinstance(part, ImagePart):
                continue
            where = f"messages[{first_index + i}].content[{j}]"
            try:
                load_image(part.data, MAX_PIXELS, where)
            except MediaError as exc:
                raise MediaError(str(exc), reason=exc.reason, param=where, message_index=first_index + i,
                                 part_index=j) from None
