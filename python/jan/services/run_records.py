"""Runs on disk: ``<data>/threads/<thread_id>/runs/<run_id>.json``, so a run outlives the process that ran it.

A record is the run's OpenAI shape plus what is needed to continue it
(``step``, the pending calls of ``required_action``, the run's own
``tools``/``tool_choice``/``tool_policy``, ``background``) and the run's
steps (``steps``: OpenAI's run step objects). It is rewritten
atomically whenever the run's state changes, a step's included (not per
token: the reply's text is in its message, saved every fraction of a second).

A record saved as ``queued``/``in_progress`` is leased by the process running
it (:mod:`jan.store.leases`, ``<data>/.live/<run_id>.lock``, the mechanism that
also guards its ``pending`` reply) until the run leaves those statuses. A live
record whose lease nobody holds belongs to a process that died: at start-up
(:func:`mark_interrupted`) or when it is read (:func:`interrupt_if_orphaned`)
it becomes ``interrupted`` — its partial answer is kept and ``POST .../resume``
continues it; the steps it was in (``steps``, :mod:`jan.services.run_steps`) end ``cancelled``. A run another live process is running is never marked, so
processes sharing a data folder leave each other's runs alone.

Claiming a thread (:meth:`jan.services.runs.RunService._thread_lock`, :mod:`jan.services.thread_claims`) is checked and claimed under a lock that
other processes sharing the folder respect too: an OS file lock (flock/LockFileEx, through ``filelock``) on
:func:`claim_lock_path`, held until the claiming run's record is on disk, whence every process reads it as
holding the thread (a live record leased by a live process, see above).

A cancel sent to a process that is not running the run (:meth:`jan.services.runs.RunService.cancel`) is a marker
next to its record (``<run_id>.cancel``, :func:`ask_cancel`), written atomically: the process running the run looks
for its active runs' markers a few times a second (:func:`cancels_asked`: one ``stat`` per active run, never per
token), stops the run as a cancel of its own would, and removes the marker (:func:`clear_cancel`); the cancelling
process waits for the run's lease to go (:func:`running_elsewhere`), then reads what the record says.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Container
from pathlib import Path
from typing import Any

from jan.core.fs import atomic_write_bytes, loads_json
from jan.core.locks import try_lock_file
from jan.json_text import data_file_text, utf8_json
from jan.services.run_steps import interrupted_steps
from jan.services.thread_claims import claim_lock_path  # (the claim lock: kept importable here)
from jan.store._util import now_s
from jan.store.leases import LEASE_DIR_NAME, Leases
from jan.store.problems import ProblemLog
from jan.local_files import read_regular_file

__all__ = ["RUN_ID_RE", "ask_cancel", "cancel_marker_path", "cancels_asked", "claim_lock_path", "clear_cancel",
           "held_elsewhere", "interrupt_if_orphaned", "list_records", "load_record", "mark_interrupted", "needs_attention", "read_record_file",
           "record_path", "record_problems",
           "running_elsewhere", "save_record", "take_lease", "thread_records", "try_lock"]

log = logging.getLogger("jan.services.runs")

RUN_ID_RE = re.compile(r"^run_[A-Za-z0-9]{1,64}\Z")
_THREAD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
#: Statuses of a run that was generating when the process ended.
LIVE_STATUSES = ("queued", "in_progress")


def record_path(data_folder: str | Path, thread_id: str, run_id: str) -> Path:
    """Where a run's record lives; ``ValueError`` for ids that could leave the data folder."""
    if not RUN_ID_RE.match(run_id) or not _THREAD_ID_RE.match(thread_id) or ".." in thread_id:
        raise ValueError(f"invalid thread or run id: {thread_id!r}/{run_id!r}")
    return Path(data_folder) / "threads" / thread_id / "runs" / f"{run_id}.json"


def _leases(data_folder: str | Path) -> Leases:
    return Leases(Path(data_folder) / LEASE_DIR_NAME)


#: (one lock file taken without waiting: :func:`jan.core.locks.try_lock_file`, kept importable here)
try_lock = try_lock_file


def take_lease(data_folder: str | Path, run_id: str) -> None:
    """Lease run ``run_id`` for this process before its record says so (a leg claimed under the thread's lock;
    saving the record with a status that is not live gives it up, as always)."""
    _leases(data_folder).take(run_id)


def held_elsewhere(data_folder: str | Path, thread_id: str, run_id: str, status: str) -> str | None:
    """The status another process gave run ``run_id`` since this one last read it (believing it ``status``), or
    None: a live process holds its lease (it is running a leg of it), or its record says otherwise. A copy of a
    run read from disk must never be claimed (submitted, resumed, cancelled) over another process's claim."""
    leases = _leases(data_folder)
    if leases.is_live(run_id) and not leases.holds(run_id):
        return "in_progress"
    record = load_record(data_folder, thread_id, run_id)
    if record is None:
        return None
    record = interrupt_if_orphaned(data_folder, record)  # a claim whose process died is no claim
    return record.get("status") if record.get("status") != status else None


def running_elsewhere(data_folder: str | Path, run_id: str) -> bool:
    """Whether another live process is running a leg of run ``run_id`` (it holds the run's lease)."""
    leases = _leases(data_folder)
    return leases.is_live(run_id) and not leases.holds(run_id)


def cancel_marker_path(data_folder: str | Path, thread_id: str, run_id: str) -> Path:
    """The marker that asks whichever process runs ``run_id`` to cancel it (next to its record)."""
    return record_path(data_folder, thread_id, run_id).with_suffix(".cancel")


def ask_cancel(data_folder: str | Path, thread_id: str, run_id: str) -> None:
    """Ask the process running ``run_id`` to cancel it: the marker, written atomically (skipped when the thread's
    folder is gone: the thread was deleted, and its runs with it)."""
    path = cancel_marker_path(data_folder, thread_id, run_id)
    if not path.parent.parent.is_dir():
        return
    try:
        path.parent.mkdir(exist_ok=True)  # the runs folder only: a thread deleted meanwhile stays deleted
        atomic_write_bytes(path, json.dumps({"run_id": run_id, "asked_at": int(time.time())}).encode("utf-8"))
    except (FileNotFoundError, FileExistsError):  # (mkdir: the folder there as it looked, gone as it checked)
        if path.parent.parent.is_dir():
            raise


def cancels_asked(data_folder: str | Path, runs: list[tuple[str, str]]) -> set[str]:
    """The ids of ``runs`` (``(thread_id, run_id)`` pairs) whose cancel another process asked for."""
    asked = set()
    for thread_id, run_id in runs:
        try:
            if cancel_marker_path(data_folder, thread_id, run_id).exists():
                asked.add(run_id)
        except (OSError, ValueError):
            continue
    return asked


def clear_cancel(data_folder: str | Path, thread_id: str, run_id: str) -> None:
    """Remove ``run_id``'s cancel marker (heard, or left by a cancel whose run had ended already)."""
    try:
        cancel_marker_path(data_folder, thread_id, run_id).unlink()
    except (OSError, ValueError):
        pass


def save_record(data_folder: str | Path, record: dict[str, Any]) -> None:
    """Write a run's record atomically (skipped if its thread's folder is gone: the thread was deleted).

    A live record (``queued``/``in_progress``) is leased by this process before it is written, so no
    reader ever sees it unleased; the lease is given up once the record is written with another status.
    """
    path = record_path(data_folder, record["thread_id"], record["id"])
    leases = _leases(data_folder)
    live = record.get("status") in LIVE_STATUSES
    if not path.parent.parent.is_dir():
        leases.release(record["id"])
        return
    taken = live and not leases.holds(record["id"])
    if live:
        leases.take(record["id"])
    try:
        # the runs folder only, never its thread's: a thread deleted since the check must not come back as a
        # folder holding nothing but this record
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, utf8_json(json.dumps(record, ensure_ascii=False, separators=(",", ":"))))
    except (FileNotFoundError, FileExistsError):  # (mkdir: the folder there as it looked, gone as it checked)
        # the thread was deleted between the check above and the write: nothing left to lease (kept, the lease
        # file outlived the thread until this process ended)
        if path.parent.parent.is_dir():
            raise
        leases.release(record["id"])
        return
    except OSError:
        # The lease goes with a record the disk refused (a full disk, a read-only folder) unless the run goes on:
        # a run whose first record could not be written (the request's 507) never started, and a run that ended
        # but could not save its end left its last live record ("queued") leased until this process ended, so
        # every other process sharing the folder read it as running and refused runs on its thread (run_active).
        # Unleased, every reader ends it as interrupted. One still running (a live record's save) keeps it.
        if taken or not live:
            leases.release(record["id"])
        raise
    if not live:
        leases.release(record["id"])


def _interrupt(data_folder: str | Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """Mark a live record nobody runs any more ``interrupted`` (saved when it can be); None if it is live."""
    if record.get("status") not in LIVE_STATUSES or _leases(data_folder).is_live(str(record.get("id"))):
        return None
    at = now_s()  # (the data folder's clock, as the run's other times: never before its created_at)
    record = {**record, "status": "interrupted", "interrupted_at": at}
    if "steps" in record:  # the steps it was in are over too: none is left in_progress that nobody runs
        record["steps"] = interrupted_steps(record["steps"], at)
    try:
        save_record(data_folder, record)
    except (OSError, ValueError) as exc:
        # Still interrupted to whoever reads it (a full disk, a read-only folder): nobody runs it; the record on
        # disk is marked by a later read that can write.
        log.warning("could not mark run %s interrupted: %s", record.get("id"), exc)
    return record


def interrupt_if_orphaned(data_folder: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as it stands: a live one whose process died comes back (and is saved) ``interrupted``."""
    return _interrupt(data_folder, record) or record


def _shape_error(record: Any, path: Path) -> str | None:
    """Why ``record`` (parsed from ``path``) is no run record, or ``None`` for one: an object naming this run and
    this thread, with a status. (Valid JSON of another shape — a list, null, an id that is not the file's — would
    otherwise reach code that takes it for a run: at start-up :func:`mark_interrupted` stopped jan serve itself.)"""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if record.get("id") != path.stem:
        return f"its id {record.get('id')!r} is not the file's ({path.stem!r})"
    if record.get("thread_id") != path.parent.parent.name:
        return f"its thread_id {record.get('thread_id')!r} is not its folder's ({path.parent.parent.name!r})"
    if record.get("status") not in RECORD_STATUSES:
        return f"its status {record.get('status')!r} is none of a run's ({', '.join(RECORD_STATUSES)})"
    return _field_error(record)


#: The statuses a run record holds (``interrupted``: jan's, a run a stop of jan cut off, told ``incomplete``).
RECORD_STATUSES = ("queued", "in_progress", "requires_action", "interrupted", "completed", "incomplete",
                   "cancelled", "failed", "expired")
_INT = (int,)
_STR = (str,)
#: The fields a run is read back from (:func:`jan.services.runs.run_from_record`, the run's wire object), each
#: null or of these types: valid JSON whose field is of another type (a ``pending`` that is a string, a
#: ``created_at`` that is text) once made every request touching the thread a 500 — its runs listed, a run
#: started, a message added — where a damaged record is left out (and reported) and the thread goes on.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "created_at": _INT, "started_at": _INT, "ended_at": _INT, "expires_at": _INT, "interrupted_at": _INT, "step": _INT,
    "max_prompt_tokens": _INT, "last_messages": _INT, "assistant_id": _STR, "model": _STR, "instructions": _STR,
    "message_id": _STR, "finish_reason": _STR, "stop_reason": _STR, "incomplete_reason": _STR,
    "reasoning_effort": _STR, "parameters": (dict,), "metadata": (dict,), "usage": (dict,),
    "response_format": (dict,), "tool_policy": (dict,), "assistant_tools": (dict,), "pending": (list,),
    "steps": (list,), "tools": (list,), "run_tools": (list,), "warnings": (list,)}


def _field_error(record: dict[str, Any]) -> str | None:
    for key, kinds in _FIELD_TYPES.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            return f"its {key} {str(value)[:40]!r} is not of the type a run has there"
    for i, call in enumerate(record.get("pending") or ()):
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) \
                or not isinstance(call.get("function") or {}, dict):
            return f"its pending[{i}] is not a call waiting for its output"
    for i, step in enumerate(record.get("steps") or ()):
        if not isinstance(step, dict) or not isinstance(step.get("step_details") or {}, dict) \
                or not isinstance(step.get("created_at") or 0, int):
            return f"its steps[{i}] is not a run step"
    return None


def _parse(data: bytes, path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = loads_json(data_file_text(data))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"invalid JSON: {exc}"
    error = _shape_error(record, path)
    return (None, error) if error else (record, None)


_PROBLEMS: dict[str, ProblemLog] = {}


def record_problems(data_folder: str | Path) -> ProblemLog:
    """The damaged run records this process found in ``data_folder`` (paths relative to it: ``threads/<thread_id>/
    runs/<run_id>.json``), as the store keeps its own damaged files' (:class:`jan.store.problems.ProblemLog`): what
    ``GET /v1/threads/{thread_id}/runs`` lists under ``problems``."""
    key = str(Path(data_folder).absolute())
    found = _PROBLEMS.get(key)
    if found is None:
        found = _PROBLEMS.setdefault(key, ProblemLog())
    return found


def _where(path: Path) -> tuple[ProblemLog, str]:
    """The problem log of a record's data folder (``<data>/threads/<thread_id>/runs/<name>``) and its path there."""
    data_folder = path.parents[3]
    return record_problems(data_folder), path.relative_to(data_folder).as_posix()


def read_record_file(path: Path) -> dict[str, Any] | None:
    """The run record in ``path``; ``None`` when there is none (missing, unreadable) or it is damaged. A damaged
    one is left where it is and reported (:func:`record_problems`, once per damage, not on every read of its
    thread), as every damaged file of the data folder is: no read moves the user's files. A record repaired by
    hand is read again, and no longer reported."""
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("run record %s unreadable: %s", path, exc)
        return None
    record, error = _parse(data, path)
    if error is None:
        if _PROBLEMS:  # (none found in this process: the common case, nothing to forget)
            problems, where = _where(path)
            problems.repaired(where)
        return record
    problems, where = _where(path)
    problems.add(where, f"{error}; left out of the thread's runs: repair it or remove it")
    return None


def load_record(data_folder: str | Path, thread_id: str, run_id: str) -> dict[str, Any] | None:
    """A run's record, or ``None`` (missing, unreadable ids, or a damaged file, which is reported)."""
    try:
        path = record_path(data_folder, thread_id, run_id)
    except ValueError:
        return None
    return read_record_file(path)


def list_records(data_folder: str | Path) -> list[dict[str, Any]]:
    """Every readable run record of every thread (damaged ones left out and reported: :func:`record_problems`)."""
    out = []
    for path in sorted(Path(data_folder).glob("threads/*/runs/run_*.json")):
        record = read_record_file(path)
        if record is not None:
            out.append(record)
    return out


def thread_records(data_folder: str | Path, thread_id: str, skip: Container[str] = ()) -> list[dict[str, Any]]:
    """The readable records of one thread's runs, but those whose id is in ``skip``; a live one whose process
    died comes back ``interrupted`` (:func:`interrupt_if_orphaned`). An id that could leave the data folder
    has no records (``[]``: the store answers for such an id)."""
    if not _THREAD_ID_RE.match(thread_id) or ".." in thread_id:
        return []
    out = []
    for path in sorted((Path(data_folder) / "threads" / thread_id / "runs").glob("run_*.json")):
        if path.stem in skip:
            continue
        record = read_record_file(path)
        if record is not None:
            out.append(interrupt_if_orphaned(data_folder, record))
    return out


def needs_attention(data_folder: str | Path) -> bool:
    """Whether any run record is live (its process may have died: :func:`mark_interrupted`) or waiting for tool
    outputs (it expires): what a server must look at as it starts. Without one it needs no run service until a
    request asks for one (``jan.services.container.Services.runs``)."""
    return any(record.get("status") in (*LIVE_STATUSES, "requires_action") for record in list_records(data_folder))


def mark_interrupted(data_folder: str | Path) -> list[dict[str, Any]]:
    """Turn the records of runs that were live when their process died into ``interrupted`` ones; returns them.

    Runs some live process (this one or another sharing the folder) still holds are left alone.
    """
    changed = []
    for record in list_records(data_folder):
        marked = _interrupt(data_folder, record)
        if marked is not None:
            changed.append(marked)
    return changed
