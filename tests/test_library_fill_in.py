"""Fill-in-the-middle from Python and from ``jan run``, as llama-cpp-python's ``create_completion(suffix=...)``.

``Model.generate``/``stream``/``agenerate`` take ``suffix=`` and ``jan run --raw --suffix`` sends one; both read the
FIM prompt the server's ``suffix`` and ``/infill`` read (:func:`jan.engine.fill_in.fill_in_tokens`, one builder),
checked token by token here on a model without a BOS (Qwen2.5-Coder's tokenizer) and one with (phi-3's with FIM
tokens). What cannot be filled in is refused with an exception naming the argument, before anything is generated.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import jan
from jan.engine.fill_in import fill_in_tokens
from jan.testing.gguf_models import write_qwen25_coder_model

from test_cli_helpers import fails, jan as jan_cli, ok
from test_llamacpp_native import write_fim_model

PREFIX, SUFFIX = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def fim_paths(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fill_in")
    return {"coder": write_qwen25_coder_model(tmp / "coder.gguf"), "fim-bos": write_fim_model(tmp / "fim-bos.gguf",
                                                                                                repo=False)}


@pytest.fixture(scope="module", params=["coder", "fim-bos"])
def fim_model(request, fim_paths):
    model = jan.Model(str(fim_paths[request.param]), n_ctx=512)
    yield model
    model.close()


@pytest.fixture(scope="module")
def stories(stories_path):
    model = jan.Model(stories_path, n_ctx=256)
    yield model
    model.close()


def fim_layout(model: jan.Model, prefix: str, suffix: str) -> list[int]:
    """``[BOS] <fim_pre> prefix <fim_suf> suffix <fim_mid>`` written out from the vocabulary (llama-server's
    ``format_prompt_infill`` without extra files)."""
    special = model.info.special_tokens
    bos = [special["bos"]] if model.add_bos and "bos" in special else []
    return [*bos, special["fim_pre"], *model.tokenize(prefix, add_special=False), special["fim_suf"],
            *model.tokenize(suffix, add_special=False), special["fim_mid"]]


def test_generate_with_a_suffix_reads_the_fim_prompt_token_by_token(fim_model):
    want = fim_layout(fim_model, PREFIX, SUFFIX)
    assert (fim_model.info.special_tokens.get("bos") in want) == fim_model.add_bos  # (each kind of vocabulary)
    filled = fim_model.generate(PREFIX, suffix=SUFFIX, max_tokens=6, temperature=0)
    assert filled.usage.prompt_tokens == len(want)
    # greedy: the same middle as the prompt's token ids given whole, so the model read exactly these
    assert filled.token_ids == fim_model.generate(want, max_tokens=6, temperature=0).token_ids
    # the builder the server's suffix and /infill use, with the BOS the library adds
    assert fill_in_tokens(fim_model, PREFIX, SUFFIX) == want[int(fim_model.add_bos):]


def test_stream_agenerate_and_add_special_take_the_suffix_too(fim_model):
    want = fim_model.generate(PREFIX, suffix=SUFFIX, max_tokens=6, temperature=0)
    assert "".join(chunk.text for chunk in fim_model.stream(PREFIX, suffix=SUFFIX, max_tokens=6,
                                                            temperature=0)) == want.text
    assert asyncio.run(fim_model.agenerate(PREFIX, suffix=SUFFIX, max_tokens=6, temperature=0)).text == want.text
    bare = fim_model.generate(PREFIX, suffix=SUFFIX, add_special=False, max_tokens=1, temperature=0)
    assert bare.usage.prompt_tokens == len(fim_layout(fim_model, PREFIX, SUFFIX)) - fim_model.add_bos


def test_a_suffix_is_read_as_plain_text(fim_model):
    """The text of a FIM token in the code is text, as the server reads it: a file that spells ``<|fim_middle|>``
    cannot end the prefix early."""
    spelled = fim_model.token_to_piece(fim_model.info.special_tokens["fim_mid"], special=True)
    filled = fim_model.generate(PREFIX + spelled, suffix=SUFFIX, max_tokens=1, temperature=0)
    assert filled.usage.prompt_tokens == len(fim_layout(fim_model, PREFIX + spelled, SUFFIX))


@pytest.mark.parametrize("call, error, param", [
    (lambda m: m.generate(PREFIX, suffix=5), TypeError, "suffix"),
    (lambda m: m.generate(PREFIX, suffix=b"x"), TypeError, "suffix"),
    (lambda m: m.generate([1, 2], suffix=SUFFIX), TypeError, "prompt"),
    (lambda m: m.stream(PREFIX, suffix="\ud800"), jan.BadRequestError, "suffix"),
    (lambda m: m.stream("\ud800", suffix=SUFFIX), jan.BadRequestError, "prompt"),
    (lambda m: m.generate(PREFIX, suffix=SUFFIX, images=[b"\x89PNG"]), jan.BadRequestError, "suffix"),
    (lambda m: m.generate(PREFIX, suffix=SUFFIX, max_tokens=0), ValueError, "max_tokens"),
], ids=["suffix-int", "suffix-bytes", "token-prompt", "suffix-surrogate", "prompt-surrogate", "with-images",
        "bad-option"])
def test_a_fill_in_that_cannot_be_made_names_its_argument(fim_model, call, error, param):
    with pytest.raises(error, match=f"^{param}") as caught:
        call(fim_model)
    if isinstance(caught.value, jan.BadRequestError):
        assert caught.value.param == param


def test_a_model_without_fim_tokens_refuses_a_suffix_as_the_server_does(stories):
    with pytest.raises(jan.BadRequestError, match="no fill-in-the-middle tokens") as caught:
        stories.generate("Once", suffix=" the end.", max_tokens=4)
    assert (caught.value.param, caught.value.code) == ("suffix", "not_supported")
    assert stories.generate("Once", max_tokens=2).finish_reason == "length"  # (nothing was left running)


def test_a_closed_model_refuses_a_suffix_as_any_request(fim_paths):
    model = jan.Model(str(fim_paths["coder"]), n_ctx=256)
    model.close()
    with pytest.raises(jan.ModelClosedError):
        model.generate(PREFIX, suffix=SUFFIX)


def test_jan_run_raw_suffix_fills_in_the_middle_in_process(env, fim_paths):
    model = jan.Model(str(fim_paths["coder"]), n_ctx=512)
    try:
        want = model.generate(PREFIX, suffix=SUFFIX, max_tokens=4, temperature=0)
    finally:
        model.close()
    answered = json.loads(ok(jan_cli("run", fim_paths["coder"], "--raw", PREFIX, "--suffix", SUFFIX, "--temp", "0",
                                     "-n", "4", "--json", env=env)).stdout)
    assert answered["usage"]["prompt_tokens"] == want.usage.prompt_tokens
    assert answered["choices"][0]["text"] == want.text


def test_jan_run_suffix_without_raw_or_fim_tokens_is_one_clear_error(env, stories_path):
    result = jan_cli("run", stories_path, "Once", "--suffix", " the end.", env=env)
    assert result.returncode == 2 and "--suffix" in result.stderr and "--raw" in result.stderr
    fails(jan_cli("run", stories_path, "--raw", "Once", "--suffix", " the end.", "-n", "2", env=env),
          "suffix", "no fill-in-the-middle tokens")


def test_the_services_complete_a_completion_as_they_complete_a_chat(tmp_path, fim_paths, stories_path):
    """``services.completions.complete`` (as ``services.chat.complete``; there was only ``stream``) gives the whole
    :class:`CompletionResult`: a fill-in's middle the library's, choices prompt-major with their stop, the usage."""
    from jan.services import open_services
    from jan.services.types import CompletionRequest, CompletionResult, SamplingOptions
    from jan.store import DataFolder

    folder = DataFolder(tmp_path / "data")
    folder.models.import_gguf(fim_paths["coder"], model_id="coder", mode="reference", settings={"ctx_len": 512})
    folder.models.import_gguf(stories_path, model_id="stories", mode="reference", settings={"ctx_len": 256})
    greedy = SamplingOptions(temperature=0, max_tokens=4)

    async def ask():
        async with open_services(tmp_path / "data") as services:
            filled = await services.completions.complete(CompletionRequest(model="coder", prompts=(PREFIX,),
                                                                           suffix=SUFFIX, sampling=greedy))
            several = await services.completions.complete(CompletionRequest(
                model="stories", prompts=("Once upon a time", "The dog"), n=2, token_ids=True,
                sampling=SamplingOptions(temperature=0, max_tokens=30, stop=(" little",))))
            with pytest.raises(TypeError, match="CompletionRequest"):
                await services.completions.complete({"model": "stories"})
            return filled, several

    filled, several = asyncio.run(ask())
    model = jan.Model(str(fim_paths["coder"]), n_ctx=512)
    try:
        want = model.generate(PREFIX, suffix=SUFFIX, max_tokens=4, temperature=0)
    finally:
        model.close()
    assert isinstance(filled, CompletionResult) and filled.model == "coder"
    assert (filled.choices[0].text, filled.usage.prompt_tokens) == (want.text, want.usage.prompt_tokens)
    stories = jan.Model(stories_path, n_ctx=256)
    try:
        alone = [stories.generate(p, max_tokens=30, temperature=0, stop=[" little"]) for p in ("Once upon a time",
                                                                                                "The dog")]
    finally:
        stories.close()
    # prompt i's choice j at i * n + j, each the greedy text of its prompt, its stop string told
    assert [c.text for c in several.choices] == [alone[0].text] * 2 + [alone[1].text] * 2
    assert [c.finish_reason for c in several.choices] == [alone[0].finish_reason] * 2 + [alone[1].finish_reason] * 2
    assert several.choices[0].stop == alone[0].stop and several.choices[0].token_ids
    assert several.usage.completion_tokens == 2 * sum(a.usage.completion_tokens for a in alone)
