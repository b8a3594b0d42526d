"""A failed run's ``last_error.code`` is one of OpenAI's documented values (``server_error``, ``rate_limit_exceeded``,
``invalid_prompt``) wherever a client reads it — the run retrieved, its streamed ``thread.run.failed`` event, its
failed steps (streamed and listed) and its record on disk — with jan's own, finer code kept in the ``message``; a
record an older jan wrote with jan's code is read in OpenAI's vocabulary too."""

from __future__ import annotations

import json
import urllib.request

import pytest
from api_helpers import parse_sse, read_jsonl, running, until
from cut_off_helpers import HOLD_N_CTX, only_slot_held, post, request

from jan.errors import (BadRequestError, ContextOverflowError, EngineError, MediaError, ModelFileError, ModelLoadError,
                        ModelSettingError, QueueFullError)
from jan.engine.registry import ModelPoolBusyError
from jan.server.routes.runs import object_of
from jan.services.errors import GenerationCancelledError, RequestError
from jan.services.run_steps import LAST_ERROR_CODES, RunStep, last_error, openai_last_error
from jan.services.runs import RunFailure, cut_turn_error, failure_kind, run_from_record
from jan.templates import GrammarError

WAIT_S = 120


# -- the mapping ---------------------------------------------------------------------------------------------------
class _RateLimited(EngineError):
    http_status = 429
    code = "upstream_rate_limited"


@pytest.mark.parametrize("exc,kind", [
    (QueueFullError("every slot is busy"), "rate_limit_exceeded"),
    (ModelPoolBusyError("no room to load"), "rate_limit_exceeded"),
    (_RateLimited("the upstream says slow down"), "rate_limit_exceeded"),
    (ContextOverflowError("the prompt has 900 tokens, more than the context's 512", 900, 512), "invalid_prompt"),
    (MediaError("image_url: not a PNG, JPEG, WebP or GIF image", reason="unsupported_format"), "invalid_prompt"),
    (GrammarError("the schema has no grammar"), "invalid_prompt"),
    (RequestError("messages[2]: bad", param="messages"), "invalid_prompt"),
    (BadRequestError("text: lone surrogate", param="text"), "invalid_prompt"),
    (ModelFileError("the weights are gone"), "server_error"),
    (ModelSettingError("cache_type_v needs flash attention", param="cache_type_v"), "server_error"),
    (ModelLoadError("out of memory"), "server_error"),
    (GenerationCancelledError(), "server_error"),
    (EngineError("the upstream is unreachable"), "server_error"),
    (RuntimeError("a bug"), "server_error"),
    (OSError(28, "No space left on device"), "server_error"),
])
def test_every_failure_kind_has_one_of_openais_codes(exc, kind):
    assert failure_kind(exc) == kind


def test_jan_code_goes_into_the_message():
    error = RunFailure("The prompt has 900 tokens", "context_length_exceeded", "invalid_prompt").last_error()
    assert error == {"code": "invalid_prompt", "message": "The prompt has 900 tokens (context_length_exceeded)"}
    # nothing to add where jan's code is OpenAI's, or there is none
    assert last_error("cut off", "server_error", "server_error") == {"code": "server_error", "message": "cut off"}
    assert last_error("boom", None, "server_error") == {"code": "server_error", "message": "boom"}
    message, code = cut_turn_error("cancelled")
    assert RunFailure(message, code).last_error()["code"] == "server_error"
    with pytest.raises(ValueError):
        last_error("x", None, "queue_full")


@pytest.mark.parametrize("old,kind", [("queue_full", "rate_limit_exceeded"),
                                      ("context_length_exceeded", "invalid_prompt"),
                                      ("model_load_failed", "server_error"), ("internal_error", "server_error"),
                                      (None, "server_error"), (7, "server_error")])
def test_an_older_record_is_read_in_openais_vocabulary(old, kind):
    saved = {"code": old, "message": "it failed"}
    assert openai_last_error(saved)["code"] == kind and openai_last_error(saved)["code"] in LAST_ERROR_CODES
    assert openai_last_error(None) is None
    current = {"code": "invalid_prompt", "message": "x (context_length_exceeded)"}
    assert openai_last_error(current) == current  # read again: unchanged
    step = {"id": "step_abc", "run_id": "run_abc", "thread_id": "t", "type": "message_creation", "status": "failed",
            "step_details": {"type": "message_creation", "message_creation": {"message_id": "m"}},
            "last_error": saved}
    assert RunStep.from_record(step).to_record()["last_error"]["code"] == kind
    record = {"id": "run_abc", "thread_id": "t", "assistant_id": "jan", "status": "failed", "last_error": saved,
              "steps": [step]}
    assert object_of(record)["last_error"]["code"] == kind
    assert run_from_record(record).last_error["code"] == kind


# -- through a server ----------------------------------------------------------------------------------------------
def _runs_on_disk(data, tid: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((data / "threads" / tid / "runs").glob("run_*.json"))]


def _streamed_run(srv, tid: str, body: dict) -> list[tuple[str | None, object]]:
    req = urllib.request.Request(f"{srv.base_url}/v1/threads/{tid}/runs", method="POST",
                                 headers={"Content-Type": "application/json"},
                                 data=json.dumps({**body, "stream": True}).encode())
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        return parse_sse(resp.read().decode())


def _check_everywhere(srv, tid: str, events, kind: str, jan_code: str) -> None:
    """The failed run's last_error in its stream's run and step events, the run and steps retrieved, and on disk."""
    failed = [data for name, data in events if name == "thread.run.failed"]
    step_failed = [data for name, data in events if name == "thread.run.step.failed"]
    assert len(failed) == 1, [name for name, _ in events]
    error = failed[0]["last_error"]
    assert error["code"] == kind and error["message"].endswith(f"({jan_code})"), error
    assert all(step["last_error"] == error for step in step_failed), step_failed
    run_id = failed[0]["id"]
    status, _, run = request(srv, "GET", f"/v1/threads/{tid}/runs/{run_id}")
    assert status == 200 and run["status"] == "failed" and run["last_error"] == error, run
    status, _, steps = request(srv, "GET", f"/v1/threads/{tid}/runs/{run_id}/steps")
    assert status == 200 and all(s["last_error"] == error for s in steps["data"] if s["status"] == "failed"), steps
    saved = [r for r in _runs_on_disk(srv.config.data_folder, tid) if r["id"] == run_id][0]
    assert saved["last_error"] == error
    assert all(s["last_error"] == error for s in saved.get("steps") or [] if s["status"] == "failed")
    reply = read_jsonl(srv.config.data_folder / "threads" / tid / "messages.jsonl")[-1]
    assert reply["metadata"]["error_code"] == jan_code  # the thread's own record keeps jan's code


@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    """One slot and no wait queue, so a held slot makes the next interactive turn queue-full."""
    with running(tmp_path_factory.mktemp("run-errors") / "data", stories_path, n_parallel=1, max_queue=0,
                 n_ctx=HOLD_N_CTX) as server:
        yield server


def test_a_prompt_too_long_for_the_context_fails_invalid_prompt(srv):
    longer = "the cat sat on the mat and " * (HOLD_N_CTX // 4)  # (7 tokens each: past the held slot's context)
    status, thread = post(srv, "/v1/threads", {"messages": [{"role": "user", "content": longer}]})
    assert status == 200, thread
    events = _streamed_run(srv, thread["id"], {})
    _check_everywhere(srv, thread["id"], events, "invalid_prompt", "context_length_exceeded")


def test_a_busy_model_fails_a_streamed_run_rate_limit_exceeded(srv):
    status, thread = post(srv, "/v1/threads", {"messages": [{"role": "user", "content": "Once upon"}]})
    assert status == 200, thread
    until(lambda: request(srv, "GET", "/health")[0] == 200, "the server is up", WAIT_S)
    with only_slot_held(srv):
        # streamed: its client is there to hear "busy" (a run nobody waits on would wait for room instead)
        events = _streamed_run(srv, thread["id"], {"max_tokens": 4})
    _check_everywhere(srv, thread["id"], events, "rate_limit_exceeded", "queue_full")
