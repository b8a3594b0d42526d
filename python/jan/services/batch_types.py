"""The typed values of the batch service (:mod:`jan.services.batches`), shared by both API dialects.

A batch is a list of items (``custom_id`` and a request body) that run one after another in the background.
Its status, in OpenAI's words (Anthropic's front end maps them to its own ``processing_status``):
``in_progress`` → ``finalizing`` → ``completed``; ``cancelling`` → ``cancelled``; ``expired`` (its window passed
with items not run); ``failed`` (its input was refused: no item ever ran; or it could not go on: its dialect's runner
could not be loaded, the disk failed — its items not run then end ``errored``, with why).

Each item ends with one outcome, in Anthropic's words: ``succeeded`` (the endpoint answered 200), ``errored``
(it answered an error), ``canceled`` (the batch was cancelled before it ran, or while it ran), ``expired``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from jan.services.errors import RequestError

BatchStatus = Literal["in_progress", "cancelling", "finalizing", "completed", "failed", "expired", "cancelled"]
Outcome = Literal["succeeded", "errored", "canceled", "expired"]

#: The statuses a batch never leaves.
ENDED: tuple[str, ...] = ("completed", "failed", "expired", "cancelled")
OUTCOMES: tuple[str, ...] = ("succeeded", "errored", "canceled", "expired")


class BatchStateError(RequestError):
    """What was asked of a batch cannot be done in its status (cancel an ended one, delete one still running):
    a 400 in each dialect."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_state")


class RunnerUnavailableError(Exception):
    """A dialect's runner cannot run anything now (its module could not be imported): the batch it was running
    fails whole, with this message, rather than each of its items trying (and failing) the same way in turn. The
    next batch of the dialect tries again."""


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch: its place, the client's ``custom_id`` and the body the endpoint takes."""

    index: int
    custom_id: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class ItemOutcome:
    """What an item's request answered: ``status_code`` 200 and the endpoint's answer, or an error status and
    the dialect's error body; the tokens it used (for the batch's usage): ``input_tokens`` the whole prompt,
    ``cached_tokens`` of those the KV cache held, ``output_tokens`` all generated, ``reasoning_tokens`` of those the
    thinking's (:class:`jan.services.token_counts.TokenCounts`)."""

    status_code: int
    body: Mapping[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class ItemResult:
    """An ended item, as ``results.jsonl`` keeps it: ``status_code``/``body`` are None for an item that never ran
    (``canceled``, ``expired``)."""

    index: int
    custom_id: str
    outcome: Outcome
    status_code: int | None = None
    body: Mapping[str, Any] | None = None
    #: ``batch_req_...``: the id of the item's request (OpenAI's output lines carry one)
    request_id: str = ""

    def to_record(self) -> dict[str, Any]:
        return {"index": self.index, "custom_id": self.custom_id, "outcome": self.outcome,
                "status_code": self.status_code, "body": self.body, "request_id": self.request_id}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "ItemResult":
        outcome = record.get("outcome")
        index = record.get("index")  # (a line edited by hand may say anything: -1, no item's, for one that is no index)
        return cls(index=index if isinstance(index, int) and not isinstance(index, bool) else -1,
                   custom_id=str(record.get("custom_id", "")),
                   outcome=outcome if outcome in OUTCOMES else "errored",  # type: ignore[arg-type]
                   status_code=record.get("status_code"), body=record.get("body"),
                   request_id=str(record.get("request_id") or ""))


@dataclass(frozen=True)
class BatchCounts:
    """How many items ended each way; ``processing`` is what is left."""

    total: int
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0

    @property
    def processing(self) -> int:
        return self.total - self.succeeded - self.errored - self.canceled - self.expired


@dataclass(frozen=True)
class Batch:
    """A batch as its front ends show it. ``times``: when it reached each status (``in_progress_at``,
    ``finalizing_at``, ``completed_at``, ``failed_at``, ``expired_at``, ``cancelling_at``, ``cancelled_at``; epoch
    seconds); ``extra``: the dialect's own fields (OpenAI's ``input_file_id``, ``output_file_id``, ``errors``...)."""

    id: str
    dialect: str
    endpoint: str
    status: BatchStatus
    created_at: int
    expires_at: int
    counts: BatchCounts
    times: Mapping[str, int] = field(default_factory=dict)
    metadata: Mapping[str, str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the tokens its items used, summed (as :class:`ItemOutcome` counts them)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def ended(self) -> bool:
        return self.status in ENDED


class BatchRunner(Protocol):
    """A dialect's part of running a batch: its items through the live endpoints' services, and its end."""

    async def execute(self, batch: Batch, item: BatchItem) -> ItemOutcome:
        """Answer one item as its endpoint would (errors as an error outcome, never raised; cancellation
        propagates: closing the request stops the generation). :class:`RunnerUnavailableError` when the runner
        cannot run any item (it fails the batch)."""

    def failed(self, exc: BaseException) -> ItemOutcome:
        """The outcome of an item whose execution raised ``exc`` unexpectedly (the dialect's error shape); of each
        item not run of a batch that failed (``exc``: why). Never raises."""

    async def finalize(self, batch: Batch, results: Sequence[ItemResult]) -> Mapping[str, Any]:
        """Once every item ended (``results`` in item order): what the dialect keeps of it (OpenAI writes its
        output and error files), merged into :attr:`Batch.extra`."""
