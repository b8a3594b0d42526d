"""Tool call ids against templates that demand a shape (Mistral's: 9 alphanumerics, else they raise).

Clients send back the ids they were given (jan's ``call_`` + 24, Anthropic's ``toolu_...``) or none at
all (Ollama); a template with the rule must still render the whole tool loop, with each call and its
result sharing one fitting id, and a template without it must see the ids unchanged.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from jan.templates import ChatTemplate
from jan.templates.formats import OutputParser, detect_format
from jan.templates.tool_calls import is_short_call_id, short_call_id

TEMPLATES = Path("/work/shared/templates")
NEMO = TEMPLATES / "mistralai-Mistral-Nemo-Instruct-2407.jinja"
SMALL = TEMPLATES / "Mistral-Small-3.2-24B-Instruct-2506.jinja"
QWEN3 = TEMPLATES / "Qwen-Qwen3-0.6B.jinja"

OPENAI_ID = "call_abcdefghijklmnopqrstuvwx"
ANTHROPIC_ID = "toolu_01ABCDEFGHJKLMNPQRSTUVWX"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def _load(path: Path) -> ChatTemplate:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return ChatTemplate(path.read_text(), "<s>", "</s>")


def _call(cid: str | None, city: str) -> dict:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
    if cid is not None:
        call["id"] = cid
    return call


def _loop() -> list[dict]:
    return [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [_call(OPENAI_ID, "Paris"), _call(ANTHROPIC_ID, "Rome")]},
        {"role": "tool", "tool_call_id": OPENAI_ID, "content": "Paris-result"},
        {"role": "tool", "tool_call_id": ANTHROPIC_ID, "content": "Rome-result"},
        {"role": "assistant", "content": "Sunny in both."},  # Mistral's templates want user/assistant turns
        {"role": "user", "content": "And Oslo?"},
        # Ollama: neither the call nor its result carries an id
        {"role": "assistant", "content": "", "tool_calls": [_call(None, "Oslo")]},
        {"role": "tool", "content": "Oslo-result"},
        {"role": "assistant", "content": "Cold."},
        {"role": "user", "content": "Thanks"},
    ]


def _rendered_ids(prompt: str) -> tuple[list[str], list[str]]:
    """(ids on the calls, ids on the results) as Mistral's templates print them."""
    calls = re.findall(r'"id": "([^"]*)"', prompt) or re.findall(r"\[CALL_ID\]([^\[]*)\[ARGS\]", prompt)
    results = re.findall(r'"call_id": "([^"]*)"', prompt) or re.findall(r"\[TOOL_RESULTS\]([^\[]*)\[TOOL_CONTENT\]", prompt)
    return calls, results


@pytest.mark.parametrize("path", [NEMO, SMALL], ids=["nemo", "small-3.2"])
def test_mistral_template_renders_foreign_and_missing_ids(path):
    t = _load(path)
    assert t.short_call_ids
    messages = _loop()
    prompt = t.render(messages, tools=TOOLS)
    calls, results = _rendered_ids(prompt)
    assert "Oslo-result" in prompt
    assert len(calls) == 3 and all(is_short_call_id(c) for c in calls)
    assert len(set(calls)) == 3
    assert results == calls  # each result names its own call, the id-less Ollama pair included
    # stable: the same id maps the same way in the next render (the next turn of the same loop)
    assert calls[0] == short_call_id(OPENAI_ID) and calls[1] == short_call_id(ANTHROPIC_ID)
    assert _rendered_ids(t.render(messages, tools=TOOLS))[0] == calls
    assert messages[1]["tool_calls"][0]["id"] == OPENAI_ID  # the caller's messages are not touched
    assert OPENAI_ID not in prompt and ANTHROPIC_ID not in prompt


def test_fitting_ids_are_kept_and_never_collide():
    t = _load(NEMO)
    taken = short_call_id(OPENAI_ID)  # a client's own 9-char id equal to what the long one would hash to
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [_call(taken, "A"), _call(OPENAI_ID, "B")]},
        {"role": "tool", "tool_call_id": taken, "content": "A-result"},
        {"role": "tool", "tool_call_id": OPENAI_ID, "content": "B-result"},
    ]
    calls, results = _rendered_ids(t.render(messages, tools=TOOLS))
    assert calls[0] == taken and calls[1] != taken and is_short_call_id(calls[1])
    assert results == calls


_PRINTS_IDS = (
    "{% for m in messages %}{{ m.role }}:{{ m.content or '' }}"
    "{% for c in m.tool_calls or [] %}[call {{ c.id }}]{% endfor %}"
    "{% if m.tool_call_id is defined %}[result {{ m.tool_call_id }}]{% endif %}\n{% endfor %}"
)


def test_template_without_the_rule_keeps_ids():
    assert not _load(QWEN3).short_call_ids
    t = ChatTemplate(_PRINTS_IDS)  # prints ids, demands no shape
    assert not t.short_call_ids
    prompt = t.render(_loop()[:4], polyfill=False)  # as given: this toy template writes no tool turns itself
    assert f"[call {OPENAI_ID}]" in prompt and f"[result {ANTHROPIC_ID}]" in prompt


def test_ids_jan_makes_fit_the_template():
    for path, short in ((NEMO, True), (SMALL, True), (QWEN3, False)):
        if not path.exists():
            pytest.skip(f"{path} not present")
        fmt = detect_format(path.read_text())
        assert fmt.short_call_ids is short
    fmt = detect_format(NEMO.read_text())
    p = OutputParser(fmt, TOOLS)
    p.feed('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]')
    p.finish()
    (call,) = p.result.tool_calls
    cid = call["id"] if isinstance(call, dict) else call.id
    assert is_short_call_id(cid)
    # and it renders back through the template as it is
    t = _load(NEMO)
    prompt = t.render([{"role": "user", "content": "q"},
                       {"role": "assistant", "content": None, "tool_calls": [_call(cid, "Paris")]},
                       {"role": "tool", "tool_call_id": cid, "content": "r"}], tools=TOOLS)
    assert cid in prompt


# -- Solar Open: its template renders any id, but its model writes (and reads back) 10 lowercase letters and digits --

SOLAR = TEMPLATES / "upstage-Solar-Open-100B.jinja"


def test_solar_open_gets_the_ids_its_model_was_trained_on():
    """Solar Open's template tells the model to write a call id of 10 lowercase letters and digits, and renders each
    call's id and its result's back into the prompt (``<|tool_response:begin|>ID``, the call's name looked up by
    it). jan's ``call_`` + 24 (and Anthropic's ``toolu_...``) went into a second turn as the model never writes
    them; now they render in its shape, each result naming its call, the same in every render."""
    from jan.templates.tool_calls import SOLAR_CALL_IDS

    t = _load(SOLAR)
    assert t.call_ids == SOLAR_CALL_IDS
    messages = _loop()
    prompt = t.render(messages, tools=TOOLS)
    calls = re.findall(r"<\|tool_call:begin\|>([^<]*?)<\|tool_call:name\|>", prompt)  # (not its instructions')
    results = re.findall(r"<\|tool_response:begin\|>(.*?)<\|tool_response:name\|>get_weather<", prompt)
    assert len(calls) == 3 and len(set(calls)) == 3
    assert all(re.fullmatch(r"[a-z0-9]{10}", c) for c in calls), calls
    assert results == calls  # each result names its own call (and the template finds the call's name by it)
    assert calls[:2] == [short_call_id(OPENAI_ID, SOLAR_CALL_IDS), short_call_id(ANTHROPIC_ID, SOLAR_CALL_IDS)]
    assert OPENAI_ID not in prompt and ANTHROPIC_ID not in prompt
    kept = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [_call("a1b2c3d4e5", "Seoul")]},
            {"role": "tool", "tool_call_id": "a1b2c3d4e5", "content": "r"}]
    assert "<|tool_response:begin|>a1b2c3d4e5<|tool_response:name|>get_weather" in t.render(kept, tools=TOOLS)
    # and the ids jan gives the model's calls have that shape (they come back in the next turn as they are)
    fmt = detect_format(SOLAR.read_text())
    assert fmt.short_call_ids and fmt.call_ids == SOLAR_CALL_IDS
    p = OutputParser(fmt, TOOLS)
    p.feed('<|tool_calls|><|tool_call:begin|>zz9yy8xx7w<|tool_call:name|>get_weather<|tool_call:args|>'
           '{"city": "Seoul"}<|tool_call:end|><|calls|>')
    p.finish()
    (call,) = p.result.tool_calls
    cid = call["id"] if isinstance(call, dict) else call.id
    assert re.fullmatch(r"[a-z0-9]{10}", cid), cid
