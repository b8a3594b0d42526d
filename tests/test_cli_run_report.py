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
    # (the usage in OpenAI's names, a server's and a local generation's alike: the cached prefix in
    # prompt_tokens_details, where a server's answer has it; a top-level cached_tokens was read, which a server's
    # usage never has, so `jan run -v` through a server told no cached tokens)
    line = summary(capsys, {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 90}, "prompt_ms": 10.0,
                            "completion_tokens": 5})
    assert "prompt: 100 tokens (90 cached) in 0.01 s (1000.0 t/s)" in line, line
    line = summary(capsys, {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 0}, "prompt_ms": 10.0,
                            "completion_tokens": 5})
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


def test_jan_run_and_chat_take_the_kv_cache_and_speculative_flags(tmp_path, stories_path, tiny_random_path):
    """jan serve's -ctk/-ctv, --speculative, -md/--model-draft, --draft-max/--draft-min, --spec-ngram-size and
    --draft-p-min (llama-cli's and llama-server's names) were "No such option" to jan run and jan chat, which load the
    model in this process as well: the same flags (one definition, jan.cli.speed_flags) load it so, over its
    model.json's settings, as -c does; a draft model that cannot draft, and a setting the model cannot load with,
    are named by the flag as typed."""
    from click.testing import CliRunner

    from jan.cli import main
    from jan.store import DataFolder

    data = tmp_path / "data"
    DataFolder(data).models.import_gguf(stories_path, model_id="plain", mode="reference", settings={"ctx_len": 256})
    env = {"JAN_DATA_FOLDER": str(data), "JAN_LOCAL": "1"}
    prompt = "Once upon a time, there was a little girl named Lily. Once upon a time"

    def run(*flags: str):
        return CliRunner().invoke(main, ["run", "plain", "--raw", prompt, "-n", "30", "--temp", "0", "-v", *flags],
                                  env=env)

    plain = run()
    assert plain.exit_code == 0 and "drafts:" not in plain.output, plain.output
    answer = plain.stdout
    for flags in (["-md", str(stories_path), "--draft-p-min", "0"], ["--speculative", "ngram", "--draft-max", "4",
                                                                      "--spec-ngram-size", "2"]):
        result = run(*flags)
        assert result.exit_code == 0 and result.stdout == answer, (flags, result.output)
        assert "drafts: 0 of" not in result.output and " accepted" in result.output, (flags, result.output)
    result = run("-ctk", "f32", "-ctv", "f32")
    assert result.exit_code == 0 and result.stdout == answer, result.output
    for flags, said in ((["-ctk", "q8_0"], "-ctk/--cache-type-k: q8_0 stores blocks of 32 values"),
                        (["-md", str(tiny_random_path)], "-md/--model-draft: "),
                        (["--speculative", "draft"], "give one as -md/--model-draft")):
        result = run(*flags)
        assert result.exit_code == 1 and said in result.output, (flags, result.output)
        assert "settings." not in result.output and "draft_model" not in result.output, (flags, result.output)
    result = run("--draft-min", "5", "--draft-max", "2")
    assert result.exit_code == 2 and "--draft-min" in result.output, result.output
    chat = CliRunner().invoke(main, ["chat", "plain", "--no-save", "-n", "5", "-md", str(stories_path), "-ctk", "f32"],
                              input="Once upon a time\n", env=env)
    assert chat.exit_code == 0, chat.output
