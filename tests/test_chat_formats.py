"""Chat formats end to end on the engine: every family's real template, token streams the engine produced.

For each family (tests/chat_format_cases.py) a tiny random-weight model is
written with a real vocabulary and the family's template as
tokenizer.chat_template. The template is rendered with tools and with
thinking on and off; a grammar that spells exactly the family's output makes
the engine produce it token by token; the parser must give the same
content / reasoning_content / tool_calls streamed (engine pieces) and whole.
Then the family's own call grammar (tool_choice "required") must make even a
random model write a call the parser reads back, and a thinking budget must
close the thinking block in the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import jan
from jan.templates import gbnf_literal, resolve_template
from jan.templates.formats import OutputParser, detect_format, parse_output
from jan.testing.gguf_models import vocab_path, write_llama_from_vocab

from chat_format_cases import CASES, TOOLS, WEATHER, Case, Output, case_id
from conftest import require_model

TEMPLATES = Path(__file__).resolve().parents[1].parent / "shared" / "templates"
# Enum-only arguments, so a random model constrained by the grammar finishes a call quickly.
_ENUM_PROPERTIES = {"city": {"type": "string", "enum": ["Paris", "Rome"]}, "days": {"enum": [1, 2, 3]}}
ENUM_TOOLS = [{**WEATHER, "function": {**WEATHER["function"], "parameters": {
    **WEATHER["function"]["parameters"], "properties": _ENUM_PROPERTIES}}}]
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]


def _template_source(case: Case) -> str:
    path = TEMPLATES / f"{case.template}.jinja"
    if not path.is_file():
        pytest.skip(f"template {path} missing")
    return path.read_text()


_MODELS: dict[str, jan.Model] = {}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    yield tmp_path_factory.mktemp("chat-format-models")
    for m in _MODELS.values():
        m.close()
    _MODELS.clear()


def _model(case: Case, model_dir: Path) -> jan.Model:
    """A tiny model with the case's vocabulary and template (one per template, kept for the module)."""
    if case.template not in _MODELS:
        require_model(f"vocab/ggml-vocab-{case.vocab}.gguf")
        # closing the previous model keeps memory flat: families run one after another
        for m in _MODELS.values():
            m.close()
        _MODELS.clear()
        path = write_llama_from_vocab(
            model_dir / f"{case.template}.gguf", vocab_path(case.vocab),
            n_embd=16, n_layer=1, n_head=2, n_ff=32, n_ctx=8192, chat_template=_template_source(case),
        )
        _MODELS[case.template] = jan.Model(path, n_ctx=8192, n_parallel=1, n_threads=1)
    return _MODELS[case.template]


def _render(model: jan.Model, fmt, thinking: bool | None, tools=TOOLS) -> str:
    special = model.info.special_tokens
    bos = model.token_to_piece(special["bos"], special=True) if "bos" in special else ""
    eos = model.token_to_piece(special["eos"], special=True) if "eos" in special else ""
    template = resolve_template(model.metadata, bos_token=bos, eos_token=eos)
    messages = fmt.apply_switch(USER, None, thinking)
    return template.render(messages, tools=tools, **fmt.template_kwargs(enabled=thinking, tools=tools))


def _expect(result, out: Output) -> None:
    assert result.reasoning == out.reasoning
    assert result.content == out.content
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [(n, a) for n, a in out.calls]
    assert len({c.id for c in result.tool_calls}) == len(result.tool_calls)


def _parse_stream(fmt, pieces: list[str], open_at_start: bool):
    ids = iter(range(1000))
    parser = OutputParser(fmt, TOOLS, open_at_start=open_at_start, id_factory=lambda: f"call_{next(ids)}")
    deltas = []
    for p in pieces:
        deltas += parser.feed(p)
    deltas += parser.finish()
    return parser.result, deltas


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_detected_from_template(case: Case):
    fmt = detect_format(_template_source(case))
    assert fmt.name == case.family
    kwargs = fmt.template_kwargs(effort="high")
    for k, v in case.effort_kwargs.items():
        assert kwargs.get(k) == v


# Every (template, mode) pair the template has: a template that does not think has no "thinking" case.
OUTPUT_CASES = [pytest.param(case, mode, id=f"{mode}-{case_id(case)}")
                for case in CASES for mode in ("thinking", "plain")
                if (case.thinking if mode == "thinking" else case.plain) is not None]


@pytest.mark.parametrize(("case", "mode"), OUTPUT_CASES)
def test_engine_output_parsed_streamed_and_whole(case: Case, mode: str, model_dir):
    out = case.thinking if mode == "thinking" else case.plain
    model = _model(case, model_dir)
    fmt = detect_format(model.chat_template)
    thinking = (mode == "thinking") if case.thinking is not None else None
    prompt = _render(model, fmt, thinking)
    if resolve_template(model.metadata).supports_tools:
        assert "get_weather" in prompt
    open_at_start = fmt.starts_in_reasoning(prompt)
    # a thinking output that does not open its own block relies on the prompt having opened it
    assert open_at_start == (mode == "thinking" and fmt.reasoning is not None and not out.text.lstrip().startswith(fmt.reasoning.start))

    request = model.stream(
        prompt, add_special=False, grammar="root ::= " + gbnf_literal(out.text), temperature=0,
        max_tokens=len(out.text) + 16, render_special=fmt.render_special,
    )
    chunks = list(request)
    pieces = [chunk.text for chunk in chunks]
    assert chunks[-1].finish_reason == "stop"
    assert "".join(pieces) == out.text
    # a real token stream, not one lump (counted in tokens: a busy consumer may get several tokens in one chunk)
    assert sum(len(chunk.token_ids) for chunk in chunks) > 1

    streamed, deltas = _parse_stream(fmt, pieces, open_at_start)
    ids = iter(range(1000))
    whole = parse_output("".join(pieces), fmt, TOOLS, open_at_start=open_at_start, id_factory=lambda: f"call_{next(ids)}")
    assert streamed == whole
    _expect(whole, out)
    # the deltas add up to the message
    assert "".join(d.content for d in deltas) == (whole.content or "")
    assert "".join(d.reasoning for d in deltas) == (whole.reasoning or "")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_required_grammar_makes_a_call_the_parser_reads(case: Case, model_dir):
    model = _model(case, model_dir)
    fmt = detect_format(model.chat_template)
    thinking = False if case.thinking is not None else None
    prompt = _render(model, fmt, thinking, tools=ENUM_TOOLS)
    # thinking off, as the request's plan says it (ChatFormat.thinking_on): the call from the first token
    options = fmt.grammar_options(ENUM_TOOLS, "required", parallel=False, prompt=prompt, thinking=thinking)
    if fmt.starts_in_reasoning(prompt) and not fmt.switches:
        # a template that always opens thinking (Apriel 1.6) has no switch: a budget of 0 closes it at once
        options.update(fmt.budget_options(0, prompt))
    result = model.generate(prompt, add_special=False, temperature=0, max_tokens=200,
                            render_special=fmt.render_special, **options)
    assert result.finish_reason == "stop", result.text
    parsed = parse_output(result.text, fmt, ENUM_TOOLS, open_at_start=fmt.starts_in_reasoning(prompt))
    assert [c.name for c in parsed.tool_calls] == ["get_weather"], result.text
    assert parsed.content is None, parsed.content  # a forced call leaves none of its markup as content
    args = json.loads(parsed.tool_calls[0].arguments)
    assert args["city"] in ("Paris", "Rome") and args["days"] in (1, 2, 3)


def _case(template: str) -> Case:
    return next(c for c in CASES if c.template == template)


def _tool_call_token_model(case: Case, path: Path) -> jan.Model:
    """A tiny model of ``case``'s vocabulary and template in which ``<tool_call>`` is one (added) token,
    as in Qwen2.5's own vocabulary."""
    require_model(f"vocab/ggml-vocab-{case.vocab}.gguf")
    write_llama_from_vocab(
        path, vocab_path(case.vocab), n_embd=16, n_layer=1, n_head=2, n_ff=32, n_ctx=8192,
        chat_template=_template_source(case), extra_special_tokens=["<tool_call>", "</tool_call>"],
    )
    return jan.Model(path, n_ctx=8192, n_parallel=1, n_threads=1)


def test_lazy_grammar_constrains_after_the_trigger(model_dir):
    """tool_choice auto: free text until <tool_call>, then the grammar makes it a valid call."""
    case = _case("Qwen-Qwen2.5-7B-Instruct")
    with _tool_call_token_model(case, model_dir / "lazy.gguf") as model:
        fmt = detect_format(model.chat_template)
        prompt = _render(model, fmt, None, tools=ENUM_TOOLS)
        options = fmt.grammar_options(ENUM_TOOLS, "auto", parallel=False, prompt=prompt)
        assert options["grammar_triggers"]
        trigger = model.tokenize("<tool_call>", add_special=False, parse_special=True)
        assert len(trigger) == 1
        # push the model to open a call; after it only the grammar decides (the bias alone would repeat it forever)
        result = model.generate(prompt, add_special=False, temperature=0, max_tokens=200, logit_bias={trigger[0]: 30.0},
                                render_special=True, **options)
        assert result.finish_reason == "stop", result.text
        parsed = parse_output(result.text, fmt, ENUM_TOOLS)
        assert [c.name for c in parsed.tool_calls] == ["get_weather"], result.text
        assert json.loads(parsed.tool_calls[0].arguments)["city"] in ("Paris", "Rome")

        # no trigger, no constraint: free text runs to max_tokens
        free = model.generate(prompt, add_special=False, temperature=0, max_tokens=8, logit_bias={trigger[0]: -100.0},
                              render_special=True, **options)
        assert free.finish_reason == "length"


@pytest.mark.parametrize("budget", [0, 6])
def test_reasoning_budget_closes_thinking_in_the_engine(budget, model_dir):
    case = _case("Qwen-QwQ-32B")  # its prompt opens <think>
    model = _model(case, model_dir)
    fmt = detect_format(model.chat_template)
    prompt = _render(model, fmt, True, tools=None)
    assert fmt.starts_in_reasoning(prompt)
    options = fmt.budget_options(budget, prompt)
    request = model.stream(prompt, add_special=False, temperature=0, max_tokens=budget + 20, ignore_eos=True, **options)
    chunks = list(request)
    ids = [t for c in chunks for t in c.token_ids]
    text = "".join(c.text for c in chunks)
    assert "</think>" in text
    # exactly `budget` tokens of thinking, then the forced closing tag, then the answer
    close_ids = model.tokenize("</think>", add_special=False, parse_special=True)
    at = next(i for i in range(len(ids)) if ids[i:i + len(close_ids)] == close_ids)
    assert at == budget
    parsed = parse_output(text, fmt, open_at_start=True)
    assert parsed.content  # the answer follows the closed block
    assert (parsed.reasoning is None) == (budget == 0) or parsed.reasoning is not None


def test_forced_call_follows_a_thinking_budget(model_dir):
    """tool_choice required on a prompt that opens <think>: the budget closes the thinking, then the call comes
    (the blank run after the end of thinking is bounded, so a model cannot write whitespace instead of calling)."""
    case = _case("Qwen-QwQ-32B")
    model = _model(case, model_dir)
    fmt = detect_format(model.chat_template)
    prompt = _render(model, fmt, True, tools=ENUM_TOOLS)
    assert fmt.starts_in_reasoning(prompt)
    options = {**fmt.grammar_options(ENUM_TOOLS, "required", parallel=False, prompt=prompt),
               **fmt.budget_options(4, prompt)}
    result = model.generate(prompt, add_special=False, temperature=0, max_tokens=300,
                            render_special=fmt.render_special, **options)
    assert result.finish_reason == "stop", result.text
    parsed = parse_output(result.text, fmt, ENUM_TOOLS, open_at_start=True)
    assert parsed.reasoning and "<tool_call>" not in parsed.reasoning
    assert parsed.content is None and [c.name for c in parsed.tool_calls] == ["get_weather"], result.text


def test_budget_left_alone_when_the_model_closes_thinking_itself(model_dir):
    case = _case("Qwen-QwQ-32B")
    model = _model(case, model_dir)
    fmt = detect_format(model.chat_template)
    prompt = _render(model, fmt, True, tools=None)
    text = "Quick.\n</think>\n\nDone."
    result = model.generate(prompt, add_special=False, temperature=0, max_tokens=40,
                            grammar="root ::= " + gbnf_literal(text), **fmt.budget_options(100, prompt))
    assert result.text == text


def test_lazy_grammar_waits_for_the_end_of_thinking(model_dir):
    """A call marker inside thinking does not trigger the grammar; the first one after it does."""
    case = _case("Qwen-QwQ-32B")  # its prompt opens <think> when thinking is on
    with _tool_call_token_model(case, model_dir / "lazy-think.gguf") as model:
        fmt = detect_format(model.chat_template)
        prompt = _render(model, fmt, True, tools=ENUM_TOOLS)
        assert fmt.starts_in_reasoning(prompt)
        options = {**fmt.grammar_options(ENUM_TOOLS, "auto", parallel=False, prompt=prompt),
                   **fmt.budget_options(3, prompt)}
        trigger = model.tokenize("<tool_call>", add_special=False, parse_special=True)
        # the model is pushed to write <tool_call> all the time: three times while thinking (no trigger),
        # then the budget closes the thinking and the next one opens a call the grammar completes
        result = model.generate(prompt, add_special=False, temperature=0, max_tokens=200,
                                logit_bias={trigger[0]: 30.0}, render_special=True, **options)
        assert result.finish_reason == "stop", result.text
        assert result.text.startswith("<tool_call>" * 3 + "</think>")
        parsed = parse_output(result.text, fmt, ENUM_TOOLS, open_at_start=True)
        assert parsed.reasoning == "<tool_call>" * 3
        assert [c.name for c in parsed.tool_calls] == ["get_weather"]


def _harmony_thinking_first(grammar: str) -> str:
    """A gpt-oss reply grammar (:func:`~jan.templates.formats.harmony_grammar.after_analysis`) whose analysis message
    is not optional: a random model must think first, so that the budget has a thinking to cap."""
    head = grammar.split("\n", 1)[0]
    assert head.startswith("root ::= (") and head.endswith(")? answer-root"), head
    return grammar.replace(")? answer-root", ") answer-root", 1)


def _analysis_tokens(model: jan.Model, ids: list[int], header: str, close: str) -> int:
    """How many of ``ids`` (the output's tokens) lie after the analysis ``header`` and before the ``close`` the
    budget wrote (both found in the text the tokens make up, as the engine's budget finds them)."""
    text, starts = "", []
    for t in ids:
        starts.append(len(text))
        text += model.token_to_piece(t, special=True)
    begin, end = text.index(header) + len(header), text.index(close)
    return sum(1 for s in starts if s >= begin and s < end) if end > begin else 0


@pytest.mark.parametrize("budget", [0, 5])
def test_a_thinking_budget_ends_gpt_oss_analysis_and_answers_in_the_final_channel(budget, model_dir):
    """gpt-oss thinks in an analysis message, which has no marker pair of its own: its budget counts the message
    from its header, then writes its <|end|> and the final message's header, and the answer follows there."""
    from jan.templates.formats.harmony_grammar import after_analysis, final_message

    case = _case("openai-gpt-oss-120b")
    model = _model(case, model_dir)
    fmt = detect_format(model.chat_template)
    prompt = _render(model, fmt, None, tools=None)
    options = fmt.budget_options(budget, prompt)
    close = "<|end|><|start|>assistant<|channel|>final<|message|>"
    assert options["reasoning_close"] == close
    grammar = _harmony_thinking_first(after_analysis(final_message('root ::= "The answer is" [ a-z]{0,12}')))
    result = model.generate(prompt, add_special=False, temperature=0, max_tokens=120, render_special=True,
                            grammar=grammar, **options)
    assert close in result.text, result.text
    assert _analysis_tokens(model, result.token_ids, "<|channel|>analysis<|message|>", close) == budget
    parsed = parse_output(result.text, fmt)
    assert (parsed.content or "").startswith("The answer is"), result.text
    # (at 0 the analysis holds at most what the token that ended its header carried past it)
    assert parsed.reasoning or budget == 0, result.text


def test_a_forced_call_follows_a_gpt_oss_thinking_budget(model_dir):
    """With tools the spent budget ends the analysis up to the next message's channel: the call grammar (a forced
    call) writes the commentary call there, which a final channel written by the budget would have ruled out."""
    case = _case("openai-gpt-oss-120b")
    model = _model(case, model_dir)
    fmt = detect_format(model.chat_template)
    prompt = _render(model, fmt, None, tools=ENUM_TOOLS)
    options = fmt.budget_options(4, prompt, calls=True)
    assert options["reasoning_close"] == "<|end|><|start|>assistant<|channel|>"
    grammar = _harmony_thinking_first(
        fmt.grammar_options(ENUM_TOOLS, "required", parallel=False, prompt=prompt)["grammar"])
    result = model.generate(prompt, add_special=False, temperature=0, max_tokens=300, render_special=True,
                            grammar=grammar, **options)
    assert result.finish_reason == "stop", result.text
    parsed = parse_output(result.text, fmt, ENUM_TOOLS)
    assert parsed.reasoning, result.text
    assert [c.name for c in parsed.tool_calls] == ["get_weather"], result.text
