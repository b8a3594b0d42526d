"""The rest of "a generation the server cut off is no normal finish, every finish reason mapped explicitly, errors
in each dialect's own fields" (tests/test_dialect_ends_and_errors.py), where it had not reached: on a real server
with stories260K (every generation on it runs to its token limit: ``ignore_eos``) and the tiny vision pair.

1. Ollama: a generation cut off ends as Ollama's failing one does (an ``{"error": ...}`` line after what was
   streamed; an error status with ``{"error": ...}`` when not streamed), never ``done``; every finish reason has
   its ``done_reason``; a full queue says when to try again (``Retry-After``); ``think`` levels are the one table's.
2. Runs: a run whose model is stopped under its turn ``failed`` (``last_error.code`` ``server_error``), its step
   ``failed`` too, streamed so; every finish reason ends a run explicitly.
3. A remote upstream's legacy completions: finish reasons made jan's, as its chat ones.
4. Media errors with a place: a media marker in the text, an image that does not decode, named by the part that
   sent it in each dialect's terms (and on ``/v1/apply-template``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import get_args

import aiohttp
import pytest
from api_helpers import parse_sse
from cut_off_helpers import (
    HOLD_N_CTX,
    LONG,
    LONG_N_CTX,
    MODEL,
    ONCE,
    WAIT_S,
    cut_off_whole,
    only_slot_held,
    png_bytes,
    post,
    request,
    start_model,
    stop_model,
    stop_once_generating,
)
from jan.errors import EngineError
from jan.extensions.remote.upstream import UpstreamError
from jan.extensions.remote.wire import completion_deltas
from jan.server import schemas
from jan.server.dialects import ollama_requests, ollama_schemas
from jan.server.dialects.ollama_responses import DONE_REASONS, done_reason
from jan.services.errors import GenerationCancelledError
from jan.services.runs import TURN_ENDS, cut_turn_error
from jan.services.types import FINISH_REASONS
from jan.templates.formats.plan import EFFORT_LEVELS, THINK_LEVELS, ReasoningRequest
from server_helpers import start_server

VISION = "vision-chat"
MARKER = "<__media__>"  # the tiny vision pair's projector's media marker (mtmd's default)
# a PNG by its magic bytes (every front end's check passes) that no decoder reads
BROKEN_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, vision_pair):
    tmp = tmp_path_factory.mktemp("cut-ends")
    srv = start_server(tmp, [stories_path, vision_pair[0]], n_ctx=LONG_N_CTX, n_parallel=2)
    status, _, body = request(srv, "PATCH", f"/v1/models/{MODEL}", {"parameters": {"ignore_eos": True}})
    assert status == 200, body
    yield srv
    srv.stop()


async def cut_off_lines(srv, path: str, body: dict) -> list[dict]:
    """Stream ``body`` (Ollama's NDJSON); once a line of generated text came, stop the model; every line."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        try:
            async with session.post(srv.base_url + path, json={**body, "stream": True}) as resp:
                assert resp.status == 200, await resp.text()
                lines: list[dict] = []
                while not any(line.get("response") or (line.get("message") or {}).get("content")
                              for line in lines):  # generating now
                    raw = await resp.content.readline()
                    assert raw, lines
                    lines.append(json.loads(raw))
                await stop_model(session, srv)
                return lines + [json.loads(raw) for raw in (await resp.read()).splitlines() if raw.strip()]
        finally:
            await start_model(session, srv)


# -- 1. Ollama -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body", [
    ("/api/chat", {"model": MODEL, "messages": ONCE, "options": {"num_predict": LONG}}),
    ("/api/generate", {"model": MODEL, "prompt": "Once", "options": {"num_predict": LONG}}),
    ("/api/generate", {"model": MODEL, "prompt": "Once", "raw": True, "options": {"num_predict": LONG}}),
])
async def test_an_ollama_stream_cut_off_ends_in_an_error_line(server, path, body):
    lines = await cut_off_lines(server, path, body)
    # the partial answer was sent, then Ollama's error line, never a done object passing it off as whole
    assert all(line.get("done") is False for line in lines[:-1]), lines[-3:]
    assert set(lines[-1]) == {"error"} and "stopped" in lines[-1]["error"], lines[-3:]


@pytest.mark.parametrize("path, body", [
    ("/api/chat", {"model": MODEL, "messages": ONCE, "stream": False, "options": {"num_predict": LONG}}),
    ("/api/generate", {"model": MODEL, "prompt": "Once", "raw": True, "stream": False,
                       "options": {"num_predict": LONG}}),
])
async def test_an_ollama_answer_cut_off_is_an_error_status(server, path, body):
    status, answer = await cut_off_whole(server, path, body)
    assert status == 503 and set(answer) == {"error"} and "stopped" in answer["error"], (status, answer)


def test_every_finish_reason_has_its_done_reason():
    assert set(DONE_REASONS) | {"cancelled"} == set(FINISH_REASONS)
    assert [done_reason(r) for r in ("stop", "length", "tool_calls", None)] == ["stop", "length", "stop", "stop"]
    with pytest.raises(GenerationCancelledError):
        done_reason("cancelled")
    with pytest.raises(EngineError):
        done_reason("exploded")


def test_a_full_ollama_queue_says_when_to_try_again(tmp_path, stories_path):
    srv = start_server(tmp_path, [stories_path], n_parallel=1, max_queue=0, n_ctx=HOLD_N_CTX)
    try:
        with only_slot_held(srv):
            for stream in (False, True):
                status, headers, answer = request(srv, "POST", "/api/chat", {
                    "model": MODEL, "messages": ONCE, "stream": stream, "options": {"num_predict": 2}})
                assert status == 503 and set(answer) == {"error"}, answer
                assert int(headers["Retry-After"]) >= 1
    finally:
        srv.stop()


def _literal_of(annotation):
    """The values of the Literal inside ``annotation`` (through Annotated and Union: the one ``Think`` type)."""
    from typing import Literal, get_origin

    if get_origin(annotation) is Literal:
        return get_args(annotation)
    for arg in get_args(annotation):
        found = _literal_of(arg) if get_args(arg) else None
        if found:
            return found
    return None


def test_ollama_think_levels_are_the_one_tables():
    assert set(THINK_LEVELS) <= set(EFFORT_LEVELS)
    # Ollama's own (api/types.go ThinkValue): "high", "medium", "low", "max", true or false
    assert set(THINK_LEVELS) == {"high", "medium", "low", "max"}
    for think in (ollama_schemas.Think, schemas.ChatCompletionRequest.model_fields["think"].annotation):
        assert set(_literal_of(think)) == set(THINK_LEVELS)
    for level in THINK_LEVELS:
        body = ollama_schemas.OllamaChatRequest.model_validate({"model": "m", "think": level})
        options = ollama_requests.reasoning(body.think)
        assert options.effort == level and options.enabled  # kept as asked; the table says what it means locally
        assert ReasoningRequest(effort=options.effort).effort == EFFORT_LEVELS[level]
    for wrong in ("xhigh", "none", "extreme", 1):
        with pytest.raises(ValueError):
            ollama_schemas.OllamaChatRequest.model_validate({"model": "m", "think": wrong})


def test_ollama_takes_every_think_level(server):
    for think in (*THINK_LEVELS, True, False):
        status, body = post(server, "/api/chat", {"model": MODEL, "messages": ONCE, "stream": False,
                                                  "think": think, "options": {"num_predict": 2}})
        assert status in (200, 400), body  # stories260K cannot think: Ollama's 400 for asking it to
        assert status == 200 or "does not support thinking" in body["error"], body
    status, body = post(server, "/v1/chat/completions", {"model": MODEL, "messages": ONCE, "max_tokens": 2,
                                                         "think": "max"})
    assert status == 200, body


# -- 2. runs -------------------------------------------------------------------------------------------------
async def test_a_run_whose_model_is_stopped_mid_turn_fails(server):
    status, thread = post(server, "/v1/threads", {"messages": ONCE})
    assert status == 200, thread
    tid = thread["id"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        try:
            async with session.post(f"{server.base_url}/v1/threads/{tid}/runs", json={
                    "model": MODEL, "stream": True, "max_tokens": LONG, "ignore_eos": True}) as resp:
                assert resp.status == 200, await resp.text()
                head = b""
                while b"thread.message.delta" not in head:  # generating now
                    line = await resp.content.readline()
                    assert line, head
                    head += line
                await stop_model(session, server)
                events = parse_sse((head + await resp.read()).decode())
        finally:
            await start_model(session, server)
    names = [name for name, _ in events]
    # the reply is not passed off as whole: the run failed, as OpenAI's after a server-side failure
    assert names[-4:] == ["thread.message.incomplete", "thread.run.step.failed", "thread.run.failed", "done"], names
    run = events[-2][1]
    assert run["status"] == "failed" and run["last_error"]["code"] == "server_error", run
    assert "stopped" in run["last_error"]["message"] and run["incomplete_details"] is None
    assert run["failed_at"] and run["completed_at"] is None
    step = events[-3][1]
    assert step["status"] == "failed" and step["last_error"] == run["last_error"], step
    # stored so: the run, its step and its reply (with what it had written)
    _, _, stored = request(server, "GET", f"/v1/threads/{tid}/runs/{run['id']}")
    assert stored["status"] == "failed" and stored["last_error"] == run["last_error"], stored
    _, _, steps = request(server, "GET", f"/v1/threads/{tid}/runs/{run['id']}/steps")
    assert [s["status"] for s in steps["data"]] == ["failed"], steps
    _, _, message = request(server, "GET", f"/v1/threads/{tid}/messages/{events[-4][1]['id']}")
    assert message["status"] == "incomplete" and message["content"][0]["text"]["value"], message
    assert message["incomplete_details"] == {"reason": "run_failed"}  # stored: error
    assert message["metadata"]["finish_reason"] == "cancelled"


async def test_a_background_run_whose_model_is_stopped_fails(server):
    status, thread = post(server, "/v1/threads", {"messages": ONCE})
    tid = thread["id"]
    status, run = post(server, f"/v1/threads/{tid}/runs", {"model": MODEL, "max_tokens": LONG, "ignore_eos": True,
                                                           "background": True})
    assert status == 200, run
    await stop_once_generating(server, "the run never started generating")
    deadline = time.monotonic() + WAIT_S
    while (got := request(server, "GET", f"/v1/threads/{tid}/runs/{run['id']}")[2])["status"] in (
            "queued", "in_progress"):
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.05)
    assert got["status"] == "failed" and got["last_error"]["code"] == "server_error", got


def test_every_finish_reason_ends_a_run_explicitly():
    assert set(TURN_ENDS) | {"cancelled"} == set(FINISH_REASONS)
    assert TURN_ENDS["stop"] == TURN_ENDS["tool_calls"] == ("completed", None)
    assert TURN_ENDS["length"] == ("incomplete", "max_completion_tokens")
    assert TURN_ENDS["content_filter"][0] == "incomplete"
    for reason in (*TURN_ENDS, None):
        assert cut_turn_error(reason) is None
    message, code = cut_turn_error("cancelled")
    assert code == "server_error" and "stopped" in message
    assert cut_turn_error("exploded")[1] == "server_error"  # never passed off as an end


# -- 3. a remote upstream's legacy completions ---------------------------------------------------------------
def test_remote_completion_finish_reasons_are_jans():
    def reasons(*values):
        return [completion_deltas({"choices": [{"index": 0, "text": "x", "finish_reason": v}]})[0].finish_reason
                for v in values]

    assert reasons("stop", "length", "content_filter", "model_length", "abort", None) == \
        ["stop", "length", "content_filter", "length", "cancelled", None]
    with pytest.raises(UpstreamError):
        reasons("exploded")


# -- 4. media errors with a place ----------------------------------------------------------------------------
def _png_b64() -> str:
    return base64.b64encode(png_bytes()).decode()


def _data_url(b64: str) -> str:
    return "data:image/png;base64," + b64


MARKED = f"What is {MARKER} here?"
TOOLS = [{"name": "f", "input_schema": {"type": "object"}}]  # (a turn with tool blocks defines its tools, as upstream asks)


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", {"messages": [*ONCE, {"role": "assistant", "content": "Hm."}, {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _data_url("PNG")}}, {"type": "text", "text": MARKED}]}]},
     "messages[2].content[1]"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": MARKED}, {"role": "assistant", "content": "Hm."},
                                           {"role": "user", "content": [
                                               {"type": "image_url", "image_url": {"url": _data_url("PNG")}}]}]},
     "messages[0].content"),
    ("/v1/apply-template", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": _data_url("PNG")}},
        {"type": "text", "text": MARKED}]}]}, "messages[0].content[2]"),
    ("/v1/responses", {"max_output_tokens": 2, "instructions": "Be brief.", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": _data_url("PNG")}, {"type": "input_text", "text": MARKED}]}]},
     "input[0].content[1]"),
    ("/v1/messages", {"max_tokens": 2, "system": "Be brief.", "tools": TOOLS, "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "42"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "PNG"}},
                                     {"type": "text", "text": MARKED}]}]},
     "messages.2.content.2"),
    ("/v1/messages", {"max_tokens": 2, "tools": TOOLS, "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "is_error": True, "content": [
            {"type": "text", "text": MARKED}]}, {"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": "PNG"}}]}]},
     "messages.2.content.0.content.0"),
    ("/api/chat", {"stream": False, "messages": [{"role": "user", "content": MARKED, "images": ["PNG"]}]},
     "messages[0].content"),
    ("/api/generate", {"stream": False, "prompt": MARKED, "images": ["PNG"]}, "prompt"),
])
def test_a_media_marker_in_the_text_is_said_of_its_part(server, path, body, field):
    answer, message = _refused_media(server, path, body, "PNG", field)
    assert MARKER in message, message
    if not path.startswith(("/api/", "/v1/messages")):
        assert answer["error"]["param"] == field and answer["error"]["code"] == "unsupported_format", answer


def _refused_media(server, path: str, body: dict, placeholder: str, field: str) -> tuple[dict, str]:
    """``body`` (``placeholder`` standing for a real PNG, bare or as a data URL) sent to the vision model: its 400
    answer and error message, which must start with ``field``."""
    body = json.loads(json.dumps(body).replace(f'"{placeholder}"', json.dumps(_png_b64())).replace(
        json.dumps(_data_url(placeholder)), json.dumps(_data_url(_png_b64()))))
    status, answer = post(server, path, {"model": VISION, **body})
    assert status == 400, answer
    message = answer["error"] if path.startswith("/api/") else answer["error"]["message"]
    assert message.startswith(f"{field}: "), message
    return answer, message


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": _data_url("GOOD")}},
        {"type": "image_url", "image_url": {"url": _data_url(BROKEN_PNG)}}]}]}, "messages[0].content[2]"),
    ("/v1/responses", {"max_output_tokens": 2, "input": [*ONCE, {"role": "user", "content": [
        {"type": "input_image", "image_url": _data_url(BROKEN_PNG)}]}]}, "input[1].content[0]"),
    ("/v1/messages", {"max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": BROKEN_PNG}}]}]},
     "messages.0.content.1"),
    ("/api/chat", {"stream": False, "messages": [{"role": "user", "content": "Look", "images": ["GOOD", BROKEN_PNG]}]},
     "messages[0].images[1]"),
    ("/api/generate", {"stream": False, "prompt": "Look", "images": [BROKEN_PNG]}, "images[0]"),
])
def test_an_image_that_does_not_decode_is_said_of_its_part(server, path, body, field):
    answer, message = _refused_media(server, path, body, "GOOD", field)
    assert "image" in message, message
    if not path.startswith(("/api/", "/v1/messages")):
        assert answer["error"]["param"] == field, answer


def test_apply_template_names_the_field_of_media_a_model_cannot_take(server):
    status, answer = post(server, "/v1/apply-template", {"model": MODEL, "messages": [*ONCE, {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _data_url(_png_b64())}}]}]})
    assert status == 400 and answer["error"]["param"] == "messages[1].content", answer
    assert answer["error"]["code"] == "no_projector"
