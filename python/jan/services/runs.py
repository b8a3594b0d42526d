"""Runs: answer a thread with a model and save the reply as a message — independent of any front end.

What a run does
    1. Picks the assistant (``assistant_id`` > the thread's ``assistants[0]`` > ``jan``) and the
       model (request ``model`` > thread ``assistants[0].model.id`` > the assistant's ``model``
       unless ``"*"`` > the first model loaded in an engine).
    2. Appends ``additional_messages``, then turns the thread's history (``ready``/``stopped``
       messages with text; ``pending`` and ``error`` ones and empty replies are skipped) into a typed
       :class:`ChatRequest`, with the instructions (request > thread ``assistants[0]`` > the
       assistant's, plus ``additional_instructions``) as the system message, and streams it
       through the chat service. Every model turn's history is one that chat templates insisting on
       user/assistant alternation render (:func:`prompt_window`, :func:`renderable`): it begins at a user
       turn, and consecutive messages of one role (two user messages sent before a run) are one turn.
    3. Sampling, key by key: **request > thread (``assistants[0].model.parameters``) > assistant
       (``parameters``) > model.json ``parameters`` > defaults** — the one precedence rule
       (:func:`jan.services.types.merge_options`). The effective values are the run's
       ``parameters``.
    4. The assistant message is created at once with status ``pending``, rewritten with the
       text so far at most every :data:`SAVE_INTERVAL` s while tokens arrive, then finished as
       ``ready`` (``metadata.finish_reason``), ``stopped`` (cut off; ``metadata.stop_reason``,
       usage counted from the saved text with ``"estimated": true``) or ``error``
       (``metadata.error``, ``metadata.error_code``). A run stopped (cancelled, its listener gone) before its
       turn wrote anything — waiting for its model, or for its first token — ends ``cancelled`` as OpenAI's: its
       pending reply is removed from the thread, and it has no ``message_creation`` step and no message events
       (:meth:`_Execution._end_unwritten`).
    5. A thread still titled ``New Thread`` (or untitled) is renamed after its first user
       message (and again when that message is edited, :meth:`RunService.update_message`, unless the user renamed
       it meanwhile); a thread without assistants records the assistant and model used.
    6. Events: ``MessageSent``, ``MessageResponse``, ``MessageUpdate`` (each piece, then the
       final message), ``InferenceStopped`` (cut off).

Token limits (OpenAI's, over the whole run: every model turn of it, tool loops included): ``max_tokens`` /
``max_completion_tokens`` is what all the turns together may generate: each turn may generate what the earlier
ones left of it (the run's ``usage.completion_tokens``); a reply it cuts off ends the run ``incomplete``
(``incomplete_details.reason`` ``"max_completion_tokens"``), and so does a turn with nothing left, which is not
started (its reply ``stopped`` and empty, ``metadata.stop_reason: "max_completion_tokens"``). ``max_prompt_tokens`` is a budget the turns' prompts draw on, as usage counts
them (the whole prompt, cached tokens included): each turn's prompt is fitted to what the earlier turns left of
it with the run's truncation strategy (:mod:`jan.services.fit`; ``last_messages`` takes its messages, which are
then fitted too); when even the shortest prompt allowed does not fit, that turn is not started and the run ends
``incomplete`` (``"max_prompt_tokens"``), its reply message ``stopped`` and empty (``metadata.stop_reason:
"max_prompt_tokens"``). An engine that renders its own prompts (a remote one) cannot be fitted: there the run
stops once its turns have reported using the budget up, and ends ``incomplete`` when they went over it.

Usage (OpenAI's run ``usage``: the tokens used "over the course of the run"): every model turn's usage, tool loops
and ``submit_tool_outputs`` legs included, summed (:func:`add_usage`) and saved in the run's record, so a resumed
run or one read back from disk keeps the totals; ``max_prompt_tokens`` is spent on its ``prompt_tokens``,
``max_completion_tokens`` on its ``completion_tokens``. A run that ends before any turn used tokens (failed,
cancelled, a turn not started) has zero usage, never none. Each
assistant message the run writes has its own turn's usage in ``metadata.usage``, and a ``tool_calls`` step event's
``usage`` (once ``completed``) is the usage of the turn that made the calls.

Errors found before anything is written are raised (``NotFoundError``, ``ModelNotFoundError``,
:class:`RequestError`). Once the reply exists a failure makes the message ``error`` and the run
``failed``; so does a turn the server cut off (the model stopped or unloaded under it: finish reason
``cancelled``, never passed off as a whole reply; ``last_error.code`` ``server_error``), unless the user's cancel
did (the run ``cancelled``). Every finish reason ends a run explicitly (:data:`TURN_ENDS`).

Tools (``docs/tools.md``): when the run's tools (run > thread > assistant, see
:mod:`jan.services.tool_loop`) are called by the model, allowlisted calls run at once and the
model continues with their results (up to a step limit); others stop the run in
``requires_action`` until :meth:`RunService.submit` (approve / deny / give the output). Every
call is saved in the thread (an assistant message with ``metadata.tool_calls``, a ``tool``
message per result).

Steps (OpenAI's run steps, :mod:`jan.services.run_steps`): a model turn that writes a message is a
``message_creation`` step (its reply message), and the calls a turn makes a ``tool_calls`` step; they are streamed
as ``thread.run.step.*`` events (created and in progress before the message or the calls, ended after) and kept in
the run's record (:meth:`RunService.steps`), saved before each event, so the stream and the record tell the same
steps. A turn's message is saved (``pending``) when the turn starts, but the stream announces it — its step,
``thread.message.created`` — only with its first piece of text or thinking, or as the turn ends without calls: a
turn that only calls tools writes no message on OpenAI's wire (:func:`~jan.services.tool_loop.tool_bookkeeping`),
only its ``tool_calls`` step, as OpenAI's runs. A turn's calls stream as the model writes them: their ``tool_calls``
step is created (saved) at the first call piece and told with no calls, then each piece is a
``thread.run.step.delta`` (:meth:`_Execution._relay_calls`), which the SDK's stream helpers add up into the calls.

Runs are saved under ``<data>/threads/<thread_id>/runs/`` whenever their state changes
(:mod:`jan.services.run_records`): :meth:`RunService.load` finds them after a restart,
:meth:`RunService.recover_interrupted` turns runs cut off by a stop into ``interrupted`` ones
(partial reply kept, ``stopped``), :meth:`RunService.resume` continues one. A run's events are
kept (``Run.events``) so a listener can re-attach and replay them. A graceful stop of jan
(:meth:`RunService.interrupt_all`, awaited before the extensions stop) leaves each active run as a crash would:
a model turn cut at its next piece, a tool call cut off at once with no result kept (resume runs it again), a
``submit_tool_outputs`` leg's calls cut off with the run back in ``requires_action``. A leg runs in a task of its
own, independent of the request that started it (the front end decides whether its listener going away stops it);
:meth:`RunService.submit` only claims the run with its answers, which the leg runs first. A cancel reaches a run
that another process sharing the data folder runs through a marker next to its record: that process looks for
its active runs' markers a few times a second (:meth:`RunService._cancel_watch`) and the cancelling one answers
once the record says the run ended (:meth:`RunService._cancel_elsewhere`). Deleting a thread cancels its
active runs and forgets its runs (:class:`~jan.core.ThreadDeleted`); deleting an assistant does not stop its runs,
whose later legs keep the tools it had (``Run.assistant_tools``).

One run at a time per thread, as OpenAI's Assistants API: while a run holds its thread (``queued``,
``in_progress``, ``requires_action``: :data:`HOLDING_STATUSES`) another run is refused, and so is a new
message (:meth:`RunService.add_message`), with a :class:`RequestError` (``code: "run_active"``). Every way
a run starts or goes on (:meth:`RunService.start`, ``submit``, ``resume``) and every message a front end adds
checks and claims the thread under one per-thread lock, so two requests at once never both pass — in one process
or in several sharing the data folder (:meth:`RunService._thread_lock`: a file lock held until the claim is on
disk, where the other processes' checks read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jan.background import report_failure
from jan.core import (
    AssistantExtension,
    ConversationalExtension,
    ExtensionManager,
    ExtensionNotFoundError,
    InferenceStopped,
    MessageResponse,
    MessageSent,
    MessageUpdate,
    NotFoundError,
    ThreadDeleted,
    ToolRegistry,
)
from jan.core.held import Held
from jan.errors import MediaError, ModelNotFoundError
from jan.services.control import EndReasoning, GenerationControl
from jan.services.chat import ChatService
from jan.templates.chat import joined_turn
from jan.services.errors import (GenerationCancelledError, RequestError, ServiceUnavailableError, failure_kind,
                                 require)
from jan.services.fit import PromptBudgetError
from jan.services.models import ModelService, check_format_grammar, check_parameters, model_sampling
from jan.services.run_records import (ask_cancel, cancels_asked, clear_cancel, held_elsewhere,
                                      interrupt_if_orphaned, list_records, load_record, mark_interrupted, record_problems,
                                      running_elsewhere,
                                      save_record, take_lease, thread_records)
from jan.services.thread_claims import thread_claims
from jan.services.event_log import EventLog
from jan.services.run_steps import RunStep, end_status, last_error, openai_last_error, zero_usage
from jan.services.token_counts import token_counts
from jan.services.thread_turns import (BUDGET_STOPS, COMPLETION_BUDGET, PROMPT_BUDGET, FetchImage,
                                      fetch_linked_images, kept_records, stored_calls, stored_metadata)
from jan.services.tool_loop import (
    PendingCall,
    ToolDecision,
    ToolPolicy,
    chat_messages,
    check_tool_entries,
    check_tool_policy,
    documents_of,
    image_files_of,
    parse_calls,
    reasoning_of,
    resolve_policy,
    run_calls,
    save_tool_messages,
    settled_answer,
    text_of,
    tool_bookkeeping,
    triage,
    whole_arguments,
)
from jan.services.untrusted import UntrustedTextPart, text_part_of
from jan.services.types import (
    ChatMessage,
    ChatRequest,
    DocumentPart,
    ImagePart,
    NamedToolChoice,
    ReasoningOptions,
    ResponseFormat,
    SamplingOptions,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Truncation,
    Usage,
    merge_options,
)
from jan.store._util import now_s
from jan.store.errors import InvalidArgumentError, InvalidIdError, partly_saved
from jan.store.ids import clock_ms, new_id, ulid_millis

log = logging.getLogger("jan.services.runs")

__all__ = ["Run", "RunFailure", "RunRequest", "RunService", "ToolDecision", "failure_kind", "history_messages",
           "prompt_window", "renderable", "run_sort_key", "text_of", "title_from"]

#: Seconds between rewrites of a reply that is still streaming.
SAVE_INTERVAL = 0.5
#: What stays on disk of a reply whose final save failed (a disk that filled as it streamed): its message, made as the
#: run began and saved as it streamed, as last saved, never marked whole (it is left ``pending``).
REPLY_LEFT_INCOMPLETE = "the reply so far stays in the thread as last saved, unfinished (its end was not saved)"
#: What stays on disk of a run whose reply was saved whole but whose record of its end was refused.
RUN_END_UNSAVED = ("the reply was saved whole in the thread, but not the run's end (its record reads as interrupted "
                   "once this server lets the run go)")
#: What stays on disk of a run whose start was refused (its record) where the disk refused taking out what it wrote.
REFUSED_START_LEFT = ("the messages this request added to the thread stay there, its reply marked failed (the disk "
                      "refused their removal too)")
#: Finished runs remembered per service.
KEEP_RUNS = 256
#: About how many bytes the events of the finished runs remembered may take in all (:meth:`RunService._remember`):
#: past it the oldest are forgotten (their records stay on disk; their streams can no longer be replayed).
KEEP_EVENT_BYTES = 64 * 1024 * 1024
#: Seconds a stop of jan lets its runs stop on their own (at their next piece; a tool call at once) before it
#: cancels the legs still going (:meth:`RunService.interrupt_all`), and the most it waits for them in all.
INTERRUPT_GRACE = 3.0
INTERRUPT_BOUND = 15.0
#: Seconds a cut-off tool call is given to end once cancelled (a provider that ignores the cancel is left behind).
CALL_CANCEL_BOUND = 5.0
#: Seconds a reader of a run whose leg is ending waits for that end to be whole (:meth:`RunService._ended_whole`).
ENDING_BOUND = 10.0
#: Seconds between looks for the cancels other processes sharing the data folder ask for (while runs are active
#: here), and between a cancelling process's looks at whether the run ended there.
CANCEL_POLL = 0.25
#: Seconds a run waits in ``requires_action`` for its tool outputs before it ``expired``, as OpenAI's (10 minutes; its
#: ``expires_at``). An expired run holds its thread no more and takes no outputs. :class:`RunService` takes another
#: (``expire_after``) for tests.
REQUIRES_ACTION_EXPIRY_S = 600.0
DEFAULT_TITLES = ("", "New Thread")
TITLE_LENGTH = 40
DEFAULT_ASSISTANT = "jan"
#: Marks the stand-in for an assistant that is not there (deleted): see :meth:`RunService._policy_of`.
_GONE = "__gone__"
#: Statuses of a run that is generating (a listener that goes away stops it, unless background).
ACTIVE_STATUSES = ("queued", "in_progress")
#: The ``stop_reason`` of a run a stop of jan cut off (:meth:`RunService.interrupt_all`, and at the next start
#: :meth:`RunService.recover_interrupted` for one a crash cut off): the run ``interrupted``, resumable.
INTERRUPTED = "interrupted"
#: Keys of a reply's metadata that say how it ended (written by ``_Execution._finish_now``); a resumed reply drops
#: them, since its earlier end (an interruption) no longer describes it.
_ENDING_KEYS = ("stop_reason", "finish_reason", "error", "error_code", "interrupted_at")
#: Statuses a run can be continued from (submit / resume).
WAITING_STATUSES = ("requires_action", "interrupted")
#: Statuses of a run that holds its thread (OpenAI's "active" run): until it leaves them no other run starts
#: there and no message is added. Jan has no ``cancelling``: a run being cancelled stays ``in_progress``, still
#: holding the thread, until its reply is saved. ``interrupted`` (cut off by a stop of jan) does not hold it:
#: nobody may ever resume such a run (the user moved on, the model is gone), and a crash must not lock a
#: conversation until someone finds the run and cancels it. Resuming one is a start like any other: refused
#: while another run holds the thread.
HOLDING_STATUSES = ("queued", "in_progress", "requires_action")
#: Statuses a run never leaves: its record need not be read again to know it holds nothing.
FINAL_STATUSES = ("completed", "incomplete", "cancelled", "failed", "expired")
#: How a model turn that ended with a finish reason of the typed path (:data:`~jan.services.types.FINISH_REASONS`)
#: ends its run, each reason explicitly: the run's status and its ``incomplete_details.reason``. ``stop`` and
#: ``tool_calls`` (calls the run does not run itself: none allowed) complete it; ``length`` (the run's
#: ``max_completion_tokens`` cut the reply) leaves it ``incomplete``, as OpenAI's, and so does a remote upstream's
#: ``content_filter`` (its filter withheld the rest: the Responses API's reason for it). ``cancelled`` (the server cut
#: the turn off: the model was stopped or unloaded under it) is no end of a turn: the run ``failed``, its
#: ``last_error`` OpenAI's ``server_error``, unless the user's cancel stopped it (``cancelled``, as any cancel):
#: :func:`cut_turn_error`. A reason jan does not know fails the run too, never passes for an end.
TURN_ENDS: Mapping[str, tuple[str, str | None]] = {
    "stop": ("completed", None), "tool_calls": ("completed", None),
    "length": ("incomplete", COMPLETION_BUDGET), "content_filter": ("incomplete", "content_filter")}


@dataclass(frozen=True)
class RunRequest:
    """What a front end asks of a run (``None``: not given — the thread/assistant decide)."""

    thread_id: str
    assistant_id: str | None = None
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    additional_messages: tuple[dict[str, Any], ...] = ()  # as the conversational extension creates them
    metadata: dict[str, Any] | None = None
    last_messages: int | None = None  # truncation: only the last N messages of the history
    max_prompt_tokens: int | None = None  # the prompt tokens all the run's model turns together may use
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None  # the run's, else the assistant's (OpenAI's reasoning_effort)
    sampling: SamplingOptions = SamplingOptions()
    tools: tuple[dict[str, Any], ...] | None = None  # the run's own tools (OpenAI shapes), over the thread's
    tool_choice: Any = None  # the first model turn's: "auto" | "none" | "required" | {"type": "function", ...}
    tool_policy: dict[str, Any] | None = None  # {"auto_approve", "max_steps", "timeout", "tool_choice"}
    parallel_tool_calls: bool | None = None
    background: bool = False  # goes on when its listener goes away


# A run's stream keeps its text deltas compactly (jan.services.event_log): a message's text pieces and a tool call's
# argument pieces, each made again as published (_Execution._relay, _publish_call_delta) when read.
def _split_event(event: tuple[str, Any]) -> tuple[Any, str, None] | None:
    name, data = event
    try:
        if name == "thread.message.delta":
            [part] = data["delta"]["content"]
            return ("m", data["id"], part["index"], part["type"]), part["text"]["value"], None
        if name == "thread.run.step.delta":
            [call] = data["delta"]["step_details"]["tool_calls"]
            return ("s", data["id"], call["index"]), call["function"]["arguments"], None
    except (KeyError, TypeError, ValueError):
        pass
    return None


def _join_event(key: Any, text: str, _number: None) -> tuple[str, Any]:
    if key[0] == "m":
        _, message_id, index, kind = key
        return "thread.message.delta", {"id": message_id, "object": "thread.message.delta", "delta": {"content": [
            {"index": index, "type": kind, "text": {"value": text, "annotations": []}}]}}
    _, step_id, place = key
    return "thread.run.step.delta", {"id": step_id, "object": "thread.run.step.delta", "delta": {
        "step_details": {"type": "tool_calls", "tool_calls": [{"index": place, "type": "function",
                                                               "function": {"arguments": text}}]}}}


def run_events() -> EventLog[tuple[str, Any]]:
    """An empty stream of a run's events (``Run.events``)."""
    return EventLog(_split_event, _join_event)


def _ulid_of(value: Any, prefix: str) -> str:
    """The ULID an id made by the data folder's clock ends in (``run_<ULID>``, ``msg_<ULID>``), else ``""``. ULIDs
    compare as text in the order they were made, within one millisecond too."""
    return re.split(r"[_-]", value)[-1] if ulid_millis(value, prefix) is not None else ""


def run_sort_key(record: Mapping[str, Any]) -> tuple[int, str, str]:
    """Where a run lists among its thread's (oldest first): by ``created_at`` (seconds), within one second by the ULID
    its id ends in (``run_<ULID>``, made from the data folder's clock), ties by id. A run of an older jan (``run_``
    and random hex) has its reply's (``msg_<ULID>``), or none. Not the reply's before the run's own: a run that wrote
    no reply (one waiting for tool outputs, one cancelled while queued) had none, and listed before a run made earlier
    in its second (the web page took the run it left waiting for the last but one, and did not cancel it)."""
    created = record.get("created_at")
    made = _ulid_of(record.get("id"), "run_") or _ulid_of(record.get("message_id"), "msg_")
    return created if isinstance(created, int) and not isinstance(created, bool) else 0, made, str(record.get("id"))


@dataclass(eq=False)
class Run:
    """One run's state (its wire shape is the front end's business). ``status``: queued,
    in_progress, completed, incomplete (a token limit: ``incomplete_reason``), cancelled or failed."""

    thread_id: str
    assistant_id: str
    model_id: str
    instructions: str
    parameters: dict[str, Any]
    metadata: dict[str, Any]
    #: ``run_<ULID>``: a run's id sorts by when it was made (:func:`run_sort_key`), as its ``created_at``'s seconds
    #: do not; made before ``created_at``, from the same clock, so an id never carries a later second than it.
    id: str = field(default_factory=lambda: new_id("run"))
    #: Seconds, from the data folder's clock (:func:`jan.store._util.now_s`), as every time of a run and of the
    #: messages it writes: a run's ``ended_at`` is never before its reply's ``completed_at``.
    created_at: int = field(default_factory=now_s)
    started_at: int | None = None
    ended_at: int | None = None
    #: When a run waiting in ``requires_action`` expires (:data:`REQUIRES_ACTION_EXPIRY_S`); set as it begins to wait.
    expires_at: int | None = None
    status: str = "queued"
    #: The run's usage so far: all its model turns' summed (:func:`add_usage`); None until a turn reports one.
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    last_error: dict[str, Any] | None = None
    message: dict[str, Any] | None = None
    stop_reason: str | None = None
    # tools
    run_tools: list[dict[str, Any]] | None = None
    tool_choice_request: Any = None
    tool_policy: dict[str, Any] | None = None
    tool_specs: list[dict[str, Any]] = field(default_factory=list)
    parallel_tool_calls: bool | None = None
    step: int = 0
    pending: list[PendingCall] = field(default_factory=list)
    #: Calls of a tool-calling turn that a stop of jan left without results: a resumed leg runs (or asks) them first.
    resume_calls: list[PendingCall] = field(default_factory=list)
    #: The calls a ``submit_tool_outputs`` claimed the run with and their answers: its leg runs them first
    #: (:meth:`_Execution.answer_calls`), so that the request is answered before a slow tool runs.
    answers: tuple[list[PendingCall], dict[str, ToolDecision]] | None = None
    #: What the run did, oldest first (:mod:`jan.services.run_steps`): saved with its record.
    steps: list[RunStep] = field(default_factory=list)
    #: ``message`` is saved but the stream has not told it yet (``_Execution.announce_message``): it is a turn's
    #: that has written nothing so far (a leg that readies the turn hands it to the leg that runs it).
    unannounced: bool = False
    #: Tool entries of the run that give it nothing now (a server disabled or down), as its leg found them.
    warnings: list[str] = field(default_factory=list)
    #: The assistant's ``tools`` and ``tool_policy`` as the run started with them: its later legs' if the assistant
    #: is deleted meanwhile.
    assistant_tools: dict[str, Any] | None = None
    background: bool = False
    # this leg answers no listener (a run not streamed: polled): queued work, as background, for it nobody waits
    detached: bool = False
    response_format: dict[str, Any] | None = None  # as recorded (see ResponseFormat)
    last_messages: int | None = None
    reasoning_effort: str | None = None
    #: The prompt tokens all the run's model turns together may use: spent on ``usage["prompt_tokens"]``.
    max_prompt_tokens: int | None = None
    #: Why an ``incomplete`` run is: ``"max_completion_tokens"`` or ``"max_prompt_tokens"`` (OpenAI's reasons).
    incomplete_reason: str | None = None
    # the stream, for listeners that re-attach (its text deltas kept compactly: :func:`run_events`)
    events: EventLog[tuple[str, Any]] = field(default_factory=lambda: run_events())
    task: asyncio.Task | None = None
    #: The model turn being made here: its handle, to end its thinking (:meth:`RunService.end_reasoning`).
    control: GenerationControl | None = None
    _signal: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def publish(self, event: str, data: Any) -> None:
        """Add an event (OpenAI's assistant-stream names and objects) to the run's stream; wake listeners."""
        self.events.append((event, data))
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    async def next_events(self, after: int) -> list[tuple[int, str, Any]]:
        """Events numbered above ``after`` (waiting for one unless the leg is over)."""
        while len(self.events) <= after + 1 and not self.leg_over(after):
            await self._signal.wait()
        return [(i, *self.events[i]) for i in range(after + 1, len(self.events))]

    def leg_over(self, after: int) -> bool:
        """Nothing more will come for now: the run is not generating and every event up to its ``done`` was seen.

        A run known only from its record (after a restart) has no events: it is over at once.
        """
        if self.active or after < len(self.events) - 1:
            return False
        return not self.events or self.events[-1][0] == "done" or self.task is None

    def open_steps(self) -> list[RunStep]:
        return [step for step in self.steps if step.open]

    def end_steps(self) -> list[RunStep]:
        """End the steps still open as the run ended (its status; a failed run's ``last_error``): its turn and its
        tool calls are over. Returns them, for their events."""
        status = end_status(self.status)
        ended = self.open_steps()
        for step in ended:
            step.end(status, last_error=self.last_error if status == "failed" else None, at=self.ended_at)
        return ended

    def publish_step(self, step: RunStep, *events: str) -> None:
        """Publish ``thread.run.step.<event>`` for each of ``events`` with the step as it stands now."""
        for event in events:
            self.publish(f"thread.run.step.{event}", step.snapshot())

    def required_action(self) -> dict[str, Any] | None:
        """OpenAI's ``required_action`` while the run waits for the user."""
        if self.status != "requires_action" or not self.pending:
            return None
        return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [c.to_dict() for c in self.pending]}}


# -- helpers -----------------------------------------------------------------
@dataclass(frozen=True)
class PartialReply:
    """A reply an interrupted leg was cut off in, which the resumed leg continues (:meth:`RunService.resume`):
    ``turn`` the assistant turn the prompt ends in — its text, and its thinking as ``reasoning`` (a reply cut off
    while thinking holds only that: the prompt then ends inside the open thought, :func:`history_messages`) — and
    ``reasoning_ms`` how long that thinking took (its saved ``duration_ms``; None where none was saved)."""

    turn: ChatMessage
    reasoning_ms: int | None = None


def partial_reply(message: dict[str, Any]) -> PartialReply | None:
    """What a stored reply cut off by a stop of jan holds to continue (:class:`PartialReply`: its text and its
    thinking), or None for one that holds neither (the resumed leg writes it afresh)."""
    text, reasoning = text_of(message), reasoning_of(message)
    if not text and not reasoning:
        return None
    ms = next((p.get("duration_ms") for p in message.get("content") or []
               if isinstance(p, dict) and p.get("type") == "reasoning"), None)
    return PartialReply(ChatMessage("assistant", (TextPart(text),) if text else (), reasoning=reasoning or None),
                        ms if isinstance(ms, int) and not isinstance(ms, bool) else None)


def first_user_message(messages: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The message a thread is titled after (:func:`title_from`): its first user message with text, or None."""
    return next((m for m in messages if m.get("role") == "user" and text_of(m).strip()), None)


def title_from(text: str, limit: int = TITLE_LENGTH) -> str:
    """A thread title from a message: whitespace collapsed, cut at a word boundary near ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    cut = cut.rsplit(" ", 1)[0] if " " in cut else text[:limit]
    return cut.rstrip(" ,.;:-") + "…"


def history_messages(history: list[dict[str, Any]], system: str,
                     files: Mapping[str, ImagePart | DocumentPart] | None = None, *,
                     continued: ChatMessage | None = None) -> tuple[ChatMessage, ...]:
    """The thread as typed chat messages (finished turns, tool calls and results), the system message first,
    made renderable by a chat template that insists on user/assistant alternation (:func:`renderable`).

    ``files`` holds the thread's image files and attached documents' text by id (:func:`thread_files`); a user
    turn's ``image_file`` parts become :class:`ImagePart` s from it, in the order they were sent, and a turn's
    attachments (any role's) :class:`DocumentPart` s before them (titled with the upload's file name; the chat service reads
    them as text, as it reads every dialect's documents). ``continued``: a partial reply the turn continues (its
    text and its thinking, :func:`partial_reply`), the final message: one cut off while thinking is continued inside
    its thought, as every dialect's thinking-only final turn is (:func:`jan.services.types.thought_prefill`)."""
    messages = chat_messages(history, system)
    if continued is not None:
        messages.append(continued.openai_dict(continued.text))
    return tuple(_typed_message(m, files or {}) for m in renderable(messages))


def _in_prompt(message: dict[str, Any]) -> bool:
    """Whether a stored message has a place in a run's prompt (:func:`chat_messages`' rules: not ``pending`` or
    ``error``, not a reply cut off by a restart, and with content: an empty reply — a run cancelled before its
    first token, a turn refused for a token limit — has none). A tool result counts as long as it is finished
    (whether its call is in the prompt is :func:`chat_messages`' to tell)."""
    if message.get("role") == "tool":
        return message.get("status") not in ("pending", "error")
    return bool(chat_messages([message], ""))


async def window_messages(store: ConversationalExtension, thread_id: str, history: list[dict[str, Any]],
                          last_messages: int | None, system: str,
                          continued: ChatMessage | None = None,
                          fetch_image: FetchImage | None = None) -> tuple[ChatMessage, ...]:
    """A run's prompt of the thread's ``history``: its window (:func:`prompt_window`) as typed messages
    (:func:`history_messages`), its files read from ``store``. In a worker thread for a long thread or one keeping
    an MCP result's images (:func:`jan.services.kept_items.heavy_history`): reading them decodes each kept image,
    which stalled every other request on the event loop."""
    from jan.services.kept_items import heavy_history

    heavy = heavy_history(history)
    window = await asyncio.to_thread(prompt_window, history, last_messages) if heavy \
        else prompt_window(history, last_messages)
    files = await thread_files(store, thread_id, window, fetch_image)
    if heavy:
        return await asyncio.to_thread(lambda: history_messages(window, system, files, continued=continued))
    return history_messages(window, system, files, continued=continued)


def prompt_window(history: list[dict[str, Any]], last_messages: int | None = None) -> list[dict[str, Any]]:
    """The stored messages a run's prompt is made of: those with a place in it (:func:`_in_prompt`), and with
    ``last_messages`` (OpenAI's ``truncation_strategy``: "the number of most recent messages from the thread when
    constructing the context for the run") the last N of them.

    The N are counted among the messages that reach the prompt, so an empty reply (which never does) does not
    take a place. A window that holds no user turn (e.g. ``last_messages: 1`` on a thread ending with a reply, or
    a run's own tool rounds) is widened back to the latest user turn before it: a conversation without one cannot
    be rendered by many chat templates (Mistral's, Llama 2's, Gemma's refuse it) and the model would have nothing
    to answer; this keeps the N most recent messages, with the least added that makes them a prompt. A window
    cut out of a longer thread loses the turns before its first user turn (replies whose questions it left out):
    only a thread's own opening turns (a seeded greeting) are kept before its first question (:func:`renderable`)."""
    visible = [m for m in history if _in_prompt(m)]
    # an MCP server's listing (a Responses turn's, kept as its item): no turn, never counted, always kept: a call
    # read after it is named as the listing offered its tool (jan.services.kept_items.listed_names)
    listings = [i for i, m in enumerate(history) if _is_listing(m)]
    if not last_messages or len(visible) <= last_messages:
        return _with_listings(history, visible, listings)
    start = len(visible) - last_messages
    if not any(m.get("role") == "user" for m in visible[start:]):
        start = next((i for i in range(start - 1, -1, -1) if visible[i].get("role") == "user"), start)
    # (the window begins mid-conversation: a reply before its first question answers one it left out)
    start = next((i for i in range(start, len(visible)) if visible[i].get("role") == "user"), start)
    return _with_listings(history, visible[start:], listings)


def _is_listing(message: dict[str, Any]) -> bool:
    from jan.services.kept_items import kept_item

    item = kept_item(message)
    return item is not None and item.get("type") == "mcp_list_tools"


def _with_listings(history: list[dict[str, Any]], window: list[dict[str, Any]],
                   listings: list[int]) -> list[dict[str, Any]]:
    """``window`` (messages of ``history``, in order) with the listing messages ``listings`` (their indices) in
    their places."""
    if not listings:
        return window
    kept = {id(m) for m in window} | {id(history[i]) for i in listings}
    return [m for m in history if id(m) in kept]


def renderable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages (OpenAI dicts, as :func:`chat_messages` writes them) as a strict chat template takes them,
    nothing said lost: assistant turns before the first user turn (a greeting the client seeded the thread with)
    stay, as a chat completion keeps them (the chat template puts an empty user turn before them where it asks for
    one: :attr:`~jan.templates.chat.ChatTemplate.user_first`); a tool result before the first user turn with no
    call before it is dropped; and consecutive messages of one role are joined into one turn (two user messages sent before a run, a reply
    next to a cut one whose turn left no reply): user and assistant texts with a blank line between, images kept in
    order. An assistant turn with tool calls and the tool results after it are never joined nor moved; a user turn
    right after a tool round gets an empty assistant turn before it."""
    out: list[dict[str, Any]] = []
    started = False
    for message in messages:
        role = message.get("role")
        if role == "user":
            started = True
        elif role == "tool" and not started and not (out and (out[-1].get("tool_calls") or out[-1]["role"] == "tool")):
            continue  # a result whose call is in no turn before it: nothing to read it against
        if out and _joinable(out[-1], message):
            out[-1] = joined_turn(out[-1], message)
            continue
        if role == "user" and out and out[-1].get("role") == "tool":
            # A tool round no reply answered (the run ended after it: a token limit, a cancel, a failure). Mistral's
            # templates leave tool rounds out of their alternation check, so the user turn after it reads as a
            # second one in a row: an empty reply closes the round, as the run's own reply was empty.
            out.append({"role": "assistant", "content": [{"type": "text", "text": ""}]})
        out.append(message)
    return out


def _joinable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("role") == b.get("role") and a.get("role") in ("user", "assistant", "system", "developer")
            and not a.get("tool_calls") and not b.get("tool_calls"))


async def thread_files(store: ConversationalExtension, thread_id: str, history: list[dict[str, Any]],
                       fetch_image: FetchImage | None = None) -> dict[str, ImagePart | DocumentPart]:
    """The image files and the attached documents' text the thread's messages reference, read from the store (so
    re-running a thread re-sends its images and re-reads its documents; a document's upload may be long deleted),
    and the images its messages link to (an ``image_url`` part whose URL is no ``data:`` URL: one the store was
    handed as a link), keyed by their URL and read with ``fetch_image`` (the server's ``--allow-media-from``
    fetcher, as a chat completion's: :func:`jan.services.thread_turns.fetch_linked_images`). Raises
    :class:`RequestError` (``missing_file``) for a file that is gone, and :class:`jan.MediaError` (``not_allowed``:
    no ``fetch_image`` or a URL it may not fetch; ``fetch_failed``, ``too_large``, ``unsupported_format``) for a
    link, naming the message and the part (``message msg_... content[i].image_url.url``): a run never leaves a linked image out of its prompt unsaid."""
    out: dict[str, ImagePart | DocumentPart] = {}
    for message in history:
        wanted = [*image_files_of(message), *(d["file_id"] for d in documents_of(message))]
        for file_id in wanted:
            if file_id in out:
                continue
            try:
                data, mime = await store.read_file(thread_id, file_id)
            except NotFoundError:
                kind = "image" if file_id.startswith("img-") else "attached document"
                raise RequestError(f"message {message.get('id')}: its {kind} {file_id} is no longer in the thread",
                                   param="thread_id", code="missing_file") from None
            # a document's text (UTF-8, as the server read it from the upload); its title is the message's
            out[file_id] = ImagePart(data, mime) if file_id.startswith("img-") else DocumentPart(data, "text/plain")
    out.update(await fetch_linked_images(history, fetch_image))
    return out


def _media_part_named(exc: MediaError, window: list[dict[str, Any]], added: Sequence[str]) -> MediaError:
    """A run's ``no_projector`` refusal (said of the prompt's ``messages[i]``, which a run's client never sent) named
    as the thread has it: the first image part of the run's window, ``additional_messages[k].content[i]...`` for one
    this request added (``added``: their ids, in order), ``message <id> content[i]...`` for one stored before."""
    if exc.reason != "no_projector" or "image" not in str(exc):  # (an image's refusal: audio is not kept in threads)
        return exc
    for message in window:
        content = message.get("content")
        if message.get("role") == "tool" or not isinstance(content, list):  # (a tool's images are no refusal)
            continue
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("image_url", "image_file"):
                continue
            field = "image_file.file_id" if kind == "image_file" else "image_url.url"
            if message.get("id") in added:  # (written from the body's image_url: the store keeps its index)
                param = f"additional_messages[{list(added).index(message['id'])}].content[{i}].image_url.url"
            else:
                param = f"message {message.get('id')} content[{i}].{field}"
            text = str(exc).split(": ", 1)[1] if str(exc).startswith("messages[") else str(exc)
            return MediaError(f"{param}: {text}", reason=exc.reason, param=param)
    return exc


def _typed_part(part: dict[str, Any],
                files: Mapping[str, ImagePart | DocumentPart]) -> TextPart | ImagePart | DocumentPart | None:
    """One of a turn's parts (:func:`chat_messages`' :func:`~jan.services.tool_loop.turn_dict`) as a typed part;
    None for a file the thread does not have (left out, as it always was for images)."""
    if part["type"] == "text":  # (third-party text stays so: its mark, jan.services.untrusted.text_part_dict)
        return text_part_of(part["text"], part)
    if part["type"] == "document":
        document = files.get(part["document"]["file_id"])
        return replace(document, title=part["document"].get("title")) if isinstance(document, DocumentPart) else None
    if part["type"] == "image_url":  # (an image a Responses conversation keeps in its message, as a data: URL)
        from jan.services.thread_turns import data_url_image

        url = str(part["image_url"].get("url") or "")
        image = files.get(url)  # a link's image, fetched by thread_files
        return image if isinstance(image, ImagePart) else data_url_image(url)
    return files.get(part["image_file"]["file_id"])


def _tool_part(part: dict[str, Any], files: Mapping[str, ImagePart | DocumentPart]) -> TextPart | ImagePart | None:
    """One of a tool result's parts as a typed part: its text third-party text, its image a tool's
    (:class:`~jan.services.tool_images.ToolImagePart`: a model that cannot see it reads its note)."""
    from jan.services.tool_images import ToolImagePart

    if part["type"] == "text":
        return UntrustedTextPart(part["text"], source="tool")
    if part["type"] == "image_url":  # (an MCP call's image a Responses conversation keeps with its item)
        from jan.services.kept_items import result_parts_of

        return next(iter(result_parts_of([part])), None)
    image = _typed_part(part, files)
    return ToolImagePart(image.data, image.mime_type) if isinstance(image, ImagePart) else None


def _typed_message(message: dict[str, Any], files: Mapping[str, ImagePart | DocumentPart]) -> ChatMessage:
    """One of :func:`chat_messages`' OpenAI dicts as a typed message (earlier thinking goes back
    with its turn as ``reasoning``; the chat template keeps or drops it)."""
    content = message.get("content")
    calls = tuple(ToolCall(id=c["id"], name=(c.get("function") or {}).get("name", ""),
                           arguments=(c.get("function") or {}).get("arguments") or "{}")
                  for c in message.get("tool_calls") or ())
    if isinstance(content, list):  # a turn with images or attached documents; a tool's result with images
        read = _tool_part if message["role"] == "tool" else _typed_part
        parts: tuple[Any, ...] = tuple(p for p in (read(part, files) for part in content) if p is not None)
    else:
        # a tool's output is third-party text: a local prompt tokenizes it without special tokens
        # (jan.services.untrusted)
        text = content or ""
        parts = ((UntrustedTextPart(text, source="tool") if message["role"] == "tool" else TextPart(text)),) \
            if content else ()
    return ChatMessage(role=message["role"], content=parts, tool_calls=calls,
                       tool_call_id=message.get("tool_call_id"), name=message.get("name"),
                       reasoning=message.get("reasoning_content") or None)


def _tool_choice(value: Any) -> Any:
    """A run's ``tool_choice`` (OpenAI's shapes) as the typed request takes it."""
    if isinstance(value, dict) and value.get("type") == "function":
        return NamedToolChoice((value.get("function") or {}).get("name") or "")
    return value if value in ("auto", "none", "required") else None


def _check_tool_choice(choice: Any, policy: ToolPolicy) -> None:
    """A run's first-turn ``tool_choice`` (the request's, else the stored ``tool_policy``'s): one of OpenAI's
    shapes, naming a tool the run has; :class:`RequestError` (400) before anything is written otherwise,
    rather than a choice quietly read as ``auto`` or a run that fails at its first turn."""
    if choice is None or choice in ("auto", "none"):
        return
    if choice == "required":
        if not policy:
            raise RequestError("tool_choice 'required' needs tools: the run has none", param="tool_choice",
                               code="invalid_value")
        return
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) and choice.get("type") == "function" \
        and isinstance(choice.get("function"), dict) else None
    if not isinstance(name, str):
        raise RequestError(f"tool_choice: expected 'auto', 'none', 'required' or {{\"type\": \"function\", "
                           f"\"function\": {{\"name\": ...}}}}, got {choice!r}", param="tool_choice",
                           code="invalid_value")
    if name not in policy.entries:
        have = ", ".join(sorted(policy.entries)) or "none"
        # an MCP server's tool that is missing because its server is down: say why (its start's error), not
        # only that the tool is absent, which sends the user looking for a typo
        why = policy.unavailable.get(name.split("__", 1)[0]) if "__" in name else None
        why = why or policy.left_out.get(name)
        raise RequestError(f"tool_choice names '{name}', which is not among the run's tools ({have})"
                           + (f": {why}" if why else ""), param="tool_choice", code="invalid_value")


def _content(text: str, reasoning: str = "", reasoning_ms: int | None = None) -> list[dict[str, Any]]:
    """A reply's content parts: its thinking (a ``reasoning`` part, with how long it took) before its text."""
    parts: list[dict[str, Any]] = []
    if reasoning:
        part: dict[str, Any] = {"type": "reasoning", "text": {"value": reasoning, "annotations": []}}
        if reasoning_ms is not None:
            part["duration_ms"] = reasoning_ms
        parts.append(part)
    if text:
        parts.append({"type": "text", "text": {"value": text, "annotations": []}})
    return parts


def _thread_assistant(thread: dict[str, Any]) -> dict[str, Any]:
    entries = thread.get("assistants") or []
    return entries[0] if entries and isinstance(entries[0], dict) else {}


def _thread_model(entry: dict[str, Any]) -> dict[str, Any]:
    model = entry.get("model")
    if isinstance(model, str):
        return {"id": model}
    return model if isinstance(model, dict) else {}


def usage_fields(usage: Usage, reasoning_tokens: int = 0) -> dict[str, Any]:
    """A run's / step's / message's ``usage``: the turn's :class:`TokenCounts` in OpenAI's chat names, as
    ``/v1/chat/completions`` tells the same generation's (``prompt_tokens_details.cached_tokens``,
    ``completion_tokens_details.reasoning_tokens``: :attr:`ChatDelta.reasoning_tokens`)."""
    return token_counts(usage, reasoning_tokens).openai_chat()


#: The counts of a usage's ``*_details`` summed across turns by :func:`add_usage`.
_DETAILS = {"prompt_tokens_details": ("cached_tokens",),
            "completion_tokens_details": ("reasoning_tokens", "accepted_prediction_tokens",
                                          "rejected_prediction_tokens")}


def add_usage(total: dict[str, Any] | None, turn: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's usage after one more model turn's (both as :func:`usage_fields` writes them): each count summed, as
    OpenAI's run ``usage`` counts "over the course of the run", the details' too (cached and reasoning tokens). A
    count no turn knew stays None, a detail none told is left out (a cut reply's estimate may not know its
    prompt); ``estimated`` when any turn's count was."""
    if turn is None:
        return total
    if total is None:
        return {**turn, **{key: dict(turn[key]) for key in _DETAILS if isinstance(turn.get(key), dict)}}
    out: dict[str, Any] = {}
    for key in ("prompt_tokens", "completion_tokens"):
        a, b = total.get(key), turn.get(key)
        out[key] = None if a is None and b is None else (a or 0) + (b or 0)
    out["total_tokens"] = None if out["prompt_tokens"] is None or out["completion_tokens"] is None \
        else out["prompt_tokens"] + out["completion_tokens"]
    for key, names in _DETAILS.items():
        parts = [u.get(key) if isinstance(u.get(key), dict) else {} for u in (total, turn)]
        summed = {name: sum(p.get(name) or 0 for p in parts) for name in names
                  if any(p.get(name) is not None for p in parts)}
        if summed:
            out[key] = summed
    if total.get("estimated") or turn.get("estimated"):
        out["estimated"] = True
    return out


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """(message, code) of a failure, as a run records it; front ends may pass their own mapping."""
    return str(exc) or type(exc).__name__, getattr(exc, "code", None)


@dataclass(frozen=True)
class RunFailure:
    """Why a run failed: jan's ``message`` and ``code`` (kept in the reply's ``metadata.error``/``error_code``)
    and ``kind``, OpenAI's code for it (its ``last_error.code``)."""

    message: str
    code: str | None
    kind: str = "server_error"

    def last_error(self) -> dict[str, str]:
        """The run's (and its failed steps') ``last_error``: :func:`jan.services.run_steps.last_error`."""
        return last_error(self.message, self.code, self.kind)


def cut_turn_error(finish_reason: str | None) -> tuple[str, str] | None:
    """``(message, code)`` of the failure a model turn that ended with ``finish_reason`` is (its run ``failed``
    with that ``last_error``), None for a turn that ended (:data:`TURN_ENDS`; None, a stream that told none, reads
    as ``stop``): ``cancelled`` (the server cut it off) is a server-side failure, OpenAI's ``server_error``, as a
    reason jan does not know is."""
    reason = finish_reason or "stop"
    if reason in TURN_ENDS:
        return None
    if reason == "cancelled":
        return str(GenerationCancelledError()), "server_error"
    return f"the model turn ended with finish_reason {reason!r}, which jan does not know", "server_error"


def _weak_handler(owner: Any, method: str) -> Callable[[Any], Awaitable[None]]:
    """An event handler calling ``owner.method`` that does not keep ``owner`` alive (a service made and dropped,
    as tests do, leaves a handler that does nothing rather than a service the bus holds for good)."""
    ref = weakref.ref(owner)

    async def handler(event: Any) -> None:
        target = ref()
        if target is not None:
            await getattr(target, method)(event)

    return handler


async def _unless_stopped(run: Run, work: Awaitable[Any]) -> Any:
    """Await ``work`` (a run's tool calls) unless the run is asked to stop first (a cancel, a stop of jan): then
    the work is cancelled (an MCP call is cut off) and :class:`_Stop` raised, with nothing of it kept. A tool
    call gives no pieces at which a run could notice a stop as a model turn does, and a stop of jan must not
    wait for a slow tool, nor let the tool's failure when its server stops be saved as its result."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(run.cancel_requested.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopping.cancel()
    if task.done():  # (done as the stop came: its results are kept, the stop is noticed next)
        return task.result()
    task.cancel()
    await asyncio.wait([task], timeout=CALL_CANCEL_BOUND)
    raise _Stop(run.stop_reason or "cancelled")


def _publish_call_delta(run: Run, step: RunStep, place: int, fields: dict[str, Any]) -> None:
    """Publish a ``thread.run.step.delta`` of ``step``: a piece of its call number ``place`` (OpenAI's
    ``RunStepDelta`` with one ``FunctionToolCallDelta``)."""
    run.publish("thread.run.step.delta", {"id": step.id, "object": "thread.run.step.delta", "delta": {
        "step_details": {"type": "tool_calls", "tool_calls": [{"index": place, "type": "function", **fields}]}}})


def _announce_calls(run: Run, step: RunStep) -> None:
    """Tell a ``tool_calls`` step whose calls were not streamed (a resumed leg runs again the calls a stop cut off)
    as a streamed one is told (:meth:`_Execution._relay_calls`): created with no calls, then each call's head and
    arguments as deltas, so a stream's listener builds the calls alike."""
    told = step.snapshot()
    told.tool_calls = []
    run.publish("thread.run.step.created", told)
    run.publish("thread.run.step.in_progress", told)
    for place, call in enumerate(step.tool_calls):
        function = call.get("function") or {}
        _publish_call_delta(run, step, place, {"id": call.get("id") or "", "function": {
            "name": function.get("name") or "", "arguments": "", "output": None}})
        if function.get("arguments"):
            _publish_call_delta(run, step, place, {"function": {"arguments": function["arguments"]}})


def _publish_interrupted(run: Run) -> None:
    """Tell a run's stream that a stop of jan interrupted it (no OpenAI run event says so: the stream's ``error``
    event, an ErrorObject, does), then end the leg's stream."""
    if run.status == "requires_action":
        what = "it waits for its tool calls to be answered again (POST .../submit_tool_outputs once jan is back)"
    else:
        what = ("it was interrupted with the reply it had (resume it once jan is back: "
                "POST /v1/threads/{thread_id}/runs/{run_id}/resume)")
    run.publish("error", {"code": "server_shutdown", "type": "server_error", "param": None,
                          "message": f"The server is shutting down; run '{run.id}': {what}."})
    run.publish("done", "[DONE]")


class _Stop(Exception):
    """The run was cut off (``reason``: client disconnected / cancelled)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


#: ``await on_delta(piece, kind)`` for each new piece of text (``kind``: ``"text"``, or
#: ``"reasoning"`` for the model's thinking); raising ``ConnectionError`` means the listener (an
#: HTTP client) is gone and stops the run.
OnDelta = Callable[[str, str], Awaitable[None]]


async def _ignore(_piece: str, _kind: str = "text") -> None:
    return None


def run_record(run: Run) -> dict[str, Any]:
    """What is saved of a run (see :mod:`jan.services.run_records`): its state and what continuing it needs."""
    return {
        "id": run.id, "object": "thread.run", "thread_id": run.thread_id, "assistant_id": run.assistant_id,
        "model": run.model_id, "instructions": run.instructions, "parameters": run.parameters,
        "metadata": run.metadata, "created_at": run.created_at, "started_at": run.started_at,
        "ended_at": run.ended_at, "expires_at": run.expires_at, "status": run.status, "usage": run.usage, "finish_reason": run.finish_reason,
        "last_error": run.last_error, "stop_reason": run.stop_reason,
        "message_id": run.message["id"] if run.message else None,
        "run_tools": run.run_tools, "tool_choice_request": run.tool_choice_request, "tool_policy": run.tool_policy,
        "tools": run.tool_specs, "parallel_tool_calls": run.parallel_tool_calls, "step": run.step,
        "pending": [c.to_dict() for c in run.pending], "background": run.background,
        "response_format": run.response_format, "last_messages": run.last_messages,
        "reasoning_effort": run.reasoning_effort, "max_prompt_tokens": run.max_prompt_tokens,
        "incomplete_reason": run.incomplete_reason, "steps": [step.to_record() for step in run.steps],
        "warnings": run.warnings, "assistant_tools": run.assistant_tools,
    }


def _reasoning(effort: str | None) -> ReasoningOptions | None:
    """A run's ``reasoning_effort`` as the chat path takes it (``"none"`` turns thinking off)."""
    return ReasoningOptions(effort=effort) if effort else None


def run_truncation(last_messages: int | None, max_prompt_tokens: int | None = None) -> Truncation:
    """A run's ``truncation_strategy`` for its chat turns: ``auto`` (OpenAI's default) drops the oldest turns of a
    thread longer than the context; ``last_messages`` keeps exactly the last N messages, and no more is dropped —
    unless the run has a ``max_prompt_tokens`` budget: its best effort to stay within it (OpenAI's promise) drops
    the oldest of those N too when they do not fit what is left of it."""
    return "disabled" if last_messages and max_prompt_tokens is None else "auto"


def run_from_record(record: dict[str, Any]) -> Run:
    """A :class:`Run` from its record (a run of an earlier process)."""
    run = Run(record["thread_id"], record.get("assistant_id") or DEFAULT_ASSISTANT, record.get("model") or "",
              record.get("instructions") or "", record.get("parameters") or {}, record.get("metadata") or {},
              id=record["id"])
    run.created_at = record.get("created_at") or run.created_at
    run.started_at, run.ended_at = record.get("started_at"), record.get("ended_at")
    run.expires_at = record.get("expires_at") if isinstance(record.get("expires_at"), int) else None
    run.status = record.get("status") or "interrupted"
    run.usage, run.finish_reason = record.get("usage"), record.get("finish_reason")
    run.last_error = openai_last_error(record.get("last_error"))  # a record of an older jan: jan's own code
    run.stop_reason = record.get("stop_reason")
    run.run_tools, run.tool_choice_request = record.get("run_tools"), record.get("tool_choice_request")
    run.tool_policy, run.tool_specs = record.get("tool_policy"), record.get("tools") or []
    run.parallel_tool_calls, run.step = record.get("parallel_tool_calls"), int(record.get("step") or 0)
    run.pending = [PendingCall.from_dict(c) for c in record.get("pending") or []]
    run.background = bool(record.get("background"))
    run.response_format, run.last_messages = record.get("response_format"), record.get("last_messages")
    run.reasoning_effort = record.get("reasoning_effort")
    run.max_prompt_tokens = record.get("max_prompt_tokens")
    # a record of an older jan has no reason: its only limit then was max_completion_tokens
    run.incomplete_reason = record.get("incomplete_reason") or ("max_completion_tokens" if run.status == "incomplete" else None)
    run.steps = [RunStep.from_record(s) for s in record.get("steps") or () if isinstance(s, dict) and s.get("id")]
    run.warnings = [str(w) for w in record.get("warnings") or ()]
    run.assistant_tools = record.get("assistant_tools") if isinstance(record.get("assistant_tools"), dict) else None
    if record.get("message_id"):
        run.message = {"id": record["message_id"]}
    if not run.active:
        run.finished.set()
    return run


def _format_record(fmt: ResponseFormat | None) -> dict[str, Any] | None:
    if fmt is None:
        return None
    return {"type": fmt.type, "schema": dict(fmt.schema) if fmt.schema else None, "name": fmt.name, "strict": fmt.strict}


def _format_of(record: dict[str, Any] | None) -> ResponseFormat | None:
    if not record:
        return None
    return ResponseFormat(record.get("type") or "text", schema=record.get("schema"), name=record.get("name"),
                          strict=record.get("strict"))


async def _whole(end: Awaitable[None]) -> None:
    """Run ``end`` — a leg's end: the run's final status saved, its events told, ``finished`` set — to its end even
    when the leg is cancelled meanwhile (a cancel that arrives as the run ends by itself). Cut midway, it left the
    run ended in memory, ``in_progress`` on disk with its lease held, and ``finished`` unset: the cancel waited its
    30 s, and after a restart the finished run read ``interrupted``. The cancel is raised once ``end`` is done."""
    task = asyncio.ensure_future(end)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


class RunService(Held):
    """Prepares, executes, remembers, continues and cancels runs. ``describe_error`` maps a failure
    to the (message, code) recorded in the message and the run."""

    held = "the runs in progress, their tasks and locks"

    def __init__(self, manager: ExtensionManager, models: ModelService, chat: ChatService, *,
                 describe_error: Callable[[BaseException], tuple[str, str | None]] = describe_error,
                 expire_after: float = REQUIRES_ACTION_EXPIRY_S, fetch_image: FetchImage | None = None):
        self.manager = manager
        #: How a run reads an image a thread message links to (:func:`thread_files`); None: such a link is refused.
        self.fetch_image = fetch_image
        #: Seconds a run waits in ``requires_action`` before it expires (:data:`REQUIRES_ACTION_EXPIRY_S`).
        self.expire_after = expire_after
        self.models = models
        self.chat = chat
        self.describe_error = describe_error
        self.tools = ToolRegistry(manager)
        self._runs: OrderedDict[str, Run] = OrderedDict()
        #: Ids of finished runs not kept in ``_runs`` (records read finished, runs forgotten), by thread: never to
        #: hold their thread again, so :meth:`holder` does not read their records again. By thread, so that a check
        #: looks at its thread's alone (not a union of every run the server ever ended) and a deleted thread's go
        #: with it (:meth:`_thread_deleted`): one set of all grew by every run for the server's life.
        self._settled: dict[str, set[str]] = {}
        #: Set by :meth:`interrupt_all`: jan is stopping, no run starts or goes on any more.
        self._stopping = False
        #: Starts under way (:meth:`start`): a stop of jan waits for them, so that a run claimed as it began is
        #: stopped with the others, not left generating while the extensions stop under it.
        self._starts: set[asyncio.Future] = set()
        #: Looks for cancels asked by other processes while runs are active here (:meth:`_watch_cancels`).
        self._watcher: asyncio.Task | None = None
        #: Every leg's task (:meth:`launch`) and every end made for a leg that never ran (:meth:`_end_unrun_leg`),
        #: until it is done: a stop of jan waits for all of them (:meth:`interrupt_all`). A run's status reads ended
        #: before its leg has saved that end (the state first, then the reply and the record): a wait on the active
        #: runs alone left such a leg saving while the extensions stopped and the loop closed under it ("Task was
        #: destroyed but it is pending", its record still ``in_progress`` on disk).
        self._legs: set[asyncio.Future] = set()
        # A deleted thread takes its runs with it: the active ones are cancelled (their model slot freed at once)
        # and all are forgotten (404 afterwards, as their records went with the thread's folder).
        bus = getattr(manager, "bus", None)
        if bus is not None:
            self._unsubscribe_thread_deleted = bus.subscribe(ThreadDeleted, _weak_handler(self, "_thread_deleted"))

    # -- stores ------------------------------------------------------------------
    def conversations(self) -> ConversationalExtension:
        return require(self.manager, ConversationalExtension, "stores threads", "conversational")

    def assistants(self) -> AssistantExtension:
        return require(self.manager, AssistantExtension, "stores assistants", "conversational")

    # -- the registry -----------------------------------------------------------
    def get(self, thread_id: str, run_id: str) -> Run | None:
        """A run of this service in that thread, or None."""
        run = self._runs.get(run_id)
        return run if run is not None and run.thread_id == thread_id else None

    async def list_runs(self, thread_id: str) -> list[dict[str, Any]]:
        """The records of a thread's runs, oldest first: this process's runs as they stand, and those recorded
        on disk (earlier processes'; a live one whose process died reads ``interrupted``). The thread's
        ``NotFoundError`` when it does not exist."""
        await self.conversations().get_thread(thread_id)
        for run in [r for r in self._runs.values() if r.thread_id == thread_id and self.due(r)]:
            await self.expire_if_due(run)
        records = await asyncio.to_thread(thread_records, self.manager.data_folder, thread_id, set(self._runs))
        for record in records:  # an earlier process's runs, waiting past their time: expired now, as read
            if record.get("status") == "requires_action" and self.due(run_from_record(record)):
                await self.load(thread_id, record["id"])
        mine = {run.id: run_record(run) for run in self._runs.values() if run.thread_id == thread_id}
        records = await asyncio.to_thread(thread_records, self.manager.data_folder, thread_id, set(mine))
        return sorted([*mine.values(), *records], key=run_sort_key)

    def problems(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's damaged run records found so far, oldest first: ``{"path", "error", "time", "moved_to"}``
        (``moved_to`` None: each is left where it is), ``path`` relative to the data folder — what the store
        reports of its own damaged files (:meth:`jan.core.ConversationalExtension.problems`)."""
        prefix = f"threads/{thread_id}/"
        return [p.to_dict() for p in record_problems(self.manager.data_folder).snapshot() if p.path.startswith(prefix)]

    async def steps(self, thread_id: str, run_id: str) -> list[RunStep] | None:
        """A run's steps, oldest first, as they stand (its record's, for a run of an earlier process); None when
        the thread has no such run, the thread's ``NotFoundError`` when it does not exist."""
        await self.conversations().get_thread(thread_id)
        run = await self.load(thread_id, run_id)
        return None if run is None else [step.snapshot() for step in run.steps]

    async def load(self, thread_id: str, run_id: str) -> Run | None:
        """A run of this process, or one recorded on disk (an earlier process's), or None. A run whose leg is ending
        is read once that end is whole (:meth:`_ended_whole`)."""
        run = self.get(thread_id, run_id)
        if run is not None:
            await self._ended_whole(run)
        if run is None:
            record = await asyncio.to_thread(self._read_record, thread_id, run_id)
            if record is not None and record.get("thread_id") == thread_id:
                run = run_from_record(record)
                if not run.active:  # another live process's run is shown as it stands, never kept here
                    self._remember(run)
        return run if run is None else await self.expire_if_due(run)

    @staticmethod
    async def _ended_whole(run: Run) -> None:
        """Wait (a moment, at most :data:`ENDING_BOUND` s) for a leg that is ending — the run's status no longer
        active, its reply, record and events still being written (the run's state goes first, so that whoever sees
        its reply saved finds the thread free) — to end whole: a client polling the run that reads it ended then
        finds its reply saved (as OpenAI's pollers expect), and a submit never claims a run whose leg has not let
        it go."""
        if run.active or run.finished.is_set():
            return
        waiter = asyncio.ensure_future(run.finished.wait())
        try:
            await asyncio.wait([waiter], timeout=ENDING_BOUND)
        finally:
            waiter.cancel()

    def _read_record(self, thread_id: str, run_id: str) -> dict[str, Any] | None:
        record = load_record(self.manager.data_folder, thread_id, run_id)
        # A run whose process died after the start-up sweep (another process sharing the folder): interrupted now.
        return interrupt_if_orphaned(self.manager.data_folder, record) if record is not None else None

    def _remember(self, run: Run) -> None:
        self._runs[run.id] = run
        kept = sum(r.events.nbytes() for r in self._runs.values())
        while len(self._runs) > KEEP_RUNS or kept > KEEP_EVENT_BYTES:
            oldest = next((k for k, r in self._runs.items() if not r.active and r.status not in WAITING_STATUSES), None)
            if oldest is None:
                break
            kept -= self._runs[oldest].events.nbytes()
            forgotten = self._runs.pop(oldest)
            if forgotten.status in FINAL_STATUSES:  # its record need not be read to know it holds no thread
                self._settled.setdefault(forgotten.thread_id, set()).add(oldest)

    async def persist(self, run: Run, *, required: bool = False) -> OSError | ValueError | None:
        """Save the run's record (atomically; a failure is logged and returned, the run goes on). ``required``: a
        save the run cannot go on without — its claim on the thread, which names its reply — raises instead: a run
        answered ``in_progress`` with no record on disk (a full disk, a read-only folder) was held by no process's
        check and lost to any crash, so it fails now, its request told why."""
        try:
            await asyncio.to_thread(save_record, self.manager.data_folder, run_record(run))
        except (OSError, ValueError) as exc:
            if required:
                raise
            log.warning("run %s: could not save its record: %s", run.id, exc)
            return exc
        return None

    async def interrupt_all(self, *, grace: float = INTERRUPT_GRACE, bound: float = INTERRUPT_BOUND) -> int:
        """At a stop of jan, before its extensions stop: every run generating, queued or inside a tool call in this
        process ends as a crash would leave it, but saved at once: ``interrupted`` (resumable), its reply
        ``stopped`` with what it has (``metadata.stop_reason: "interrupted"``), a tool call it was in cut off with
        no result saved (resume runs it again), its stream told (an ``error`` event, ``server_shutdown``). A run
        answering ``submit_tool_outputs`` when its calls are cut off waits in ``requires_action`` again, as its
        record says. Returns how many were asked to stop; they are settled when it returns.

        Settled *here*, awaited: once the extensions stop (models unloaded, MCP servers gone) a leg still going
        would save a tool's failure as its result and start a model turn with no model. Every leg's task is
        awaited, also a leg whose run already reads ended (its end is still being saved) and the end of a leg
        cancelled before it ran, so that no task of a run outlives the stop. A run stops at its next piece, a tool
        call at once; a leg still going after ``grace`` seconds (waiting for room in a busy model's queue, where no
        piece comes) is cancelled, once (one in its end finishes that end first: :func:`_whole`); none is waited
        for longer than ``bound`` in all."""
        self._stopping = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:  # every run here stops now: no cancel of another process's to hear
            watcher.cancel()
            await asyncio.wait([watcher], timeout=grace)
        if self._starts:  # (each one past its check stops its run itself: _start)
            await asyncio.wait(list(self._starts), timeout=grace)
        running = [run for run in self._runs.values() if run.active]
        for run in running:
            self.stop(run, INTERRUPTED)
        loop = asyncio.get_running_loop()
        cut_at, deadline = loop.time() + grace, loop.time() + bound
        cut: set[asyncio.Future] = set()
        # (looked at again after each wait: a leg cancelled before it ran leaves an end of its own to wait for; one
        # left by an event loop that is gone never ends, and is not this stop's)
        while legs := [leg for leg in self._legs if not leg.done() and leg.get_loop() is loop]:
            now = loop.time()
            if now >= deadline:
                break
            if now >= cut_at:
                for leg in legs:
                    if leg not in cut:  # once: a second cancel would cut short the end the first one lets finish
                        cut.add(leg)
                        leg.cancel()  # (the leg's CancelledError path saves it interrupted all the same)
            await asyncio.wait(legs, timeout=(deadline if now >= cut_at else cut_at) - now)
        for run in running:
            if not run.finished.is_set():
                log.warning("run %s did not settle before jan stopped; the next start marks it interrupted", run.id)
        return len(running)

    def stop(self, run: Run, reason: str) -> None:
        """Ask the leg in progress to stop at its next piece; the reply is saved with what it has,
        ``metadata.stop_reason`` = ``reason`` (e.g. ``"client disconnected"``)."""
        run.stop_reason = reason
        run.cancel_requested.set()

    async def cancel(self, run: Run, timeout: float = 30) -> Run:
        """Stop a run: one in progress here is saved with what it has (a wait on a slow tool ends too); one waiting
        for the user is cancelled at once; one another process sharing the data folder is running (a copy read from
        disk) is asked to stop there (:meth:`_cancel_elsewhere`). Returns the run as it stands once it ended, or
        after ``timeout`` s."""
        run.stop_reason = "cancelled"
        # Under the thread's lock: a submit or resume claiming this run at the same moment either went first (the
        # run is in progress now, and stopped below) or finds it cancelled, never brings a cancelled run back.
        async with self._thread_lock(run.thread_id):
            elsewhere = self._runs.get(run.id) is not run or run.status in WAITING_STATUSES
            if elsewhere:
                # a copy read from disk: another process may have taken the run on (or ended it) since
                if not await asyncio.to_thread(running_elsewhere, self.manager.data_folder, run.id):
                    return await self._cancel_here(run)
                # (asked under the lock: a claim of the run's next leg there, which clears the marker, comes after)
                await asyncio.to_thread(ask_cancel, self.manager.data_folder, run.thread_id, run.id)
        if elsewhere:
            return await self._cancel_elsewhere(run, timeout)
        self._cancel_leg(run)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(run.finished.wait(), timeout)
        return run

    def end_reasoning(self, run: Run) -> EndReasoning:
        """End the thinking of ``run``'s model turn now, so that the model answers (a chat page's "answer now"): the
        engine closes it at the next token as a spent thinking budget does (:mod:`jan.services.control`).
        ``finished`` for a run not making a turn in this process (ended, waiting for the user, between turns, or
        run by another jan process sharing the data folder)."""
        if self._runs.get(run.id) is not run or run.status != "in_progress" or run.control is None:
            return "finished"
        return run.control.end_reasoning()

    async def followable(self, run: Run) -> bool:
        """Whether ``run``'s events can be followed here: True for this process's own run. A copy read from disk
        has none, and none will come here: :class:`RequestError` (``run_held_elsewhere``) where another process
        sharing the data folder is running a leg of it (its events are in that process: waiting for them here never
        ended), False otherwise (its stream ends at once)."""
        if self._runs.get(run.id) is run:
            return True
        if await asyncio.to_thread(running_elsewhere, self.manager.data_folder, run.id):
            raise RequestError(f"Run '{run.id}' is running in another jan process sharing the data folder, which "
                               "alone has its events; follow them there", param="run_id", code="run_held_elsewhere")
        return False

    async def modify(self, run: Run, metadata: Mapping[str, Any]) -> Run:
        """OpenAI's "modify run": replace ``run``'s ``metadata`` (the one field a client may change) and save it.

        Under the thread's lock, as claims are. A copy read from disk is read again first, so what another process
        sharing the data folder saved meanwhile is kept; a run that process is running is refused
        (:class:`RequestError`, ``run_held_elsewhere``): it saves its own copy of the record as it goes, which would
        drop the change. Returns the run as saved."""
        async with self._thread_lock(run.thread_id):
            if self._runs.get(run.id) is not run:  # a copy read from disk
                if await asyncio.to_thread(running_elsewhere, self.manager.data_folder, run.id):
                    raise RequestError(f"Run '{run.id}' is running in another jan process sharing the data folder; "
                                       "modify it there, or once it ends", param="run_id", code="run_held_elsewhere")
                run = await self._fresh_copy(run) or run
            # (a leg of this run going on here saves the same object: its next save keeps the change)
            run.metadata = dict(metadata)
            await self.persist(run)
        return run

    def _cancel_leg(self, run: Run) -> None:
        """Stop this process's leg of ``run`` as a cancel: at its next piece, a tool call or a wait for room at
        once (the leg's task is cancelled; one that ended meanwhile is left be)."""
        run.stop_reason = "cancelled"
        run.cancel_requested.set()
        if run.active and run.task is not None and not run.task.done():
            run.task.cancel()

    async def _cancel_here(self, run: Run) -> Run:
        """Under the thread's lock, no process running ``run``: cancel a waiting run (``requires_action``, or
        ``interrupted``: one whose process died reads so, :func:`interrupt_if_orphaned`) here; one that ended
        meanwhile is answered as it stands."""
        if self._runs.get(run.id) is not run:
            run = await self._fresh_copy(run) or run
        if run.status not in WAITING_STATUSES:
            return run
        await self._refuse_if_claimed_elsewhere(run, code="run_active")
        run.stop_reason = "cancelled"
        await self._end_cancelled(run)
        return run

    async def _cancel_elsewhere(self, run: Run, timeout: float) -> Run:
        """Wait (at most ``timeout`` s) for the process running ``run`` to hear the cancel asked of it (the marker,
        :func:`~jan.services.run_records.ask_cancel`) and end it; returns the run as its record says then. A run
        whose leg ended waiting before it heard (or whose process died) is cancelled here. A run still going at the
        end of the wait keeps its marker: its process stops it when it looks next."""
        data = self.manager.data_folder
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(running_elsewhere, data, run.id):
            if time.monotonic() >= deadline:
                return await self._fresh_copy(run) or run
            await asyncio.sleep(CANCEL_POLL)
        await asyncio.to_thread(clear_cancel, data, run.thread_id, run.id)  # heard, or the leg ended before
        fresh = await self._fresh_copy(run)
        if fresh is None:
            return run
        if fresh.status in WAITING_STATUSES:
            return await self.cancel(fresh, max(0.0, deadline - time.monotonic()))
        return fresh

    async def _fresh_copy(self, run: Run) -> Run | None:
        """``run`` as its record says now (with its reply, to answer with), kept here unless it is live; None when
        it has no record (its thread deleted)."""
        record = await asyncio.to_thread(self._read_record, run.thread_id, run.id)
        if record is None:
            return None
        fresh = run_from_record(record)
        if fresh.message is not None:
            with contextlib.suppress(Exception):  # the answer tells the run either way
                fresh.message = await self.conversations().get_message(fresh.thread_id, fresh.message["id"])
        if not fresh.active:
            self._remember(fresh)
        return fresh

    def _watch_cancels(self) -> None:
        """Look for the cancels other processes ask for (:meth:`_cancel_elsewhere`) while runs are active here."""
        if self._stopping:  # stopped with the legs (interrupt_all): one started now would outlive the stop
            return
        watcher = self._watcher
        # (one left by an event loop that is gone never ends: this loop needs its own)
        if watcher is None or watcher.done() or watcher.get_loop() is not asyncio.get_running_loop():
            self._watcher = asyncio.ensure_future(self._cancel_watch())

    async def _cancel_watch(self) -> None:
        """Every :data:`CANCEL_POLL` s while this process runs legs: one ``stat`` per active run (never per token)
        for a cancel marker; a run asked to stop is cancelled as :meth:`cancel` cancels it here, its marker removed.
        Ends with the last active run (the next leg starts it again)."""
        data = self.manager.data_folder
        while True:
            await asyncio.sleep(CANCEL_POLL)
            # an active run of this service is this process's (another's live run is never kept: :meth:`load`)
            live = [run for run in self._runs.values() if run.active and not run.cancel_requested.is_set()]
            if not live:
                return
            try:
                asked = await asyncio.to_thread(cancels_asked, data, [(run.thread_id, run.id) for run in live])
            except Exception as exc:  # noqa: BLE001 - looked for again next time
                log.warning("could not look for cancels asked by other processes: %s", exc)
                continue
            for run in live:
                if run.id in asked:
                    log.info("run %s: cancelled by another jan process sharing the data folder", run.id)
                    self._cancel_leg(run)
                    await asyncio.to_thread(clear_cancel, data, run.thread_id, run.id)

    async def _thread_deleted(self, event: ThreadDeleted) -> None:
        """A thread was deleted (the conversation store tells it, after the deletion): its active runs are cancelled
        at once (a model turn's slot freed, a tool call cut off) rather than go on generating into a thread that
        is gone, and its runs are forgotten (their records went with the thread's folder: 404 from now on)."""
        runs = [run for run in self._runs.values() if run.thread_id == event.thread_id]
        for run in runs:
            self._runs.pop(run.id, None)
        self._settled.pop(event.thread_id, None)
        # its damaged records went with its folder: a list that still reported them would send the user looking
        record_problems(self.manager.data_folder).forget_under(f"threads/{event.thread_id}/")
        live = [run for run in runs if run.active]
        for run in live:
            run.stop_reason = "thread deleted"
            run.cancel_requested.set()
            if run.task is not None and not run.task.done():
                run.task.cancel()
        if live:
            await asyncio.wait([asyncio.ensure_future(run.finished.wait()) for run in live], timeout=30)

    async def recover_interrupted(self) -> int:
        """At start-up: runs that were generating when jan stopped become ``interrupted``, their reply ``stopped``
        (``metadata.stop_reason: "interrupted"``) with its text. Returns how many."""
        records = await asyncio.to_thread(mark_interrupted, self.manager.data_folder)
        if not records:
            return 0
        try:
            store = self.conversations()
        except Exception:  # noqa: BLE001 - no store enabled: the records are marked all the same
            return len(records)
        for record in records:
            message_id = record.get("message_id")
            if not message_id:
                continue
            try:
                message = await store.get_message(record["thread_id"], message_id)
                if message.get("status") == "pending":
                    metadata = {**(message.get("metadata") or {}), "stop_reason": INTERRUPTED}
                    await store.update_message(record["thread_id"], message_id, {"status": "stopped", "metadata": metadata})
            except Exception as exc:  # noqa: BLE001 - the thread may be gone
                log.info("interrupted run %s: message %s not updated: %s", record.get("id"), message_id, exc)
        log.info("%d run(s) were interrupted by the last stop; resume continues them", len(records))
        return len(records)

    # -- one run at a time per thread -------------------------------------------------
    @contextlib.asynccontextmanager
    async def _thread_lock(self, thread_id: str) -> AsyncIterator[None]:
        """The lock under which a request checks that no run — nor a Responses turn in the thread's conversation —
        holds the thread and claims it (a run starts, resumes or goes on after its tool calls; a message is added;
        a response turn begins: :meth:`claim_turn`): the check and the claim are one step, so two requests at once
        never both pass it — nor two in processes sharing the data folder.

        A claim is on disk before the lock goes (the run's record, live and leased: what :meth:`holder` reads in
        every process; a turn's lease), so the lock is held only for the moment of a claim:
        :meth:`jan.services.thread_claims.ThreadClaims.lock` (an asyncio lock and an OS file lock, ``LockTimeoutError``
        after :data:`~jan.services.thread_claims.CLAIM_WAIT` s; the asyncio lock alone on a read-only folder)."""
        async with thread_claims(self.manager.data_folder).lock(thread_id):
            yield

    async def claim_turn(self, thread_id: str) -> bool:
        """Claim ``thread_id`` for a Responses turn in its conversation (a conversation is a thread), in every
        process sharing the data folder: False when a run holds the thread (:meth:`holder`) or another turn is
        being made in it (this process's or another's); True once claimed (a lease a dead process leaves free).
        Release it with :meth:`release_turn`. ``LockTimeoutError`` when another process's claim never ends."""
        claims = thread_claims(self.manager.data_folder)
        async with self._thread_lock(thread_id):
            if await self.holder(thread_id) is not None:
                return False
            attempt = asyncio.ensure_future(asyncio.to_thread(claims.take_turn, thread_id))
            try:
                return await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # the worker may still take the lease: let it go then (nobody holds the turn for real), in a worker
                # thread too (it unlinks a file: never on the event loop)
                attempt.add_done_callback(lambda done: None if done.cancelled() or done.exception() is not None
                                          or not done.result()
                                          else report_failure(
                                              done.get_loop().run_in_executor(None, claims.release_turn, thread_id),
                                              f"letting the turn claimed on thread {thread_id!r} go", log))
                raise

    @contextlib.asynccontextmanager
    async def unheld(self, thread_id: str, refused: Callable[[], BaseException]) -> AsyncIterator[None]:
        """Hold the thread's claim lock (:meth:`_thread_lock`) for a write (a conversation's items added or deleted,
        the conversation deleted or its metadata replaced): ``refused()`` is raised, nothing written, while a run or
        a Responses turn (this process's or another's sharing the data folder) holds the thread. Writes wait for
        each other (briefly: the lock is held for one write), and no run or turn claims the thread during one."""
        async with self._thread_lock(thread_id):
            if await self.holder(thread_id) is not None or await self._turn_held(thread_id):
                raise refused()
            yield

    def release_turn(self, thread_id: str) -> None:
        """Let the thread's Responses turn go (:meth:`claim_turn`; a no-op unless this process holds it). Blocking
        file work (it unlinks the turn's lease file): call it in a worker thread
        (:class:`~jan.server.dialects.conversation_locks.ConversationLocks` does)."""
        thread_claims(self.manager.data_folder).release_turn(thread_id)

    def failure(self, exc: BaseException) -> RunFailure:
        """How a run failed with ``exc``: jan's message and code (``describe_error``) and OpenAI's (:func:`failure_kind`)."""
        message, code = self.describe_error(exc)
        return RunFailure(message, code, failure_kind(exc))

    async def _refuse_if_claimed_elsewhere(self, run: Run, *, code: str) -> None:
        """Under :meth:`_thread_lock`: :class:`RequestError` when another process sharing the data folder claimed
        ``run`` since this process read it (it runs a leg of it, or ended it): this copy must not be claimed too."""
        now = await asyncio.to_thread(held_elsewhere, self.manager.data_folder, run.thread_id, run.id, run.status)
        if now is not None:
            raise RequestError(f"Run '{run.id}' is {now} in another jan process sharing the data folder",
                               param="run_id", code=code)

    async def holder(self, thread_id: str, *, other_than: Run | None = None) -> Run | None:
        """The run that holds the thread (:data:`HOLDING_STATUSES`) but ``other_than``, or None.

        This process's runs first; then the thread's records of runs it does not know: a run of an earlier
        process still waiting in ``requires_action`` holds its thread after a restart (kept here, as
        :meth:`load` keeps it, so that submit and cancel act on this object), and so does a run another live
        process sharing the data folder is running. Records of dead processes' live runs read ``interrupted``.
        Called under :meth:`_thread_lock`: a run that waited past its ``expires_at`` ends ``expired`` here and holds
        nothing.
        """
        for run in list(self._runs.values()):
            if run.thread_id == thread_id and run is not other_than and run.status in HOLDING_STATUSES:
                await self._expire_locked(run)
                if run.status in HOLDING_STATUSES:
                    return run
        skip = {run_id for run_id, run in self._runs.items() if run.thread_id == thread_id}
        skip |= self._settled.get(thread_id, set())
        if other_than is not None:
            skip.add(other_than.id)
        records = await asyncio.to_thread(thread_records, self.manager.data_folder, thread_id, skip)
        for record in records:
            if record.get("status") in FINAL_STATUSES:
                self._settled.setdefault(thread_id, set()).add(record["id"])
        for record in records:
            if record.get("status") in HOLDING_STATUSES:
                run = run_from_record(record)
                if not run.active:
                    self._remember(run)
                await self._expire_locked(run)
                if run.status in HOLDING_STATUSES:
                    return run
        return None

    async def _refuse_if_held(self, thread_id: str, *, adding_message: bool = False,
                              other_than: Run | None = None) -> None:
        """:class:`RequestError` (``run_active``, OpenAI's messages) when a run holds the thread. Call it
        holding :meth:`_thread_lock` and claim the thread before letting go."""
        run = await self.holder(thread_id, other_than=other_than)
        if run is None:
            if await asyncio.to_thread(thread_claims(self.manager.data_folder).turn_held, thread_id):
                # a Responses turn is being made in the thread's conversation (this process or another): it reads
                # the thread's history before its input and adds its turn once it ends, as a run does
                message = (f"Can't add messages to {thread_id} while a response is being made in it"
                           if adding_message else f"Thread {thread_id} already has an active response")
                raise RequestError(f"{message} (a Responses turn in its conversation: wait for it to end first).",
                                   param="thread_id", code="run_active")
            return
        what = "answer its tool calls or cancel it" if run.status == "requires_action" \
            else "wait for it to end or cancel it"
        if adding_message:
            message = f"Can't add messages to {thread_id} while a run {run.id} is active"
        else:
            message = f"Thread {thread_id} already has an active run {run.id}"
        raise RequestError(f"{message} (it is {run.status}: {what} first).", param="thread_id", code="run_active")

    async def add_message(self, thread_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Add a message to a thread (as the conversational extension creates it) — refused with
        :class:`RequestError` (``run_active``) while a run holds the thread: the run answers the conversation
        it was started with, and a turn written into its middle would land before or after its reply (and
        its tool results) by chance."""
        store = self.conversations()
        async with self._thread_lock(thread_id):
            await self._refuse_if_held(thread_id, adding_message=True)
            return await store.create_message(thread_id, message)

    async def update_message(self, thread_id: str, message_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a message (as the conversational extension's ``update_message`` takes the changes) — refused
        with :class:`RequestError` (``run_active``) while a run holds the thread (:meth:`_refuse_if_run`), as a
        message added is, and while a Responses turn is made in the thread's conversation
        (:meth:`_refuse_if_turn`). A ``metadata`` replaces the client's keys and keeps jan's records of the turn
        (``thread_turns.kept_records``)."""
        async with self._thread_lock(thread_id):
            await self._refuse_if_turn(thread_id, f"modify a message of {thread_id}")
            await self._refuse_if_run(thread_id, message_id, "modify")
            store = self.conversations()
            stored = None
            if isinstance(changes.get("metadata"), dict):  # jan's records of the turn stay (kept_records)
                stored = await store.get_message(thread_id, message_id)
                changes = {**changes, "metadata": kept_records(stored, changes["metadata"])}
            if "content" not in changes:
                return await store.update_message(thread_id, message_id, changes)
            stored = stored or await store.get_message(thread_id, message_id)
            before = await self._title_kept(store, thread_id, stored)
            message = await store.update_message(thread_id, message_id, changes)
            if before is not None:
                await self._retitle(store, thread_id, before, message_id, message)
            return message

    @staticmethod
    async def _title_kept(store: ConversationalExtension, thread_id: str,
                          stored: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
        """Before a user's message is edited or deleted: the thread's title and messages where the title is the one
        jan gave it after its first user message (:func:`title_from` of that message's text), so that it can follow
        the change; None where the title is the user's own (renamed by hand: kept, whatever changes) or still the
        default (the first exchange titles it), or the message is no user's."""
        if stored.get("role") != "user":
            return None
        thread = await store.get_thread(thread_id)
        title = (thread.get("title") or "").strip()
        if title in DEFAULT_TITLES:
            return None
        messages = await store.list_messages(thread_id)
        first = first_user_message(messages)
        if first is None or first.get("id") != stored.get("id") or title != title_from(text_of(first)):
            return None
        return title, messages

    @staticmethod
    async def _retitle(store: ConversationalExtension, thread_id: str, before: tuple[str, list[dict[str, Any]]],
                       message_id: str, edited: dict[str, Any] | None) -> None:
        """After the message a thread was titled after is edited (``edited``: as stored now) or deleted (None):
        the title jan gives the thread's messages now (of the edit; of the next user message with text where none
        is left in it). None left: the title stays. The message is changed whatever becomes of the title."""
        title, messages = before
        now = [edited if m.get("id") == message_id else m for m in messages]
        first = first_user_message([m for m in now if m is not None])
        new = title_from(text_of(first)) if first is not None else ""
        if not new or new == title:
            return
        try:
            await store.update_thread(thread_id, {"title": new})
        except NotFoundError:  # (deleted meanwhile: nothing to title)
            pass
        except Exception as exc:  # noqa: BLE001 - the change is made; its title is a nicety
            log.warning("thread %s not titled after its first message changed: %s", thread_id, exc)

    async def delete_message(self, thread_id: str, message_id: str) -> None:
        """Delete a message — refused as :meth:`update_message` is while a run holds the thread (the run would go on
        answering a conversation that is no longer there, or into a reply that is gone: end or cancel it first).
        The thread's title follows its first user message's going as it follows an edit of it."""
        async with self._thread_lock(thread_id):
            await self._refuse_if_turn(thread_id, f"delete a message of {thread_id}")
            await self._refuse_if_run(thread_id, message_id, "delete")
            store = self.conversations()
            try:
                stored = await store.get_message(thread_id, message_id)
            except NotFoundError:  # (the delete says so, in its words)
                stored = None
            before = await self._title_kept(store, thread_id, stored) if stored is not None else None
            await store.delete_message(thread_id, message_id)
            if before is not None:  # the message it was titled after is gone: titled after the next one
                await self._retitle(store, thread_id, before, message_id, None)

    async def update_thread(self, thread_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a thread (its title, assistants or metadata: the conversational extension's ``update_thread``)
        — refused (``run_active``) while a Responses turn is made in its conversation (:meth:`_refuse_if_turn`)."""
        async with self._thread_lock(thread_id):
            await self._refuse_if_turn(thread_id, f"modify {thread_id}")
            return await self.conversations().update_thread(thread_id, changes)

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread and its messages — refused (``run_active``) while a Responses turn is made in its
        conversation (:meth:`_refuse_if_turn`): the turn would be added to a thread deleted under it."""
        async with self._thread_lock(thread_id):
            await self._refuse_if_turn(thread_id, f"delete {thread_id}")
            await self.conversations().delete_thread(thread_id)

    async def _refuse_if_turn(self, thread_id: str, doing: str) -> None:
        """:class:`RequestError` (``run_active``) while a Responses turn (this process's or another's sharing the
        data folder) is made in the thread's conversation: a conversation is a thread, and the Assistants API's
        writes to it must wait for the turn as the Conversations API's do
        (:mod:`jan.server.dialects.conversation_locks`): the turn read the history before its input and adds its
        items once it ends. Call it holding :meth:`_thread_lock` (no turn is claimed during the write)."""
        if await self._turn_held(thread_id):
            raise RequestError(f"Can't {doing} while a response is being made in it (a Responses turn in its "
                               "conversation: wait for it to end first).", param="thread_id", code="run_active")

    async def _turn_held(self, thread_id: str) -> bool:
        """Whether a Responses turn (this process's or another's sharing the data folder) is made in the thread's
        conversation now: its lease file probed in a worker thread (file work, never on the event loop)."""
        return await asyncio.to_thread(thread_claims(self.manager.data_folder).turn_held, thread_id)

    async def _refuse_if_run(self, thread_id: str, message_id: str, verb: str) -> None:
        """:class:`RequestError` (``run_active``) while a run holds the thread (``queued``, ``in_progress``,
        ``requires_action``): a run locks its thread, as OpenAI's does (a message added meanwhile is its 400), so
        no message of it changes under the run either. Before, only the reply the run was writing was refused: the
        question it was answering could be edited or deleted mid-run (the thread then read as a reply to something
        never asked), through the threads API and the web page alike, where the Conversations API and a message
        added were refused. An unknown message is its 404 first. Call it holding :meth:`_thread_lock`."""
        run = await self.holder(thread_id)
        if run is None:
            return
        message = await self.conversations().get_message(thread_id, message_id)  # (its NotFoundError as it is)
        what = "answer its tool calls or cancel it" if run.status == "requires_action" \
            else "wait for it to end or cancel it"
        if message.get("status") == "pending":  # (the reply it writes: named as such, the message at fault)
            raise RequestError(f"Can't {verb} message {message_id} while run {run.id} is writing it (it is "
                               f"{run.status}: {what} first).", param="message_id", code="run_active")
        raise RequestError(f"Can't {verb} messages of {thread_id} while a run {run.id} is active (it is "
                           f"{run.status}: {what} first).", param="thread_id", code="run_active")

    async def _abandon(self, run: Run, exc: BaseException) -> None:
        """A run that claimed its thread but cannot go on (a failure outside a model turn) ends ``failed`` (or
        ``cancelled``, when its request was): an active run holds its thread, and this one would hold it until
        jan stops."""
        if run.status not in HOLDING_STATUSES:
            return
        run.pending, run.ended_at = [], now_s()
        run.usage = run.usage or usage_fields(Usage())  # a terminal run tells its usage, as OpenAI's
        if isinstance(exc, Exception):
            run.status, run.last_error = "failed", self.failure(exc).last_error()
        else:
            run.status, run.stop_reason = "cancelled", run.stop_reason or "cancelled"
        for step in run.end_steps():
            run.publish_step(step, step.status)
        run.publish(f"thread.run.{run.status}", run_record(run))
        run.publish("done", "[DONE]")
        run.finished.set()
        with contextlib.suppress(Exception):  # in a failure already (persist logs its own)
            await self.persist(run)

    # -- starting a run -----------------------------------------------------------
    async def _context(self, thread_id: str, assistant_id: str | None, *, explicit: bool):
        store = self.conversations()
        thread = await store.get_thread(thread_id)
        entry = _thread_assistant(thread)
        assistant_id = assistant_id or entry.get("assistant_id") or DEFAULT_ASSISTANT
        try:
            assistant = await self.assistants().get_assistant(assistant_id)
        except InvalidIdError as exc:
            if explicit:  # (the request's field: named, as every refused field is)
                raise InvalidIdError(f"assistant_id: {exc}", param="assistant_id") from None
            raise
        except NotFoundError:
            if explicit:
                raise
            assistant = {"id": assistant_id, "model": "*", "instructions": "", "parameters": {}, _GONE: True}
        return store, thread, entry, assistant

    async def start(self, req: RunRequest) -> Run:
        """Everything up to the pending reply: checks (which raise before anything is written; a run
        holding the thread is a :class:`RequestError`, ``run_active``), the tools, the additional messages,
        the pending assistant message, the title. Execute it with :meth:`execute`."""
        check_tool_entries(list(req.tools) if req.tools is not None else None, param="tools")
        check_tool_policy(req.tool_policy, param="tool_policy")
        started = asyncio.get_running_loop().create_future()
        self._starts.add(started)
        try:
            async with self._thread_lock(req.thread_id):
                self._refuse_if_stopping()
                # checked and claimed in one step: the new run holds the thread (in_progress) before the lock goes
                await self._refuse_if_held(req.thread_id)
                return await self._start(req)
        finally:
            self._starts.discard(started)
            started.set_result(None)

    async def start_on_new_thread(self, thread: dict[str, Any], req: RunRequest) -> tuple[dict[str, Any], Run]:
        """Create ``thread`` (as the conversational extension's ``create_thread`` takes it) and :meth:`start`
        ``req`` on it (``req.thread_id`` is replaced by the new thread's): OpenAI's create-thread-and-run.
        Returns the thread as created and the run."""
        check_tool_entries(list(req.tools) if req.tools is not None else None, param="tools")
        check_tool_policy(req.tool_policy, param="tool_policy")
        store = self.conversations()
        try:
            created = await store.create_thread(thread)
        except InvalidArgumentError as exc:  # named as the request has it: thread.messages[k]...
            raise exc.under("thread.") from None
        try:
            return created, await self.start(replace(req, thread_id=created["id"]))
        except MediaError as exc:  # (said of a stored message: the request's thread.messages[k] it was written from)
            renamed = exc
            if exc.param and exc.param.startswith("message "):
                with contextlib.suppress(Exception):
                    ids = [m.get("id") for m in await store.list_messages(created["id"], order="asc")]
                    message_id, part = exc.param[len("message "):].split(" ", 1)
                    part = part.replace(".image_file.file_id", ".image_url.url")  # (sent as image_url, kept as a file)
                    param = f"thread.messages[{ids.index(message_id)}].{part}"
                    renamed = MediaError(f"{param}{str(exc)[len(exc.param):]}", reason=exc.reason, param=param)
            with contextlib.suppress(Exception):
                await asyncio.shield(store.delete_thread(created["id"]))
            raise renamed from None
        except BaseException:
            # Refused by start's checks (assistant, model, tools, stored parameters, nothing to answer), which
            # raise before it writes: the request failed as a whole and its error cannot name the thread, which
            # nobody would ever find, so it goes too. OpenAI keeps a thread whose run fails; so does jan once
            # the run has started: a run that fails, is cancelled or stops later keeps its thread.
            with contextlib.suppress(Exception):
                await asyncio.shield(store.delete_thread(created["id"]))
            raise

    async def check_model_choice(self, model: str | None, *, any_model: bool = False) -> None:
        """A ``model`` a run or an assistant is given, checked when it is given: an empty one is no way to say "none"
        (leave the field out: the thread's, the assistant's or the default model answers), and an id no model has
        is ``ModelNotFoundError`` now (with the id it may have meant), not a run failed later; so is a model that
        generates no text. ``any_model``: ``"*"`` (an assistant's "any model") passes. A model pulled later is
        named once it is there (or the assistant says ``"*"`` meanwhile)."""
        if model is None or (any_model and model == "*"):
            return
        if not model.strip():
            hint = "'*' for any model" if any_model else "leave 'model' out for the thread's or assistant's model"
            raise RequestError(f"model: an empty model id names no model; give a model id, or {hint}",
                               param="model", code="invalid_value")
        await self.models.resolve_generating(model)

    async def check_thread_models(self, assistants: Any, *, where: str = "",
                                  stored: Any = None) -> None:
        """Each ``assistants[i].model.id`` of a thread (Jan's: the model its runs use), checked when it is given as
        an assistant's ``model`` is (:meth:`check_model_choice`): an id no model has is ``ModelNotFoundError`` now
        (``param`` ``{where}assistants[i].model.id``, with the id it may have meant), not every run of the thread
        failing later. A model on disk that is not loaded passes (it loads with the run); ``""`` (no model of its
        own: a run takes the assistant's or the default one) passes; so does an id ``stored`` (the thread's
        assistants before a modify) has at the same place: a thread whose model was removed since can still be
        renamed or edited. Raises :class:`~jan.errors.ModelNotFoundError`, or :class:`RequestError` for a model
        that generates no text."""
        def model_id(entry: Any) -> Any:
            model = entry.get("model") if isinstance(entry, dict) else None
            return model.get("id") if isinstance(model, dict) else None

        kept = [model_id(entry) for entry in stored] if isinstance(stored, list) else []
        for i, entry in enumerate(assistants if isinstance(assistants, list) else ()):
            given = model_id(entry)
            if not isinstance(given, str) or not given or (i < len(kept) and kept[i] == given):
                continue
            try:
                await self.check_model_choice(given)
            except (ModelNotFoundError, RequestError) as exc:
                exc.param = f"{where}assistants[{i}].model.id"  # type: ignore[attr-defined]  (the 4xx's param)
                raise

    async def _start(self, req: RunRequest) -> Run:
        await self.check_model_choice(req.model)
        store, thread, entry, assistant = await self._context(req.thread_id, req.assistant_id,
                                                              explicit=bool(req.assistant_id))
        thread_model = _thread_model(entry)
        model_id = req.model or thread_model.get("id")
        if not model_id and assistant.get("model") not in (None, "", "*"):
            model_id = assistant["model"]
        if not model_id:
            model_id = await self.models.answering_model_id()
        if not model_id:
            raise RequestError("No model for this run: pass 'model', set the thread's or the assistant's model, "
                               "or load a model that generates text", param="model", code="model_required")
        target = await self.models.resolve_generating(model_id)  # (an embedding model: refused now, not failed)
        model = target.model

        if req.instructions is not None:
            instructions = req.instructions
        elif isinstance(entry.get("instructions"), str) and entry["instructions"]:
            instructions = entry["instructions"]
        else:
            instructions = assistant.get("instructions") or ""
        if req.additional_instructions:
            instructions = f"{instructions}\n\n{req.additional_instructions}" if instructions \
                else req.additional_instructions

        # The stored layers were written by any client (or by hand): one no request could use is the
        # request's 400 naming where it lives, before anything is written — not a 500, nor a failed run.
        layers = ((f"thread '{req.thread_id}'", "assistants[0].model.parameters", thread_model.get("parameters")),
                  (f"assistant '{assistant['id']}'", "parameters", assistant.get("parameters")))
        for owner, prefix, params in layers:
            if params is None:
                continue
            try:
                check_parameters(params, prefix=prefix)
            except RequestError as exc:
                raise RequestError(f"{owner} has unusable {exc}", param=exc.param, code=exc.code) from None
        sampling = merge_options(req.sampling, SamplingOptions.from_mapping(thread_model.get("parameters")),
                                 SamplingOptions.from_mapping(assistant.get("parameters")),
                                 model_sampling(model))
        # response_format: the run's, else the thread's, else the assistant's (OpenAI's "auto": the assistant's)
        response_format, source = req.response_format, ("", "response_format")
        for owner, prefix, params in layers:
            if response_format is None and isinstance(params, Mapping):
                response_format = ResponseFormat.from_mapping(params.get("response_format"))
                source = (owner, f"{prefix}.response_format")
        try:  # a schema no grammar takes: the request's 400 now, not a run failed at its first turn
            await check_format_grammar(response_format, source[1])
        except RequestError as exc:
            raise RequestError(f"{source[0]} has unusable {exc}" if source[0] else str(exc), param=exc.param,
                               code=exc.code) from None
        policy = await resolve_policy(self.tools, run_tools=list(req.tools) if req.tools is not None else None,
                                      thread_entry=entry, assistant=assistant, overrides=req.tool_policy)
        policy.check()  # an entry naming nothing jan has: the request's 400, never a run quietly without it
        _check_tool_choice(req.tool_choice if req.tool_choice is not None else policy.tool_choice, policy)

        added = await self._add_messages(store, req.thread_id, req.additional_messages)
        try:
            history = await store.list_messages(req.thread_id, order="asc")
            # (linked images fetched here too: a link that cannot be read, or a model that cannot see it, is this
            # request's 4xx; each leg fetches them again, as it reads the thread's files again)
            messages = await window_messages(store, req.thread_id, history, req.last_messages, instructions,
                                             fetch_image=self.fetch_image)
            if not any(m.role == "user" for m in messages):  # (a greeting alone asks nothing)
                raise RequestError("The thread has no messages to answer", param="thread_id", code="empty_thread")
            effort = req.reasoning_effort or assistant.get("reasoning_effort") or None
            # (checked, not kept: each turn makes its own from the thread; kept on the run, the thread's messages,
            # images and all, stayed in memory with each of the runs remembered, outside their events' byte budget)
            chat_request = ChatRequest(model=model["id"], messages=messages, response_format=response_format,
                                       sampling=sampling,
                                       truncation=run_truncation(req.last_messages, req.max_prompt_tokens),
                                       reasoning=_reasoning(effort), max_prompt_tokens=req.max_prompt_tokens)
            # what the model cannot take (the thread's images, with no projector) is this request's 4xx, as an
            # embedding model is: not a run accepted and failed later (its model is not loaded for it either way);
            # refused with the messages this request added removed, as every refusal above (they once stayed)
            try:
                await self.models.require_able(target, chat_request)
            except MediaError as exc:
                raise _media_part_named(exc, prompt_window(history, req.last_messages), added) from None
        except BaseException:
            await asyncio.shield(self._remove_messages(store, req.thread_id, added))
            raise

        run = Run(req.thread_id, assistant["id"], model["id"], instructions, sampling.given(), req.metadata or {})
        run.run_tools = list(req.tools) if req.tools is not None else None
        run.tool_choice_request, run.tool_policy, run.tool_specs = req.tool_choice, req.tool_policy, policy.specs
        run.warnings = policy.warnings
        run.assistant_tools = {k: assistant[k] for k in ("tools", "tool_policy") if assistant.get(k) is not None}
        run.parallel_tool_calls, run.background = req.parallel_tool_calls, req.background
        run.response_format, run.last_messages = _format_record(response_format), req.last_messages
        run.reasoning_effort, run.max_prompt_tokens = effort, req.max_prompt_tokens
        bus = self.manager.bus
        last_user = next((m for m in reversed(history) if m.get("role") == "user"), None)
        if last_user is not None:
            bus.emit_nowait(MessageSent(thread_id=req.thread_id, message=last_user))
        self._remember(run)
        if self._stopping:  # interrupt_all began while this start was under way: it waited for it (_starts)
            self.stop(run, INTERRUPTED)
        run.publish("thread.run.created", run_record(run))
        # queued (OpenAI's) until the engine starts its first turn: a model loading, every slot busy
        # (_Execution.engine_started)
        run.publish("thread.run.queued", run_record(run))
        run._policy = policy  # type: ignore[attr-defined] - the leg's execution picks it up
        try:
            await _Execution(self, run, policy).new_message()  # (saved: the claim on the thread, on disk)
        except BaseException as exc:
            await asyncio.shield(self._abandon(run, exc))  # never executed: it must not hold the thread
            # A start refused here (the disk refused the run's record) leaves its thread as it was, as every refusal
            # above does: the request's additional_messages and the reply made for it go again. They once stayed
            # (the reply marked failed) under an error saying nothing was saved; where the disk refuses their
            # removal too (full), the error says they stay.
            made = run.message["id"] if run.message is not None else None
            left = await asyncio.shield(self._remove_messages(store, req.thread_id, [*added, *filter(None, [made])]))
            if left and isinstance(exc, Exception):
                raise partly_saved(exc, REFUSED_START_LEFT, "the run")
            raise
        await self._after_first_exchange(store, thread, assistant, model, history)
        return run

    async def _add_messages(self, store: ConversationalExtension, thread_id: str,
                            extras: Sequence[Mapping[str, Any]]) -> list[str]:
        """Write a run's ``additional_messages``, all or none (their ids): a message the store refuses (an image
        that does not decode, an ``image_file`` the thread does not have) is the request's error named as the body
        has it (``additional_messages[k].content[i]...``), and those written before it are removed again — a
        refused run leaves its thread as it was (they once stayed, in a thread no run had answered)."""
        added: list[str] = []
        try:
            for k, extra in enumerate(extras):
                try:
                    added.append((await store.create_message(thread_id, dict(extra)))["id"])
                except InvalidArgumentError as exc:
                    raise exc.under(f"additional_messages[{k}].") from None
        except BaseException:
            await asyncio.shield(self._remove_messages(store, thread_id, added))
            raise
        return added

    @staticmethod
    async def _remove_messages(store: ConversationalExtension, thread_id: str, ids: list[str]) -> list[str]:
        """Delete the messages a refused start wrote (each on its own: one already gone leaves the others to go);
        the ids of those that could not be (the disk refused it), which stay."""
        left = []
        for message_id in ids:
            try:
                await store.delete_message(thread_id, message_id)
            except NotFoundError:
                pass
            except Exception as exc:  # noqa: BLE001 - the start's own error is the one to tell
                log.warning("thread %s: could not remove message %s of a refused run: %s", thread_id, message_id, exc)
                left.append(message_id)
        return left

    async def _after_first_exchange(self, store: ConversationalExtension, thread: dict[str, Any],
                                    assistant: dict[str, Any], model: dict[str, Any],
                                    history: list[dict[str, Any]]) -> None:
        """Title a new thread after its first user message; record the assistant/model a bare thread used."""
        patch: dict[str, Any] = {}
        if (thread.get("title") or "").strip() in DEFAULT_TITLES:
            first_user = first_user_message(history)
            if first_user is not None:
                patch["title"] = title_from(text_of(first_user))
        if not thread.get("assistants"):
            patch["assistants"] = [{"assistant_id": assistant["id"], "assistant_name": assistant.get("name") or "",
                                    "model": {"id": model["id"], "settings": {}, "parameters": {},
                                              "engine": model.get("engine") or "llama.cpp"}}]
        if patch:
            try:
                await store.update_thread(thread["id"], patch)
            except NotFoundError as exc:  # deleted by a client meanwhile: its runs end as it goes (_thread_deleted)
                log.info("thread %s not titled after its first exchange: %s", thread["id"], exc)
            except Exception as exc:  # noqa: BLE001 - the run goes on
                log.warning("could not update thread %s after its first exchange: %s", thread["id"], exc)

    # -- executing it ------------------------------------------------------------------
    def launch(self, run: Run, on_delta: OnDelta = _ignore, *, listener_gone: Callable[[], bool] = lambda: False,
               continued: PartialReply | None = None) -> asyncio.Task:
        """:meth:`execute` the run's next leg in a task of its own. A task cancelled before its first step runs no
        line of the leg, so nothing of it would end the run: the leg's end is then made here (a stop before the
        first turn), and the run never stays active with its stream silent and its leases held."""
        task = self._own(self.execute(run, on_delta, listener_gone=listener_gone, continued=continued))

        def ended(_task: asyncio.Task) -> None:
            if run.active and not run.finished.is_set():
                self._own(self._end_unrun_leg(run, continued))

        task.add_done_callback(ended)
        return task

    def _own(self, leg: Awaitable[None]) -> asyncio.Future:
        """``leg`` in a task of its own, kept in :attr:`_legs` until it is done (what a stop of jan waits for)."""
        task = asyncio.ensure_future(leg)
        self._legs.add(task)
        task.add_done_callback(self._legs.discard)
        return task

    async def _end_unrun_leg(self, run: Run, continued: PartialReply | None) -> None:
        """End a leg whose task was cancelled before it ran (:meth:`launch`) as a stop before its first turn ends
        it: a new reply with nothing written goes (``cancelled``), a resumed one is kept with its text; a stop of
        jan leaves it ``interrupted``. A ``submit_tool_outputs`` leg that never took its answers in is abandoned."""
        run.stop_reason = run.stop_reason or "cancelled"
        if run.answers is not None and run.stop_reason != INTERRUPTED:
            # a submit's leg cancelled before it ran: its answers are kept as a cancel while they ran keeps them
            (calls, answers), run.answers = run.answers, None
            try:
                await self._stopped_answering(run, calls, answers)
            except Exception:  # noqa: BLE001 - ended all the same, as any leg that cannot go on
                await self._abandon(run, asyncio.CancelledError())
            return
        try:
            if run.answers is not None or run.message is None:
                raise LookupError("no reply of this leg's to end")
            policy = getattr(run, "_policy", None) or await self._policy_of(run)
            execution = _Execution(self, run, policy)
            execution.keep_partial(continued)
            await execution._finish("stopped", None)
        except Exception:  # noqa: BLE001 - ended all the same, as any leg that cannot go on
            await self._abandon(run, asyncio.CancelledError())

    async def execute(self, run: Run, on_delta: OnDelta = _ignore, *,
                      listener_gone: Callable[[], bool] = lambda: False, continued: PartialReply | None = None) -> None:
        """Run the next leg: stream the reply into the thread, running tools as the policy allows, until the
        model answers, the run needs the user (``requires_action``) or it stops. ``on_delta`` hears each
        piece; ``listener_gone()`` true (checked per piece) stops the run as "client disconnected".
        Never raises but ``CancelledError`` (the reply is saved as ``stopped`` first)."""
        # Known as the run's task only now that it runs: a task cancelled before its first step never runs a line,
        # so nothing would end the run (its stream silent for good, its lease held). Until now a stop (a thread
        # deleted, a stop of jan) only asks (``cancel_requested``), which the leg hears before its first turn.
        run.task = asyncio.current_task()
        self._watch_cancels()  # a cancel another process asks for must reach this leg
        policy = getattr(run, "_policy", None)
        if policy is None:
            policy = await self._policy_of(run)
        execution = _Execution(self, run, policy, on_delta=on_delta, listener_gone=listener_gone)
        execution.keep_partial(continued)
        try:
            await execution.drive(continued=continued)
        except Exception as exc:  # a failure outside a model turn (the store, a tool's bookkeeping)
            # drive() ends the legs it knows how to; this one must end too, or the run holds its thread for good
            if isinstance(exc, NotFoundError):  # a client deleted its thread or a message: no fault of jan's
                log.info("run %s ended: %s", run.id, exc)
            elif isinstance(exc, ExtensionNotFoundError):  # its store (or engine) was disabled meanwhile: said so
                log.warning("run %s ended: %s", run.id, exc)
            else:
                log.exception("run %s: its leg failed", run.id)
            # (while a submit's answers are taken in, run.message is the calling turn's, saved: not this leg's)
            if run.active and run.message is not None and not execution.answering_phase:
                with contextlib.suppress(Exception):
                    await execution._finish("error", self.failure(exc))
            await self._abandon(run, exc)

    async def _policy_of(self, run: Run) -> ToolPolicy:
        _store, _thread, entry, assistant = await self._context(run.thread_id, run.assistant_id, explicit=False)
        if assistant.get(_GONE):
            # Deleted while the run went on: the run keeps its tools (their approval rules included) as the assistant
            # had them, as it keeps its instructions and model, rather than go on with none.
            assistant = {**assistant, **(run.assistant_tools or {})}
        policy = await resolve_policy(self.tools, run_tools=run.run_tools, thread_entry=entry, assistant=assistant,
                                      overrides=run.tool_policy)
        run.tool_specs = policy.specs
        # (a leg of a run that started is never refused for its tools: a server gone since is told, and its calls'
        # results say why they cannot run)
        run.warnings = policy.warnings
        run._policy = policy  # type: ignore[attr-defined]
        return policy

    async def submit(self, run: Run, decisions: list[ToolDecision]) -> None:
        """Answer a run in ``requires_action`` (every pending call, each once; raises :class:`RequestError`
        otherwise): the run is claimed with the answers, which its next leg (:meth:`execute`) runs first — the
        approved calls, every answer recorded — before the model's next turn. Returns once claimed: a slow tool
        runs in the leg, never in the request. A leg stopped while the approved calls run (a cancel: ``cancelled``;
        a stop of jan: back in ``requires_action``, as a crash would leave its record, the calls cut off and none of
        their results kept) ends with its events told."""
        async with self._thread_lock(run.thread_id):  # two submits at once: one claims the run, the other is refused
            self._refuse_if_stopping()
            await self._expire_locked(run)  # outputs that come too late are refused: the run expired
            if run.status != "requires_action":
                raise RequestError(f"Run '{run.id}' is {run.status}, not requires_action", param="run_id",
                                   code="run_not_waiting")
            await self._refuse_if_claimed_elsewhere(run, code="run_not_waiting")
            pending = {c.id: c for c in run.pending}
            answers: dict[str, ToolDecision] = {}
            for i, decision in enumerate(decisions):
                if decision.call.id not in pending:
                    raise RequestError(f"'{decision.call.id}' is not a pending tool call of this run",
                                       param="tool_outputs", code="invalid_tool_call_id")
                if decision.call.id in answers:  # two answers to one call: which one holds would be a guess
                    raise RequestError(f"tool_outputs[{i}]: '{decision.call.id}' is answered twice; answer each "
                                       "pending tool call once", param=f"tool_outputs[{i}].tool_call_id",
                                       code="duplicate_tool_call_id")
                answers[decision.call.id] = ToolDecision(pending[decision.call.id], decision.approve,
                                                         decision.output, decision.reason)
            missing = [c for c in pending if c not in answers]
            if missing:
                raise RequestError(f"Answer every pending tool call; missing: {', '.join(missing)}",
                                   param="tool_outputs", code="missing_tool_outputs")
            # a waiting run holds its thread, so no other run should; one that does (a record of another
            # process, of an older jan) must not be joined by a second leg writing into the same thread
            await self._refuse_if_held(run.thread_id, other_than=run)
            await self.models.resolve(run.model_id)  # 404 now rather than a failed leg
            await self._policy_of(run)
            # Claimed: a second submit is refused, here and (the run's lease held: held_elsewhere) in any process
            # sharing the folder. The record stays requires_action until the leg saves, so a crash leaves the
            # run waiting for these answers again, as it would have before; the lease dies with this process.
            await asyncio.to_thread(take_lease, self.manager.data_folder, run.id)
            run.status, run.pending = "in_progress", []
            run.answers = (list(pending.values()), answers)
            await self._new_leg(run)

    async def _stopped_answering(self, run: Run, calls: list[PendingCall],
                                 answers: Mapping[str, ToolDecision] | None = None) -> None:
        """End a ``submit_tool_outputs`` leg stopped before it took its ``answers`` in (none of the approved calls'
        results kept). A stop of jan leaves the run as a crash would leave its record (saved ``requires_action``
        with these calls: nothing of the leg was saved yet): waiting for the answers again, the tool step still
        open. A cancel ends it ``cancelled``, keeping the answers that run no tool (:func:`settled_answer`)."""
        if run.stop_reason == INTERRUPTED:
            # waiting again, with the time to answer anew: the client answered in time, a stop of jan lost it
            run.status, run.pending, run.expires_at = "requires_action", calls, self.expiry_from_now()
            await self.persist(run)
            _publish_interrupted(run)
            run.finished.set()
            return
        # The client's outputs (and denials) were the run's once the submit was accepted (OpenAI's step holds them
        # from then on, and a cancel after that keeps them): a cancel landing before the leg took them in must not
        # drop what the client was told was taken. Saved as the calls' results; the step the run waited in ends
        # completed when every call has one (an approved call cut off has none: the step ends cancelled).
        kept = [r for r in (settled_answer(c, (answers or {}).get(c.id)) for c in calls) if r is not None]
        if kept:
            await save_tool_messages(self.conversations(), run.thread_id, run.id, run.assistant_id, kept, run.step)
            waited = next((s for s in reversed(run.steps) if s.type == "tool_calls" and s.open), None)
            if waited is not None:
                for record in kept:
                    waited.answer(record.call.id, record.result.as_text(), approved_by=record.approved_by,
                                  duration_ms=record.duration_ms)
                if len(kept) == len(calls):
                    waited.end("completed")
                    run.publish_step(waited, "completed")
        await self._end_cancelled(run)

    # -- expiry ------------------------------------------------------------------------
    def expiry_from_now(self) -> int:
        """The ``expires_at`` of a run that begins to wait for its tool outputs now."""
        return int(clock_ms() / 1000 + self.expire_after)

    @staticmethod
    def due(run: Run, now: float | None = None) -> bool:
        """Whether ``run`` waits in ``requires_action`` past its ``expires_at``."""
        return run.status == "requires_action" and run.expires_at is not None \
            and (now_s() if now is None else now) >= run.expires_at

    async def expire_if_due(self, run: Run) -> Run:
        """``run``, ended ``expired`` first when it waited past its ``expires_at`` (under the thread's lock, as a
        submit claims it: outputs sent at the same moment either claimed it first or are refused)."""
        if not self.due(run):
            return run
        async with self._thread_lock(run.thread_id):
            await self._expire_locked(run)
        return run

    async def _expire_locked(self, run: Run) -> None:
        """Under :meth:`_thread_lock`: end ``run`` ``expired`` when it is due; a copy another process claimed meanwhile
        (it runs a leg of it, or ended it) is left to that process."""
        if not self.due(run):
            return
        if await asyncio.to_thread(held_elsewhere, self.manager.data_folder, run.thread_id, run.id, run.status):
            return
        await self._end_unrun(run, "expired", run.expires_at)
        log.info("run %s expired: its tool outputs were not submitted in time", run.id)

    async def expire_due(self, *, scan_disk: bool = False) -> int:
        """The sweep: every run of this process waiting past its ``expires_at`` ends ``expired``; returns how many.
        ``scan_disk`` (the first sweep, at start): the records of earlier processes' waiting runs are read too, and
        kept here (a waiting run is never forgotten: :meth:`_remember`), so later sweeps find them without reading
        every record again. A run read or listed is checked as it is (:meth:`load`, :meth:`list_runs`); the sweep
        frees the threads nobody looks at."""
        if scan_disk:
            for record in await asyncio.to_thread(list_records, self.manager.data_folder):
                if record["id"] not in self._runs and record.get("status") == "requires_action" \
                        and isinstance(record.get("expires_at"), int):
                    self._remember(run_from_record(record))
        expired = 0
        for run in [r for r in self._runs.values() if self.due(r)]:
            await self.expire_if_due(run)
            expired += run.status == "expired"
        return expired

    async def _end_cancelled(self, run: Run) -> None:
        """End a run that runs no model turn (waiting for the user, or its answered calls cut off) ``cancelled``:
        saved, its open steps ended, its stream told."""
        await self._end_unrun(run, "cancelled", now_s())

    async def _end_unrun(self, run: Run, status: str, ended_at: int | None) -> None:
        """End a run that runs no model turn with ``status`` (``cancelled``, ``expired``) at ``ended_at``: saved,
        its open steps (the tool calls it waited on) ended, its stream told and closed."""
        run.status, run.pending, run.ended_at = status, [], ended_at
        run.stop_reason = run.stop_reason or status
        run.usage = run.usage or usage_fields(Usage())  # a terminal run tells its usage, as OpenAI's
        ended = run.end_steps()
        await self.persist(run)
        for step in ended:
            run.publish_step(step, step.status)
        run.publish(f"thread.run.{status}", run_record(run))
        run.publish("done", "[DONE]")
        run.finished.set()

    async def _new_leg(self, run: Run) -> None:
        """A run claimed for a new leg (submit, resume; under the thread's lock): a stop asked of an earlier leg (its
        listener gone after it ended; another process's cancel it ended before hearing) is not this one's."""
        run.finished.clear()
        run.cancel_requested.clear()
        run.stop_reason = None
        await asyncio.to_thread(clear_cancel, self.manager.data_folder, run.thread_id, run.id)

    def _refuse_if_stopping(self) -> None:
        """:class:`ServiceUnavailableError` (503) once jan is stopping (:meth:`interrupt_all`): a run started or
        claimed then would run while the extensions stop under it."""
        if self._stopping:
            raise ServiceUnavailableError("jan is shutting down: no run starts or goes on now; try again once it "
                                          "is back")

    async def _unanswered_calls(self, run: Run, message: dict[str, Any] | None) -> list[PendingCall]:
        """The calls of ``message`` (a tool-calling turn) that have no result message in the thread."""
        if message is None or message.get("role") != "assistant":
            return []
        calls = parse_calls(stored_calls(stored_metadata(message)))
        if not calls:
            return []
        history = await self.conversations().list_messages(run.thread_id, order="asc")
        answered = {stored_metadata(m).get("tool_call_id") for m in history if m.get("role") == "tool"}
        return [c for c in calls if c.id not in answered]

    async def resume(self, run: Run) -> PartialReply | None:
        """Ready an ``interrupted`` run's next leg; returns the partial reply it continues (run it with
        :meth:`execute` as ``continued``: its text and thinking, :func:`partial_reply`), or None when it starts a
        fresh reply."""
        async with self._thread_lock(run.thread_id):
            self._refuse_if_stopping()
            if run.status != "interrupted":
                raise RequestError(f"Run '{run.id}' is {run.status}; only a run a stop of jan interrupted (incomplete, "
                                   "incomplete_details.reason 'interrupted') can be resumed", param="run_id",
                                   code="run_not_interrupted")
            await self._refuse_if_claimed_elsewhere(run, code="run_not_interrupted")
            # an interrupted run does not hold its thread (HOLDING_STATUSES): another may have started since
            await self._refuse_if_held(run.thread_id, other_than=run)
            await self.models.resolve(run.model_id)
            policy = await self._policy_of(run)
            store = self.conversations()
            if run.message is not None:
                try:
                    run.message = await store.get_message(run.thread_id, run.message["id"])
                except NotFoundError:
                    run.message = None
            run.status = "in_progress"
            await self._new_leg(run)
            # on disk before the lock goes: an interrupted record holds no thread, and another process's check
            # must read this one as holding it (live, leased)
            try:
                await self.persist(run, required=True)
            except BaseException:
                # not claimed after all (a full disk, a read-only folder): the run stays as its record says,
                # interrupted and resumable once the disk can take it, and holds no thread
                run.status = "interrupted"
                run.finished.set()
                raise
        try:
            return await self._ready_resumed(run, policy, store)
        except BaseException as exc:
            await asyncio.shield(self._abandon(run, exc))  # claimed but never executed: it must let the thread go
            raise

    async def _ready_resumed(self, run: Run, policy: ToolPolicy,
                             store: ConversationalExtension) -> PartialReply | None:
        partial = None
        run.publish("thread.run.in_progress", run_record(run))
        execution = _Execution(self, run, policy)
        message = run.message
        unanswered = await self._unanswered_calls(run, message)
        if unanswered:
            run.resume_calls = unanswered  # jan stopped while they ran (or before): the leg starts with them
        elif message is None or message.get("role") != "assistant" or stored_calls(stored_metadata(message)):
            await execution.new_message()
        else:
            partial = partial_reply(message)
            execution.keep_partial(partial)
            # going on again: no longer ended, so not "interrupted" either (_finish_now writes how it ends)
            metadata = {k: v for k, v in stored_metadata(message).items() if k not in _ENDING_KEYS}
            run.message = await execution._save({"status": "pending", "metadata": metadata}) or message
            await execution.open_message_step()  # the turn goes on in its message: a step of this leg's
        return partial


class _Execution:
    """One leg of a run: a loop of model turns (streamed into the thread) and tool calls."""

    def __init__(self, service: RunService, run: Run, policy: ToolPolicy, *, on_delta: OnDelta = _ignore,
                 listener_gone: Callable[[], bool] = lambda: False):
        self.service = service
        self.run = run
        self.policy = policy
        self.on_delta = on_delta
        self.listener_gone = listener_gone
        self.store = service.conversations()
        self.bus = service.manager.bus
        self.text = ""
        self.reasoning = ""
        self._reasoning_started: float | None = None
        self.reasoning_ms: int | None = None
        #: how long a continued reply thought before this leg (:meth:`keep_partial`), added to this leg's time
        self._reasoning_ms_before = 0
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self._pieces = 0
        #: Tokens of the reply written before this leg (a resumed reply's partial text): they count against
        #: the run's ``max_tokens`` and in its usage.
        self.continued_tokens = 0
        #: Whether the run's max_completion_tokens is spent by its earlier turns (set with each turn's request)
        self.completion_spent = False
        #: The model turn's own usage (its reply's ``metadata.usage``; None until told), the run's usage before
        #: the turn (what the turn's is added to), and the prompt's length told with its first token.
        self.turn_usage: dict[str, Any] | None = None
        self._usage_before: dict[str, Any] | None = run.usage
        self._turn_prompt: int | None = None
        self._saver: asyncio.Task | None = None
        self._last_save = 0.0
        #: Why the last save of the reply failed (None: it was saved, or its thread is gone)
        self.unsaved: Exception | None = None
        #: Inside a tool step: its calling turn is saved and its results are not (a stop then keeps the turn).
        self.in_calls = False
        #: The calls a submit's answers are being run for (:meth:`answer_calls`), until their results are saved;
        #: then, until the next turn's message exists, ``_readying``.
        self.answering: list[PendingCall] | None = None
        #: the answers of the calls in :attr:`answering` (the ones that run no tool are kept by a cancel)
        self.answers: Mapping[str, ToolDecision] = {}
        self._readying = False
        #: The ``tool_calls`` step of the turn streaming now, told as its first call piece came (None until then),
        #: and each call's place in it by the engine's index.
        self.call_step: RunStep | None = None
        self._call_places: dict[int, int] = {}

    def _update_listeners(self) -> bool:
        count = getattr(self.bus, "subscriber_count", None)
        return True if count is None else count(MessageUpdate) > 0

    def _message_now(self, status: str) -> dict[str, Any]:
        return {**(self.run.message or {}), "content": self._parts(), "status": status}

    def _parts(self) -> list[dict[str, Any]]:
        return _content(self.text, self.reasoning, self.reasoning_ms)

    def _thinking_done(self) -> None:
        if self._reasoning_started is not None and self.reasoning_ms is None:
            self.reasoning_ms = self._reasoning_ms_before + int((time.monotonic() - self._reasoning_started) * 1000)

    def keep_partial(self, partial: PartialReply | None) -> None:
        """This turn continues ``partial`` (:func:`partial_reply`): its text and its thinking are the reply's so far,
        so what is saved and streamed goes on from them. A thought the interrupted leg had ended keeps its length
        (``duration_ms``); one still open is timed on from what it took before."""
        if partial is None:
            return
        self.text, self.reasoning = partial.turn.text, partial.turn.reasoning or ""
        if self.text or not self.reasoning:
            self.reasoning_ms = partial.reasoning_ms
        else:
            self._reasoning_ms_before = partial.reasoning_ms or 0

    async def _save(self, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Save ``patch`` of the turn's reply; None when it could not be (a deleted thread, or the failure kept in
        :attr:`unsaved` — a full disk — for the run's end to tell: :meth:`_finish_now`)."""
        self.unsaved = None
        try:
            return await self.store.update_message(self.run.thread_id, self.run.message["id"], patch)
        except NotFoundError as exc:  # the thread (or the message) was deleted meanwhile: nothing to save it in
            log.info("run %s: message %s is gone: %s", self.run.id, self.run.message["id"], exc)
            return None
        except Exception as exc:  # noqa: BLE001
            log.warning("run %s: could not save message %s: %s", self.run.id, self.run.message["id"], exc)
            self.unsaved = exc
            return None

    def _maybe_save(self) -> None:
        now = time.monotonic()
        if now - self._last_save < SAVE_INTERVAL or (self._saver is not None and not self._saver.done()):
            return
        self._last_save = now
        self._saver = asyncio.ensure_future(self._save({"content": self._parts(), "status": "pending"}))

    async def _chat_request(self, *, continued: ChatMessage | None = None) -> ChatRequest:
        run = self.run
        history = await self.store.list_messages(run.thread_id, order="asc")
        if run.message is not None:
            history = [m for m in history if m.get("id") != run.message["id"]]
        messages = await window_messages(self.store, run.thread_id, history, run.last_messages, run.instructions,
                                         continued, fetch_image=self.service.fetch_image)
        tools: tuple[ToolSpec, ...] = ()
        tool_choice = None
        if self.policy:
            tools = tuple(ToolSpec(name=spec["function"]["name"], description=spec["function"].get("description"),
                                   parameters=spec["function"].get("parameters")) for spec in self.policy.specs)
            if run.step >= self.policy.max_steps - 1:
                tool_choice = "none"  # the last step must answer
            elif run.step == 0:
                choice = run.tool_choice_request if run.tool_choice_request is not None else self.policy.tool_choice
                tool_choice = _tool_choice(choice)
        sampling = SamplingOptions.from_mapping(run.parameters)
        left = self._tokens_left(sampling)
        # nothing left (0 or less) is no max_tokens a request can hold (SamplingOptions refuses it): said apart, and
        # the turn is not started (the leg's loop reads it)
        self.completion_spent = left is not None and left <= 0
        if left is not None and left > 0:
            sampling = replace(sampling, max_tokens=left)  # the run's earlier turns (or the reply's leg) spent the rest
        run.control = GenerationControl()  # (each turn its own: an end asked of the last turn's thinking is not this one's)
        return ChatRequest(model=run.model_id, messages=messages, tools=tools, tool_choice=tool_choice, control=run.control,
                           parallel_tool_calls=run.parallel_tool_calls if tools else None,
                           response_format=_format_of(run.response_format), sampling=sampling,
                           continue_final_message=continued is not None,
                           # a background run, or a leg nobody waits on (not streamed: polled), is queued work: it waits
                           # for room rather than fail when the model is busy (OpenAI's runs stay queued)
                           wait_for_room=run.background or run.detached,
                           truncation=run_truncation(run.last_messages, run.max_prompt_tokens),
                           reasoning=_reasoning(run.reasoning_effort), max_prompt_tokens=self._prompt_tokens_left())

    def _prompt_tokens_left(self) -> int | None:
        """What the run's earlier turns left of its ``max_prompt_tokens`` for the next turn's prompt (None: no
        budget; 0 or less: spent)."""
        run = self.run
        if run.max_prompt_tokens is None:
            return None
        return run.max_prompt_tokens - int((run.usage or {}).get("prompt_tokens") or 0)

    def _tokens_left(self, sampling: SamplingOptions) -> int | None:
        """What the next turn may still generate under the run's ``max_tokens`` (``max_completion_tokens``: OpenAI's
        limit on the completion tokens "used over the course of the run"): what the earlier turns left of it, as
        the run's usage counts them, less a continued reply's partial text (its leg never counted in the run's
        usage: :meth:`_reply_usage`). None: no limit, or nothing spent yet (the limit as it is); 0 or less: spent."""
        if sampling.max_tokens is None:
            return None
        spent = int((self.run.usage or {}).get("completion_tokens") or 0) + self.continued_tokens
        return sampling.max_tokens - spent if spent else None

    async def _token_count(self, text: str) -> int:
        """Tokens of a reply's text, counted again with the model's vocabulary: what an interrupted leg generated
        is known only as its saved text (the engine's count died with the process)."""
        try:
            target = await self.service.models.resolve(self.run.model_id)
            return len(await target.engine.tokenize(target.model, text, add_special=False))
        except Exception as exc:  # noqa: BLE001 - an engine that cannot count: the budget is not reduced
            log.warning("run %s: could not count the tokens of its partial reply: %s", self.run.id, exc)
            return 0

    def _reply_usage(self, usage: Usage, reasoning_tokens: int = 0) -> dict[str, Any]:
        """A turn's usage (its reply's) from its leg's (``reasoning_tokens``: its :attr:`ChatDelta.reasoning_tokens`):
        a continued reply counts its earlier tokens too, and its
        prompt is the conversation before the reply (this leg's prompt also held the partial reply). The turn of
        the interrupted leg that wrote those tokens never counted in the run (its process died before it ended),
        so the run adds the whole reply's once, as this."""
        if not usage.prompt_tokens and self._turn_prompt:  # an engine's usage without the prompt it was told
            usage = Usage(prompt_tokens=self._turn_prompt, completion_tokens=usage.completion_tokens,
                          cached_tokens=usage.cached_tokens, draft_tokens=usage.draft_tokens,
                          draft_accepted=usage.draft_accepted)
        fields = usage_fields(usage, reasoning_tokens)
        if self.continued_tokens:
            prompt = max(0, usage.prompt_tokens - self.continued_tokens)
            completion = usage.completion_tokens + self.continued_tokens
            fields.update(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                          prompt_tokens_details={"cached_tokens": min(usage.cached_tokens, prompt)})
        return fields

    async def new_message(self) -> None:
        """The pending assistant message of the next model turn."""
        run = self.run
        run.message = await self.store.create_message(run.thread_id, {
            "role": "assistant", "content": [], "status": "pending", "assistant_id": run.assistant_id,
            "metadata": {"run_id": run.id, "model": run.model_id, "step": run.step}, "run_id": run.id,
        })
        self.text, self.tool_calls, self._pieces, self.continued_tokens = "", {}, 0, 0
        self.call_step, self._call_places = None, {}
        self.reasoning, self._reasoning_started, self.reasoning_ms = "", None, None
        self._reasoning_ms_before = 0
        self._begin_turn()  # a new reply: none of the previous turn's usage is its
        # told once the turn writes something: a turn that only calls tools is no message (OpenAI's runs)
        run.unannounced = True
        # on disk at once: the record names its reply (what a restart finishes as interrupted), and a run that
        # start() readies claims its thread there before the lock goes (another process's check reads it); a
        # record that cannot be written fails the run here (start() answers the error), not later with no record
        try:
            await self.service.persist(run, required=True)
        except BaseException as exc:
            # Its reply is on disk, pending and leased by this live process: ended here as an error (an append,
            # which a disk too full for the record's new file may still take), else it read in_progress until
            # this process ended.
            failure = self.service.failure(exc) if isinstance(exc, Exception) else None
            metadata = {**(run.message.get("metadata") or {}),
                        **({"error": failure.message, "error_code": failure.code} if failure else {})}
            try:
                await asyncio.shield(self.store.update_message(run.thread_id, run.message["id"],
                                                               {"status": "error", "metadata": metadata}))
            except Exception as again:  # noqa: BLE001 - the disk refused this too; the first error is the one told
                log.warning("run %s: could not end its reply %s: %s", run.id, run.message["id"], again)
            raise
        self.bus.emit_nowait(MessageResponse(thread_id=run.thread_id, message=run.message))

    async def announce_message(self) -> None:
        """Tell the stream of the turn's message (its ``message_creation`` step first, as OpenAI's stream does),
        once: at the turn's first piece of text or thinking, or as it ends without calling tools."""
        if not self.run.unannounced:
            return
        self.run.unannounced = False
        await self.open_message_step()
        self.run.publish("thread.message.created", self.run.message)
        self.run.publish("thread.message.in_progress", self.run.message)

    async def open_message_step(self) -> None:
        """The ``message_creation`` step of the turn that writes ``run.message``: saved, then published (OpenAI's
        stream tells it before the message it creates)."""
        run = self.run
        # a step is work the run did: in progress by then, also when no engine started it (a turn jan's own
        # max_prompt_tokens check ended before it began)
        self.engine_started()
        step = RunStep(run.id, run.thread_id, run.assistant_id, "message_creation", message_id=run.message["id"])
        run.steps.append(step)
        await self.service.persist(run)
        run.publish_step(step, "created", "in_progress")

    def message_step(self) -> RunStep | None:
        """The open ``message_creation`` step of this leg's turn, if any."""
        return next((s for s in reversed(self.run.steps) if s.type == "message_creation" and s.open), None)

    def _begin_turn(self) -> None:
        """A model turn starts: its usage is added to what the run used before it."""
        self.turn_usage, self._usage_before, self._turn_prompt = None, self.run.usage, None

    def _count_turn(self, usage: dict[str, Any]) -> None:
        """The turn's usage (told again, it replaces what it said before): the reply's, added to the run's."""
        self.turn_usage = usage
        self.run.usage = add_usage(self._usage_before, usage)

    async def _stream_step(self, request: ChatRequest) -> tuple[str, Any, bool]:
        """Stream one model turn into ``run.message``; returns ``(status, error, cancelled)``."""
        run = self.run
        self._last_save = time.monotonic()
        run.finish_reason = None
        self._begin_turn()
        status, error, cancelled = "ready", None, False
        stream = self.service.chat.stream(request)
        message_id = run.message["id"]
        try:
            async with stream:
                async for delta in stream:
                    self.engine_started()
                    if delta.prompt_tokens is not None:
                        self._turn_prompt = delta.prompt_tokens  # told with the first token: a cut turn spent it
                    if delta.usage is not None:
                        self._count_turn(self._reply_usage(delta.usage, delta.reasoning_tokens))
                    if delta.choice != 0:
                        continue
                    if delta.reasoning:
                        if self._reasoning_started is None:
                            self._reasoning_started = time.monotonic()
                        self.reasoning += delta.reasoning
                        await self._relay(message_id, delta.reasoning, "reasoning")
                    piece = delta.content
                    if piece or delta.tool_calls or delta.finish_reason:
                        self._thinking_done()
                    if piece:
                        self.text += piece
                        self._pieces += 1
                        if self._update_listeners():  # the whole message per token: only when heard
                            self.bus.emit_nowait(MessageUpdate(thread_id=run.thread_id, delta=piece,
                                                               message=self._message_now("pending")))
                        await self._relay(message_id, piece, "text")
                    for call in delta.tool_calls:
                        slot = self.tool_calls.setdefault(call.index, {
                            "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                        slot["id"] = call.id or slot["id"]
                        slot["function"]["name"] += call.name or ""
                        slot["function"]["arguments"] += call.arguments or ""
                    if delta.tool_calls and self.policy:  # (a call with no tools is never run: no step)
                        await self._relay_calls(delta.tool_calls)
                    if delta.finish_reason:
                        run.finish_reason = delta.finish_reason
                    if run.finish_reason is None:  # once finished, only the usage is left
                        if run.cancel_requested.is_set():
                            raise _Stop(run.stop_reason or "cancelled")
                        if self.listener_gone():
                            raise _Stop("client disconnected")
                        self._maybe_save()
        except _Stop as stop:
            status, run.stop_reason = "stopped", stop.reason
        except asyncio.CancelledError:
            status, run.stop_reason, cancelled = "stopped", run.stop_reason or "cancelled", True
        except PromptBudgetError as exc:  # refused before the engine saw it: no turn started, nothing spent
            status, run.stop_reason = "stopped", PROMPT_BUDGET
            log.info("run %s: turn %d not started: %s", run.id, run.step, exc)
        except Exception as exc:  # noqa: BLE001 - recorded in the message and the run
            status, error = "error", self.service.failure(exc)
            log.info("run %s failed: %s", run.id, error.message)
        cut = cut_turn_error(run.finish_reason) if status == "ready" else None
        if cut is not None and run.finish_reason == "cancelled" and run.cancel_requested.is_set():
            # the user's cancel (or its listener gone) stopped the model under the turn: a cancel, as any
            status, run.stop_reason = "stopped", run.stop_reason or "cancelled"
        elif cut is not None:  # the server cut the turn off: no reply to pass off as whole, the run fails
            status, error = "error", RunFailure(*cut)
            log.info("run %s failed: %s", run.id, error.message)
        if self._saver is not None:
            await asyncio.wait([self._saver])
        return status, error, cancelled

    def engine_started(self) -> None:
        """The engine started the run's turn (or the run made a step without it): a queued run is ``in_progress``
        from now on. The engine tells no start of its own — its scheduler hands a request a slot and processes the
        prompt without an event, its first one is the first token (with the prompt's size) — so a run is ``queued``
        while its model loads, while the engine's queue is full and while every slot is busy, and until its prompt
        is read."""
        run = self.run
        if run.status != "queued":
            return
        run.status, run.started_at = "in_progress", now_s()
        run.publish("thread.run.in_progress", run_record(run))

    async def _relay(self, message_id: str, piece: str, kind: str) -> None:
        """Publish a piece of the reply (thinking streams as ``reasoning`` parts, the type it is saved
        under; the answer as ``text``) and hand it to ``on_delta``. A piece's ``index`` is its part's in the saved
        content (:func:`_content`: the thinking first), which the SDK's stream helpers merge it into."""
        await self.announce_message()
        index = 1 if kind == "text" and self.reasoning else 0
        self.run.publish("thread.message.delta", {
            "id": message_id, "object": "thread.message.delta", "delta": {"content": [
                {"index": index, "type": kind, "text": {"value": piece, "annotations": []}}]}})
        try:
            await self.on_delta(piece, kind)
        except ConnectionError as exc:  # writing to the listener failed: it is gone
            log.debug("run %s: listener gone: %s", self.run.id, exc)
            raise _Stop("client disconnected") from None

    async def _relay_calls(self, pieces: tuple[ToolCallDelta, ...]) -> None:
        """Stream the turn's tool calls as they are generated, as OpenAI's runs do: the turn's ``tool_calls`` step
        is created (saved, then told with no calls) at its first call piece, and each piece is a
        ``thread.run.step.delta`` — a call's first one its ``id``, ``type`` and ``name`` (``arguments`` ``""``,
        ``output`` null), the next ones pieces of its ``arguments`` — which the SDK's stream helpers add up into
        the step (``on_tool_call_created`` / ``_delta`` / ``_done``). The step ends after the turn
        (:meth:`_tool_step`), or with the run (a turn cut off, failed)."""
        run = self.run
        step = self.call_step
        if step is None:
            step = self.call_step = RunStep(run.id, run.thread_id, run.assistant_id, "tool_calls")
            run.steps.append(step)
            await self.service.persist(run)
            run.publish_step(step, "created", "in_progress")
        for piece in pieces:
            place = self._call_places.get(piece.index)
            if place is None:
                place = self._call_places[piece.index] = len(step.tool_calls)
                step.tool_calls.append({"id": piece.id or "", "type": "function",
                                        "function": {"name": piece.name or "", "arguments": "", "output": None}})
                _publish_call_delta(run, step, place, {"id": piece.id or "", "function": {
                    "name": piece.name or "", "arguments": "", "output": None}})
            if piece.arguments:
                step.tool_calls[place]["function"]["arguments"] += piece.arguments
                _publish_call_delta(run, step, place, {"function": {"arguments": piece.arguments}})

    async def drive(self, *, continued: PartialReply | None = None) -> None:
        """Run the leg to its end (answer, ``requires_action``, stop, error). Never raises but CancelledError."""
        run = self.run
        if run.status != "queued":  # (a new run's first leg stays queued until the engine starts its turn)
            run.status = "in_progress"
            run.started_at = run.started_at or now_s()
        if not run.cancel_requested.is_set():  # (a stop asked for before the leg began keeps its reason)
            run.stop_reason = None
        cancelled = False
        try:
            # a submit_tool_outputs leg takes its answers in first (the record stays requires_action until they are)
            if run.answers is not None and not await self.answer_calls():
                return  # stopped while the approved calls ran
            # (inside the try: a cancel that comes while the record is written ends the run as any cancel does,
            # rather than leave it in progress, holding its thread, with its reply pending)
            await self.service.persist(run)
            if run.resume_calls:  # a resumed leg whose tool-calling turn is saved: its calls come first
                calls, run.resume_calls = run.resume_calls, []
                if not await self._tool_step(calls, saved=True):
                    return  # requires_action
            while True:
                if run.cancel_requested.is_set():
                    # asked before this turn began (before the leg's task ran, or between a tool step and the
                    # next turn): no turn is started, the leg ends as a stop at a piece would end it
                    await self._finish("stopped", None)
                    return
                if continued is not None:
                    self.keep_partial(continued)
                    # (the interrupted leg generated its thinking too: it counts as the text does)
                    self.continued_tokens = (await self._token_count(continued.turn.text)
                                             + await self._token_count(continued.turn.reasoning or ""))
                request = await self._chat_request(continued=None if continued is None else continued.turn)
                continued = None
                spent = self.completion_spent
                if spent and self.continued_tokens:
                    # the partial reply already holds max_tokens tokens: it ends as the limit would have ended it
                    run.finish_reason = "length"
                    self._begin_turn()
                    self._count_turn(await self._usage_without_generating(request))
                    await self._finish("ready", None)
                    return
                if spent:
                    # the earlier turns (a tool loop's, a submit_tool_outputs leg's) generated max_completion_tokens
                    # tokens: none is started, the run ends incomplete as OpenAI's, its reply empty
                    run.finish_reason, run.stop_reason = None, COMPLETION_BUDGET
                    await self._finish("stopped", None)
                    return
                if request.max_prompt_tokens is not None and request.max_prompt_tokens <= 0:
                    # the earlier turns spent the budget (a remote engine's may overspend it): none is started
                    run.finish_reason, run.stop_reason = None, PROMPT_BUDGET
                    await self._finish("stopped", None)
                    return
                status, error, cancelled = await self._stream_step(request)
                calls = parse_calls([self.tool_calls[i] for i in sorted(self.tool_calls)])
                if run.finish_reason in ("length", "content_filter"):
                    # the token limit (an upstream's filter) may have cut the last call's arguments: such a call is
                    # neither run nor put to the user (one whose arguments are whole, its closing markup cut, counts)
                    calls = [c for c in calls if whole_arguments(c.arguments)]
                if status == "ready" and calls and self.policy:
                    if await self._tool_step(calls):
                        continue
                    return  # requires_action
                await self._finish(status, error)
                return
        except _Stop:  # a stop asked for while the run's tool calls ran: they were cut off, no result kept
            await self._stopped_in_calls()
        except asyncio.CancelledError:
            cancelled = True
        finally:
            if cancelled:
                if run.active:
                    run.stop_reason = run.stop_reason or "cancelled"
                    finish = report_failure(asyncio.ensure_future(self._cancelled_now()),
                                            f"ending run {run.id} as cancelled", log)
                    await asyncio.wait([finish])
                raise asyncio.CancelledError

    async def _cancelled_now(self) -> None:
        """End a leg whose task was cancelled, as where it was allows: its answered calls cut off (a
        ``submit_tool_outputs`` leg), ready for the next turn with no message of its own yet (the run abandoned, the
        calling turn's message left as saved), inside its tool calls, or in a model turn."""
        if self.answering is not None:
            await self.service._stopped_answering(self.run, self.answering, self.answers)
        elif self.answering_phase:
            await self.service._abandon(self.run, asyncio.CancelledError())
        elif self.in_calls:
            await self._stopped_in_calls()
        else:
            await self._finish("stopped", None)

    @property
    def answering_phase(self) -> bool:
        """Whether the leg is still taking a submit's answers in (its calls run, their results saved, the next turn
        readied): ``run.message`` is the calling turn's then, saved, never this leg's to end."""
        return self.answering is not None or self._readying

    async def answer_calls(self) -> bool:
        """Take in the answers a ``submit_tool_outputs`` claimed the run with: run the approved calls, save every
        answer, end the ``tool_calls`` step the run waited in, ready the next model turn. False when the leg stopped
        while the calls ran (:meth:`RunService._stopped_answering`: a cancel, a stop of jan), its events told."""
        run = self.run
        calls, answers = run.answers or ([], {})
        run.answers = None
        self.answering, self.answers = calls, answers
        try:
            records = await _unless_stopped(run, run_calls(self.service.tools, self.policy, calls,
                                                           approved_by="user", decisions=answers))
        except _Stop:
            self.answering = None
            await self.service._stopped_answering(run, calls, answers)
            return False
        # the results are in hand: a failure or a cancel from here on abandons the run (RunService._abandon)
        self.answering, self._readying = None, True

        async def take_in() -> None:
            await save_tool_messages(self.store, run.thread_id, run.id, run.assistant_id, records, run.step)
            run.publish("thread.run.in_progress", run_record(run))
            # the tool_calls step the run waited in has every output now (a record of an older jan has none)
            waited = next((s for s in reversed(run.steps) if s.type == "tool_calls" and s.open), None)
            if waited is not None:
                for record in records:
                    waited.answer(record.call.id, record.result.as_text(), approved_by=record.approved_by,
                                  duration_ms=record.duration_ms)
                waited.end("completed")
                await self.service.persist(run)
                run.publish_step(waited, "completed")

        # whole: a cancel landing while the results are saved waits for them, then ends the run; cut midway, it
        # kept some results or none, and the step ended cancelled without the outputs the client was told were taken
        await _whole(take_in())
        await self.next_step()
        self._readying = False
        return True

    async def _stopped_in_calls(self) -> None:
        """End a leg stopped while its tool calls ran. A stop of jan leaves the run as a crash would: its calling
        turn saved as it was, no result for the calls cut off, the tool step ``cancelled``, the run
        ``interrupted`` (resume runs those calls again). A cancel ends the run ``cancelled`` as it ends a turn."""
        run = self.run
        self.in_calls = False
        if run.stop_reason != INTERRUPTED:
            await self._finish("stopped", None)
            return
        run.status, run.pending, run.ended_at = "interrupted", [], now_s()
        ended = run.end_steps()
        await self.service.persist(run)
        for step in ended:
            run.publish_step(step, step.status)
        _publish_interrupted(run)
        run.finished.set()

    async def _tool_step(self, calls: list[PendingCall], *, saved: bool = False) -> bool:
        """Save the tool-calling turn (unless it is ``saved`` already: a resumed leg) and run what the policy
        allows; ``False`` when the user must answer. The calls are a ``tool_calls`` step, which ends once every
        call has its output (while the user has to answer some, it stays in progress)."""
        run = self.run
        ended: list[RunStep] = []
        # from here until the results are saved a stop leaves the calling turn as it is (_stopped_in_calls)
        self.in_calls = True
        if not saved:
            metadata = {**((run.message or {}).get("metadata") or {}), "run_id": run.id, "model": run.model_id,
                        "step": run.step, "tool_calls": [c.to_dict() for c in calls], "finish_reason": "tool_calls"}
            if self.turn_usage:
                metadata["usage"] = self.turn_usage
            self._thinking_done()
            stored = await self._save({"content": self._parts(), "status": "ready", "metadata": metadata})
            if self.unsaved is not None:  # (a full disk) no calls run for a turn the thread does not hold: the run
                raise self.unsaved    # fails with the disk's error (execute: _finish_now tells it)
            run.message = stored or {**self._message_now("ready"), "metadata": metadata}
            usage = self.turn_usage
            run.unannounced = False  # a turn that wrote nothing before its calls: no message, its calls the step
            written = self.message_step()
            if written is not None:
                written.end("completed", usage=zero_usage())  # the turn's usage is its tool_calls step's
                ended.append(written)
        else:
            # the saved turn's text and thinking: a cancel that ends the run here saves the message with them
            self.text, self.reasoning = text_of(run.message or {}), reasoning_of(run.message or {})
            # A resumed leg runs again the calls a stop cut off: the turn that made them is counted by the step they
            # were in (ended cancelled, with its usage); counted here too, the steps would tell it twice.
            ids = {c.id for c in calls}
            counted = any(s.type == "tool_calls" and ids & {c.get("id") for c in s.tool_calls} for s in run.steps)
            usage = zero_usage() if counted else ((run.message or {}).get("metadata") or {}).get("usage")
        # the step the turn's call pieces streamed in (None: a resumed leg's calls, told whole below)
        step, streamed = (self.call_step, True) if self.call_step is not None and not saved else (None, False)
        self.call_step, self._call_places = None, {}
        if step is None:
            step = RunStep(run.id, run.thread_id, run.assistant_id, "tool_calls")
            run.steps.append(step)
        step.usage = usage
        # the calls as parsed whole (a call cut by the token limit left out; its id given if it streamed none)
        step.tool_calls = [{**c.to_dict(), "function": {**c.to_dict()["function"], "output": None}} for c in calls]
        # the turn's usage is in the run's record before its calls run: a stop of jan inside one keeps it
        await self.service.persist(run)
        if ended:  # (the message of a turn that wrote something before its calls)
            run.publish("thread.message.completed", run.message)
        for written in ended:
            run.publish_step(written, "completed")
        if not streamed:
            _announce_calls(run, step)
        auto, ask = triage(self.policy, calls)
        records = await _unless_stopped(run, run_calls(self.service.tools, self.policy, auto, approved_by="policy")) \
            if auto else []
        if records:
            await save_tool_messages(self.store, run.thread_id, run.id, run.assistant_id, records, run.step)
        self.in_calls = False
        for record in records:
            step.answer(record.call.id, record.result.as_text(), approved_by=record.approved_by,
                        duration_ms=record.duration_ms)
        if ask:
            answered = {r.call.id for r in records}

            async def wait_for_the_user() -> None:
                run.pending = [c for c in calls if c.id not in answered]
                run.status, run.expires_at = "requires_action", self.service.expiry_from_now()
                await self.service.persist(run)
                run.publish("thread.run.requires_action", run_record(run))
                run.publish("done", "[DONE]")
                run.finished.set()

            await _whole(wait_for_the_user())
            return False
        step.end("completed")
        await self.service.persist(run)
        run.publish_step(step, "completed")
        await self.next_step()
        return True

    async def next_step(self) -> None:
        """Start the model's next turn (after tool results were saved)."""
        self.run.step += 1
        self.run.pending = []
        await self.service.persist(self.run)
        await self.new_message()

    def _over_budget(self) -> bool:
        """Whether the run's turns used more prompt tokens than its ``max_prompt_tokens``: only an engine that
        renders its own prompts can (a local one fits each prompt to what is left)."""
        left = self._prompt_tokens_left()
        return left is not None and left < 0

    async def _usage_so_far(self) -> dict[str, Any]:
        """Usage of a reply cut off before the engine reported it: its text re-tokenized (a close count), and its
        prompt as the engine told it with the first token (None when it did not: a remote engine, or none came;
        a continued reply's, less the partial reply it held, as :meth:`_reply_usage`)."""
        try:
            target = await self.service.models.resolve(self.run.model_id)
            completion = len(await target.engine.tokenize(target.model, self.text, add_special=False))
        except Exception:  # noqa: BLE001 - an estimate is all this is
            completion = self._pieces
        prompt = None if self._turn_prompt is None else max(0, self._turn_prompt - self.continued_tokens)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": None if prompt is None else prompt + completion, "estimated": True}

    async def _usage_without_generating(self, request: ChatRequest) -> dict[str, Any]:
        """The usage of a continued reply that had no tokens left to generate: its prompt as rendered."""
        try:
            prompt = len((await self.service.chat.render(request)).tokens)
        except Exception:  # noqa: BLE001 - e.g. a remote engine renders its own prompts: the prompt is unknown
            return {"prompt_tokens": None, "completion_tokens": self.continued_tokens, "total_tokens": None,
                    "estimated": True}
        return self._reply_usage(Usage(prompt_tokens=prompt, completion_tokens=0))

    async def _finish(self, status: str, error: RunFailure | None) -> None:
        """End the leg and the run (not one going on in ``requires_action``): the reply saved as ``status``, the
        run's status from it. A reply ``stopped`` for one of :data:`BUDGET_STOPS` never had a turn: the run is
        ``incomplete`` (for that reason), not ``cancelled``. Written whole even when a cancel arrives meanwhile
        (:func:`_whole`)."""
        await _whole(self._finish_now(status, error))

    def _wrote_nothing(self) -> bool:
        """Whether the turn has written nothing at all: no text, thinking or call piece came (it waited for its model,
        queued, or for its first token) and its message was never told on the stream (``run.unannounced``)."""
        return self.run.unannounced and not (self.text or self.reasoning or self.tool_calls)

    async def _end_unwritten(self) -> None:
        """End a run stopped (a cancel, from here or another process; its listener gone) before its turn wrote
        anything, as OpenAI's run cancelled before it produced anything: ``cancelled``, no message and no
        ``message_creation`` step. The pending reply saved as the turn began (what a restart finishes as
        interrupted) is removed from the thread: kept, it was an empty "incomplete" message that every listing,
        step and replayed stream told as a cut-off answer. Its stream never told it (``run.unannounced``), so it
        tells no message event now either."""
        run = self.run
        message, run.message = run.message, None
        run.unannounced = False
        # The run's state first, as any end (_finish_now): whoever finds the reply gone finds the run ended.
        run.status, run.ended_at, run.pending = "cancelled", now_s(), []
        run.usage = run.usage or usage_fields(Usage())  # a terminal run tells its usage (zero here), as OpenAI's
        ended = run.end_steps()  # none of this turn's: steps of earlier turns still open, if any
        if message is not None:
            try:
                await self.store.delete_message(run.thread_id, message["id"])
            except NotFoundError:  # its thread deleted meanwhile: nothing to remove it from
                pass
            except Exception as exc:  # noqa: BLE001 - the run ends all the same (the reply is left out of prompts)
                log.warning("run %s: could not remove its empty reply %s: %s", run.id, message["id"], exc)
            # listeners of the bus heard of the pending reply (MessageResponse): they hear it ended, never left pending
            self.bus.emit_nowait(MessageUpdate(thread_id=run.thread_id, message={
                **message, "status": "stopped",
                "metadata": {**(message.get("metadata") or {}), "stop_reason": run.stop_reason}}))
        self.bus.emit_nowait(InferenceStopped(model_id=run.model_id, request_id=run.id, thread_id=run.thread_id,
                                              reason=run.stop_reason or "cancelled"))
        await self.service.persist(run)
        for step in ended:
            run.publish_step(step, step.status)
        run.publish("thread.run.cancelled", {**run_record(run), "message": None})
        run.publish("done", "[DONE]")
        run.finished.set()

    async def _finish_now(self, status: str, error: RunFailure | None) -> None:
        run = self.run
        if self._saver is not None:
            await asyncio.wait([self._saver])
        over_budget = status == "stopped" and run.stop_reason in BUDGET_STOPS
        if status == "stopped" and not over_budget and run.stop_reason != INTERRUPTED and self._wrote_nothing():
            await self._end_unwritten()
            return
        # a turn that ends with nothing written (failed, not started for a token limit) still made its message
        await self.announce_message()
        # How the reply ends is decided here, now: what an earlier end of the same message wrote (a resumed reply's
        # interruption: stop_reason "interrupted", its finish_reason or error) must not describe this one.
        metadata = {k: v for k, v in ((run.message or {}).get("metadata") or {}).items() if k not in _ENDING_KEYS}
        metadata.update({"run_id": run.id, "model": run.model_id})
        if run.finish_reason:
            metadata["finish_reason"] = run.finish_reason
        if status == "stopped" and run.stop_reason == INTERRUPTED:
            # As a crash leaves it: the cut turn is not counted now. Its leg is counted once, by the leg that resumes
            # the reply (which counts the reply's earlier tokens again: _reply_usage); counted here too, the run's
            # usage (and its steps') would hold those tokens twice.
            self.turn_usage, run.usage = None, self._usage_before
        elif self.turn_usage is None and status == "stopped" and self.text:
            self._count_turn(await self._usage_so_far())
        if self.turn_usage and not over_budget:
            metadata["usage"] = self.turn_usage  # the reply's own turn (the run's usage sums all of them)
        if error is not None:
            metadata["error"], metadata["error_code"] = error.message, error.code
        if status == "stopped":
            metadata["stop_reason"] = run.stop_reason
        self._thinking_done()
        # The run's state first: whoever sees the final message also sees the finished run.
        run.ended_at = now_s()
        run.pending = []
        # a terminal run tells its usage, as OpenAI's, also when no turn used any (none started, cancelled or
        # failed before its first token); a reply that used none has no usage in its message
        run.usage = run.usage or usage_fields(Usage())
        if over_budget:
            run.status, run.incomplete_reason = "incomplete", run.stop_reason
        elif status == "ready" and self._over_budget():
            run.status, run.incomplete_reason = "incomplete", PROMPT_BUDGET
        elif status == "ready":  # (a turn the server cut off is an "error": _stream_step)
            run.status, run.incomplete_reason = TURN_ENDS[run.finish_reason or "stop"]
        elif status == "stopped":
            # a stop of jan (interrupt_all) leaves the run as a crash would, only sooner: interrupted, resumable
            run.status = "interrupted" if run.stop_reason == INTERRUPTED else "cancelled"
        else:
            run.status = "failed"
            run.last_error = error.last_error()
        # Saved before the steps end: a reply the disk refused (full) is no whole answer stored, so the run fails
        # with the disk's error (its stream told so: an ``error`` event, then ``thread.run.failed``), never ends
        # ``completed`` over the partial reply a reader of the thread finds (left pending, read as incomplete).
        saved = await self._save({"content": self._parts(), "status": status, "metadata": metadata})
        stored = self.unsaved is None
        if not stored and run.status != "interrupted":  # (an interrupted run is told so, and resumed from disk)
            # (its message was made as the run began and saved as it streamed: that copy stays, never "nothing")
            error = self.service.failure(partly_saved(self.unsaved, REPLY_LEFT_INCOMPLETE, "the reply"))
            run.status, run.incomplete_reason, run.last_error = "failed", None, error.last_error()
            metadata["error"], metadata["error_code"] = error.message, error.code
            status = "error"
        written = self.message_step()
        if written is not None:  # the turn's step, with its usage (none for a turn not started)
            written.end(end_status(run.status), usage=self.turn_usage if self.turn_usage and not over_budget else None,
                        last_error=run.last_error if run.status == "failed" else None, at=run.ended_at)
        ended = [written] if written is not None else []
        if self.call_step is not None and self.call_step.open and run.status in ("completed", "incomplete"):
            # calls that streamed but never ran (the token limit cut them: left out, never run nor asked about): their
            # step did nothing, it is no completed one
            self.call_step.end("cancelled", at=run.ended_at)
            ended.append(self.call_step)
        ended += run.end_steps()
        run.message = saved or {**self._message_now(status), "metadata": metadata}
        if status == "stopped" and not over_budget:  # (a turn not started was no inference)
            self.bus.emit_nowait(InferenceStopped(model_id=run.model_id, request_id=run.id,
                                                  thread_id=run.thread_id, reason=run.stop_reason or "cancelled"))
        self.bus.emit_nowait(MessageUpdate(thread_id=run.thread_id, message=run.message))
        refused = await self.service.persist(run)
        if refused is not None and stored and run.status != "interrupted":
            # the reply is whole on disk, but not the run's end: its record reads as interrupted once this process
            # lets it go, so it is no run that completed either
            error = self.service.failure(partly_saved(refused, RUN_END_UNSAVED, "the run's end"))
            run.status, run.incomplete_reason, run.last_error = "failed", None, error.last_error()
            stored = False
        final = run.message
        if not tool_bookkeeping(final):  # (a calling turn cut off in its calls was never a message on the wire)
            run.publish("thread.message.completed" if final.get("status") == "ready" else "thread.message.incomplete",
                        final)
        for step in ended:
            run.publish_step(step, step.status)
        if run.status == "interrupted":
            _publish_interrupted(run)
        else:
            if not stored and run.status == "failed":  # (the stream's ErrorObject, as a stop of jan tells its own)
                run.publish("error", {"code": error.code or error.kind, "type": "server_error", "param": None,
                                      "message": error.message})
            run.publish(f"thread.run.{run.status}", {**run_record(run), "message": run.message})
            run.publish("done", "[DONE]")
        run.finished.set()
