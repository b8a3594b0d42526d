"""`jan run -v`'s summary tells what the engine did: the prompt rate over the tokens evaluated (those reused from
the KV cache took none of the time: the rate was all prompt tokens over the evaluated ones' time), and the drafts of
speculative decoding, accepted of drafted, as usage and /metrics count them."""

from __future__ import annotations

from types import SimpleNamespace

from jan.cli.run import report


def summary(capsys, usage: dict) -> str:
    report(SimpleNamespace(usage=usage, finish_reason="length"), 1.0)
    return capsys.readouterr().err


def test_the_prompt_rate_is_over_the_tokens_evaluated(capsys):
    line = summary(capsys, {"prompt_tokens": 100, "cached_tokens": 90, "prompt_ms": 10.0, "completion_tokens": 5})
    assert "prompt: 100 tokens (90 cached) in 0.01 s (1000.0 t/s)" in line, line
    line = summary(capsys, {"prompt_tokens": 100, "cached_tokens": 0, "prompt_ms": 10.0, "completion_tokens": 5})
    assert "(10000.0 t/s)" in line and "cached" not in line, line


def test_drafts_are_told_where_there_were_any(capsys):
    drafted = {"prompt_tokens": 5, "completion_tokens": 30,
               "completion_tokens_details": {"accepted_prediction_tokens": 20, "rejected_prediction_tokens": 7}}
    assert "drafts: 20 of 27 accepted" in summary(capsys, drafted)
    plain = {"prompt_tokens": 5, "completion_tokens": 30,
             "completion_tokens_details": {"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
    assert "drafts" not in summary(capsys, plain)


def test_a_local_drafted_run_reports_its_drafts(tmp_path, stories_path):
    from click.testing import CliRunner

    from jan.cli import main
    from jan.store import DataFolder

    DataFolder(tmp_path / "data").models.import_gguf(
        stories_path, model_id="drafted", mode="reference",
        settings={"draft_model": str(stories_path), "draft_p_min": 0.0, "ctx_len": 256})
    result = CliRunner().invoke(main, ["run", "drafted", "--raw", "Once upon a time", "-n", "20", "--temp", "0", "-v"],
                                env={"JAN_DATA_FOLDER": str(tmp_path / "data"), "JAN_LOCAL": "1"})
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and "drafts: 0 of" not in result.output, result.output
