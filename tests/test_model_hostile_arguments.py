"""jan.Model as a ``pip install`` user meets it, fed hostile arguments (a fault hunt): every case ends in a specific
exception naming the argument, or in correct behaviour — never a crash of the process, a bare RuntimeError from
llama.cpp, a Python-internal TypeError naming nothing, or an option silently ignored.

Cases that crashed the process before their fix run in a child process, so that a regression fails here with the
child's signal rather than taking the test run down.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jan
from jan.engine.model import LOAD_OPTION_DEFAULTS

GGML_MAX_N_THREADS = 512  # ggml.h's bound on the threads of one compute graph (jan.engine.model says the same)


def _run_child(code: str, timeout: float = 300) -> str:
    """``code`` run by a fresh interpreter; its stdout. Fails naming the signal when the child died of one."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ})
    assert proc.returncode == 0, (f"the child exited with {proc.returncode} (a negative code is the signal that "
                                  f"killed it)\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
    return proc.stdout


# -- long runs of one character class: the pre-tokenizer's std::regex recursed per character --------------------

def test_a_long_run_of_letters_digits_spaces_or_marks_tokenizes_on_a_regex_vocabulary(vocab_dir):
    """DeepSeek LLM's pre-tokenizer (like o200k's for gpt-oss, Tekken's, DeepSeek V3's) has no hand-written splitter
    in llama.cpp, so libstdc++'s std::regex runs it, recursing once per character of a run: a 30,000-letter word (a
    pasted base64 blob) overflowed the caller's 8 MiB stack and the process died of SIGSEGV. Long texts now
    tokenize on a thread whose stack is sized for them, with the tokens llama.cpp gives a short one."""
    out = _run_child(f"""
        import jan
        m = jan.Model({str(vocab_dir / "ggml-vocab-deepseek-llm.gguf")!r}, vocab_only=True)
        for ch in ["x", "7", " ", ".", "\\u4e2d"]:
            tokens = m.tokenize(ch * 200000, add_special=False)
            assert tokens and m.detokenize(tokens) == ch * 200000, ch
        # ordinary text past the size tokenized on the caller's stack: the same tokens, line by line (each line
        # ends in a newline, where the pre-tokenizer splits anyway)
        line = "Hello world, 12345 ... \\u4e2d\\u6587\\n"
        assert m.tokenize(line * 1000, add_special=False) == m.tokenize(line, add_special=False) * 1000
        print("ok")
    """)
    assert out.strip() == "ok"


def test_a_long_run_in_a_media_prompt_tokenizes_too(vocab_dir, tmp_path, test_image_path):
    """libmtmd tokenizes a media prompt's text with the same vocabulary: on the same deep stack."""
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    from jan.testing.gguf_models import write_vision_pair

    model, mmproj = write_vision_pair(tmp_path, vocab_gguf=vocab_dir / "ggml-vocab-deepseek-llm.gguf")
    out = _run_child(f"""
        import jan
        m = jan.Model({str(model)!r}, mmproj={str(mmproj)!r}, n_ctx=256, n_threads=1)
        items = m.media_inputs([{str(test_image_path)!r}])
        prompt = m.media_prompt(m.media_marker + "x" * 200000, items, encode=False)
        print(prompt.n_tokens > prompt.n_media_tokens)
    """)
    assert out.strip() == "True"


# -- thread counts past ggml's bound ---------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["n_threads", "n_threads_batch"])
@pytest.mark.parametrize("value", [GGML_MAX_N_THREADS + 1, 100_000, 2**31 - 1])
def test_thread_counts_past_ggmls_bound_are_refused_naming_the_option(minilm_path, stories_path, option, value):
    """An embedding model asked for 2**31 - 1 threads died of std::bad_alloc in its first decode, and for 100,000
    of SIGSEGV; ggml runs a graph on at most GGML_MAX_N_THREADS (512) threads. Refused at load, naming it."""
    for path in (minilm_path, stories_path):
        with pytest.raises(ValueError, match=rf"^{option}: must be >= -1 and <= 512, got {value}"):
            jan.Model(path, n_ctx=64, **{option: value})


def test_the_cli_flags_and_the_extension_settings_take_the_same_bound():
    """Every way a thread count is given says so before any load: jan run/serve's --threads, the llamacpp
    extension's settings (model.json and the settings page)."""
    from click.testing import CliRunner
    from pydantic import ValidationError

    from jan.cli.run import run
    from jan.cli.serve import serve
    from jan.extensions.llamacpp.extension import LlamaCppSettings

    for command, args in ((serve, []), (run, ["model", "prompt"])):
        result = CliRunner().invoke(command, [*args, "--threads", str(GGML_MAX_N_THREADS + 1)])
        assert result.exit_code == 2 and "513 is not in the range 1<=x<=512" in result.output, result.output
    with pytest.raises(ValidationError, match="less than or equal to 512"):
        LlamaCppSettings(n_threads=GGML_MAX_N_THREADS + 1)
    assert LlamaCppSettings(n_threads=GGML_MAX_N_THREADS).n_threads == GGML_MAX_N_THREADS


def test_the_most_threads_ggml_runs_still_load_and_embed(minilm_path):
    from jan.engine.model import GGML_MAX_N_THREADS as bound

    assert bound == GGML_MAX_N_THREADS
    with jan.Model(minilm_path, n_threads=GGML_MAX_N_THREADS) as m:
        assert m.embed("hello").shape == (1, 384)


# -- None for a load option with a default ---------------------------------------------------------------------

NONE_DEFAULTED = sorted(name for name, default in LOAD_OPTION_DEFAULTS.items() if default is not None)


def test_every_load_option_with_a_default_is_listed():
    assert NONE_DEFAULTED == ["adaptive_threads", "kv_unified", "main_gpu", "max_queue", "n_batch", "n_gpu_layers",
                              "n_parallel", "use_mlock", "use_mmap", "vocab_only"]


@pytest.mark.parametrize("option", NONE_DEFAULTED)
def test_none_for_a_load_option_is_its_default(stories_path, option):
    """check_load_option (and so a model.json's settings) takes None as "not given"; jan.Model then failed with
    int(None)'s TypeError naming nothing (n_parallel, n_batch, main_gpu, max_queue, n_gpu_layers), refused it
    (adaptive_threads), or read it as False (use_mmap=None turned memory mapping off)."""
    with jan.Model(stories_path, n_ctx=64, n_threads=1, **{option: None}) as m:
        assert m.n_parallel == 1
        assert m.max_queue == LOAD_OPTION_DEFAULTS["max_queue"]
        assert m.adaptive_threads == LOAD_OPTION_DEFAULTS["adaptive_threads"]
        assert not m.vocab_only
        assert m.generate("Once upon a time", max_tokens=3, temperature=0).text.startswith(", there")


def test_use_mmap_none_keeps_memory_mapping_on(stories_path, monkeypatch):
    seen = []
    from jan.engine import model as model_module

    real = model_module.load_weights

    def spy(path, mp, *args, **kwargs):
        seen.append(mp.use_mmap)
        return real(path, mp, *args, **kwargs)

    monkeypatch.setattr(model_module, "load_weights", spy)
    with jan.Model(stories_path, n_ctx=64, n_threads=1, use_mmap=None):
        pass
    assert seen == [True]


# -- list options given something that is no list, or a generator ---------------------------------------------

def test_a_stop_generator_stops_the_generation(stories):
    """The check that every stop was a string consumed a generator's items, and the stops were then none: the
    generation ran on past them without a word."""
    plain = stories.generate("Once upon a time", max_tokens=20, temperature=0, stop=["girl"])
    for stop in (iter(["girl"]), (s for s in ["girl"])):
        got = stories.generate("Once upon a time", max_tokens=20, temperature=0, stop=stop)
        assert (got.text, got.finish_reason, got.stop) == (plain.text, "stop", "girl")


@pytest.mark.parametrize("option", ["stop", "grammar_triggers"])
@pytest.mark.parametrize("value, says", [
    (5, "got int"), (1.5, "got float"), (object(), "got object"), ({"a": 1}, "got dict"), (b"ab", "got bytes"),
    ([b"a"], r"\[0\]: expected a string, got bytes"), (["a", 3], r"\[1\]: expected a string, got int"),
])
def test_a_list_option_that_is_no_list_of_strings_is_named(stories, option, value, says):
    """grammar_triggers=5 was "'int' object is not iterable", naming no option."""
    with pytest.raises(ValueError, match=rf"^{option}(: expected .*)?{says}"):
        stories.generate("Once", max_tokens=2, grammar='root ::= "a"', **{option: value})


@pytest.mark.parametrize("value", ["no", 0, 1.0, [], "x"])
def test_reproducible_is_a_yes_or_no_as_every_flag(stories, value):
    """reproducible was read with bool(): "no" (or any text, any non-zero number) asked for reproducible output, 0
    and [] for none, without a word; every other flag refuses what is no bool."""
    with pytest.raises(ValueError, match="^reproducible: expected true or false, got " + re.escape(repr(value))):
        stories.generate("Once", max_tokens=2, reproducible=value)
    for value in (True, False, None):
        assert stories.generate("Once", max_tokens=2, reproducible=value).finish_reason == "length"


@pytest.mark.parametrize("value", [0, False, [], {}, 5, b"root ::= \"a\""])
def test_a_grammar_that_is_no_text_is_refused_even_when_falsy(stories, value):
    """grammar=0, False, [] or {} was silently no grammar (the check ran only on a truthy value), and a numpy array
    raised numpy's "truth value is ambiguous"; "" and None stay "no grammar"."""
    with pytest.raises(ValueError, match=rf"^grammar: expected GBNF text, got {type(value).__name__}"):
        stories.generate("Once", max_tokens=2, grammar=value)
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="^grammar: expected GBNF text, got ndarray"):
        stories.generate("Once", max_tokens=2, grammar=np.array([1, 2]))
    for value in ("", None):
        assert stories.generate("Once", max_tokens=2, grammar=value).finish_reason == "length"


@pytest.mark.parametrize("pattern, says", [("(", "Mismatched"), ("[", "Unexpected character"), ("(?<=a)b", "zero-width"),
                                           ("a{99999999}", "NFA states")])
def test_a_grammar_trigger_that_is_no_regex_is_a_value_error_naming_it(stories, pattern, says):
    """llama.cpp compiles the triggers with std::regex, whose refusal came out as a bare RuntimeError."""
    with pytest.raises(ValueError, match=r"^grammar_triggers\[1\]: not a regular expression .*" + says):
        stories.generate("Once", max_tokens=2, grammar='root ::= "a"', grammar_triggers=["ok", pattern])
    assert stories.generate("Once", max_tokens=2, grammar='root ::= "a"', grammar_triggers=["ok"]).finish_reason


@pytest.mark.parametrize("value", [5, 1.5, object(), "photo.jpg", b"\x89PNG", {"a": 1}])
def test_media_arguments_that_are_no_list_are_named(stories, value):
    """images=5 was "Value after * must be an iterable", audio=5 "'int' object is not iterable", and a single path
    or file's bytes was read one character (byte) at a time as that many images."""
    for name, call in (("images", lambda: stories.generate("a", max_tokens=1, images=value)),
                       ("audio", lambda: stories.generate("a", max_tokens=1, audio=value)),
                       ("images", lambda: stories.media_inputs(value)),
                       ("audio", lambda: stories.media_inputs(audio=value)),
                       ("items", lambda: stories.prepare_media(value))):
        with pytest.raises(TypeError, match=rf"^{name}: expected a list of media items .* got {type(value).__name__}"):
            call()
    assert stories.prepare_media(None) == [] and stories.media_inputs() == []


# -- copies of objects that own an engine ----------------------------------------------------------------------

def test_a_model_cannot_be_copied_so_no_copy_closes_the_original(stories_path):
    """copy.copy(model) made a second Model over the same engine: closing the copy shut the original's engine down
    under it ("the model is being unloaded")."""
    with jan.Model(stories_path, n_ctx=64, n_threads=1) as m:
        for how in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="a jan.Model cannot be copied or pickled"):
                how(m)
        assert m.generate("Once", max_tokens=3, temperature=0).text == " upon a time"


def test_a_request_cannot_be_copied_so_dropping_a_copy_cancels_nothing(stories):
    request = stories.stream("Once upon a time", max_tokens=20, temperature=0)
    for how in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="a jan.Request cannot be copied or pickled"):
            how(request)
    assert request.result().finish_reason == "length"


def test_a_pool_cannot_be_copied():
    with jan.ModelPool() as pool:
        for how in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="a jan.ModelPool cannot be copied or pickled"):
                how(pool)


def test_a_vocabulary_copies_as_itself_and_refuses_pickle_by_name(stories):
    """A jan.Vocabulary pickled failed with "cannot pickle 'jan._engine.Model' object", naming no object of jan's."""
    vocab = stories.vocabulary()
    assert copy.copy(vocab) is vocab and copy.deepcopy(vocab) is vocab
    with pytest.raises(TypeError, match="a jan.Vocabulary cannot be pickled"):
        pickle.dumps(vocab)
    assert vocab.tokenize("Once") == stories.tokenize("Once")


# -- reprs say what the object is and its state --------------------------------------------------------------------

def test_reprs_of_the_engine_handles_name_them_and_their_state(stories_path):
    """A Request, a ModelPool and a Vocabulary printed as <jan.engine.request.Request object at 0x...>, and a closed
    Model printed as a loaded one."""
    with jan.ModelPool(max_loaded=2) as pool:
        assert repr(pool) == "<jan.ModelPool loaded=[] max_loaded=2 keep_alive=None>"
        model = pool.load("stories", stories_path, n_ctx=64, n_threads=1)
        assert repr(pool) == "<jan.ModelPool loaded=['stories'] max_loaded=2 keep_alive=None>"
        assert repr(model.vocabulary()) == f"<jan.Vocabulary n_vocab={model.info.n_vocab}>"
        request = model.stream("Once", max_tokens=3, temperature=0)
        assert repr(request) == "<jan.Request model='stories' running>"
        request.result()
        assert repr(request) == "<jan.Request model='stories' finished (length)>"
        assert repr(model) == f"<jan.Model 'stories' path={model.path!r}>"
    assert repr(pool) == "<jan.ModelPool loaded=[] max_loaded=2 keep_alive=None closed>"
    assert repr(model) == f"<jan.Model 'stories' path={model.path!r} closed>"


# -- media items and prompts of the wrong kind -------------------------------------------------------------------

@pytest.mark.parametrize("source, says", [
    (5, "expected a file path or the file's bytes, got int"),
    (None, "expected a file path or the file's bytes, got NoneType"),
    ([1], "expected a file path or the file's bytes, got list"),
    ("\ud800.png", "the path holds a lone UTF-16 surrogate"),
    ("a\x00b.png", "embedded null byte"),
])
def test_a_media_item_that_is_no_path_or_file_is_a_media_error_naming_it(source, says):
    """An image or clip given as 5 was Path()'s "expected str, bytes or os.PathLike object", a path with a lone
    surrogate os.stat's bare UnicodeEncodeError and one with a NUL its "embedded null byte" ValueError: none named
    the item. Each is now the MediaError every other unreadable item is (a server names the part it came from)."""
    from jan.engine.media import audio_input, image_input

    for read, what in ((image_input, "image 3"), (audio_input, "audio 2")):
        with pytest.raises(jan.MediaError, match=f"^{what}: .*{re.escape(says)}"):
            read(source, what=what)


@pytest.fixture(scope="module")
def vlm(vision_pair):
    model, mmproj = vision_pair
    with jan.Model(str(model), mmproj=str(mmproj), n_ctx=512, n_threads=1) as m:
        yield m


def test_media_prompt_and_encode_media_refuse_what_they_cannot_read_naming_it(vlm):
    """media_prompt() given items that are not media_inputs()'s, or encode_media() a prompt that is not
    media_prompt()'s, failed with pybind11's "incompatible function arguments", dumping the native signature."""
    items = vlm.media_inputs([np.zeros((8, 8, 3), np.uint8)])
    for media, says in (([1], "media[0]: expected an item from media_inputs() or prepare_media(), got int"),
                        ([*items, [1, 2]], "media[1]: expected an item from media_inputs() or prepare_media(), got list"),
                        (5, "media: expected a list of media items")):
        with pytest.raises(TypeError, match="^" + re.escape(says)):
            vlm.media_prompt(vlm.media_marker, media)
    for prompt in (5, None, b"x"):
        with pytest.raises(TypeError, match=f"^prompt: expected text holding media markers, got {type(prompt).__name__}"):
            vlm.media_prompt(prompt, items)
    for prompt in ("text", [1, 2], None):
        with pytest.raises(TypeError, match=f"^prompt: expected a prompt from media_prompt\\(\\), got {type(prompt).__name__}"):
            vlm.encode_media(prompt)
    prompt = vlm.media_prompt(vlm.media_marker + " what is it?", items)
    assert vlm.generate(prompt, max_tokens=2).finish_reason == "length"


# -- the pool's own arguments ------------------------------------------------------------------------------------

def test_the_pools_turn_and_claim_arguments_are_checked(stories_path):
    """pool.load(..., turn=5) failed with "'int' object has no attribute 'model_id'" from deep in its wait, a claim
    of "no" held the model as claimed, and pool.turn(5) took a place in line for no model id."""
    with jan.ModelPool() as pool:
        for call in (lambda: pool.load("a", stories_path, n_ctx=64, turn=5),
                     lambda: pool.get("a", turn="first")):
            with pytest.raises(TypeError, match="^turn: expected a place in line from ModelPool.turn()"):
                call()
        for call in (lambda: pool.load("a", stories_path, n_ctx=64, claim="no"),
                     lambda: pool.get("a", claim=1)):
            with pytest.raises(ValueError, match="^claim: expected true or false"):
                call()
        with pytest.raises(TypeError, match="^model_id: expected a string, got int"):
            with pool.turn(5):
                pass
        with pool.turn("a") as turn:
            model = pool.load("a", stories_path, n_ctx=64, n_threads=1, turn=turn, claim=True)
        assert model.generate("Once", max_tokens=2).finish_reason == "length"


# -- embed's pooling -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path_fixture", ["minilm_path", "stories_path"])
def test_embed_refuses_rank_pooling_which_is_rerank_s_own(request, path_fixture):
    """embed(pooling="rank") slipped past the pooling check (kept open for rerank()'s internal use) and ran rank
    pooling on a model with no classifier head: one number per input, scoring nothing, with no error."""
    with jan.Model(request.getfixturevalue(path_fixture), n_ctx=64, n_threads=1) as m:
        with pytest.raises(ValueError, match="^pooling: expected one of mean, cls, last, none, got 'rank'"):
            m.embed(["a b", "c"], pooling="rank")
        with pytest.raises(ValueError, match="^pooling: expected one of mean, cls, last, none, got array"):
            m.embed(["a b", "c"], pooling=np.array([1, 2]))  # (was numpy's "truth value is ambiguous")
        assert m.embed(["a b", "c"], pooling="mean").shape == (2, m.info.n_embd)


def test_holds_begins_is_a_yes_or_no(stories):
    """hold(begins="no") (any truthy value) counted a claimed request as begun, as begins=True does."""
    with pytest.raises(ValueError, match="^begins: expected true or false, got 'no'"):
        with stories.hold(begins="no"):
            pass
    with stories.hold(begins=False):
        assert stories.busy


# -- handles made by hand of the wrong things: a TypeError naming the argument, not an AttributeError at first use ---

@pytest.mark.parametrize("args, kwargs, says", [
    ((None, None, None), {"logprobs": False}, "^native: expected the engine's native request"),
    (("x", None, None), {"logprobs": False}, "^native: expected"),
])
def test_a_request_made_by_hand_of_the_wrong_things_names_the_argument(args, kwargs, says):
    """Before: jan.Request(None, ...) was made, and its first result() or cancel() was an AttributeError of
    'NoneType' naming no argument (its __del__ another, in the log)."""
    with pytest.raises(TypeError, match=says):
        jan.Request(*args, **kwargs)


def test_a_requests_other_arguments_are_checked_by_name(stories):
    real = stories.stream("Once", max_tokens=1)
    native, model = real._native, stories
    pieces = lambda t: ("", b"")  # noqa: E731
    real.result()
    with pytest.raises(TypeError, match="^model: expected the engine's jan.Model"):
        jan.Request(native, None, pieces, logprobs=False)
    with pytest.raises(TypeError, match="^pieces: expected a callable"):
        jan.Request(native, model, None, logprobs=False)
    with pytest.raises(ValueError, match="^logprobs: expected true or false"):
        jan.Request(native, model, pieces, logprobs="no")
    with pytest.raises(ValueError, match="^thinking_budget: expected true or false"):
        jan.Request(native, model, pieces, logprobs=False, thinking_budget=None)
    with pytest.raises(TypeError, match="^seed: expected an integer"):
        jan.Request(native, model, pieces, logprobs=False, seed="7")


def test_raise_for_error_takes_a_chunk_only(stories):
    request = stories.stream("Once", max_tokens=2)
    final = request.result()
    for value in (None, "x", final):  # (a Completion is no Chunk either)
        with pytest.raises(TypeError, match="^chunk: expected a jan.Chunk"):
            request.raise_for_error(value)
    request.raise_for_error(request.final)  # a chunk that ended well: nothing


def test_a_vocabulary_made_by_hand_of_a_path_names_the_argument(stories_path):
    """Before: jan.Vocabulary("model.gguf") was an AttributeError ("'str' object has no attribute 'n_vocab')."""
    with pytest.raises(TypeError, match=r"^native: expected the engine's native model \(a jan.Vocabulary is made by"):
        jan.Vocabulary(str(stories_path))
