"""`jan run`/`jan chat` sampling flags mean the same with a server and without one: the same answer for the same
values, and the same usage error for a bad one, judged by the engine's own ranges before any model loads.

Before, click's ranges let NaN, infinity and the upper bounds through: in-process the engine refused them in its
words (exit 1, after loading the model), through a server they came back as "server: The request body is not valid
JSON: NaN is not a JSON number (HTTP 400)" or in pydantic's words ("Input should be less than or equal to ...")."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from test_cli_helpers import JAN, cli_env, fails, free_port, jan, ok


@pytest.fixture(scope="module")
def both(tmp_path_factory, stories_path):
    """(local env, server env): a data folder holding stories260K, and a `jan serve` with it loaded."""
    root = tmp_path_factory.mktemp("sampling_flags")
    local = cli_env(root / "local")
    ok(jan("models", "import", str(stories_path), env=local))
    port = free_port()
    server_env = cli_env(root / "served", local=False)
    proc = subprocess.Popen([*JAN, "serve", "--port", str(port), "--threads", "1", "--parallel", "1",
                             "--model", str(stories_path), "--log-level", "warning"],
                            env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if json.loads(resp.read()).get("models"):
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"jan serve did not come up: {proc.stderr.read() if proc.poll() is not None else ''}")
        yield local, cli_env(root / "unused", local=False, JAN_API_URL=url)
    finally:
        proc.kill()
        proc.wait(30)


BAD = [
    (["-n", "0"], "--max-tokens", "must be >= 1"),
    (["-n", "99999999999"], "--max-tokens", "<= 2147483647"),
    (["-n", "many"], "--max-tokens", "'many' is not a valid integer"),
    (["--temp", "nan"], "--temperature", "must be a number, got NaN"),
    (["--temp", "inf"], "--temperature", "<= 2, got inf"),
    (["--temp", "3"], "--temperature", "<= 2, got 3.0"),
    (["--temp", "-0.5"], "--temperature", ">= 0"),
    (["--top-p", "nan"], "--top-p", "must be a number, got NaN"),
    (["--top-p", "1.5"], "--top-p", "<= 1, got 1.5"),
    (["--seed", "99999999999999999999999"], "--seed", "64-bit signed integer"),
    (["--seed", "1.5"], "--seed", "'1.5' is not a valid integer"),
]


@pytest.mark.parametrize("command", ["run", "chat"])
@pytest.mark.parametrize("flags, option, said", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_sampling_value_is_the_same_usage_error_with_or_without_a_server(both, command, flags, option, said):
    args = ["run", "stories260K", "hi"] if command == "run" else ["chat", "stories260K"]
    errors = []
    for env in both:
        result = jan(*args, *flags, env=env, input="hi\n")
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr and "server:" not in result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith(f"Error: Invalid value for '{option}'") and said in line, line
        errors.append(line)
    assert errors[0] == errors[1]


def test_the_same_values_give_the_same_answer_with_or_without_a_server(both):
    """Sampled, not greedy: temperature, top-p and the seed each reach the sampler alike either way."""
    flags = ["--temp", "0.9", "--top-p", "0.9", "--seed", "7", "-n", "24"]
    local, served = (ok(jan("run", "stories260K", "--raw", "Once upon a time", *flags, env=env)).stdout
                     for env in both)
    assert local == served and local.strip()


def test_seed_minus_one_is_a_random_seed_in_both(both):
    for env in both:
        assert ok(jan("run", "stories260K", "--raw", "Once", "--seed", "-1", "-n", "3", env=env)).stdout.strip()


def test_load_flags_a_server_does_not_use_are_said_not_silently_dropped(both):
    """--ctx-size/--threads/--gpu-layers load a model in this process; through a server they change nothing,
    so the same command could answer differently (or fail with a context error) without one: it says so."""
    local, served = both
    args = ("run", "stories260K", "--raw", "Once", "-n", "3", "--temp", "0", "-c", "256", "-t", "1")
    here = ok(jan(*args, env=local))
    there = ok(jan(*args, env=served))
    assert "to a model loaded in this process" not in here.stderr
    assert "jan: -c/--ctx-size, -t/--threads only apply to a model loaded in this process" in there.stderr
    assert here.stdout == there.stdout
    # (one flag: it "only apply" read as a slip)
    one = ok(jan("run", "stories260K", "--raw", "Once", "-n", "3", "-c", "256", env=served))
    assert "jan: -c/--ctx-size only applies to a model loaded in this process" in one.stderr, one.stderr


@pytest.mark.parametrize("name", ["Stories260K", "stories260K.gguf", "STORIES260K.gguf", "storis260K", "stories260K "])
@pytest.mark.parametrize("command", ["run", "chat"])
def test_a_model_name_off_by_case_gguf_or_a_typo_gets_did_you_mean_with_or_without_a_server(both, name, command):
    """The services guess the model meant (the server's 404 says it); the CLI put its own "not found" in its place
    through a server, never guessed in-process, and took `stories260K.gguf` for a path to a file that is not
    there even with a server that has the model."""
    for env in both:
        args = ("run", name, "hi") if command == "run" else ("chat", name)
        fails(jan(*args, env=env, input="hi\n"), f"model '{name}' not found",
              "did you mean 'stories260K'? (model ids are exact)")


def test_a_model_that_is_nowhere_is_still_plain_not_found(both):
    for env in both:
        err = fails(jan("run", "nosuch", "hi", env=env), "model 'nosuch' not found", "see `jan models list`")
        assert "did you mean" not in err


@pytest.mark.parametrize("args", [("models", "show", "Stories260K"), ("models", "rm", "STORIES260K"),
                                  ("models", "show", "stories260K.gguf"), ("models", "rm", "storis260K"),
                                  # no id can hold a space: told "not found" alone, locally and by a server
                                  ("models", "show", "stories260K "), ("models", "show", " stories260K")],
                         ids=" ".join)
def test_model_commands_guess_the_model_meant_with_or_without_a_server(both, args):
    for env in both:
        fails(jan(*args, env=env), f"model '{args[-1]}' not found", "did you mean 'stories260K'?")
    for env in both:  # and nothing was removed
        ok(jan("models", "show", "stories260K", env=env))


def test_bench_guesses_the_model_meant(both):
    local, _ = both
    fails(jan("bench", "Stories260K", "-r", "1", "-p", "8", "-n", "2", env=local), "did you mean 'stories260K'?")


@pytest.mark.parametrize("args", [("run", b"\xff", "hi"), ("models", "show", b"\xff"), ("threads", "show", b"\xff"),
                                  ("files", "show", b"\xff"), ("chat", "stories260K", "--thread", b"\xff")],
                         ids=lambda a: " ".join(x if isinstance(x, str) else "<0xff>" for x in a))
def test_an_id_with_bytes_that_are_not_utf8_is_a_clear_error_with_or_without_a_server(both, args):
    """Before, through a server: UnicodeEncodeError's traceback (the argument's lone surrogate in the URL)."""
    for env in both:
        result = subprocess.run([*(a.encode() for a in JAN), *(a if isinstance(a, bytes) else a.encode() for a in args)],
                                env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        fails(result)


@pytest.mark.parametrize("args", [("threads", "show", "../../etc"), ("threads", "export", "thread_nope"),
                                  ("chat", "stories260K", "--thread", "../x"),
                                  ("chat", "stories260K", "--thread", "thread_nope")], ids=" ".join)
def test_a_thread_that_is_not_there_is_not_found_in_the_same_words_with_or_without_a_server(both, args):
    """Before: in-process `threads show` said "not found" but `chat --thread ../x` "invalid thread id", and through
    a server both were "server: invalid thread id ... (HTTP 400)" for an id no thread can have."""
    for env in both:
        err = fails(jan(*args, env=env, input="hi\n"), f"thread '{args[-1]}' not found", "see `jan threads list`")
        assert "invalid" not in err and "HTTP" not in err
