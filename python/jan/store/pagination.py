"""OpenAI-style cursor pagination over an ordered list of resources."""

from __future__ import annotations

from collections.abc import Sequence
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
             after: str | None, before: str | None) -> Page:
    """Cut one page out of ``items_asc`` (already sorted ascending by the list's key).

    ``order`` is the direction of the page. ``after``/``before`` are ids of
    items in that direction: the page starts just after ``after`` and ends
    just before ``before``. With only ``before`` the page holds the ``limit``
    items nearest the cursor, as OpenAI does. An id that is not in the list
    is a 400, not a 404: the request is malformed, no resource is missing.
    """
    limit = check_limit(limit)
    order = check_order(order)
    ordered = list(items_asc) if order == "asc" else list(reversed(items_asc))
    index = {item["id"]: i for i, item in enumerate(ordered)}

    def position(cursor: str, name: str) -> int:
        validate_id(cursor, name, param=name)
        if cursor not in index:
            raise InvalidArgumentError(f"{name}={cursor!r} is not in this list", param=name, code="invalid_value")
        return index[cursor]

    start = position(after, "after") + 1 if after is not None else 0
    end = position(before, "before") if before is not None else len(ordered)
    window = ordered[start:end] if start < end else []
    if limit is None or len(window) <= limit:
        return Page(window, False)
    if before is not None and after is None:
        return Page(window[-limit:], True)
    return Page(window[:limit], True)
