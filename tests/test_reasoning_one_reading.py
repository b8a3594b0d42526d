"""A request's thinking settings are read once (``jan.templates.formats.plan.request_reasoning``), and every path
that takes them ends with the same :class:`ReasoningRequest`: the chat completions route (``openai_wire``, then the
chat plan with the model's settings as defaults) and ``ReasoningRequest.from_request``. They were two readings that
had drifted: a request's ``reasoning_budget: -1`` (no cap) lost to the model's own budget on the route."""

from __future__ import annotations

import pytest

from jan.server import schemas
from jan.server.openai_wire import chat_request
from jan.services.local import template_plan
from jan.templates import ChatTemplate
from jan.templates.formats import ReasoningRequest, request_reasoning

from chat_format_cases import TEMPLATES

BODIES = [
    {},
    {"reasoning_effort": "low"},
    {"reasoning_effort": "xhigh"},
    {"think": True},
    {"think": False},
    {"think": "high"},
    {"think": "low", "reasoning_effort": "medium"},
    {"chat_template_kwargs": {"enable_thinking": False}},
    {"chat_template_kwargs": {"enable_thinking": True}, "think": False},
    {"reasoning_format": "none"},
    {"reasoning_budget": 12},
    {"reasoning_budget": 0},
    {"reasoning_budget": -1},
    {"thinking_budget_tokens": 7},
    {"reasoning_budget": 3, "thinking_budget_tokens": 7},
    # llama-server's chat name, read before thinking_budget_tokens; its -1 is the model's budget
    {"reasoning_budget_tokens": 9},
    {"reasoning_budget_tokens": 9, "thinking_budget_tokens": 7},
    {"reasoning_budget_tokens": -1},
]
SETTINGS = [None, {"reasoning_budget": 64, "reasoning_effort": "high", "reasoning_format": "deepseek"}]


@pytest.fixture(scope="module")
def template():
    path = TEMPLATES / "Qwen-Qwen3-0.6B.jinja"
    if not path.is_file():
        pytest.skip(f"template {path} missing")
    return ChatTemplate(path.read_text())


@pytest.mark.parametrize("settings", SETTINGS, ids=["no-settings", "model-settings"])
@pytest.mark.parametrize("body", BODIES, ids=lambda b: ",".join(f"{k}={v}" for k, v in b.items()) or "nothing")
def test_the_route_and_from_request_read_the_same_settings(template, body, settings):
    request = chat_request(schemas.ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                                         **body))
    planned = template_plan(template, request, settings, "m", None).reasoning
    assert planned == ReasoningRequest.from_request(body, settings)


def test_no_cap_asked_wins_over_the_models_budget(template):
    request = chat_request(schemas.ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                                         reasoning_budget=-1))
    assert template_plan(template, request, {"reasoning_budget": 64}, "m", None).reasoning.budget_tokens is None
    assert template_plan(template, chat_request(schemas.ChatCompletionRequest(
        model="m", messages=[{"role": "user", "content": "hi"}])), {"reasoning_budget": 64}, "m",
        None).reasoning.budget_tokens == 64


def test_only_what_the_request_gives_is_read():
    assert request_reasoning({}) == {}
    assert request_reasoning({"think": "low", "chat_template_kwargs": {"enable_thinking": False}}) == {
        "effort": "low", "enabled": False}
    assert request_reasoning({"chat_template_kwargs": {"enable_thinking": "yes"}}) == {}
    assert request_reasoning({"reasoning_budget": -1}) == {"budget_tokens": -1}
    assert request_reasoning({"reasoning_budget_tokens": 9, "thinking_budget_tokens": 7}) == {"budget_tokens": 9}
    assert request_reasoning({"reasoning_budget_tokens": -1, "thinking_budget_tokens": 7}) == {}
