"""What a local model can do, read from its files before any load (jan.services.abilities): the GGUF header's chat
template and special tokens, the projector header's encoders, the model.json's template overrides and projector;
kept per file version; and what a request is refused with for asking more. The CLI's local mode refuses what a
model cannot do (an embedding model given by path, images without a projector) before it loads the model."""

from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner

from jan.errors import MediaError
from jan.extensions.llamacpp.extension import LlamaCppExtension
from jan.extensions.models.gguf_info import gguf_scalars
from jan.services.abilities import (Abilities, asks_abilities, chat_refusal, fill_in_refusal, model_abilities,
                                   refusal)
from jan.services.errors import RequestError
from jan.services.types import (AudioPart, ChatMessage, ChatRequest, CompletionRequest, EmbeddingRequest, ImagePart,
                                ReasoningOptions, SamplingOptions, TextPart, ToolSpec)
from jan.testing.gguf_models import models_dir, write_not_gguf
from test_server_ollama import write_fim_model, write_qwen3_model

TOOL = ToolSpec("get_weather", "The weather", {"type": "object"})


def _chat(*parts, reasoning: ReasoningOptions | None = None, tools=(), **kw) -> ChatRequest:
    return ChatRequest(model="m", messages=(ChatMessage("user", (TextPart("hi"), *parts)),), reasoning=reasoning,
                       tools=tuple(tools), **kw)


THINK = ReasoningOptions(enabled=True, required=True)


@pytest.fixture(scope="module")
def fim_path(tmp_path_factory):
    return write_fim_model(tmp_path_factory.mktemp("fim") / "fim.gguf")


@pytest.fixture(scope="module")
def qwen3_path(tmp_path_factory):
    return write_qwen3_model(tmp_path_factory.mktemp("qwen3") / "qwen3.gguf")


def test_a_model_without_a_template_fim_tokens_or_projector(stories_path):
    can = model_abilities({"file_path": str(stories_path), "settings": {}})
    assert (can.fim, can.projector, can.vision, can.audio, can.embedding) == (False, False, False, False, False)
    assert can.template is not None and can.template.fallback  # ChatML stands in, as a load makes it
    think = chat_refusal(can, _chat(reasoning=THINK), "m")
    assert isinstance(think, RequestError) and think.param == "think" and str(think) == '"m" does not support thinking'
    tools = chat_refusal(can, _chat(tools=[TOOL], tools_need_template=True), "m")
    assert isinstance(tools, RequestError) and tools.param == "tools"
    # tools through a dialect that does not insist (OpenAI's: ChatML's polyfill), thinking left to the default: fine
    assert chat_refusal(can, _chat(tools=[TOOL]), "m") is None
    assert chat_refusal(can, _chat(reasoning=ReasoningOptions(enabled=True)), "m") is None
    image = chat_refusal(can, _chat(ImagePart(b"x", "image/png")), "m")
    assert isinstance(image, MediaError) and image.reason == "no_projector" and image.message_index == 0
    assert "it has no projector" in str(image)


def test_asks_abilities_only_for_what_is_judged():
    assert not asks_abilities(_chat())
    assert not asks_abilities(_chat(tools=[TOOL], reasoning=ReasoningOptions(enabled=True)))
    assert asks_abilities(_chat(reasoning=THINK))
    assert asks_abilities(_chat(tools=[TOOL], tools_need_template=True))
    assert asks_abilities(_chat(AudioPart(b"x", "mp3")))


def test_an_embedding_model(minilm_path):
    can = model_abilities({"file_path": str(minilm_path)})
    assert (can.embedding, can.n_embd, can.n_vocab) == (True, 384, 30522)
    # dimensions: a cut to 1..n_embd (n_embd: the whole vector); more is refused, unless capped (Ollama's reading)
    for dims in (1, 8, 384):
        assert refusal(can, EmbeddingRequest(model="m", inputs=("hi",), dimensions=dims), "m") is None
    wrong = refusal(can, EmbeddingRequest(model="m", inputs=("hi",), dimensions=385), "m")
    assert isinstance(wrong, RequestError) and wrong.param == "dimensions" and str(wrong).startswith("dimensions: ")
    assert "1 to 384" in str(wrong)
    assert refusal(can, EmbeddingRequest(model="m", inputs=("hi",), dimensions=385, dimensions_capped=True),
                   "m") is None
    ids = refusal(can, EmbeddingRequest(model="m", inputs=("hi", (1, 30522)), listed=True), "m")
    assert isinstance(ids, RequestError) and str(ids).startswith("input[1][1]: token id 30522 is outside")
    assert ids.param == "input[1][1]"  # (the element itself, not the whole field)
    # one list of ids: a body's input[0][1] in a list of one, its input[1] when it sent one input; a Python caller's
    # own field, inputs[0][1]
    one = refusal(can, EmbeddingRequest(model="m", inputs=((1, 30522),), listed=True), "m")
    assert one.param == "input[0][1]" and str(one).startswith("input[0][1]: token id 30522")
    flat = refusal(can, EmbeddingRequest(model="m", inputs=((1, 30522),), listed=False), "m")
    assert flat.param == "input[1]" and str(flat).startswith("input[1]: token id 30522")
    own = refusal(can, EmbeddingRequest(model="m", inputs=((1, 30522),)), "m")
    assert own.param == "inputs[0][1]" and str(own).startswith("inputs[0][1]: token id 30522")


def test_token_ids_outside_the_vocabulary(stories_path):
    can = model_abilities({"file_path": str(stories_path)})
    assert can.n_vocab == 512
    assert refusal(can, CompletionRequest(model="m", prompts=((1, 511),)), "m") is None
    prompt = refusal(can, CompletionRequest(model="m", prompts=((1, 512),), listed=False), "m")
    assert isinstance(prompt, RequestError) and prompt.param == "prompt[1]" and str(prompt).startswith("prompt[1]: ")
    listed = refusal(can, CompletionRequest(model="m", prompts=((1, 512),), listed=True), "m")
    assert listed.param == "prompt[0][1]" and str(listed).startswith("prompt[0][1]: ")
    own = refusal(can, CompletionRequest(model="m", prompts=((1, 512),)), "m")
    assert own.param == "prompts[0][1]" and str(own).startswith("prompts[0][1]: ")
    context = chat_refusal(can, _chat(context=(3, 512)), "m")
    assert isinstance(context, RequestError) and context.param == "context[1]"
    assert "context[1]: token id 512" in str(context)
    # a negative id is an image's place (jan.services.types.media_place: -1 - n for the request's item n): one whose
    # item the request does not send is refused saying so, before a load as after it (before an id out of the
    # vocabulary that comes first: the place is what the client must fix)
    media = chat_refusal(can, _chat(context=(3, 600, -1)), "m")
    assert isinstance(media, RequestError) and media.param == "context[2]"
    assert str(media).startswith("context[2]: stands for image 1 of the exchange"), str(media)
    assert str(chat_refusal(can, _chat(context=(3, -2)), "m")).startswith("context[1]: stands for image 2")
    assert asks_abilities(_chat(context=(3,))) and not asks_abilities(CompletionRequest(model="m", prompts=("hi",)))
    biased = CompletionRequest(model="m", prompts=("hi",), sampling=SamplingOptions(logit_bias={512: 1.0}))
    assert asks_abilities(biased) and str(refusal(can, biased, "m")) == (
        "logit_bias: token id 512 is outside the vocabulary")
    assert refusal(can, CompletionRequest(model="m", prompts=("hi",), sampling=SamplingOptions(logit_bias={511: 1.0})),
                   "m") is None


def test_a_constraint_no_model_could_use():
    """A request's own schema or grammar is judged as building it for the engine judges it (before a load)."""
    from jan.services.local import asks_grammar, check_grammar
    from jan.services.types import ResponseFormat
    from jan.templates import GrammarError

    bad = _chat(response_format=ResponseFormat("json_schema", schema={"$ref": "#/nope"}))
    assert asks_grammar(bad) and not asks_grammar(_chat())
    with pytest.raises(GrammarError, match="does not resolve"):
        check_grammar(bad)
    with pytest.raises(GrammarError, match="never defined"):
        check_grammar(CompletionRequest(model="m", prompts=("hi",), grammar="root ::= foo"))
    check_grammar(_chat(response_format=ResponseFormat("json_object")))  # (fine: nothing raised)


def test_a_tool_schema_no_model_could_use(stories_path):
    """With the template the model chats in, the tools' grammar is built as after a load: a tool's schema that does
    not compile is refused, with tool_choice "none" too, which builds no grammar from it (OpenAI's API refuses an
    invalid function schema whatever tool_choice says)."""
    from jan.services.local import asks_tool_grammar, check_grammar
    from jan.templates import GrammarError

    template = model_abilities({"file_path": str(stories_path)}).template
    bad = ToolSpec("f", None, {"$ref": "#/x"})
    with pytest.raises(GrammarError, match="does not resolve") as refused:
        check_grammar(_chat(tools=[bad]), template, None, "m")
    assert refused.value.param == "tools[0].function.parameters"
    assert not asks_tool_grammar(_chat(tools=[bad], tool_choice="none"))
    with pytest.raises(GrammarError, match="does not resolve") as refused:
        check_grammar(_chat(tools=[bad], tool_choice="none"), template, None, "m")
    assert refused.value.param == "tools[0].function.parameters"
    check_grammar(_chat(tools=[TOOL], tool_choice="required"), template, None, "m")


def test_fim_tokens(fim_path):
    assert model_abilities({"file_path": str(fim_path)}).fim is True
    assert "fill-in-the-middle" in str(fill_in_refusal("m")) and fill_in_refusal("m").param == "suffix"


def test_a_template_that_thinks_and_the_model_json_s_override(stories_path, qwen3_path):
    qwen3 = model_abilities({"file_path": str(qwen3_path)})
    assert chat_refusal(qwen3, _chat(reasoning=THINK), "m") is None
    assert chat_refusal(qwen3, _chat(tools=[TOOL], tools_need_template=True), "m") is None
    # the model.json's chat_template overrides the file's, as a load resolves it: then stories260K can think too
    source = (models_dir().parent / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    overridden = model_abilities({"file_path": str(stories_path), "settings": {"chat_template": source}})
    assert chat_refusal(overridden, _chat(reasoning=THINK), "m") is None
    # and one that cannot be used leaves the question to the load (which names the setting)
    broken = model_abilities({"file_path": str(stories_path), "settings": {"chat_template": "{% if %}"}})
    assert broken.template is None and chat_refusal(broken, _chat(reasoning=THINK), "m") is None


def test_a_projector_s_encoders(vision_pair, tmp_path):
    model_path, mmproj = vision_pair
    can = model_abilities({"file_path": str(model_path), "mmproj_path": str(mmproj)})
    assert (can.projector, can.vision, can.audio) == (True, True, False)  # no clip.has_audio_encoder: none
    assert chat_refusal(can, _chat(ImagePart(b"x", "image/png")), "m") is None
    audio = chat_refusal(can, _chat(AudioPart(b"x", "mp3")), "m")
    assert isinstance(audio, MediaError) and (audio.message_index, audio.part_index) == (0, 1)
    assert "model 'm' does not accept audio" in str(audio)
    # named in the model.json but not found, or damaged: not known before the load (which says what is wrong)
    named = model_abilities({"file_path": str(model_path), "settings": {"mmproj": "gone.gguf"}})
    assert (named.projector, named.vision) == (None, None)
    assert chat_refusal(named, _chat(ImagePart(b"x", "image/png")), "m") is None
    damaged = model_abilities({"file_path": str(model_path), "mmproj_path": str(write_not_gguf(tmp_path / "p.gguf"))})
    assert (damaged.projector, damaged.vision, damaged.audio) == (True, None, None)


def test_gguf_scalars_reads_the_wanted_keys(vision_pair):
    _, mmproj = vision_pair
    keys = gguf_scalars(str(mmproj), {"clip.has_vision_encoder", "clip.projector_type", "clip.has_audio_encoder"})
    assert keys == {"clip.has_vision_encoder": True, "clip.projector_type": "mlp"}


def test_no_readable_header_is_not_known(tmp_path):
    can = model_abilities({"file_path": str(write_not_gguf(tmp_path / "x.gguf"))})
    assert (can.template, can.fim, can.embedding) == (None, None, None)
    assert model_abilities({}) == Abilities(projector=False, vision=False, audio=False)


def test_kept_per_file_version(tmp_path, stories_path, fim_path):
    path = tmp_path / "m.gguf"
    shutil.copyfile(stories_path, path)
    assert model_abilities({"file_path": str(path)}).fim is False
    shutil.copyfile(fim_path, path)  # replaced (another size and mtime): read again
    os.utime(path, ns=(1, 1))
    assert model_abilities({"file_path": str(path)}).fim is True


# -- the CLI's local mode ---------------------------------------------------------------------------------------------
@pytest.fixture
def loads(monkeypatch):
    """Every model the llama.cpp extension is asked to load, by id."""
    asked: list[str] = []
    original = LlamaCppExtension.load_model

    async def counting(self, model):
        asked.append(model["id"])
        return await original(self, model)

    monkeypatch.setattr(LlamaCppExtension, "load_model", counting)
    return asked


def _run(tmp_path, *args: str):
    from jan.cli import main

    env = {"JAN_DATA_FOLDER": str(tmp_path / "data"), "JAN_LOCAL": "1", "NO_COLOR": "1"}
    return CliRunner().invoke(main, ["run", *args], env=env)


def test_cli_refuses_an_embedding_gguf_before_loading_it(tmp_path, minilm_path, loads):
    result = _run(tmp_path, str(minilm_path), "hi")
    assert result.exit_code == 1 and "is an embedding model; it cannot generate text" in result.output, result.output
    assert loads == []


def test_cli_refuses_images_for_a_model_without_a_projector_before_loading_it(tmp_path, stories_path,
                                                                             test_image_path, loads):
    result = _run(tmp_path, str(stories_path), "--image", str(test_image_path), "what is this?")
    assert result.exit_code == 1 and "takes no images" in result.output, result.output
    assert loads == []
    result = _run(tmp_path, str(stories_path), "-n", "2", "hi")  # and it still answers what it can
    assert result.exit_code == 0, result.output
    assert loads == ["stories260K"]


# -- the capabilities every model list gives agree with what requests are refused ------------------------------------
def _templates():
    from jan.templates import ChatTemplate, TemplateError

    for path in sorted((models_dir().parent / "templates").glob("*.jinja")):
        try:
            yield path.stem, ChatTemplate(path.read_text(encoding="utf-8"))
        except TemplateError:
            continue


def test_listed_thinking_and_tools_are_what_ollama_requests_get():
    """For every real template: a model lists ``thinking``/``tools`` (``/api/show``, ``/v1/models``) exactly when an
    Ollama request insisting on it is not refused, so a client that reads the list and asks is never refused what
    the list offered, nor kept from what the model can do."""
    from jan.services.models import capabilities

    checked = 0
    for name, template in _templates():
        can = Abilities(template=template, fim=False, projector=False, vision=False, audio=False, embedding=False)
        listed = capabilities({}, can)
        think = chat_refusal(can, _chat(reasoning=THINK, fallback_template="ollama"), "m")
        tools = chat_refusal(can, _chat(tools=[TOOL], tools_need_template=True, fallback_template="ollama"), "m")
        assert ("thinking" in listed) == (think is None), (name, listed, think)
        assert ("tools" in listed) == (tools is None), (name, listed, tools)
        checked += 1
    assert checked > 40


def test_listed_media_and_insert_follow_the_files(stories_path, vision_pair, fim_path):
    from jan.services.models import capabilities

    model_path, mmproj = vision_pair
    assert capabilities({}, model_abilities({"file_path": str(stories_path)})) == ["completion"]
    assert capabilities({}, model_abilities({"file_path": str(model_path), "mmproj_path": str(mmproj)})) == [
        "completion", "vision"]  # its projector has no audio encoder: no "audio"
    assert "insert" in capabilities({}, model_abilities({"file_path": str(fim_path)}))


def test_a_template_lists_tools_when_a_request_s_tools_reach_its_prompt():
    """For every real template: a model lists ``tools`` (and an Ollama request with tools is let through) exactly
    when the template itself writes a request's tools into the prompt, as a request renders it: through ``tools``,
    through a variable its family fills from them (firefunction-v2's ``functions``), or through the GGUF's
    ``tool_use`` variant. Found by outside testing: firefunction-v2 called tools on ``/v1/chat/completions`` but
    ``/api/show`` listed no ``tools`` and Ollama's ``/api/chat`` refused them ("does not support tools")."""
    from jan.services.models import capabilities
    from jan.templates import ChatTemplate
    from jan.templates.formats.detect import detect_format

    tool = {"type": "function", "function": {"name": "jan_listed_tool_fn", "description": "d",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                            "required": ["city"]}}}
    hi = [{"role": "user", "content": "hi"}]

    def reaches_prompt(template: ChatTemplate) -> bool:
        extra = detect_format(template.source).template_kwargs(tools=[tool])
        try:
            return "jan_listed_tool_fn" in template.render(hi, tools=[tool], polyfill=False, **extra)
        except Exception:  # noqa: BLE001 - a template that cannot render a request with tools takes none
            return False

    checked = natively = 0
    for name, template in _templates():
        can = Abilities(template=template, fim=False, projector=False, vision=False, audio=False, embedding=False)
        listed = "tools" in capabilities({}, can)
        assert listed == reaches_prompt(template), name
        checked, natively = checked + 1, natively + listed
    assert checked > 40 and natively > 30
    # a model whose GGUF carries a tool_use variant (Hermes 2 Pro's, Command R's): its tools render in that one
    plain = ChatTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with_variant = ChatTemplate(plain.source, tool_use=ChatTemplate(
        "{{ tools | tojson }}{% for m in messages %}{{ m['content'] }}{% endfor %}"))
    for template, expected in ((plain, False), (with_variant, True)):
        can = Abilities(template=template, fim=False, projector=False, vision=False, audio=False, embedding=False)
        assert ("tools" in capabilities({}, can)) is expected is reaches_prompt(template)
        refused = chat_refusal(can, _chat(tools=[TOOL], tools_need_template=True, fallback_template="ollama"), "m")
        assert (refused is None) is expected
