"""How every `jan` command fails, by kind: a mistake in the command line itself is click's usage error (exit 2,
naming the option); a failure of what it ran into (a file, a model, a server) is one ``jan: error: ...`` line and
exit 1. Before: `jan serve` said its failures as ``jan serve: ...``; `jan bench -p 8,,16` ran 8 and 16 without a
word; flags that contradict each other were exit 1 in `jan serve --draft-min` and exit 2 in `jan serve --alias`.

Most cases stop at the parsing of the command line (CliRunner, in-process); the runtime ones run `jan` as a user
would (a subprocess)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from test_cli_helpers import cli_env, fails, jan, leaf_commands

# every comma-separated list option of every command, with the values it must refuse: an empty item (anywhere),
# an empty value, an item that is no number where numbers are meant, and one out of range (zero or negative where
# a count of at least 1 is meant; -p/-n take 0, llama-bench's "skip this test")
LIST_OPTIONS = [
    ("bench", ["STORIES"], "-p", ["8,,16", "8,", ",8", "", "8,x", "8,1.5", "-8", "8,-1"]),
    ("bench", ["STORIES"], "-n", ["4,,8", "4,", "x", "-1"]),
    ("bench", ["STORIES"], "-t", ["1,,2", "1,", "0", "-1", "1,x", "2,513"]),
    ("serve", ["--model", "a"], "--alias", ["a,,b", "a,", ",a", "", " , "]),
    ("serve", ["--model", "a"], "--tags", ["a,,b", "a,", ""]),
    ("serve", [], "--lora", ["STORIES,,STORIES", "STORIES,", ""]),
    ("serve", [], "--lora-scaled", ["STORIES:1,,STORIES:1", "STORIES:1,", "STORIES:x", ""]),
]


def _command(name: str):
    from jan.cli import main

    return main.get_command(None, name)


@pytest.mark.parametrize("command, before, option, values", LIST_OPTIONS, ids=lambda v: v if isinstance(v, str) else None)
def test_a_list_option_with_an_empty_or_bad_item_is_a_usage_error_naming_it(tmp_path, stories_path, command, before,
                                                                            option, values):
    for value in values:
        value = value.replace("STORIES", str(stories_path))
        args = [a.replace("STORIES", str(stories_path)) for a in before]
        result = CliRunner().invoke(_command(command), [*args, option, value, "--data-folder", str(tmp_path / "d")])
        assert result.exit_code == 2, (option, value, result.output)
        assert option in result.output, (option, value, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_list_options_still_take_what_they_did(stories_path):
    from jan.cli.bench import int_list, thread_list
    from jan.cli.serve import _names

    assert int_list(None, None, "8, 16,0") == [8, 16, 0]
    assert thread_list(None, None, "1,2") == [1, 2]
    assert _names(None, None, ("a, b", "b,c")) == ["a", "b", "c"]


@pytest.mark.parametrize("args", [
    ["--draft-min", "5", "--draft-max", "2"],  # two flags that contradict each other
    ["--ctx-size", str(2**30), "--parallel", "4"],  # a context per slot past what llama.cpp counts
    ["-m", "a", "-m", "b", "--max-loaded-models", "1"],  # more models than may stay loaded
    ["-m", "a", "-m", "b", "--alias", "x"],  # an alias of which model?
], ids=["draft-order", "ctx-total", "max-loaded", "alias"])
def test_contradicting_flags_are_usage_errors_in_every_command(tmp_path, args):
    result = CliRunner().invoke(_command("serve"), [*args, "--data-folder", str(tmp_path / "d")])
    assert result.exit_code == 2, result.output
    assert "Usage: " in result.output and "Traceback" not in result.output
    assert not (tmp_path / "d").exists()


def test_bench_contradictions_are_usage_errors_too(tmp_path, stories_path):
    for args in (["-b", "64", "-ub", "128"], ["-p", "0", "-n", "0"]):
        result = CliRunner().invoke(_command("bench"), [str(stories_path), *args, "--data-folder", str(tmp_path / "d")])
        assert result.exit_code == 2 and "Usage: " in result.output, (args, result.output)


def test_serve_says_its_failures_as_every_command_does(tmp_path):
    """`jan serve` said ``jan serve: ...``, every other command ``jan: error: ...``: one prefix, exit 1."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    env = cli_env(tmp_path / "unused", local=False)
    for command in (["serve", "--port", "0"], ["models", "list"], ["threads", "list"]):
        said = fails(jan(*command, "--data-folder", str(a_file), env=env), str(a_file), "is a file, not a folder")
        assert said.startswith("jan: error: "), said
    result = jan("serve", "--port", "0", "--data-folder", str(a_file), env=env)
    assert result.returncode == 1 and "jan serve:" not in result.stderr, result.stderr


@pytest.mark.parametrize("args", [["import", "STORIES"], ["pull", "http://127.0.0.1:9/x.gguf"]], ids=["import", "pull"])
def test_a_model_id_option_that_is_no_id_is_a_usage_error(tmp_path, stories_path, args):
    """`jan models import FILE --id bad/id` was a runtime error (exit 1) after the file was read: the value is the
    command line's own mistake, refused as every bad option value is, before anything is made."""
    args = [a.replace("STORIES", str(stories_path)) for a in args]
    for bad in ("bad/id", "a b", "..x"):
        result = CliRunner().invoke(_command("models"), [*args, "--id", bad, "--data-folder", str(tmp_path / "d")])
        assert result.exit_code == 2 and "--id" in result.output and "invalid model id" in result.output, result.output
    assert not (tmp_path / "d").exists()


def _arguments():
    """(command path, argument) for every positional argument of every `jan` command."""
    import click

    for name, command in leaf_commands():
        for param in command.params:
            if isinstance(param, click.Argument):
                yield tuple(name.split()), param


# every argument that names something (an id, a model, a URL, a name): "" and the arguments it takes with it
EMPTY_ARGUMENTS = [
    (["bench"], ["STORIES", ""]), (["chat"], [""]), (["run"], ["", "hi"]),
    (["extensions", "enable"], [""]), (["extensions", "disable"], [""]),
    (["files", "show"], [""]), (["files", "delete"], [""]), (["files", "download"], [""]), (["files", "upload"], [""]),
    (["mcp", "add"], ["", "echo"]), (["mcp", "add"], ["x", ""]), (["mcp", "remove"], [""]),
    (["models", "show"], [""]), (["models", "start"], [""]), (["models", "stop"], [""]), (["models", "pull"], [""]),
    (["models", "rm"], ["STORIES_ID", ""]), (["models", "import"], [""]),
    (["threads", "show"], [""]), (["threads", "export"], [""]), (["threads", "rm"], ["THREAD", ""]),
    (["help"], ["models", ""]),
]
#: Arguments whose empty value means something: a prompt (refused by `jan run` itself, as an empty stdin is), a
#: stdio MCP server's own arguments (`echo ""`).
EMPTY_MEANS_SOMETHING = {(("run",), "prompt"), (("mcp", "add"), "args")}


def test_every_naming_argument_is_in_the_empty_value_test():
    """A new command's argument joins the test below (or says why an empty value means something)."""
    named = {command for command, param in _arguments() if (command, param.name) not in EMPTY_MEANS_SOMETHING}
    assert named == {tuple(path) for path, _ in EMPTY_ARGUMENTS}


@pytest.mark.parametrize("path, args", EMPTY_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_an_empty_argument_is_a_usage_error_before_anything_is_done(tmp_path, stories_path, path, args):
    """An empty id, model, name or URL (an unset shell variable: `jan models rm "$ID"`) is the command line's own
    mistake, as an empty option value and an empty path are: exit 2 naming the argument, before anything is done.
    Before, it was looked up ("model '' not found", exit 1), `jan chat ""` took it for no model given and chose one,
    and `jan models rm stories260K ""` removed stories260K and then failed."""
    from jan.cli import main

    data = tmp_path / "d"
    runner = CliRunner()
    env = {"JAN_DATA_FOLDER": str(data), "JAN_LOCAL": "1"}
    assert runner.invoke(main, ["models", "import", str(stories_path)], env=env).exit_code == 0
    made = runner.invoke(main, ["run", "stories260K", "hi", "-n", "2"], env=env)
    assert made.exit_code == 0, made.output
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*") if "logs" not in p.parts)
    argv = [a.replace("STORIES_ID", "stories260K").replace("STORIES", str(stories_path)) for a in args]
    result = runner.invoke(main, [*path, *argv], env=env)
    assert result.exit_code == 2, result.output
    assert "must not be empty" in result.output and "Traceback" not in result.output
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*") if "logs" not in p.parts) == before
