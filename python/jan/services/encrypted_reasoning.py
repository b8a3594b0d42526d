"""jan's encrypted reasoning: the Responses API's ``encrypted_content`` of a reasoning item and an Anthropic thinking
block's ``signature``, which carry an answer's thinking for a client that sends the item back without its text
(``store: false``, ``include: ["reasoning.encrypted_content"]``). Here, not in a dialect, because every reader of an
earlier answer's reasoning decodes it the same way: an input sent back (:mod:`jan.server.dialects.responses`,
:mod:`jan.server.dialects.anthropic`) and a conversation's stored history (:mod:`jan.services.kept_items`), so a
follow-up's prompt is the same whichever way the client went on."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from jan.templates.formats.reasoning import joined_thoughts

__all__ = ["encrypted_reasoning", "reasoning_item_text", "reasoning_of_encrypted"]

# the reasoning text itself, encoded, not encrypted (the client has the text in ``content`` anyway), and marked as
# jan's so another server's blob is told apart
_ENCRYPTED_PREFIX = "jan-reasoning-v1:"


def encrypted_reasoning(text: str) -> str:
    """The ``encrypted_content`` of a reasoning item whose text is ``text``."""
    return _ENCRYPTED_PREFIX + base64.b64encode(text.encode()).decode()


def reasoning_of_encrypted(value: str | None) -> str | None:
    """The reasoning text of jan's ``encrypted_content``; ``None`` for none, or for another server's
    (OpenAI's is encrypted with its own keys: that reasoning is lost, as it is to any server but OpenAI).
    ``ValueError`` for one of jan's that is damaged."""
    if not value or not value.startswith(_ENCRYPTED_PREFIX):
        return None
    try:
        return base64.b64decode(value[len(_ENCRYPTED_PREFIX):], validate=True).decode() or None
    except (binascii.Error, ValueError):
        raise ValueError("input: a reasoning item's encrypted_content is damaged") from None


def reasoning_item_text(texts: Iterable[str], encrypted: str | None) -> str | None:
    """The thinking of one reasoning item: the ``texts`` of its parts (its content's, else its summary's; a summary's
    parts are paragraphs of their own), else what jan's ``encrypted`` content carries (an item sent back with no
    text); ``None`` for none. ``ValueError`` for a damaged ``encrypted`` of jan's (:func:`reasoning_of_encrypted`).
    The one reading of it, for an input's items and a conversation's kept ones alike."""
    decoded = reasoning_of_encrypted(encrypted)  # (checked even beside text: a damaged one is refused either way)
    return joined_thoughts(texts) or decoded or None
