"""The chat page shows a thinking model's reasoning collapsed, with "Thinking…" and its duration.

A tiny random-weight model with Nemotron Nano v2's template (its prompt opens
``<think>``) and a 4-token thinking budget in its model.json: the engine
closes the thinking block, the answer follows, and the page shows both.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jan.server.config import ServerConfig
from jan.testing.gguf_models import vocab_path, write_llama_from_vocab
from jan.testing.server import ServerThread

from conftest import require_model
from test_web_page import api, messages_of, open_page, shot, thread_id_of

TEMPLATE = Path(__file__).resolve().parents[1].parent / "shared" / "templates" / "NVIDIA-Nemotron-Nano-v2.jinja"
MODEL_ID = "thinker"


@pytest.fixture(scope="module")
def thinking_server(tmp_path_factory):
    require_model("vocab/ggml-vocab-llama-bpe.gguf")
    tmp = tmp_path_factory.mktemp("web-reasoning")
    path = write_llama_from_vocab(tmp / f"{MODEL_ID}.gguf", vocab_path("llama-bpe"), n_embd=16, n_layer=1, n_head=2,
                                  n_ff=32, n_ctx=2048, chat_template=TEMPLATE.read_text())
    config = ServerConfig(data_folder=tmp / "data", models=[str(path)], n_ctx=2048, n_parallel=1, n_threads=1)
    with ServerThread(config) as srv:
        api(srv, "PATCH", f"/v1/models/{MODEL_ID}", {"settings": {"reasoning_budget": 4},
                                                    "parameters": {"max_tokens": 16, "ignore_eos": True}})
        yield srv


def test_thinking_is_shown_collapsed_with_its_duration_and_kept(thinking_server, new_page):
    page = new_page()
    open_page(page, thinking_server)
    page.fill("#prompt", "Why is the sky blue?")
    page.click("#send")
    page.wait_for_selector("article.assistant[data-done=true]")
    shot(page, "reasoning-01-answered")

    thinking = page.locator("article.assistant details.thinking")
    assert thinking.is_visible()
    assert thinking.get_attribute("open") is None  # collapsed
    assert re.fullmatch(r"Thought for \d+\.\d s", page.text_content("article.assistant .thinking-summary"))
    assert page.text_content("article.assistant .message-body").strip()  # the answer after the budget
    page.click("article.assistant .thinking-summary")
    assert thinking.get_attribute("open") is not None
    assert page.locator("article.assistant .thinking-body").inner_text().strip()
    shot(page, "reasoning-02-expanded")

    # saved with the message (a "reasoning" content part), served by the threads API, shown after a reload
    thread_id = thread_id_of(page)
    reply = [m for m in messages_of(thinking_server, thread_id) if m["role"] == "assistant"][-1]
    kinds = [p["type"] for p in reply["content"]]
    assert kinds == ["reasoning", "text"]
    assert reply["content"][0]["text"]["value"] and reply["content"][0]["duration_ms"] >= 0
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.assistant details.thinking:not([hidden])")
    assert page.locator("article.assistant .thinking-body").text_content() == reply["content"][0]["text"]["value"]


def test_thinking_summary_says_thinking_while_it_streams(thinking_server):
    """The page's own code path, checked without a browser: a streamed run sends "reasoning" parts first."""
    import json
    import urllib.request

    thread = api(thinking_server, "POST", "/v1/threads", {})
    api(thinking_server, "POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "Hi"})
    request = urllib.request.Request(thinking_server.base_url + f"/v1/threads/{thread['id']}/runs",
                                     data=json.dumps({"stream": True, "model": MODEL_ID}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    kinds = []
    with urllib.request.urlopen(request, timeout=60) as response:
        event = None
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "thread.message.delta":
                kinds += [p["type"] for p in json.loads(line[6:])["delta"]["content"]]
    assert kinds and kinds[0] == "reasoning" and "text" in kinds
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "reasoning")


@pytest.fixture(scope="module")
def long_thinker(tmp_path_factory):
    """A thinking model with no budget and a long token limit: a random model thinks to its limit unless told
    (wide enough that a reply takes seconds, so the page's button can be pressed while it thinks)."""
    require_model("vocab/ggml-vocab-llama-bpe.gguf")
    tmp = tmp_path_factory.mktemp("web-answer-now")
    path = write_llama_from_vocab(tmp / f"{MODEL_ID}.gguf", vocab_path("llama-bpe"), n_embd=256, n_layer=2, n_head=4,
                                  n_ff=512, n_ctx=4096, chat_template=TEMPLATE.read_text())
    config = ServerConfig(data_folder=tmp / "data", models=[str(path)], n_ctx=4096, n_parallel=1, n_threads=1)
    with ServerThread(config) as srv:
        api(srv, "PATCH", f"/v1/models/{MODEL_ID}", {"parameters": {"max_tokens": 4000, "ignore_eos": True}})
        yield srv


def test_answer_now_ends_the_thinking_and_the_answer_follows(long_thinker, new_page):
    page = new_page()
    open_page(page, long_thinker)
    page.fill("#prompt", "Why is the sky blue?")
    page.click("#send")
    page.wait_for_selector("article.assistant .thinking.streaming")
    page.wait_for_selector("article.assistant button.answer-now:visible", timeout=60_000)
    shot(page, "reasoning-03-answer-now")
    page.click("article.assistant button.answer-now")
    # the model answers in the same reply: its body fills while the thoughts stop growing
    page.wait_for_function("document.querySelector('article.assistant .message-body')?.innerText.trim().length > 0",
                           timeout=60_000)
    page.click("#stop")  # (the answer of a random model would run to the token limit)
    page.wait_for_selector("article.assistant[data-done=true]", timeout=60_000)
    assert page.locator("article.assistant button.answer-now").is_hidden()
    reply = [m for m in messages_of(long_thinker, thread_id_of(page)) if m["role"] == "assistant"][-1]
    assert [p["type"] for p in reply["content"]] == ["reasoning", "text"]
    assert reply["content"][0]["text"]["value"].strip() and reply["content"][1]["text"]["value"].strip()
