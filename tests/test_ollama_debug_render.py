"""Ollama's ``_debug_render_only`` (``/api/chat``, ``/api/generate``): the answer is the prompt the request renders
to, as ``_debug_info.rendered_template``, and nothing is generated — Ollama's ``ChatResponse``/``GenerateResponse``
with Go's zero values (``done: false``, an empty message or response, no statistics). jan ignored the field and
generated an answer. The prompt is the chat service's render, the same as llama-server's ``/apply-template`` gives.

A real server over Qwen3's real tool-calling template on a tiny random model.
"""

from __future__ import annotations

import httpx
import pytest
from api_helpers import running

WAIT_S = 300
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tool_model):
    with running(tmp_path_factory.mktemp("render") / "data", tool_model) as srv:
        yield srv


def _post(server, path: str, body: dict) -> tuple[int, dict]:
    reply = httpx.post(server.base_url + path, json=body, timeout=WAIT_S)
    return reply.status_code, reply.json()


def _template(server, messages: list[dict]) -> str:
    status, body = _post(server, "/apply-template", {"model": "qwen3-tools", "messages": messages})
    assert status == 200, body
    return body["prompt"]


@pytest.mark.parametrize("stream", [None, False])
def test_chat_answers_the_rendered_prompt_and_generates_nothing(server, stream):
    status, body = _post(server, "/api/chat", {"model": "qwen3-tools", "messages": MESSAGES, "stream": stream,
                                               "_debug_render_only": True})
    assert status == 200, body
    assert body["_debug_info"] == {"rendered_template": _template(server, MESSAGES)}
    assert body["message"] == {"role": "", "content": ""} and body["done"] is False
    assert not {"done_reason", "eval_count", "prompt_eval_count", "total_duration"} & set(body)


def test_generate_renders_its_prompt_or_gives_a_raw_one_as_it_is(server):
    status, body = _post(server, "/api/generate", {"model": "qwen3-tools", "prompt": "Hello there",
                                                   "system": "Be brief.", "_debug_render_only": True})
    assert status == 200, body
    assert body["_debug_info"] == {"rendered_template": _template(server, MESSAGES)}
    assert body["response"] == "" and body["done"] is False and "context" not in body
    status, body = _post(server, "/api/generate", {"model": "qwen3-tools", "prompt": "<|im_start|>x", "raw": True,
                                                   "_debug_render_only": True})
    assert status == 200 and body["_debug_info"] == {"rendered_template": "<|im_start|>x"}, body


def test_a_bad_flag_or_a_fill_in_the_middle_request_is_a_400(server):
    status, body = _post(server, "/api/chat", {"model": "qwen3-tools", "messages": MESSAGES,
                                               "_debug_render_only": "yes"})
    assert status == 400 and body["error"].startswith("_debug_render_only"), body
    status, body = _post(server, "/api/generate", {"model": "qwen3-tools", "prompt": "a", "suffix": "b",
                                                   "_debug_render_only": True})
    assert status == 400 and body["error"].startswith("_debug_render_only"), body
