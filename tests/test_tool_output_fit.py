"""A tool output longer than the context is shortened to fit it, before any turn is dropped.

A tool can answer with up to 32,000 characters (the registry's limit): far more than a small context holds.
Fitting a prompt (truncation ``auto``: a run's default, the Responses API's and chat completions' opt-in) cuts the
largest tool outputs of the earlier rounds first, then the latest round's, each keeping its head and a marker
saying how much was cut; only what the model reads is cut, never what a thread stored.

Greedy, with tiny random-weight models: Mistral Nemo's strict template (tool rounds must be whole, call ids of
nine characters) for the prompts, Qwen3's tool-calling one for a run calling a real MCP server.
"""

from __future__ import annotations

import re

import httpx
import pytest
from api_helpers import Client, message_text, running
from jan.services.fit import MIN_TOOL_OUTPUT
from jan.testing.gguf_models import write_qwen3_tool_model, write_strict_chat_model
from mcp_helpers import forced_call, raw_entry, tool_thread, write_mcp_config
from run_helpers import run_to_end
from server_helpers import start_server

pytestmark = pytest.mark.timeout(600)

N_CTX = 512
MODEL = "nemo-tiny"
MARKER = re.compile(r"\[… ([\d,]+) characters of tool output cut to fit the context\]")
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                                         "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}


def long_output(tag: str, chars: int = 32_000) -> str:
    """A tool output of ``chars`` characters, its lines numbered (as many tokens as real text takes)."""
    lines, k = [], 0
    while sum(map(len, lines)) < chars:
        lines.append(f"{tag} line {k}: the keeper counted {k * 7} gulls and {k * 3} boats.\n")
        k += 1
    return "".join(lines)[:chars]


def tool_round(call_id: str, output: str) -> list[dict]:
    return [{"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": '{"q": "gulls"}'}}]},
            {"role": "tool", "tool_call_id": call_id, "content": output}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, vocab_dir):
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    tmp = tmp_path_factory.mktemp("tool-output-fit")
    srv = start_server(tmp, [write_strict_chat_model(tmp / f"{MODEL}.gguf")], n_ctx=N_CTX, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=120) as c:
        yield c


def rendered(client: httpx.Client, messages: list[dict], **extra) -> str:
    r = client.post("/v1/apply-template", json={"model": MODEL, "messages": messages, "tools": [TOOL], **extra})
    assert r.status_code == 200, r.text
    return r.json()["prompt"]


def n_tokens(client: httpx.Client, text: str) -> int:
    r = client.post("/v1/tokenize", json={"model": MODEL, "content": text, "add_special": False,
                                          "parse_special": True})
    assert r.status_code == 200, r.text
    return len(r.json()["tokens"])


def test_a_long_tool_output_is_cut_to_its_head_and_no_turn_is_dropped(client):
    output = long_output("A")
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Earlier question."}, {"role": "assistant", "content": "Earlier answer."},
                {"role": "user", "content": "Count the gulls."}, *tool_round("call00001", output)]
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "tools": [TOOL],
                                                  "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"  # (truncation disabled)
    prompt = rendered(client, messages, truncation="auto")
    assert n_tokens(client, prompt) < N_CTX
    [cut] = MARKER.findall(prompt)
    kept = len(output) - int(cut.replace(",", ""))
    assert MIN_TOOL_OUTPUT <= kept < len(output) and output[:kept] in prompt  # its head, as long as fits
    assert "Earlier question." in prompt and "Earlier answer." in prompt and "Count the gulls." in prompt
    r = client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "tools": [TOOL],
                                                  "max_tokens": 2, "temperature": 0, "truncation": "auto"})
    assert r.status_code == 200, r.text
    assert 0 < r.json()["usage"]["prompt_tokens"] < N_CTX


def test_the_earlier_rounds_outputs_are_cut_before_the_latest(client):
    older, latest = long_output("OLD"), long_output("NEW", 400)
    messages = [{"role": "user", "content": "Count the gulls twice."},
                *tool_round("call00001", older), *tool_round("call00002", latest)]
    prompt = rendered(client, messages, truncation="auto")
    assert n_tokens(client, prompt) < N_CTX
    assert latest in prompt  # the output the model is about to read stays whole
    [cut] = MARKER.findall(prompt)
    assert int(cut.replace(",", "")) > len(older) // 2 and older[:MIN_TOOL_OUTPUT] in prompt
    assert "Count the gulls twice." in prompt


def test_outputs_that_still_do_not_fit_give_way_to_turns_then_to_their_markers(client):
    # four rounds whose outputs, even at their floor, overflow with the earlier turns: those turns go first
    messages = [{"role": "user", "content": "Earlier question."}, {"role": "assistant", "content": "Earlier answer."},
                {"role": "user", "content": "Count."}]
    for k in range(8):
        messages += tool_round(f"call{k:05d}", long_output(f"R{k}", 2_000))
    prompt = rendered(client, messages, truncation="auto")
    assert n_tokens(client, prompt) < N_CTX and "Count." in prompt
    assert "Earlier question." not in prompt
    assert MARKER.search(prompt)


def test_responses_function_call_outputs_are_fitted_too(client):
    output = long_output("A")
    body = {"model": MODEL, "tools": [{"type": "function", **TOOL["function"]}], "max_output_tokens": 2,
            "temperature": 0, "store": False,
            "input": [{"role": "user", "content": "Count the gulls."},
                      {"type": "function_call", "call_id": "call00001", "name": "lookup", "arguments": '{"q": "gulls"}'},
                      {"type": "function_call_output", "call_id": "call00001", "output": output}]}
    r = client.post("/v1/responses", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = client.post("/v1/responses", json={**body, "truncation": "auto"})
    assert r.status_code == 200, r.text
    assert 0 < r.json()["usage"]["input_tokens"] < N_CTX


async def test_a_run_reads_a_long_mcp_tool_output_cut_and_keeps_it_whole(tmp_path, vocab_dir):
    model = write_qwen3_tool_model(tmp_path / "qwen3-tools.gguf")
    data = tmp_path / "data"
    write_mcp_config(data, {"raw": raw_entry(big=32_000)})
    with running(data, model, n_ctx=2048) as srv:
        async with Client(srv.base_url) as api:
            tid = await tool_thread(api, [{"type": "mcp", "server_label": "raw", "allowed_tools": ["big"],
                                          "require_approval": "never"}])
            run = await run_to_end(api, f"/v1/threads/{tid}/runs", forced_call("raw__big"))
            # the answer after the call was made from a prompt that fits: the run did not fail invalid_prompt
            assert run["status"] in ("completed", "incomplete"), run
            assert run["usage"]["prompt_tokens"] > 0
            saved = (await api.ok("GET", f"/v1/threads/{tid}/messages?order=asc&limit=100&all=true"))["data"]
            assert [m["role"] for m in saved] == ["user", "assistant", "tool", "assistant"]
            assert len(message_text(saved[2])) == 32_000  # the thread keeps the output whole
