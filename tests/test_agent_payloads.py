"""Requests shaped as coding agents build them, sent as they send them: each one's fields accepted (honoured, or
ignored where OpenAI's and Anthropic's own servers have nothing local to do with them), its stream complete.

- Codex CLI (Responses API): every turn declares OpenAI's hosted ``web_search`` beside the function tools it runs
  itself, and current versions tag the request with ``client_metadata``. jan has no search to run: the declaration
  is accepted, not offered to the model (the prompt is the same as without it), echoed in the response's ``tools``;
  a ``web_search_call`` item of a conversation carried over from OpenAI is accepted and left out of the prompt;
  forcing a search is a 400 that says why.
- opencode, Roo/Kilo Code (chat completions): Anthropic's ``cache_control`` breakpoint on messages, content parts
  and tools, for a model they take for Claude: accepted and ignored (the prompt is the same without it).
"""

from __future__ import annotations

import json

import httpx
import pytest

from dialect_helpers import named_events, tool_model
from server_helpers import start_server

MODEL = "tool-model"
SHELL = {"type": "function", "name": "shell_command", "description": "Runs a command in the user's shell.",
         "strict": False, "parameters": {"type": "object", "properties": {
             "command": {"type": "string"}, "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}},
             "required": ["command"], "additionalProperties": False}}
PLAN = {"type": "function", "name": "update_plan", "description": "Records the steps of the task.", "strict": False,
        "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "string"}}},
                       "required": ["plan"], "additionalProperties": False}}
# a freeform patch tool with a Lark grammar of the patch envelope, as Codex declares its apply_patch
PATCH_LARK = r"""start: "*** Begin Patch" LF hunk+ "*** End Patch" LF?
hunk: "*** Add File: " NAME LF ("+" TEXT LF)+ | "*** Delete File: " NAME LF
NAME: /[^\n]+/
TEXT: /[^\n]*/
%import common.LF
"""
PATCH = {"type": "custom", "name": "apply_patch", "description": "Edits files with a patch.",
         "format": {"type": "grammar", "syntax": "lark", "definition": PATCH_LARK}}
# the hosted search Codex declares by default (its "cached" web search mode)
SEARCH = {"type": "web_search", "external_web_access": False, "search_content_types": ["text", "image"]}
CODEX_HEADERS = {"OpenAI-Beta": "responses=experimental", "originator": "codex_cli_rs", "session_id": "s-1",
                 "Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent-payloads")
    srv = start_server(tmp, [tool_model(tmp)], n_ctx=2048, n_parallel=2)
    yield srv
    srv.stop()


def _post(server, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, headers=headers, timeout=120)


def _codex_input(*more: dict) -> list[dict]:
    return [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: read-only."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>"
                                                             "<cwd>/src</cwd></environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files."}]},
            *more]


def _codex_turn(**fields) -> dict:
    """A turn as Codex builds it (its ResponsesApiRequest, streamed, stateless)."""
    return {"model": MODEL, "instructions": "You are a coding agent.", "input": _codex_input(),
            "tools": [SHELL, PLAN, PATCH, SEARCH], "tool_choice": "auto", "parallel_tool_calls": False,
            "reasoning": None, "store": False, "stream": True, "include": [], "prompt_cache_key": "conv-1",
            "client_metadata": {"x-codex-installation-id": "inst-1"}, "max_output_tokens": 24, "temperature": 0,
            **fields}


def _input_tokens(server, body: dict) -> int:
    counted = {k: v for k, v in body.items() if k not in ("stream", "max_output_tokens")}
    response = _post(server, "/v1/responses/input_tokens", counted)
    assert response.status_code == 200, response.text
    return response.json()["input_tokens"]


def _final(events: list[tuple[str, dict]]) -> dict:
    assert events[-1][0] in ("response.completed", "response.incomplete"), [name for name, _ in events]
    return events[-1][1]["response"]


def test_a_codex_turn_streams_whole_with_its_search_declared(server):
    response = _post(server, "/v1/responses", _codex_turn(), CODEX_HEADERS)
    assert response.status_code == 200, response.text
    events = named_events(response.content)
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"], names
    # every item Codex's parser reads is added, then done, under one output_index
    added = [data["output_index"] for name, data in events if name == "response.output_item.added"]
    done = [data["output_index"] for name, data in events if name == "response.output_item.done"]
    assert added and added == done, names
    final = _final(events)
    assert final["tools"][-1] == SEARCH  # echoed as declared
    assert final["usage"]["input_tokens"] > 0


def test_a_declared_search_is_not_offered_to_the_model(server):
    with_search, without = _codex_turn(), _codex_turn(tools=[SHELL, PLAN, PATCH])
    assert _input_tokens(server, with_search) == _input_tokens(server, without)
    for kind in ("web_search_preview", "web_search_2025_08_26"):
        body = _codex_turn(stream=False, tools=[SHELL, {"type": kind, "search_context_size": "low"}])
        response = _post(server, "/v1/responses", body)
        assert response.status_code == 200, response.text
        assert response.json()["tools"][-1] == {"type": kind, "search_context_size": "low"}


def test_a_forced_call_round_trips_beside_a_declared_search(server):
    forced = _codex_turn(stream=False, max_output_tokens=200, tool_choice={"type": "function", "name": "shell_command"})
    response = _post(server, "/v1/responses", forced)
    assert response.status_code == 200, response.text
    call = next(item for item in response.json()["output"] if item["type"] == "function_call")
    assert call["name"] == "shell_command"
    # the next turn, as Codex sends it: the call (its fields as Codex keeps them) and the command's output
    history = _codex_input({"type": "function_call", "name": call["name"], "arguments": call["arguments"],
                            "call_id": call["call_id"]},
                           {"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt\nb.txt"})
    answer = _post(server, "/v1/responses", _codex_turn(input=history), CODEX_HEADERS)
    assert answer.status_code == 200, answer.text
    assert _final(named_events(answer.content))["status"] in ("completed", "incomplete")


def test_a_search_call_of_the_history_is_left_out_of_the_prompt(server):
    searched = {"type": "web_search_call", "id": "ws_1", "status": "completed",
                "action": {"type": "search", "query": "latest release"}}
    answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 2.0."}]}
    with_call, without = _codex_turn(input=_codex_input(searched, answer)), _codex_turn(input=_codex_input(answer))
    assert _input_tokens(server, with_call) == _input_tokens(server, without)
    stored = _post(server, "/v1/responses", {**with_call, "stream": False, "store": True})
    assert stored.status_code == 200, stored.text
    items = httpx.get(f"{server.base_url}/v1/responses/{stored.json()['id']}/input_items?order=asc", timeout=30)
    assert [item["type"] for item in items.json()["data"]][3:5] == ["web_search_call", "message"]


@pytest.mark.parametrize("fields, why", [
    ({"tool_choice": {"type": "web_search"}}, "no web search to run"),
    ({"tools": [SEARCH], "tool_choice": "required"}, "web searches, which jan does not run"),
])
def test_forcing_a_search_is_a_400_that_says_why(server, fields, why):
    response = _post(server, "/v1/responses", _codex_turn(stream=False, **fields))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "tool_choice" and why in error["message"], error


# -- chat completions: Anthropic's cache breakpoints, as opencode and Roo/Kilo Code put them ----------------------
BREAK = {"type": "ephemeral"}
CHAT_SHELL = {"type": "function", "function": {"name": "bash", "description": "Runs a command.", "parameters": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}


def _chat(messages: list[dict], tools: list[dict], **fields) -> dict:
    return {"model": MODEL, "messages": messages, "tools": tools, "tool_choice": "auto", "max_tokens": 16,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **fields}


def _conversation(marked: bool) -> list[dict]:
    mark = {"cache_control": BREAK} if marked else {}
    return [{"role": "system", "content": [{"type": "text", "text": "You are a coding agent.", **mark}]},
            {"role": "user", "content": "List the files.", **mark},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "bash", "arguments": json.dumps({"command": "ls"})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "a.txt", **mark}]},
            {"role": "user", "content": [{"type": "text", "text": "Now read it.", **mark}], **mark}]


def _streamed_usage(server, body: dict) -> dict:
    response = _post(server, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    lines = [line[len("data: "):] for line in response.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    last = json.loads(lines[-2])
    assert last["choices"] == [] and last["usage"], last  # include_usage: the usage chunk closes the stream
    return last["usage"]


def test_cache_breakpoints_in_a_chat_are_accepted_and_change_nothing(server):
    marked = _streamed_usage(server, _chat(_conversation(True), [{**CHAT_SHELL, "cache_control": BREAK}]))
    plain = _streamed_usage(server, _chat(_conversation(False), [CHAT_SHELL]))
    assert marked["prompt_tokens"] == plain["prompt_tokens"]
