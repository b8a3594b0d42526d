"""``tool_choice: "none"`` keeps the tools in the prompt and reads no call out of the reply, in every call format.

An agent that ends its tool turns with ``none`` (give the final answer now) sends the same conversation and
tools: a prompt rendered without the tools diverges from the system prompt on and is prefilled again from there.
With the tools kept, the turn reuses the KV cache of the ``auto`` turn before it, as llama-server's and OpenAI's
prompts keep them. Where the call's opening is one token, it is biased out over the client's own ``logit_bias``;
where a call opens with ordinary text (Llama 3's bare JSON, gpt-oss's ``to=functions.x``, a marker the vocabulary
spells in several tokens), nothing can ban it, and a call the model writes anyway comes back as content, unparsed,
with finish_reason ``stop``. Every family's real template (tests/chat_format_cases.py) on its vocabulary renders
the same prompt for ``none`` as for ``auto``; real servers with tiny random-weight models and real templates:
Qwen3's (``<tool_call>`` one token, as in Qwen's own files), a ChatML + Hermes template over the phi-3 vocabulary
(``<tool_call>`` is several tokens there), Llama 3.1's and gpt-oss's.
"""

from __future__ import annotations

import json

import pytest
from chat_format_cases import CASES, WEATHER, case_id
from conftest import require_model
from dialect_helpers import anthropic_client, openai_client

import jan
from jan.core import LocalModel
from jan.services.local import chat_plan, chat_prompt
from jan.services.types import ChatMessage, ChatRequest, ToolSpec
from jan.templates import ChatTemplate, gbnf_literal
from jan.templates.formats import format_for_template
from jan.templates.formats.call_start import call_start_tokens, trigger_literals
from jan.templates.formats.detect import ChatFormat
from jan.testing.gguf_models import (TINY_CHAT_CONFIG, templates_dir, vocab_path, write_harmony_model,
                                     write_llama_from_vocab, write_qwen3_tool_model, write_tool_template_model)
from server_helpers import start_server

QWEN = "qwen3-tiny"
PHI = "phi3-hermes"
LLAMA3 = "llama3-tiny"
HARMONY = "harmony-tiny"
LLAMA3_TEMPLATE = "meta-llama-Llama-3.1-8B-Instruct"
GPT_OSS_TEMPLATE = "openai-gpt-oss-120b"
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
          "required": ["city"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city, now. " * 8,
                                           "parameters": PARAMS}}]
CONVERSATION = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Weather in Paris?"}]


def _template(stem: str) -> str:
    path = templates_dir() / f"{stem}.jinja"
    if not path.is_file():
        pytest.skip(f"shared chat template missing: {path} not found (set JAN_TEST_MODELS to the shared/models folder)")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    for vocab in ("ggml-vocab-qwen2.gguf", "ggml-vocab-phi-3.gguf", "ggml-vocab-llama-bpe.gguf"):
        require_model("vocab", vocab)
    llama3 = _template(LLAMA3_TEMPLATE)
    _template(GPT_OSS_TEMPLATE)
    tmp = tmp_path_factory.mktemp("tool-choice-none")
    return tmp, [write_qwen3_tool_model(tmp / f"{QWEN}.gguf", tool_tokens=True),
                 write_tool_template_model(tmp / f"{PHI}.gguf"),
                 write_llama_from_vocab(tmp / f"{LLAMA3}.gguf", vocab_path("llama-bpe"), **TINY_CHAT_CONFIG,
                                        chat_template=llama3),
                 write_harmony_model(tmp / f"{HARMONY}.gguf")]


@pytest.fixture(scope="module")
def server(paths):
    tmp, models = paths
    srv = start_server(tmp, models, n_ctx=2048, n_parallel=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai_client(server, timeout=300)


@pytest.fixture(scope="module")
def tool_call_token(paths):
    with jan.Model(paths[1][0], vocab_only=True) as model:
        ids = model.tokenize("<tool_call>", add_special=False, parse_special=True)
    assert len(ids) == 1
    return ids[0]


def chat(oai, model, choice, **extra):
    return oai.chat.completions.create(model=model, messages=CONVERSATION, tools=TOOLS, tool_choice=choice,
                                       temperature=0, **{"max_tokens": 8, **extra})


def test_trigger_literals_read_only_plain_alternations():
    assert trigger_literals("<tool_call>") == ["<tool_call>"]
    assert trigger_literals(r"<tool_call>|<function=") == ["<tool_call>", "<function="]
    assert trigger_literals(r"\[TOOL_CALLS\]") == ["[TOOL_CALLS]"]
    assert trigger_literals(r"<\|tool_calls_section_begin\|>") == ["<|tool_calls_section_begin|>"]
    for pattern in (None, "", r" ?functools\[", r"<tool_call>\s", "(a|b)", "a||b", "[ab]"):
        assert trigger_literals(pattern) is None, pattern


def test_call_start_tokens_need_one_token_per_opening():
    vocab = {"<tool_call>": [7], "<function=": [1, 2]}
    one = ChatFormat("hermes", trigger="<tool_call>")
    assert call_start_tokens(one, lambda text: vocab[text]) == (7,)
    assert call_start_tokens(ChatFormat("x", trigger=r"<tool_call>|<function="), lambda text: vocab[text]) is None
    assert call_start_tokens(ChatFormat("llama3", trigger=None), lambda text: vocab[text]) is None


def test_none_keeps_the_prefix_of_the_auto_turn(oai):
    first = chat(oai, QWEN, "auto")
    second = chat(oai, QWEN, "none")
    # the same prompt up to the generation prompt: the tools stayed, and the slot's cache served it
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= second.usage.prompt_tokens - 2, (cached, second.usage.prompt_tokens)


def test_none_never_opens_a_call_even_when_the_client_pushes_for_one(oai, tool_call_token):
    pushed = {str(tool_call_token): 100}
    # the bias works: with "auto" the model opens a call at once
    auto = chat(oai, QWEN, "auto", logit_bias=pushed, max_tokens=40)
    assert auto.choices[0].message.tool_calls or "<tool_call>" in (auto.choices[0].message.content or "")
    for _ in range(2):  # (streamed and whole alike: one path)
        reply = chat(oai, QWEN, "none", logit_bias=pushed, max_tokens=40).choices[0]
        assert not reply.message.tool_calls
        assert "<tool_call>" not in (reply.message.content or "")
        assert reply.finish_reason in ("stop", "length")
    streamed = oai.chat.completions.create(model=QWEN, messages=CONVERSATION, tools=TOOLS, tool_choice="none",
                                           max_tokens=40, temperature=0, logit_bias=pushed, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert "<tool_call>" not in text


# -- every family's template, on its vocabulary -----------------------------------------------------------------------

#: Families whose call opens with text whatever the vocabulary: no trigger at all (a bare JSON object, a recipient
#: line), one that is no plain literal (firefunction's optional space) or channels (gpt-oss). Others open with a
#: marker that is text where the vocabulary spells it in several tokens (all of them, on the vocabularies here).
TEXT_OPENED = ("llama3", "gpt-oss", "functionary-v3.2", "firefunction-v2")
CALL_CASES = [case for case in CASES if any(out is not None and out.calls for out in (case.thinking, case.plain))]
#: firefunction-v2 prints the time to the second: two renders of one request may straddle a second
FIXED_TIME = {"datetime": "Jan 01 2026 12:00:00 GMT"}


@pytest.fixture(scope="module")
def locals_():
    made: dict[str, LocalModel] = {}
    yield made
    for local in made.values():
        local.model.close()


def _local(case, locals_) -> LocalModel:
    """The case's template over its vocabulary (vocab only: the prompt and its tokens, nothing generated)."""
    key = f"{case.template}/{case.vocab}"
    if key not in locals_:
        source = _template(case.template)
        model = jan.Model(str(require_model("vocab", f"ggml-vocab-{case.vocab}.gguf")), vocab_only=True)
        special = model.info.special_tokens
        bos, eos = (model.token_to_piece(special[k], special=True) if k in special else "" for k in ("bos", "eos"))
        locals_[key] = LocalModel(model, ChatTemplate(source, bos, eos))
    return locals_[key]


def _request(choice, tools=True) -> ChatRequest:
    fn = WEATHER["function"]
    specs = (ToolSpec(fn["name"], fn["description"], fn["parameters"]),) if tools else ()
    return ChatRequest(None, (ChatMessage("system", "Be brief."), ChatMessage("user", "Weather in Paris?")),
                       tools=specs, tool_choice=choice if tools else None, chat_template_kwargs=FIXED_TIME)


def test_text_opened_families_cannot_be_banned_whatever_the_vocabulary():
    # even were every literal of their openings one token, there is no single token that opens all their calls
    for name in TEXT_OPENED:
        case = next(c for c in CASES if c.family == name)
        fmt = format_for_template(ChatTemplate(_template(case.template)), True)
        assert fmt.name == name
        assert call_start_tokens(fmt, lambda text: [1]) is None, name


@pytest.mark.parametrize("case", CALL_CASES, ids=case_id)
def test_none_renders_the_prompt_auto_renders(case, locals_):
    local = _local(case, locals_)
    prompts = {}
    for choice in ("auto", "none"):
        plan = chat_plan(local, _request(choice))
        prompts[choice] = chat_prompt(local, _request(choice), plan)
    bare, _ = chat_prompt(local, _request(None, tools=False))
    text, tokens = prompts["none"]
    # the tools' definitions are in the prompt: exactly the auto turn's text and tokens (its KV cache serves it)
    assert prompts["auto"] == (text, tokens)
    assert text != bare and "get_weather" in text and "Weather for a city" in text
    plan = chat_plan(local, _request("none"))
    opening = call_start_tokens(plan.fmt, lambda t: local.model.tokenize(t, add_special=False, parse_special=True))
    assert plan.banned_tokens == (opening or ())
    if not opening:  # a call opens with text here: nothing is banned, the client's bias is left as it is
        assert "logit_bias" not in plan.engine_options(text)
        assert plan.engine_options(text, {5: 1.0}).get("logit_bias") is None
    if case.family in TEXT_OPENED:
        assert not opening


@pytest.mark.parametrize("case", CALL_CASES, ids=case_id)
def test_none_reads_a_call_the_model_writes_as_content(case, locals_):
    local = _local(case, locals_)
    for out in (case.thinking, case.plain):
        if out is None or not out.calls:
            continue
        auto = chat_plan(local, _request("auto"))
        prompt, _ = chat_prompt(local, _request("auto"), auto)
        assert _parse(auto, prompt, out.text)[2]  # (the text is a call in this format: auto reads one)
        plan = chat_plan(local, _request("none"))
        whole = _parse(plan, prompt, out.text)
        for cut in range(1, len(out.text), 5):  # streamed in any pieces, the same message
            assert _parse(plan, prompt, out.text[:cut], out.text[cut:]) == whole, cut
        content, reasoning, calls = whole
        assert calls == [] and reasoning == out.reasoning
        assert "get_weather" in content and all(args["city"] in content for _, args in out.calls)


def _parse(plan, prompt: str, *pieces: str):
    parser = plan.parser(prompt, id_factory=lambda: "call_0")
    for piece in pieces:
        parser.feed(piece)
    parser.finish()
    result = parser.result
    return result.content, result.reasoning, [(c.name, c.arguments) for c in result.tool_calls]


# -- over HTTP -----------------------------------------------------------------------------------------------------

#: A call in each text-opened model's own syntax, spelled by a client grammar (the whole output's, as llama-server
#: takes it): with "auto" the parser reads it as a call; with "none" it is the reply's content, as written.
SPELLED_CALLS = {
    PHI: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    LLAMA3: '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    HARMONY: '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}',
}


@pytest.mark.parametrize("model", [PHI, LLAMA3, HARMONY])
def test_a_call_opened_by_text_keeps_the_tools(oai, model):
    auto = chat(oai, model, "auto")
    none = chat(oai, model, "none")
    assert none.usage.prompt_tokens == auto.usage.prompt_tokens  # the tools' definitions stayed in the prompt
    cached = none.usage.prompt_tokens_details.cached_tokens
    assert cached >= none.usage.prompt_tokens - 2, (cached, none.usage.prompt_tokens)


@pytest.mark.parametrize("model", [PHI, LLAMA3, HARMONY])
def test_a_call_written_with_none_is_content(oai, model):
    spelled = SPELLED_CALLS[model]
    grammar = {"grammar": "root ::= " + gbnf_literal(spelled)}
    auto = chat(oai, model, "auto", max_tokens=120, extra_body=grammar).choices[0]
    assert [c.function.name for c in auto.message.tool_calls or ()] == ["get_weather"], auto
    assert auto.finish_reason == "tool_calls"
    none = chat(oai, model, "none", max_tokens=120, extra_body=grammar).choices[0]
    assert not none.message.tool_calls and none.finish_reason == "stop"
    assert none.message.content == spelled
    streamed = oai.chat.completions.create(model=model, messages=CONVERSATION, tools=TOOLS, tool_choice="none",
                                           max_tokens=120, temperature=0, extra_body=grammar, stream=True)
    chunks = [c.choices[0] for c in streamed if c.choices]
    assert not any(c.delta.tool_calls for c in chunks)
    assert "".join(c.delta.content or "" for c in chunks) == spelled
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]


@pytest.mark.parametrize("model", [QWEN, PHI, LLAMA3, HARMONY])
def test_every_dialect_keeps_the_tools_with_none(server, model):
    client = anthropic_client(server, timeout=300)
    tools = [{"name": "get_weather", "description": TOOLS[0]["function"]["description"], "input_schema": PARAMS}]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model=model, max_tokens=4, tools=tools, tool_choice={"type": "auto"},
                                   system="You are a helpful assistant.", messages=ask)
    second = client.messages.create(model=model, max_tokens=4, tools=tools, tool_choice={"type": "none"},
                                    system="You are a helpful assistant.", messages=ask)
    total = second.usage.input_tokens + (second.usage.cache_read_input_tokens or 0)
    assert total == first.usage.input_tokens + (first.usage.cache_read_input_tokens or 0)
    assert (second.usage.cache_read_input_tokens or 0) >= total - 2
    assert not [b for b in second.content if b.type == "tool_use"]

    oai = openai_client(server, timeout=300)
    resp_tools = [{"type": "function", "name": "get_weather", "parameters": PARAMS,
                   "description": TOOLS[0]["function"]["description"]}]
    r1 = oai.responses.create(model=model, input="Weather in Rome?", tools=resp_tools, tool_choice="auto",
                              max_output_tokens=16, temperature=0)
    r2 = oai.responses.create(model=model, input="Weather in Rome?", tools=resp_tools, tool_choice="none",
                              max_output_tokens=16, temperature=0)
    assert r2.usage.input_tokens == r1.usage.input_tokens
    assert r2.usage.input_tokens_details.cached_tokens >= r2.usage.input_tokens - 2
    assert not [o for o in r2.output if o.type == "function_call"]


#: Llama 3's call is a bare JSON object: an answer held to this schema is one, word for word.
CALL_SHAPED = {"type": "object", "properties": {
    "name": {"type": "string", "enum": ["get_weather"]},
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
                   "required": ["city"], "additionalProperties": False}},
    "required": ["name", "parameters"], "additionalProperties": False}
CALL_SHAPED_ANSWER = {"name": "get_weather", "parameters": {"city": "Paris"}}


def test_a_call_shaped_answer_is_content_in_every_dialect(server):
    # Llama 3 with its tools in the prompt writes what its parser would read as a call: with "none" it is the text
    oai = openai_client(server, timeout=300)
    fmt = {"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SHAPED}}
    choice = chat(oai, LLAMA3, "none", max_tokens=200, response_format=fmt).choices[0]
    assert json.loads(choice.message.content) == CALL_SHAPED_ANSWER
    assert not choice.message.tool_calls and choice.finish_reason == "stop"

    resp_tools = [{"type": "function", "name": "get_weather", "parameters": PARAMS,
                   "description": TOOLS[0]["function"]["description"]}]
    r = oai.responses.create(model=LLAMA3, input="Weather in Paris?", tools=resp_tools, tool_choice="none",
                             max_output_tokens=200, temperature=0,
                             text={"format": {"type": "json_schema", "name": "call", "schema": CALL_SHAPED}})
    assert [o.type for o in r.output] == ["message"] and r.status == "completed"
    assert json.loads(r.output_text) == CALL_SHAPED_ANSWER

    client = anthropic_client(server, timeout=300)
    tools = [{"name": "get_weather", "description": TOOLS[0]["function"]["description"], "input_schema": PARAMS}]
    m = client.messages.create(model=LLAMA3, max_tokens=200, tools=tools, tool_choice={"type": "none"},
                               messages=[{"role": "user", "content": "Weather in Paris?"}],
                               extra_body={"output_config": {"format": {"type": "json_schema", "schema": CALL_SHAPED}}})
    assert [b.type for b in m.content] == ["text"] and m.stop_reason == "end_turn"
    assert json.loads(m.content[0].text) == CALL_SHAPED_ANSWER
