"""OpenAI-style cursor pagination over an ordered list of resources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidArgumentError
from .ids import validate_id

Order = Literal["asc", "desc"]


@dataclass
class Page:
    """One page of a list: ``data`` plus the cursors an OpenAI list response carries."""

    data: list[dict[str, Any]] = field(default_factory=list)
    has_more: bool = False

    @property
    def first_id(self) -> str | None:
        return self.data[0]["id"] if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1]["id"] if self.data else None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI list body: ``{"object": "list", "data", "first_id", "last_id", "has_more"}``."""
        return {"object": "list", "data": self.data, "first_id": self.first_id,
                "last_id": self.last_id, "has_more": self.has_more}

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgumentError(f"limit must be a positive integer, not {limit!r}", param="limit",
                                   code="invalid_value")
    return limit


def check_order(order: Any) -> Order:
    if order not in ("asc", "desc"):
        raise InvalidArgumentError(f"order must be 'asc' or 'desc', not {order!r}", param="order",
                                   code="invalid_value")
    return order


def paginate(items_asc: Sequence[dict[str, Any]], *, limit: int | None, order: Order,
             after: str | None, before: str | None, key: Callable[[dict[str, Any]], Any] | None = None,
             key_of_id: Callable[[str], Any] | None = None) -> Page:
    """Cut one page out of ``items_asc`` (already sorted ascending by the list's key).

    ``order`` is the direction of the page. ``after``/``before`` are ids of
    items in that direction: the page starts just after ``after`` and ends
    just before ``before``. With only ``before`` the page holds the ``limit``
    items nearest the cursor, as OpenAI does.

    A cursor whose item is no longer in the list (deleted since it was read: the SDK's auto-paging asks for the page
    after the last id of the one before, which a client that deletes what it reads has just deleted) is placed
    where it sorted, as OpenAI's cursors are: ``key(item)`` is an item's sort key (the one ``items_asc`` is sorted
    by), ``key_of_id(cursor)`` the key the cursor's item had, from its id alone (None when the id tells none).
    Any other id not in the list is a 400, not a 404: the request is malformed, no resource is missing.
    """
    limit = check_limit(limit)
    order = check_order(order)
    ordered = list(items_asc) if order == "asc" else list(reversed(items_asc))
    index = {item["id"]: i for i, item in enumerate(ordered)}

    def gone_at(cursor: str) -> int | None:
        """How many items of ``ordered`` come before a cursor whose item is gone; None when its place is unknown."""
        if key is None or key_of_id is None:
            return None
        wanted = key_of_id(cursor)
        if wanted is None:
            return None
        # (a linear count, not a bisection: a list kept in the order it was written may hold an item out of key order)
        below = sum(1 for item in items_asc if key(item) < wanted)
        return below if order == "asc" else len(ordered) - below

    def position(cursor: str, name: str, *, past: int) -> int:
        validate_id(cursor, name, param=name)
        if cursor in index:
            return index[cursor] + past
        place = gone_at(cursor)
        if place is None:
            raise InvalidArgumentError(f"{name}={cursor!r} is not in this list", param=name, code="invalid_value")
        return place

    start = position(after, "after", past=1) if after is not None else 0
    end = position(before, "before", past=0) if before is not None else len(ordered)
    window = ordered[start:end] if start < end else []
    if limit is None or len(window) <= limit:
        return Page(window, False)
    if before is not None and after is None:
        return Page(window[-limit:], True)
    return Page(window[:limit], True)
