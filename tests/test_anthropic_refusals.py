"""What Anthropic's Messages API refuses or leaves off, and jan with it, driven by Anthropic's SDK against a real
server: thinking is off unless ``thinking`` turns it on (Qwen3's template thinks by default), thinking with a forced
``tool_choice``, tool blocks without ``tools``, repeated ``tool_use`` ids (and the same rule in OpenAI's dialects);
the models API's context window, and one capability answer in ``/v1/models`` and Ollama's ``/api/show``."""

from __future__ import annotations

import anthropic
import openai
import pytest
import requests

from dialect_helpers import WEATHER_SCHEMA
from jan.testing.gguf_models import write_qwen3_tool_model
from server_helpers import start_server

pytestmark = pytest.mark.timeout(600)
MODEL = "qwen3-tools"
N_CTX = 1024
TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}]
ASK = {"role": "user", "content": "Weather in Paris?"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("anthropic-refusals")
    srv = start_server(tmp, [write_qwen3_tool_model(tmp / f"{MODEL}.gguf")], n_ctx=N_CTX, n_parallel=1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)


def _count(client, **extra) -> int:
    return client.messages.count_tokens(model=MODEL, messages=[ASK], **extra).input_tokens


def test_thinking_is_off_unless_asked_for(client):
    """Qwen3's template thinks unless told not to; Anthropic's API thinks only when ``thinking`` says so."""
    omitted, disabled = _count(client), _count(client, thinking={"type": "disabled"})
    enabled = _count(client, thinking={"type": "enabled", "budget_tokens": 1024})
    adaptive = _count(client, thinking={"type": "adaptive"})
    assert omitted == disabled
    assert enabled == adaptive != disabled
    # effort alone spends tokens differently, it does not turn thinking on (Anthropic: it needs no thinking)
    assert _count(client, output_config={"effort": "low"}) == disabled
    assert _count(client, thinking={"type": "adaptive"}, output_config={"effort": "high"}) == enabled


def test_a_reply_without_thinking_has_no_thinking_block(client):
    reply = client.messages.create(model=MODEL, max_tokens=8, messages=[ASK])
    assert [b.type for b in reply.content if b.type == "thinking"] == []


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
@pytest.mark.parametrize("thinking", [{"type": "enabled", "budget_tokens": 1024}, {"type": "adaptive"}])
def test_thinking_with_forced_tool_use_is_refused(client, choice, thinking):
    for call in (lambda **kw: client.messages.create(max_tokens=2048, **kw), client.messages.count_tokens):
        with pytest.raises(anthropic.BadRequestError) as err:
            call(model=MODEL, messages=[ASK], tools=TOOLS, tool_choice=choice, thinking=thinking)
        assert err.value.body["error"]["message"] == "Thinking may not be enabled when tool_choice forces tool use."
        assert err.value.body["error"]["type"] == "invalid_request_error"
    # without thinking, or with it off, forcing a tool is fine
    assert _count(client, tools=TOOLS, tool_choice=choice, thinking={"type": "disabled"}) > 0
    assert _count(client, tools=TOOLS, tool_choice=choice) > 0


def _tool_turns(*ids: str, answered: tuple[str, ...] | None = None) -> list[dict]:
    uses = [{"type": "tool_use", "id": i, "name": "get_weather", "input": {"city": "Paris"}} for i in ids]
    results = [{"type": "tool_result", "tool_use_id": i, "content": "sunny"} for i in (answered or ids)]
    return [ASK, {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, *uses]},
            {"role": "user", "content": results}]


def test_tool_blocks_without_tools_are_refused(client):
    for call in (lambda **kw: client.messages.create(max_tokens=8, **kw), client.messages.count_tokens):
        with pytest.raises(anthropic.BadRequestError) as err:
            call(model=MODEL, messages=_tool_turns("toolu_1"))
        assert err.value.body["error"]["message"] == \
            "Requests which include `tool_use` or `tool_result` blocks must define tools."
    assert client.messages.count_tokens(model=MODEL, messages=_tool_turns("toolu_1"), tools=TOOLS).input_tokens > 0


@pytest.mark.parametrize("answered", [("toolu_1", "toolu_1"), ("toolu_1",)])
def test_repeated_tool_use_ids_are_refused(client, answered):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.count_tokens(model=MODEL, tools=TOOLS,
                                     messages=_tool_turns("toolu_1", "toolu_1", answered=answered))
    # the second tool_use block: the assistant turn's content[2] (after its text and the first use)
    assert err.value.body["error"]["message"] == "messages.1.content.2: `tool_use` ids must be unique"


def test_repeated_call_ids_in_openai_dialects(server):
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    oai = openai.OpenAI(base_url=server.base_url + "/v1", api_key="none", max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model=MODEL, max_tokens=4, messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "c1"}, {**call, "id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])
    assert "Duplicate value for 'id' of 'c1'" in err.value.body["message"]
    assert err.value.body["code"] == "duplicate_tool_call_id"
    fc = {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    out = {"type": "function_call_output", "call_id": "c1", "output": "sunny"}
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model=MODEL, max_output_tokens=16, store=False,
                             input=[{"role": "user", "content": "Weather?"}, fc, fc, out, out])
    assert "Duplicate value for 'call_id' of 'c1'" in err.value.body["message"]


def test_models_api_tells_the_context_window(client, server):
    info = client.models.retrieve(MODEL)
    # not loaded yet, or loaded: the GGUF's n_ctx_train, or the context it was loaded with
    assert info.max_input_tokens and info.max_tokens == info.max_input_tokens
    client.messages.count_tokens(model=MODEL, messages=[ASK])  # (loads it)
    assert client.models.retrieve(MODEL).max_input_tokens == N_CTX
    assert [m.max_input_tokens for m in client.models.list()] == [N_CTX]


def test_one_capability_answer_in_both_dialects(server):
    openai_caps = requests.get(f"{server.base_url}/v1/models/{MODEL}", timeout=60).json()["capabilities"]
    ollama_caps = requests.post(f"{server.base_url}/api/show", json={"model": MODEL}, timeout=60).json()["capabilities"]
    assert openai_caps == ollama_caps
    assert {"completion", "tools", "thinking"} <= set(openai_caps)
