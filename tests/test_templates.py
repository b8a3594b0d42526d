"""jan.templates.chat: rendering chat templates the way Hugging Face does, plus jan's polyfills."""

from __future__ import annotations

import importlib
import json
import logging
import threading

import pytest

from jan.errors import JanError
from jan.templates.chat import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    TemplateError,
    jan_prompt_template_to_jinja,
    normalize_messages,
    resolve_template,
    template_supports_tools,
)
from jan.templates.tool_calls import parse_tool_calls

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "What is 2+2?"},
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_JSON = (
    '{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}'
)

TOOLS_PREAMBLE = (
    "# Tools\n\nYou can call functions to help with the request. Their signatures are listed below, "
    "one JSON object per line, inside <tools></tools>:\n<tools>\n"
    + WEATHER_TOOL_JSON
    + "\n</tools>\n\nTo call a function, reply with a JSON object holding its \"name\" and its \"arguments\", "
    "enclosed in <tool_call></tool_call> tags, one pair of tags per call:\n<tool_call>\n"
    '{"name": "<function name>", "arguments": {<arguments as JSON>}}\n</tool_call>'
)

TOOL_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_abc123xyz", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_abc123xyz", "content": "22C, sunny"},
    {"role": "user", "content": "And Rome?"},
]


# --------------------------------------------------------------------------
# A real model template (phi-3, from llama.cpp's vocab GGUF)
# --------------------------------------------------------------------------


def _gguf_metadata(path) -> dict[str, str]:
    """GGUF key/values as strings, the way the engine hands them to resolve_template."""
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(path))
    out: dict[str, str] = {}
    for name, field in reader.fields.items():
        if field.types and field.types[0] == gguf.GGUFValueType.STRING:
            out[name] = bytes(field.parts[-1]).decode("utf-8")
    return out


@pytest.fixture(scope="module")
def phi3_metadata(vocab_dir):
    path = vocab_dir / "ggml-vocab-phi-3.gguf"
    if not path.exists():
        pytest.skip(f"shared models missing: {path} not found")
    return _gguf_metadata(path)


def test_phi3_gguf_template_exact_prompt(phi3_metadata):
    # phi-3's template has no system role and ignores add_generation_prompt
    # (it always opens the assistant turn); jan moves the system text into the
    # first user turn instead of losing it.
    template = resolve_template(phi3_metadata, bos_token="<s>", eos_token="<|endoftext|>")
    assert template.name == "model"
    assert not template.supports_system_role
    assert not template.supports_tools
    assert template.render(CONVERSATION, add_generation_prompt=True) == (
        "<s><|user|>\nYou are a helpful assistant.\n\nHello!<|end|>\n<|assistant|>\n"
        "Hi! How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"
    )


def test_phi3_gguf_template_exactly_like_hf_without_polyfill(phi3_metadata):
    template = resolve_template(phi3_metadata, bos_token="<s>", eos_token="<|endoftext|>")
    # Hugging Face apply_chat_template output: the system message is dropped
    assert template.render(CONVERSATION, polyfill=False) == (
        "<s><|user|>\nHello!<|end|>\n<|assistant|>\nHi! How can I help?<|end|>\n"
        "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"
    )


def test_phi3_gguf_template_with_tools_uses_hermes_polyfill(phi3_metadata):
    template = resolve_template(phi3_metadata, bos_token="<s>")
    prompt = template.render(TOOL_CONVERSATION, tools=[WEATHER_TOOL])
    assert prompt == (
        "<s><|user|>\nBe brief.\n\n" + TOOLS_PREAMBLE + "\n\nWeather in Paris?<|end|>\n<|assistant|>\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|end|>\n'
        "<|user|>\n<tool_response>\n22C, sunny\n</tool_response>\n\nAnd Rome?<|end|>\n<|assistant|>\n"
    )


# --------------------------------------------------------------------------
# ChatML default
# --------------------------------------------------------------------------


def test_chatml_exact_output():
    t = ChatTemplate.chatml()
    assert t.render(CONVERSATION) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHi! How can I help?<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert t.render(CONVERSATION[1:2], add_generation_prompt=False) == "<|im_start|>user\nHello!<|im_end|>\n"
    assert (t.supports_system_role, t.supports_tools, t.supports_tool_calls) == (True, True, True)


def test_chatml_tools_and_tool_history_exact_output():
    t = ChatTemplate.chatml()
    assert t.render(TOOL_CONVERSATION, tools=[WEATHER_TOOL]) == (
        "<|im_start|>system\nBe brief.\n\n" + TOOLS_PREAMBLE + "<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n22C, sunny\n</tool_response><|im_end|>\n"
        "<|im_start|>user\nAnd Rome?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chatml_tools_without_system_message_and_parallel_calls():
    t = ChatTemplate.chatml()
    calls = [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
    ]
    messages = [
        {"role": "user", "content": "Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "a", "content": "22C"},
        {"role": "tool", "tool_call_id": "b", "content": "25C"},
    ]
    assert t.render(messages, tools=[WEATHER_TOOL]) == (
        "<|im_start|>system\n" + TOOLS_PREAMBLE + "<|im_end|>\n"
        "<|im_start|>user\nParis and Rome?<|im_end|>\n"
        "<|im_start|>assistant\nChecking.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n22C\n</tool_response>\n<tool_response>\n25C\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chatml_tool_call_format_round_trips_through_the_parser():
    # What the ChatML template teaches (and writes into history) is what the parser reads.
    t = ChatTemplate.chatml()
    prompt = t.render(TOOL_CONVERSATION[:3], tools=[WEATHER_TOOL], add_generation_prompt=False)
    reply = prompt.rsplit("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
    content, calls = parse_tool_calls(reply, [WEATHER_TOOL])
    assert content is None
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "llama3",
            "<B><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            "phi3",
            "<B><|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n"
            "<|assistant|>\nHi! How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
        ),
        (
            "gemma",
            "<B><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n"
            "<start_of_turn>model\nHi! How can I help?<end_of_turn>\n"
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
        ),
        (
            "mistral",
            "<B>[INST] You are a helpful assistant.\n\nHello! [/INST]Hi! How can I help?<E>[INST] What is 2+2? [/INST]",
        ),
    ],
)
def test_builtin_templates_exact_output(name, expected):
    t = resolve_template({}, name, bos_token="<B>", eos_token="<E>")
    assert t.name == name
    assert t.render(CONVERSATION) == expected


def test_every_builtin_template_compiles_and_renders():
    for name in BUILTIN_TEMPLATES:
        out = ChatTemplate.builtin(name).render(CONVERSATION)
        assert "What is 2+2?" in out and "You are a helpful assistant." in out, name


# --------------------------------------------------------------------------
# HF environment: raise_exception, tojson, strftime_now, loop controls, sandbox
# --------------------------------------------------------------------------


def test_raise_exception_becomes_template_error():
    t = ChatTemplate(
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="System role not supported") as err:
        t.render(CONVERSATION, polyfill=False)
    assert isinstance(err.value, ValueError) and isinstance(err.value, JanError)
    # with polyfills the system text goes into the first user turn instead
    assert t.render(CONVERSATION) == "You are a helpful assistant.\n\nHello!Hi! How can I help?What is 2+2?"


def test_syntax_error_and_runtime_errors_are_template_errors():
    with pytest.raises(TemplateError, match="does not compile"):
        ChatTemplate("{% for m in messages %}{{ m.content }}")
    with pytest.raises(TemplateError, match="empty"):
        ChatTemplate("  ")
    t = ChatTemplate("{{ messages[0]['content'] + 1 }}")
    with pytest.raises(TemplateError, match="TypeError"):
        t.render([{"role": "user", "content": "x"}])


def test_tojson_matches_hf():
    t = ChatTemplate(
        "{{ messages[0]['content'] | tojson }}|{{ {'a': [1, 'é<&>']} | tojson }}|{{ {'b': 1} | tojson(indent=2) }}"
    )
    out = t.render([{"role": "user", "content": "ünï <tag> 'q' \"dq\""}])
    # no ASCII escaping and no HTML escaping, unlike Jinja's built-in tojson
    assert out == '"ünï <tag> \'q\' \\"dq\\""|{"a": [1, "é<&>"]}|{\n  "b": 1\n}'


def test_strftime_now_loopcontrols_trim_blocks_and_generation_tag():
    t = ChatTemplate(
        "{% for m in messages %}\n"
        "  {% if loop.index > 2 %}{% break %}{% endif %}\n"
        "  {% if m['role'] == 'system' %}{% continue %}{% endif %}\n"
        "{% generation %}[{{ m['content'] }}]{% endgeneration %}\n"
        "{% endfor %}\n"
        "{{ strftime_now('%Y') | length }}"
    )
    # trim_blocks/lstrip_blocks remove the newlines and indentation around tags
    assert t.render(CONVERSATION, polyfill=False) == "[Hello!]4"


def test_sandbox_blocks_mutation_and_private_attributes():
    with pytest.raises(TemplateError):
        ChatTemplate("{{ messages.append(1) }}x").render([{"role": "user", "content": "x"}], polyfill=False)
    with pytest.raises(TemplateError):
        ChatTemplate("{{ ''.__class__.__mro__ }}").render([], polyfill=False)


def test_variables_and_extra_kwargs_reach_the_template():
    t = ChatTemplate(
        "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools is none }}|{{ enable_thinking }}|{{ messages | length }}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert t.render(CONVERSATION[1:2], enable_thinking=False) == "<s>|</s>|True|True|False|1"
    assert t.render(CONVERSATION[1:2], add_generation_prompt=False, enable_thinking=1) == "<s>|</s>|False|True|1|1"


# --------------------------------------------------------------------------
# Tools in templates that know them
# --------------------------------------------------------------------------

TOOL_AWARE = (
    "{% if tools %}TOOLS:{% for t in tools %}{{ t['function']['name'] }}({{ t['function']['parameters']['required'] | join(',') }});{% endfor %}\n{% endif %}"
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
)


def test_tools_are_passed_to_a_template_that_uses_them():
    t = ChatTemplate(TOOL_AWARE)
    assert t.supports_tools and template_supports_tools(TOOL_AWARE)
    assert t.render(CONVERSATION[1:2], tools=[WEATHER_TOOL]) == "TOOLS:get_weather(city);user: Hello!\n"
    # exactly as given: no Hermes preamble when the template handles tools itself
    assert "<tools>" not in t.render(CONVERSATION, tools=[WEATHER_TOOL])
    assert t.render(CONVERSATION[1:2]) == "user: Hello!\n"


def test_tools_given_to_a_template_without_tool_support_are_described_in_the_system_turn():
    t = ChatTemplate("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}")
    assert not t.supports_tools and not template_supports_tools(t.source)
    assert t.render(CONVERSATION[:2], tools=[WEATHER_TOOL]) == (
        "<system>You are a helpful assistant.\n\n" + TOOLS_PREAMBLE + "</system><user>Hello!</user>"
    )
    assert t.render(CONVERSATION[1:2], tools=[WEATHER_TOOL]) == f"<system>{TOOLS_PREAMBLE}</system><user>Hello!</user>"
    # polyfill off: HF behaviour, the tools are simply not in the prompt
    assert t.render(CONVERSATION[1:2], tools=[WEATHER_TOOL], polyfill=False) == "<user>Hello!</user>"


def test_template_that_needs_string_arguments_and_null_content():
    # Like DeepSeek-R1's template: concatenates arguments as a string and tests content for none.
    src = (
        "{% for m in messages %}"
        "{% if m['role'] == 'assistant' and m['tool_calls'] %}"
        "{% for c in m['tool_calls'] %}CALL {{ c['function']['name'] }} " + "{{ '' + c['function']['arguments'] }};{% endfor %}"
        "{% endif %}"
        "{% if m['role'] == 'assistant' and m['content'] is not none %}A:{{ m['content'] }};{% endif %}"
        "{% if m['role'] in ['user', 'tool'] %}{{ m['role'] }}:{{ m['content'] }};{% endif %}"
        "{% endfor %}"
    )
    t = ChatTemplate(src)
    assert t.supports_tool_calls and not t.object_arguments and t.null_content
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": {"x": "é"}}}]},
        {"role": "tool", "tool_call_id": "1", "content": "r"},
    ]
    assert t.render(messages) == 'user:q;CALL f {"x": "é"};tool:r;'


def test_null_content_is_not_printed_as_none():
    plain = ChatTemplate("{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}|{% endfor %}")
    with_calls = ChatTemplate(
        "{% for m in messages %}{{ m['content'] }}{% for c in m['tool_calls'] or [] %}"
        "<{{ c['function']['name'] }} {{ c['function']['arguments'] | tojson }}>{% endfor %}"
        "{% if m['role'] == 'tool' %}={% endif %}|{% endfor %}"
    )
    assert not plain.null_content and not with_calls.null_content
    call = {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]}]
    assert with_calls.render(messages, add_generation_prompt=False) == "q|<f {}>|"
    assert plain.render(messages[1:], add_generation_prompt=False) == (
        'assistant:<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>|'
    )
    assert plain.render([{"role": "assistant", "content": None}]) == "assistant:|"


def test_object_arguments_for_templates_that_apply_tojson():
    src = (
        "{% for m in messages %}{% for c in m['tool_calls'] or [] %}"
        "{{ c['function']['name'] }}{{ c['function']['arguments'] | tojson }}{% endfor %}"
        "{% if m['role'] == 'tool' %}={{ m['content'] }}{% endif %}{% endfor %}"
    )
    t = ChatTemplate(src)
    assert t.supports_tool_calls and t.object_arguments
    messages = [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "tool_call_id": "1", "content": "2"},
    ]
    # a JSON-string argument is decoded first, so it is not double encoded
    assert t.render(messages, add_generation_prompt=False) == 'f{"x": 1}=2'


def test_template_that_iterates_tools_when_defined_gets_them_undefined():
    # Phi-4-mini style: `tools is defined` then a loop; HF's tools=None would crash it.
    t = ChatTemplate(
        "{% if tools is defined %}{% for t in tools %}[{{ t['function']['name'] }}]{% endfor %}{% endif %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    assert t.render(CONVERSATION[1:2]) == "Hello!"
    assert t.render(CONVERSATION[1:2], tools=[WEATHER_TOOL]) == "[get_weather]Hello!"


def test_tool_use_variant_is_used_for_requests_with_tools():
    meta = {
        "tokenizer.chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
        "tokenizer.chat_template.tool_use": TOOL_AWARE,
    }
    t = resolve_template(meta)
    assert t.render(CONVERSATION[1:2]) == "Hello!"
    assert t.render(CONVERSATION[1:2], tools=[WEATHER_TOOL]) == "TOOLS:get_weather(city);user: Hello!\n"


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def test_content_parts_are_flattened_for_string_templates():
    t = ChatTemplate("{% for m in messages %}{{ m['role'] }}={{ m['content'] }};{% endfor %}")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": {"value": "jan-style", "annotations": []}}]},
    ]
    assert t.render(messages) == "system=sys;user=first\nsecond;assistant=jan-style;"
    assert not t.supports_content_parts
    with pytest.raises(TemplateError, match="image_url"):
        t.render([{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u"}}]}])


def test_templates_that_understand_parts_receive_the_list():
    t = ChatTemplate(
        "{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% else %}<img>{% endif %}{% endfor %}"
        "{% endif %}{% endfor %}"
    )
    assert t.supports_content_parts
    parts = [{"type": "text", "text": "look:"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    assert t.render([{"role": "user", "content": parts}]) == "look:<img>"


def test_render_does_not_modify_the_callers_messages():
    messages = json.loads(json.dumps(TOOL_CONVERSATION))
    before = json.dumps(messages)
    ChatTemplate(TOOL_AWARE).render(messages, tools=[WEATHER_TOOL])
    ChatTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}").render(messages, tools=[WEATHER_TOOL])
    assert json.dumps(messages) == before


def test_normalize_messages():
    out = normalize_messages(
        [
            {"role": "developer", "content": "d"},
            {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
            {"role": "assistant", "content": "x", "tool_calls": []},
            {"role": "user", "content": 3},
        ]
    )
    assert out[0] == {"role": "system", "content": "d"}
    assert out[1]["content"] is None and out[1]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert "tool_calls" not in out[2]
    assert out[3]["content"] == "3"
    strings = normalize_messages(out[1:2], object_arguments=False, null_content=False)
    assert strings[0]["content"] == "" and strings[0]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    with pytest.raises(TemplateError):
        normalize_messages([{"content": "no role"}])


def test_pydantic_messages_are_accepted():
    pydantic = pytest.importorskip("pydantic")

    class Message(pydantic.BaseModel):
        role: str
        content: str | None = None

    t = ChatTemplate.chatml()
    assert t.render([Message(role="user", content="hi")]) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_render_is_thread_safe():
    t = ChatTemplate.chatml()
    convs = [[{"role": "user", "content": f"message {i}"}] * (i % 5 + 1) for i in range(40)]
    expected = [t.render(c, tools=[WEATHER_TOOL] if i % 2 else None) for i, c in enumerate(convs)]
    errors: list[str] = []

    def worker(offset: int) -> None:
        for k in range(200):
            i = (k + offset) % len(convs)
            out = t.render(convs[i], tools=[WEATHER_TOOL] if i % 2 else None)
            if out != expected[i]:
                errors.append(f"{i}: {out!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


# --------------------------------------------------------------------------
# resolve_template
# --------------------------------------------------------------------------


def test_resolve_template_choices(caplog):
    model_src = "{% for m in messages %}M:{{ m['content'] }}{% endfor %}"
    meta = {"tokenizer.chat_template": model_src, "tokenizer.chat_template.rag": "{{ 'RAG' }}"}
    assert resolve_template(meta).source == model_src
    assert resolve_template(meta, "chatml").name == "chatml"
    assert resolve_template(meta, "rag").render([]) == "RAG"
    assert resolve_template(meta, "{{ 'inline' }}").render([]) == "inline"
    with pytest.raises(TemplateError, match="unknown chat template 'nope'.*chatml.*rag"):
        resolve_template(meta, "nope")
    with pytest.raises(TemplateError, match="does not compile"):
        resolve_template(meta, "{% if %}")
    # fallback only applies when the model has no template
    assert resolve_template(meta, fallback="llama3").source == model_src
    assert resolve_template({}, fallback="llama3").name == "llama3"
    # no template at all: ChatML
    t = resolve_template({}, bos_token="<s>")
    assert t.name == "chatml" and t.bos_token == "<s>" and t.eos_token == "<|im_end|>"
    # a broken model template: warn and use ChatML
    with caplog.at_level(logging.WARNING, logger="jan.templates.chat"):
        t = resolve_template({"tokenizer.chat_template": "{% for %}"})
    assert t.name == "chatml"
    assert "unusable" in caplog.text


def test_jan_prompt_template():
    jan_chatml = "<|im_start|>system\n{system_message}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant"
    t = resolve_template({}, fallback=jan_chatml)
    assert t.name == "prompt_template" and t.supports_system_role
    assert t.render(CONVERSATION) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant" "Hi! How can I help?"
        "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant"
    )
    # without a system placeholder the system text joins the first user turn
    t = resolve_template({}, override="[INST] {prompt} [/INST] 'quoted' \"dq\" \\ 😀")
    assert t.render(CONVERSATION[:2]) == "[INST] You are a helpful assistant.\n\nHello! [/INST] 'quoted' \"dq\" \\ 😀"
    with pytest.raises(TemplateError):
        jan_prompt_template_to_jinja("no placeholder")


def test_package_exports():
    pkg = importlib.import_module("jan.templates")
    if getattr(pkg, "__file__", None) is None:
        pytest.skip(
            "jan.templates resolves as a namespace package: the editable install predates "
            "jan/templates/__init__.py; reinstall jan (pip install -e .) to refresh it"
        )
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
    assert pkg.ChatTemplate is ChatTemplate
