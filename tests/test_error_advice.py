"""An error that advises changing a setting carries it as data (:class:`jan.errors.Advice`: the setting's canonical
name, the model.json's ``ctx_len``), and each front end names it its own way: the HTTP APIs ``ctx_len``, `jan run`
``-c/--ctx-size``, the engine's Python API ``n_ctx``. Before, the CLI made its words by replacing the services'
("larger context (ctx_len)" -> "-c/--ctx-size", the engine's advice sentence -> its own) in finished messages: a
rewording of either side broke it without a word."""

from __future__ import annotations

import pytest

import jan
from jan.errors import CTX_LEN, LARGER_CONTEXT, Advice, ContextOverflowError, ModelSettingError

HUGE = 2**31 - 1  # a context whose KV cache is terabytes, even for stories260K
CLI = {CTX_LEN: "-c/--ctx-size"}


def test_an_advised_error_keeps_reason_advice_and_tail_apart():
    exc = ContextOverflowError("", 300, 256).advise("the prompt has 300 tokens but the context holds 256",
                                                    LARGER_CONTEXT, "; its images take 200 tokens of it")
    assert str(exc) == ("the prompt has 300 tokens but the context holds 256; shorten it or use a larger context "
                        "(ctx_len); its images take 200 tokens of it")
    assert exc.advice.setting == CTX_LEN and (exc.n_tokens, exc.n_ctx) == (300, 256)
    assert exc.message(CLI) == ("the prompt has 300 tokens but the context holds 256; shorten it or use a larger "
                                "context (-c/--ctx-size); its images take 200 tokens of it")
    named = ModelSettingError("", param="settings.ctx_len").advise(
        "too big", Advice(CTX_LEN, "use a smaller {setting}", name="n_ctx"), named=True)
    assert str(named) == "settings.ctx_len: too big; use a smaller n_ctx"
    assert named.message({**CLI, "settings.ctx_len": "--ctx-size"}) == "--ctx-size: too big; use a smaller -c/--ctx-size"
    plain = ContextOverflowError("no advice here")
    assert plain.advice is None and plain.message(CLI) == "no advice here"


def test_a_context_past_memory_advises_the_context_setting_as_data(stories_path):
    with pytest.raises(ModelSettingError) as caught:
        jan.Model(stories_path, n_ctx=HUGE, n_parallel=1, n_threads=1)
    exc = caught.value
    assert exc.param == "n_ctx" and exc.advice.setting == CTX_LEN
    assert "n_ctx" not in exc.reason and exc.reason.startswith(f"a context of {HUGE} tokens needs")
    assert str(exc).endswith("; use a smaller n_ctx, or leave it unset to fit the free memory"), str(exc)
    said = exc.message({**CLI, "n_ctx": "--ctx-size"})
    assert said.startswith("--ctx-size: a context of") and "n_ctx" not in said
    assert said.endswith("; use a smaller -c/--ctx-size, or leave it unset to fit the free memory"), said


def test_the_engines_own_overflow_advises_the_context_setting_as_data(stories_path):
    model = jan.Model(stories_path, n_ctx=64, n_parallel=1, n_threads=1)
    try:
        with pytest.raises(ContextOverflowError) as caught:
            model.generate("once upon a time " * 100, max_tokens=2)
    finally:
        model.close()
    exc = caught.value
    assert exc.advice is not None and exc.advice.setting == CTX_LEN, str(exc)
    assert str(exc).endswith("use a larger context (n_ctx)") and exc.message(CLI).endswith("(-c/--ctx-size)")


def test_the_cli_names_its_flag_from_the_advice_not_from_the_words(monkeypatch):
    """The CLI's words follow the advice's data: another wording of the services' advice still names -c/--ctx-size,
    and nothing of the services' name for the setting is left."""
    from jan.cli.inference import _in_flags

    exc = ContextOverflowError("", 10, 8).advise("too long", Advice(CTX_LEN, "try a bigger window ({setting})"))
    assert _in_flags(exc) == "too long; try a bigger window (-c/--ctx-size)"
    assert _in_flags(ContextOverflowError("too long")) == "too long; shorten it or use a larger context (-c/--ctx-size)"
