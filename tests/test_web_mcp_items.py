"""The chat page showing a stored response's MCP items (its thread keeps them as the items they are: see
``test_responses_mcp_turns``): the call the server ran is a tool call with its result, the tool listing is no empty
reply. In a real headless Chromium (the ``new_page`` fixture of conftest.py; skipped without one)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from jan.server.config import ServerConfig
from jan.testing.server import ServerThread

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(tmp_path_factory, vocab_dir):
    from jan.testing.gguf_models import write_qwen3_tool_model
    from mcp_helpers import notes_folder, stdio_entry, write_mcp_config

    tmp = tmp_path_factory.mktemp("web-mcp-items")
    model = write_qwen3_tool_model(tmp / "qwen3-tools.gguf")
    write_mcp_config(tmp / "data", {"notes": stdio_entry(notes_folder(tmp))})
    config = ServerConfig(data_folder=tmp / "data", models=[str(model)], n_ctx=2048, n_parallel=1, n_threads=1)
    with ServerThread(config) as srv:
        yield srv


def api(server, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def test_a_responses_mcp_call_shows_as_a_tool_call(server, new_page):
    question = "Which notes are there, web page?"
    resp = api(server, "POST", "/v1/responses", {
        "model": "qwen3-tools", "input": question, "max_output_tokens": 30, "temperature": 0,
        "tools": [{"type": "mcp", "server_label": "notes", "require_approval": "never"}],
        "tool_choice": {"type": "mcp", "server_label": "notes", "name": "list_notes"}})
    assert [i["type"] for i in resp["output"]][:2] == ["mcp_list_tools", "mcp_call"], resp["output"]
    thread = next(t for t in api(server, "GET", "/v1/threads?limit=100")["data"] if t.get("title") == question)
    page = new_page()
    page.goto(f"{server.base_url}/#thread={thread['id']}")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector(".tool-call .tool-result", state="attached")  # (in the call, folded)
    assert page.text_content(".tool-call .tool-result") == "shopping.txt\ntodo.txt"
    assert "notes: list_notes" in page.text_content(".tool-call summary")
    # the user's turn, the call, the answer after it: the listing is no reply of its own (an empty one before)
    replies = page.query_selector_all("article.assistant")
    assert len(replies) == 2 and len(page.query_selector_all("article.user")) == 1, \
        [r.inner_text() for r in replies]


def test_a_runs_mcp_image_shows_as_a_thumbnail_of_its_result(server, new_page):
    """An MCP tool's image (the notes server's screenshot) in a run's tool result: the thread keeps it as a file
    of the thread, and the page showed only the result's text. It shows the image as a thumbnail in the call's
    details, fetched as the page fetches every thread image."""
    from run_helpers import wait_for_run_sync

    assistant = api(server, "POST", "/v1/assistants", {"name": "Screen", "model": "qwen3-tools", "tools": [
        {"type": "mcp", "server_label": "notes", "allowed_tools": ["screenshot"], "require_approval": "never"}]})
    thread = api(server, "POST", "/v1/threads", {"assistants": [{"assistant_id": assistant["id"]}],
                                                 "messages": [{"role": "user", "content": "Look at the screen."}]})
    run = api(server, "POST", f"/v1/threads/{thread['id']}/runs", {
        "tool_choice": {"type": "function", "function": {"name": "notes__screenshot"}},
        "parallel_tool_calls": False, "max_tokens": 30, "temperature": 0})
    run = wait_for_run_sync(lambda path: api(server, "GET", path), run)
    assert run["status"] in ("completed", "incomplete"), run
    messages = api(server, "GET", f"/v1/threads/{thread['id']}/messages?order=asc&limit=100&all=true")["data"]
    [result] = [m for m in messages if m["role"] == "tool"]
    [file_id] = [p["image_file"]["file_id"] for p in result["content"] if p["type"] == "image_file"]
    page = new_page()
    page.goto(f"{server.base_url}/#thread={thread['id']}")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector(".tool-call .tool-images img.thumb", state="attached")
    thumbs = page.query_selector_all(".tool-call .tool-images img.thumb")
    assert [t.get_attribute("data-file-id") for t in thumbs] == [file_id]
    page.wait_for_function("() => document.querySelector('.tool-call .tool-images img.thumb').src.startsWith('blob:')")
    assert page.text_content(".tool-call .tool-result").startswith("the screen")


def test_a_stored_responses_mcp_image_shows_as_a_thumbnail(server, new_page):
    """A stored response's ``mcp_call`` whose tool returned an image keeps it beside the item (its output has the
    note): the page shows it as a thumbnail in the call's details."""
    question = "What is on the screen, web page?"
    resp = api(server, "POST", "/v1/responses", {
        "model": "qwen3-tools", "input": question, "max_output_tokens": 30, "temperature": 0,
        "tools": [{"type": "mcp", "server_label": "notes", "allowed_tools": ["screenshot"],
                   "require_approval": "never"}],
        "tool_choice": {"type": "mcp", "server_label": "notes", "name": "screenshot"}})
    assert any(i["type"] == "mcp_call" for i in resp["output"]), resp["output"]
    thread = next(t for t in api(server, "GET", "/v1/threads?limit=100")["data"] if t.get("title") == question)
    page = new_page()
    page.goto(f"{server.base_url}/#thread={thread['id']}")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector(".tool-call .tool-images img.thumb", state="attached")
    [src] = [t.get_attribute("src") for t in page.query_selector_all(".tool-call .tool-images img.thumb")]
    assert src.startswith("data:image/png;base64,")
    assert page.text_content(".tool-call .tool-result").startswith("the screen")
