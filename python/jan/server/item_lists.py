"""The item lists OpenAI's Responses family answers (a response's ``input_items``, a conversation's ``items``).

Both read the same query — ``order`` (``desc`` by default), ``limit`` (1-100, 20 by default), ``after`` and
``before`` (item ids the page starts after or ends before), ``include`` — and answer the same cursor page,
``{"object": "list", "data", "first_id", "last_id", "has_more"}`` (OpenAI's API reference,
``GET /v1/responses/{id}/input_items`` and ``GET /v1/conversations/{id}/items``). HTTP concerns only.
"""

from __future__ import annotations

from typing import Any, get_args

from aiohttp import web

from jan.server.dialects import responses as responses_wire
from jan.server.errors import APIError
from jan.server.validation import query_choice, query_int

__all__ = ["DEFAULT_LIST_LIMIT", "MAX_LIST_LIMIT", "check_include", "item_page", "list_object", "read_page_query"]

DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100  # OpenAI's


def check_include(request: web.Request) -> None:
    """``include`` in a query (the SDKs send ``include[]=...``): its values are checked as a response's ``include``
    is, a 400 naming the bad one (OpenAI's), not a typo that silently changes nothing. What they ask for is in
    the items already (a reply's logprobs and reasoning kept as it was created with, images as data URLs)."""
    known = get_args(responses_wire.Includable)
    for index, value in enumerate(request.query.getall("include[]", []) + request.query.getall("include", [])):
        if value not in known:
            raise APIError(400, f"include[{index}]: {value!r} is not one of " + ", ".join(map(repr, known)),
                           param="include", code="invalid_value")


def list_object(page: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    """The list object around ``page`` (items with ``id``s)."""
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": has_more}


def read_page_query(request: web.Request) -> tuple[str, int]:
    """``(order, limit)`` from the query; a 400 naming the parameter for a bad one. Read before the list is looked
    up, as every list reads its query: a bad one is the same 400 whatever the path names."""
    return (query_choice(request, "order", "desc", ("asc", "desc")),
            query_int(request, "limit", DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT))


def item_page(request: web.Request, items: list[dict[str, Any]], order: str, limit: int, *, what: str,
              cursors: tuple[str, ...] = ("after", "before")) -> dict[str, Any]:
    """One page of ``items`` (oldest first, as stored) in ``order``, after/before the query's ``cursors`` (the
    ones the list takes: a conversation's only ``after``), at most ``limit`` long. A cursor naming no item is a 400
    naming the cursor (an empty one is none); ``what`` says what was looked for there (``"input item"``)."""
    items = list(reversed(items)) if order == "desc" else list(items)
    query = {cursor: request.query[cursor] for cursor in cursors if request.query.get(cursor)}

    def position(cursor: str) -> int:
        wanted = query[cursor]
        for index, item in enumerate(items):
            if item["id"] == wanted:
                return index
        raise APIError(400, f"{cursor}: no {what} with id {wanted[:80]!r}", param=cursor, code="invalid_value")

    if "after" in query:
        items = items[position("after") + 1:]
    if "before" in query:
        items = items[:position("before")]
    page = items[:limit]
    return list_object(page, len(items) > limit)
