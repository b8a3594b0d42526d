"""Bad input gets a specific exception, never a crash."""

from __future__ import annotations

import os

import pytest

import jan
from jan.testing.gguf_models import write_not_gguf, write_truncated_copy


def test_missing_file(tmp_path):
    with pytest.raises(jan.ModelLoadError, match="not found"):
        jan.Model(tmp_path / "nope.gguf")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(jan.ModelLoadError):
        jan.Model(tmp_path)


def test_not_gguf(tmp_path):
    path = tmp_path / "model.gguf"
    write_not_gguf(path)
    with pytest.raises(jan.ModelLoadError, match="not a GGUF"):
        jan.Model(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_gguf(stories_path, tmp_path, fraction):
    path = tmp_path / "truncated.gguf"
    write_truncated_copy(stories_path, path, fraction)
    with pytest.raises(jan.ModelLoadError):
        jan.Model(path)


def test_prompt_longer_than_context(stories_path):
    with jan.Model(stories_path, n_ctx=32) as m:
        with pytest.raises(jan.ContextOverflowError) as err:
            m.generate("Once upon a time " * 20, max_tokens=4)
        assert err.value.n_ctx == 32 and err.value.n_tokens > 32
        assert "32" in str(err.value)


def test_generation_that_fills_the_context_ends_with_length(stories_path):
    with jan.Model(stories_path, n_ctx=32) as m:
        result = m.generate("Once upon a time", temperature=0, ignore_eos=True)
        assert result.finish_reason == "length"
        # every position of the context is evaluated; the token sampled from the last one is kept
        assert result.usage.prompt_tokens + result.usage.completion_tokens == 32 + 1


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": "hot"},
        {"top_p": 2.0},
        {"max_tokens": -5},
        {"stop": [""]},
        {"logit_bias": {999_999: 1.0}},
        {"grammar": "root ::= ("},
        {"typical_p": 0},
        {"top_logprobs": 1000},
    ],
)
def test_bad_sampling_options_raise_value_error(stories, options):
    with pytest.raises(ValueError):
        stories.generate("Once", **options)


# Every shape a caller may get wrong is a ValueError naming the option, not the TypeError/ValueError of
# unpacking deep in the parameter code, and a key only int() would take is not quietly another token.
@pytest.mark.parametrize("bias", [[1, 2], 5, "12", [(1, 2, 3)], {1.7: 1.0}, {True: 1.0}, {"x": 1}, [("a", 1)]])
def test_bad_logit_bias_shapes_name_the_option(stories, bias):
    with pytest.raises(ValueError, match="logit_bias"):
        stories.generate("Once", max_tokens=1, logit_bias=bias)


@pytest.mark.parametrize("bias", [{}, {5: -100.0}, {"5": -100}, [(5, -100.0)]])
def test_logit_bias_shapes_that_work(stories, bias):
    assert stories.generate("Once", max_tokens=2, temperature=0, logit_bias=bias).finish_reason == "length"


# A yes/no option takes a bool, as the load flags do: "no" or logprobs=5 (meant as top_logprobs) is not quietly True.
@pytest.mark.parametrize("name", ["ignore_eos", "logprobs", "prompt_logprobs", "render_special", "reasoning_open",
                                  "reasoning_every"])
@pytest.mark.parametrize("value", ["no", 5, 1, 0.5, [True]])
def test_flags_refuse_values_that_are_not_yes_or_no(stories, name, value):
    with pytest.raises(ValueError, match=name):
        stories.generate("Once", max_tokens=1, **{name: value})


def test_unknown_option_is_a_type_error(stories):
    with pytest.raises(TypeError, match="tempreture"):
        stories.generate("Once", tempreture=0.5)


def test_bad_token_ids(stories):
    with pytest.raises(ValueError):
        stories.detokenize([1, 99999])
    with pytest.raises(ValueError):
        stories.generate([1, -3])
    with pytest.raises(TypeError):
        stories.generate([1, "a"])
    # -1 is the engine's media placeholder; in a plain prompt it is one more id out of range, said so
    with pytest.raises(ValueError, match="outside the vocabulary"):
        stories.generate([1, -1])


@pytest.mark.parametrize("prompt", [b"Once", bytearray(b"Once"), memoryview(b"Once")])
def test_bytes_are_not_token_ids(stories, prompt):
    # bytes are a sequence of ints, so they passed as token ids and generated from nonsense
    with pytest.raises(TypeError, match="bytes are not a prompt"):
        stories.generate(prompt, max_tokens=1)


def test_vocab_only_model_cannot_generate(vocab_dir):
    with jan.Model(vocab_dir / "ggml-vocab-llama-spm.gguf", vocab_only=True) as m:
        with pytest.raises(ValueError, match="vocab-only"):
            m.generate("hi")


def test_closed_model(stories_path):
    m = jan.Model(stories_path, n_ctx=64)
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.generate("Once")


# One table of bounds (jan.engine.params.RANGES) serves the Python API, the CLI and the server
# (issue 10, item 23): what the server answers with a 400, the Python API refuses with ValueError.
@pytest.mark.parametrize("options, field", [
    ({"temperature": -1}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_k": -5}, "top_k"),
    ({"top_k": 2**31}, "top_k"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 2**31}, "max_tokens"),
    ({"top_p": float("nan")}, "top_p"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"repeat_last_n": -2}, "repeat_last_n"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"logit_bias": {1: 1000.0}}, "logit_bias"),
])
def test_python_api_refuses_what_the_server_refuses(stories, options, field):
    with pytest.raises(ValueError, match=field):
        stories.generate("Once", **options)


def test_every_bound_in_the_table_is_enforced_at_its_edge(stories):
    from jan.engine.params import RANGES

    for name, rng in RANGES.items():
        if name in ("n", "logit_bias"):
            continue  # not a generate() keyword / checked per value above
        # draft_min may not exceed draft_max (jan.engine.params.ORDERS): its top edge needs draft_max there too
        other = {"draft_max": RANGES["draft_max"].le} if name == "draft_min" else {}
        for edge in (rng.ge, rng.le):
            if edge is not None:
                stories.stream("Once", **{name: rng.kind(edge), "max_tokens": 1, **other}).cancel()
        if rng.ge is not None:
            with pytest.raises(ValueError, match=name):
                stories.generate("Once", **{name: rng.kind(rng.ge) - 1})
        if rng.le is not None:
            with pytest.raises(ValueError, match=name):
                stories.generate("Once", **{name: rng.kind(rng.le) + 1})


# A lone UTF-16 surrogate (a JSON "\ud800" escape, or a byte that is not UTF-8 read with surrogateescape)
# cannot go to the native engine as UTF-8: BadRequestError naming the argument, not pybind11's TypeError.
@pytest.mark.parametrize("call, field", [
    (lambda m: m.tokenize("Once \ud800"), "text"),
    (lambda m: m.generate("Once \udcff", max_tokens=1), "prompt"),
    (lambda m: m.stream("Once \udcff", max_tokens=1), "prompt"),
    (lambda m: m.generate("Once", max_tokens=1, stop=["a", "\udfff"]), "stop[1]"),
    (lambda m: m.generate("Once", max_tokens=1, grammar_triggers=["\ud800"]), "grammar_triggers[0]"),
    (lambda m: m.generate("Once", max_tokens=1, reasoning_start="<think>\ud800"), "reasoning_start"),
    (lambda m: m.generate("Once", max_tokens=1, grammar='root ::= "\ud800"'), "grammar"),
], ids=["tokenize", "generate", "stream", "stop", "grammar_triggers", "reasoning_start", "grammar"])
def test_a_lone_surrogate_is_a_value_error_naming_the_argument(stories, call, field):
    with pytest.raises(ValueError, match="surrogate") as info:
        call(stories)
    assert str(info.value).startswith(f"{field}: ")
    if field != "grammar":  # the grammar check's own GrammarError says it the same way
        assert isinstance(info.value, jan.BadRequestError)
        assert info.value.param == field and info.value.code == "invalid_unicode"


def test_a_character_outside_the_bmp_is_text(stories):
    """What a valid surrogate pair escape decodes to (one character) goes through."""
    assert stories.tokenize("Once \U0001F600")
    assert stories.generate("\U0001F600", max_tokens=1, temperature=0).usage.completion_tokens == 1


def test_a_lone_surrogate_to_embed_names_the_input(minilm_path):
    with jan.Model(minilm_path, n_threads=1) as model, pytest.raises(jan.BadRequestError, match="surrogate") as info:
        model.embed(["fine", "not \ud800 fine"])
    assert info.value.param == "inputs[1]"


def test_a_file_name_that_is_not_utf8_is_a_model_file_error(stories_path, tmp_path):
    import os
    import shutil

    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/stories\xff.gguf")  # '\udcff' in the str
    try:
        shutil.copyfile(stories_path, name)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take a file name that is not UTF-8")
    with pytest.raises(jan.ModelFileError, match="not valid UTF-8"):
        jan.Model(name, n_ctx=64, n_threads=1)


def test_requests_racing_a_close_end_as_model_closed(stories_path):
    # A request submitted while the model is being unloaded is a ModelClosedError (the server's 503), like one its
    # unload cancelled; it was a plain EngineError (a 500) when it reached the scheduler after the stop began.
    # (Whether a round hits that window varies; what any round may raise never does.)
    import threading

    for _ in range(8):
        m = jan.Model(stories_path, n_ctx=256, n_parallel=4)
        started = threading.Barrier(5)
        errors: list[BaseException] = []

        def loop():
            started.wait(timeout=120)
            while True:
                try:
                    m.generate("Once", max_tokens=4, temperature=0)
                except jan.ModelClosedError:
                    return
                except BaseException as exc:  # noqa: BLE001 - the test reports any other
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait(timeout=120)
        m.close()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors


# The model's path of a wrong type is a TypeError naming it (not pathlib's "expected str, bytes or os.PathLike
# object, not NoneType"), an empty one a ModelFileError saying so (Path("") is the current folder: "'.' is a
# directory"), and bytes are a file name as os.fsdecode reads it; jan.ModelPool.load and check_load agree.
@pytest.mark.parametrize("path", [None, 5, 1.5, ["a.gguf"]])
def test_a_path_of_the_wrong_type_is_named(path):
    from jan.engine.preflight import check_load

    with pytest.raises(TypeError, match="path: expected a file path"):
        jan.Model(path)
    with pytest.raises(TypeError, match="path: expected a file path"):
        check_load(path, {})


@pytest.mark.parametrize("path", ["", "  "])
def test_an_empty_path_is_said_to_be_empty(path):
    with pytest.raises(jan.ModelFileError, match="path: the file path is empty"):
        jan.Model(path)
    with jan.ModelPool() as pool, pytest.raises(jan.ModelFileError, match="empty"):
        pool.load("m", path)


def test_a_bytes_path_is_a_file_name(stories_path):
    with jan.Model(os.fsencode(stories_path), n_ctx=64) as m:
        assert m.path == str(stories_path) and m.id == "stories260K"


def test_a_model_id_of_the_wrong_type_is_named(stories_path):
    with pytest.raises(TypeError, match="model_id: expected a string"):
        jan.Model(stories_path, model_id=5)


# The tokenizer's and generate's yes/no arguments are checked by name: pybind11 refused a non-bool with
# "incompatible function arguments", a TypeError naming none of them.
@pytest.mark.parametrize("call, name", [
    (lambda m: m.tokenize("Once", add_special="no"), "add_special"),
    (lambda m: m.tokenize("Once", parse_special=None), "parse_special"),
    (lambda m: m.vocabulary().tokenize("Once", parse_special=2), "parse_special"),
    (lambda m: m.detokenize([1, 2], remove_special="yes"), "remove_special"),
    (lambda m: m.detokenize([1, 2], unparse_special=[]), "unparse_special"),
    (lambda m: m.token_to_piece(1, special="no"), "special"),
    (lambda m: m.vocabulary().token_to_bytes(1, special=1.0), "special"),
    (lambda m: m.generate("Once", add_special="no", max_tokens=1), "add_special"),
    (lambda m: m.stream("Once", add_special=None, max_tokens=1), "add_special"),
])
def test_tokenizer_flags_of_the_wrong_type_are_named(stories, call, name):
    with pytest.raises(ValueError, match=f"{name}: expected true or false"):
        call(stories)


# numpy's integers are integers (numbers.Integral) though not int subclasses: a token id from np.argmax, a token array
# or a count computed with numpy is taken as the int it is, not refused with "expected an integer"; a 1-D array is a
# token list as a list is. What is no integer stays refused, naming the argument.
def test_numpy_integers_and_token_arrays_are_taken_as_ints(stories):
    np = pytest.importorskip("numpy")
    ids = stories.tokenize("Once upon a time")
    want = stories.generate(ids, max_tokens=5, temperature=0)
    assert stories.generate(np.array(ids), max_tokens=5, temperature=0).token_ids == want.token_ids
    assert stories.generate([np.int64(t) for t in ids], max_tokens=np.int32(5), temperature=np.float32(0),
                            top_k=np.int64(40), seed=np.uint32(7)).token_ids == want.token_ids
    assert stories.detokenize(np.array(ids, dtype=np.int32)) == stories.detokenize(ids)
    assert stories.token_to_bytes(np.int64(ids[1])) == stories.token_to_bytes(ids[1])
    assert stories.is_eog(np.int16(ids[1])) is False
    banned = want.token_ids[0]
    assert stories.generate(ids, max_tokens=1, temperature=0,
                            logit_bias={np.int64(banned): -100}).token_ids != [banned]
    with pytest.raises(TypeError, match=r"prompt\[0\]"):
        stories.generate(np.array(ids, dtype=np.float32), max_tokens=1)
    with pytest.raises(TypeError, match="prompt"):
        stories.generate(np.array([ids]), max_tokens=1)  # 2-D: no token list
    with pytest.raises(ValueError, match="max_tokens"):
        stories.generate(ids, max_tokens=np.float32(2.5))
    with pytest.raises(TypeError, match="token"):
        stories.token_to_bytes(np.bool_(True))


def test_embed_normalize_is_a_flag_and_token_arrays_embed(minilm_path):
    np = pytest.importorskip("numpy")
    with jan.Model(minilm_path, n_threads=1) as model:
        for value in ("no", 0, 1, None):  # "no" was taken as True: the opposite of what it says
            with pytest.raises(ValueError, match="normalize"):
                model.embed("hello", normalize=value)
        ids = model.tokenize("hello world")
        assert np.allclose(model.embed([np.array(ids)]), model.embed([ids]))


def test_a_reasoning_budget_of_minus_one_is_no_cap(stories):
    # -1 means no cap in DEFAULTS' comment, the server's schema and llama-server; the Python API refused it
    plain = stories.generate("Once", max_tokens=8, temperature=0, reasoning_start="re wa", reasoning_end="END")
    assert stories.generate("Once", max_tokens=8, temperature=0, reasoning_budget=-1, reasoning_start="re wa",
                            reasoning_end="END").text == plain.text
    with pytest.raises(ValueError, match="reasoning_budget"):
        stories.generate("Once", max_tokens=1, reasoning_budget=-2)


def test_a_model_file_not_found_names_the_file_beside_it_that_was_meant(tmp_path, stories_path):
    """``jan.Model("stories260k.gguf")`` beside ``stories260K.gguf`` (a case or a letter off): "not found" with the
    file meant, as every "no such file" of the CLI says it (jan.local_files.meant_file); a name like none says none."""
    there = tmp_path / "stories260K.gguf"
    there.write_bytes(stories_path.read_bytes())
    for wrong in ("stories260k.gguf", "storie260K.gguf"):
        with pytest.raises(jan.ModelFileError, match="not found") as caught:
            jan.Model(str(tmp_path / wrong))
        assert str(caught.value).endswith(f": did you mean '{there}'?"), caught.value
    with pytest.raises(jan.ModelFileError, match="draft_model: draft model file not found") as caught:
        jan.Model(str(there), draft_model=str(tmp_path / "Stories260K.gguf"))
    assert str(caught.value).endswith(f": did you mean '{there}'?"), caught.value
    with pytest.raises(jan.ModelFileError) as caught:
        jan.Model(str(tmp_path / "unrelated.gguf"))
    assert "did you mean" not in str(caught.value)


def test_a_mistyped_sampling_option_names_the_one_meant():
    """``generate(max_token=5)`` was "unknown sampling option(s): max_token" alone."""
    from jan.engine.params import sampling_params

    with pytest.raises(TypeError) as caught:
        sampling_params(max_token=5, temprature=0.5, zzz=1)
    assert str(caught.value) == ("unknown sampling option(s): max_token (did you mean 'max_tokens'?), temprature "
                                 "(did you mean 'temperature'?), zzz")
