"""Common user mistakes at the `jan` command line, each refused the same way by every command it can reach:
a data folder that is a file, an option given empty, and the group's own verb for removing something."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from test_cli_helpers import JAN, cli_env, fails, free_port, jan, ok

FILE_NOT_FOLDER = "is a file, not a folder"

# every command that reads or writes the data folder itself (local), and the one that loads models from it
LOCAL_COMMANDS = [
    ("models", "list"),
    ("models", "show", "x"),
    ("threads", "list"),
    ("files", "list"),
    ("extensions", "list"),
    ("extensions", "disable", "tools"),
    ("mcp", "list"),
    ("mcp", "add", "x", "echo"),
    ("run", "stories260K", "hi"),
]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a folder\n")
    return path


@pytest.mark.parametrize("args", LOCAL_COMMANDS, ids=" ".join)
def test_a_data_folder_that_is_a_file_is_one_clear_error_from_every_command(args, a_file):
    """Before: `[Errno 17] File exists`, `<data>/files: Not a directory`, `<data>: File exists`, each command
    in its own words."""
    env = cli_env(a_file)
    err = fails(jan(*args, env=env), str(a_file), FILE_NOT_FOLDER, "--data-folder")
    assert "Errno" not in err
    assert a_file.read_text() == "not a folder\n"  # left as it was


def test_a_data_folder_under_a_file_says_which_file_is_in_the_way(a_file):
    env = cli_env(a_file / "jan")
    fails(jan("threads", "list", env=env), f"{a_file / 'jan'} cannot be created", f"{a_file} is a file")
    fails(jan("files", "upload", str(a_file), env=env), f"{a_file} is a file")


def test_info_reports_a_data_folder_that_is_a_file_instead_of_not_created_yet(a_file):
    env = cli_env(a_file)
    result = ok(jan("info", env=env))
    assert FILE_NOT_FOLDER in result.stdout and "not created yet" not in result.stdout
    data = json.loads(ok(jan("info", "--json", env=env)).stdout)["data_folder"]
    assert data["exists"] is False and FILE_NOT_FOLDER in data["problem"]


def test_serve_refuses_a_data_folder_that_is_a_file_in_the_same_words(a_file):
    env = cli_env(a_file, local=False)
    result = jan("serve", "--port", str(free_port()), env=env, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"jan: error: the data folder {a_file} {FILE_NOT_FOLDER}" in result.stderr
    assert "Errno" not in result.stderr


def test_commands_through_a_server_do_not_need_the_local_data_folder(tmp_path, a_file):
    """The check is made where the folder is used: with a server answering, a bad $JAN_DATA_FOLDER on the client's
    side (it names the server's folder on another machine, say) changes nothing."""
    port = free_port()
    server_env = cli_env(tmp_path / "served", local=False)
    proc = subprocess.Popen([*JAN, "serve", "--port", str(port), "--log-level", "warning"], env=server_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"jan serve did not come up: {proc.stderr.read() if proc.poll() is not None else ''}")
        env = cli_env(a_file, local=False, JAN_API_URL=url)
        assert json.loads(ok(jan("models", "list", "--json", env=env)).stdout) == []
        assert json.loads(ok(jan("threads", "list", "--json", env=env)).stdout) == []
        assert json.loads(ok(jan("files", "list", "--json", env=env)).stdout) == []
        # --local still works on the folder given, and says what is wrong with it
        fails(jan("models", "list", "--local", env=env), FILE_NOT_FOLDER)
    finally:
        proc.kill()
        proc.wait(30)


# --------------------------------------------------------------------------- options given empty


@pytest.mark.parametrize("args, option", [
    (("models", "import", "{file}", "--id", ""), "--id"),
    (("models", "pull", "https://example.invalid/m.gguf", "--id", ""), "--id"),
    (("files", "upload", "{file}", "--name", ""), "--name"),
    (("run", "stories260K", "hi", "--stop", ""), "--stop"),
    (("chat", "stories260K", "--stop", "x", "--stop", ""), "--stop"),
    (("chat", "stories260K", "--tool", ""), "--tool"),
    (("chat", "stories260K", "--mcp", ""), "--mcp"),
    (("chat", "stories260K", "--tool", "current_time", "--tool-choice", ""), "--tool-choice"),
    (("mcp", "add", "x", "echo", "--timeout", "0"), "--timeout"),
    (("mcp", "add", "x", "echo", "--timeout", "-1"), "--timeout"),
    # NaN and infinity, which click's FloatRange lets through (NaN compares false with both bounds)
    (("mcp", "add", "x", "echo", "--timeout", "nan"), "--timeout"),
    (("mcp", "add", "x", "echo", "--timeout", "inf"), "--timeout"),
    (("serve", "--port", "0", "--draft-p-min", "nan"), "--draft-p-min"),
    # an unset shell variable: `--host ""` bound every interface, `--api-key ""` served with no key at all
    (("serve", "--port", "0", "--host", ""), "--host"),
    (("serve", "--port", "0", "--api-key", ""), "--api-key"),
    (("serve", "--port", "0", "--model", ""), "--model"),
    (("serve", "--port", "0", "--default-model", ""), "--default-model"),
    (("serve", "--port", "0", "--cors-origin", ""), "--cors-origin"),
    (("serve", "--port", "0", "--allowed-host", ""), "--allowed-host"),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_an_option_given_empty_is_a_usage_error_naming_it(args, option, env, data, a_file):
    """Before: `models import --id ""` imported under the file's name, `files upload --name ""` kept PATH's name,
    `--stop ""` was refused in the API's words (`stop: ...`), `mcp add --timeout -1` blamed mcp.json."""
    result = jan(*(a.replace("{file}", str(a_file)) for a in args), env=env, input="hi\n")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert f"Invalid value for '{option}'" in result.stderr
    assert not (data / "models").exists() or not any((data / "models").iterdir())
    assert not (data / "files").exists() or not any((data / "files").iterdir())
    assert not (data / "mcp.json").exists() or '"x"' not in (data / "mcp.json").read_text()


def test_a_stop_string_of_spaces_is_still_a_stop_string(env):
    result = jan("run", "no-such-model", "hi", "--stop", " ", env=env)
    fails(result, "no-such-model", "not found")  # got past the option check, to the model


# --------------------------------------------------------------------------- rm, remove, delete


def test_each_group_removes_with_rm_remove_and_delete(env, data, a_file):
    """`jan models rm`, `jan mcp remove`, `jan files delete`: each group had only its own verb, so the one learnt
    from another group was "No such command"."""
    for verb in ("rm", "remove", "delete"):
        ok(jan("mcp", "add", f"srv-{verb}", "echo", env=env))
        assert ok(jan("mcp", verb, f"srv-{verb}", env=env)).stdout.strip() == f"srv-{verb}: removed"
        file_id = ok(jan("files", "upload", str(a_file), env=env)).stdout.strip()
        assert ok(jan("files", verb, file_id, env=env)).stdout.strip() == f"{file_id}: deleted"
        fails(jan("models", verb, "no-such-model", env=env), "no-such-model", "not found")
    assert json.loads(ok(jan("mcp", "list", "--json", env=env)).stdout) == []
    assert json.loads(ok(jan("files", "list", "--json", env=env)).stdout) == []
    # the help shows each group's own verb once, and other names stay unknown
    listed = ok(jan("models", "--help", env=env)).stdout.split("Commands:")[1].splitlines()
    names = [line.split()[0] for line in listed if line.startswith("  ") and not line.startswith("   ")]
    assert "rm" in names and "remove" not in names and "delete" not in names
    unknown = jan("models", "erase", "x", env=env)
    assert unknown.returncode == 2 and "No such command 'erase'" in unknown.stderr


# --------------------------------------------------------------------------- closed standard streams


def closed(fd: int):
    """A child's ``preexec_fn`` closing one of its standard streams, as ``<&-`` / ``>&-`` do in a shell."""
    def close() -> None:
        os.close(fd)
    return close


@pytest.mark.parametrize("args, said", [
    (("run", "stories260K"), "the prompt read from stdin is empty"),
    (("threads", "list"), None),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_a_closed_stdin_reads_as_empty(args, said, env):
    """Before: AttributeError: 'NoneType' object has no attribute 'isatty' (Python's stdin is None)."""
    result = subprocess.run([*JAN, *args], env=env, capture_output=True, text=True, timeout=120,
                            preexec_fn=closed(0))
    assert "Traceback" not in result.stderr
    if said:
        fails(result, said)
    else:
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args", [("run", "stories260K", "hi"), ("models", "list"), ("info",)], ids=" ".join)
def test_a_closed_stdout_is_one_clear_error(args, env):
    """Before: a traceback from the first isatty() or write() to Python's None stdout."""
    result = subprocess.run([*JAN, *args], env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            timeout=120, preexec_fn=closed(1))
    result.stdout = ""
    fails(result, "standard output is closed")


# --------------------------------------------------------------------------- arguments that are not UTF-8


def jan_bytes(*args: str | bytes, env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = [*(a.encode() for a in JAN), *(a if isinstance(a, bytes) else a.encode() for a in args)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_an_argument_that_is_not_utf8_and_goes_into_a_json_file_is_one_clear_error(env, data):
    """Before: UnicodeEncodeError's traceback writing mcp.json (a stdio server's argument)."""
    fails(jan_bytes("mcp", "add", "srv", "echo", b"caf\xe9", env=env), "not UTF-8", "b'\\xe9'")
    assert json.loads(ok(jan("mcp", "list", "--json", env=env)).stdout) == []  # nothing half-written


def test_an_upload_name_that_is_not_utf8_is_kept_with_a_replacement_character(env, data, a_file):
    """A file's name is text, shown and sent back: as a prompt, its stray bytes become U+FFFD (was a traceback
    writing file.json)."""
    file_id = ok(jan_bytes("files", "upload", str(a_file), "--name", b"caf\xe9.txt", env=env)).stdout.strip()
    shown = json.loads(ok(jan("files", "show", file_id, "--json", env=env)).stdout)
    assert shown["filename"] == "caf\ufffd.txt"


@pytest.mark.parametrize("args, said", [
    (("extensions", "enable", "tool"), "no extension named 'tool': did you mean 'tools'?"),
    (("extensions", "disable", "Conversational"), "did you mean 'conversational'?"),
    (("mcp", "remove", "note"), "no MCP server named 'note': did you mean 'notes'?"),
    (("chat", "stories260K", "--mcp", "note"), "not configured in mcp.json; did you mean 'notes'?"),
    (("chat", "stories260K", "--tool", "current_tim"), "no tool named 'current_tim': did you mean 'current_time'?"),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_a_name_with_a_typo_is_answered_with_the_one_meant_by_every_command(args, said, env, stories_path):
    """Before: model ids alone had a "did you mean"; an extension, MCP server or tool one letter off was only
    "no extension named 'tool'"."""
    ok(jan("models", "import", stories_path, env=env))
    ok(jan("mcp", "add", "notes", "echo", "hi", env=env))
    fails(jan(*args, env=env), said)
    fails(jan("extensions", "enable", "zzz", env=env), "no extension named 'zzz' (see `jan extensions list`)")


def test_an_image_that_is_missing_or_a_folder_is_the_same_error_with_the_same_status(env, tmp_path):
    """Before: `--image missing.png` was "cannot read image" with status 1, `--image some_folder` click's usage
    error with status 2; both are now the image's own error (as `/image` in a chat says them), read before any
    model loads."""
    for path in (tmp_path / "missing.png", tmp_path):
        result = jan("run", "stories260K", "describe", "--image", path, env=env)
        assert result.returncode == 1
        fails(result, f"cannot read image '{path}'")


@pytest.mark.parametrize("url, said", [
    ("http://[::1", "is not a URL (Invalid IPv6 URL)"),
    ("http://127.0.0.1:99999", "is not a URL (Port out of range"),
    ("http://127.0.0.1:abc", "is not a URL (Port could not be cast"),
    ("ftp://127.0.0.1:1337", "is not the http:// or https:// URL of a jan server"),
])
@pytest.mark.parametrize("args", [("models", "list"), ("info",), ("threads", "list", "--json")], ids=" ".join)
def test_a_malformed_server_url_is_one_clear_error_naming_where_it_came_from(url, said, args, data):
    """Before: `http://[::1` and a port that is no number were urllib's ValueError traceback; `ftp://` was "no
    jan server answers". `--local` never asks the server, so never trips on it."""
    fails(jan(*args, "--url", url, env=cli_env(data, local=False)), f"--url: {url!r} {said}")
    fails(jan(*args, env=cli_env(data, local=False, JAN_API_URL=url)), f"$JAN_API_URL: {url!r} {said}")
    ok(jan(*args, env=cli_env(data, local=True, JAN_API_URL=url)))


@pytest.mark.parametrize("args", [("models", "list"), ("info",), ("threads", "list", "--json")], ids=" ".join)
def test_a_local_switch_that_is_no_yes_or_no_names_the_variable_that_held_it(args, data):
    """`JAN_LOCAL=banana` was "Invalid value for '--local'", a flag the user never typed; it now names $JAN_LOCAL and
    the words it takes (a usage error, exit 2), and those words work, 0 and empty as no."""
    for value in ("banana", "2"):
        result = jan(*args, env=cli_env(data, local=False, JAN_LOCAL=value))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result
        assert f"$JAN_LOCAL is {value!r}, which is no yes/no value: set it to 1" in result.stderr, result.stderr
    for value in ("1", "yes", "0", "off", ""):
        ok(jan(*args, env=cli_env(data, local=False, JAN_LOCAL=value,
                                  JAN_API_URL=f"http://127.0.0.1:{free_port()}")))
    given = jan(*args, "--local", env=cli_env(data, local=False))
    assert given.returncode == 0, given


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf"])
def test_a_probe_timeout_that_is_no_number_of_seconds_is_one_clear_error(value, data):
    """Before: read as jan.cli.common was imported, ``float('abc')``'s traceback from every command."""
    env = cli_env(data, local=False, JAN_API_URL=f"http://127.0.0.1:{free_port()}",
                  JAN_PROBE_TIMEOUT=value)
    fails(jan("models", "list", env=env), "$JAN_PROBE_TIMEOUT", repr(value))
    env["JAN_PROBE_TIMEOUT"] = "2"
    ok(jan("models", "list", env=env))


@pytest.mark.parametrize("args, said", [
    (("--data-folder", "/tmp/x", "models", "list"),
     "it is an option of `jan models list`, given after it: `jan models list --data-folder /tmp/x`"),
    (("--data-folder=/tmp/x", "info"), "`jan info --data-folder=/tmp/x`"),
    (("--local", "run", "m", "hi there"), "`jan run --local m 'hi there'`"),
    (("--json", "models", "list"), "`jan models list --json`"),
    (("--port", "1", "serve"), "`jan serve --port 1`"),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_a_commands_option_given_before_the_command_says_where_it_goes(args, said, env):
    """`jan --data-folder X models list` was "No such option '--data-folder'" alone, as if jan had no such option
    (every command has it): the option is the command's, and the error says so, with the line that works."""
    result = jan(*args, env=env)
    assert result.returncode == 2 and "before the command" in result.stderr and said in result.stderr, result.stderr


def test_an_option_no_command_has_is_still_no_such_option(env):
    result = jan("--bogus", "models", "list", env=env)
    assert result.returncode == 2 and "No such option '--bogus'." in result.stderr, result.stderr
    assert "before the command" not in result.stderr


@pytest.mark.parametrize("value", ["localhost:3000", "http://app.example/chat"])
def test_serve_refuses_a_cors_origin_that_is_no_origin(value, env):
    """Kept as given, such a value matched no browser's Origin: the page's calls failed and nothing said why."""
    result = jan("serve", "--port", "0", "--cors-origin", value, env=env)
    assert result.returncode == 2 and f"'{value}' is no origin: give scheme://host[:port]" in result.stderr, result.stderr


def test_serve_names_a_host_that_no_dns_name_can_spell(env):
    """Before: "encoding with 'idna' codec failed (UnicodeError: label empty or too long)", naming neither --host nor
    the value."""
    result = jan("serve", "--port", "0", "--host", "bad..host", env=env)
    assert result.returncode == 1, result.stderr
    assert "cannot listen on bad..host:0: --host 'bad..host' is no host name or address" in result.stderr


def test_a_named_data_folder_that_is_not_there_is_told_not_as_no_models(tmp_path, stories_path):
    """A mistyped --data-folder or $JAN_DATA_FOLDER was told as "no models yet" (`jan models list`), "no threads yet"
    (`jan threads list`) and "model 'X' not found: it is not a model in <folder> (see `jan models list`)" (`jan run`,
    `jan chat`, which also made the folder first): a user saw their models gone. Each now says the folder named is not
    there, and by what it was named; an existing folder still says "no models yet"."""
    from test_cli_helpers import cli_env, fails, jan, ok

    typo = tmp_path / "jann"
    by_env = cli_env(typo)
    by_flag = cli_env(tmp_path / "elsewhere")  # (the flag wins over the environment)
    listed = ok(jan("models", "list", env=by_env))
    assert f"the data folder {typo} (given by $JAN_DATA_FOLDER) does not exist" in listed.stderr, listed.stderr
    assert "no models yet" not in listed.stderr
    threads = ok(jan("threads", "list", env=by_env))
    assert f"the data folder {typo} (given by $JAN_DATA_FOLDER) does not exist" in threads.stderr, threads.stderr
    fails(jan("run", "stories260K", "hi", "--data-folder", typo, env=by_flag),
          f"the data folder {typo} (given by --data-folder) does not exist")
    fails(jan("chat", "stories260K", env=by_env, input="Hi\n"),
          f"the data folder {typo} (given by $JAN_DATA_FOLDER) does not exist")
    # a folder that is there but empty: as before
    (tmp_path / "fresh").mkdir()
    assert "no models yet" in ok(jan("models", "list", env=cli_env(tmp_path / "fresh"))).stderr
    fails(jan("run", "stories260K", "hi", env=cli_env(tmp_path / "fresh")), "(see `jan models list`)")


def test_every_empty_listing_says_so_and_tells_a_named_folder_that_is_not_there(tmp_path):
    """`jan mcp list` printed a header alone (no line said there were none, nor what to do), and `jan files list` of
    a mistyped --data-folder said "no files uploaded yet", where `jan models list` and `jan threads list` say the
    folder named is not there. Every listing now says both, alike; --json stays [] and nothing is made."""
    import json

    from test_cli_helpers import cli_env, jan, ok

    typo = tmp_path / "jann"
    (tmp_path / "fresh").mkdir()
    for group in ("models", "threads", "files", "mcp"):
        listed = ok(jan(group, "list", env=cli_env(typo)))
        assert f"the data folder {typo} (given by $JAN_DATA_FOLDER) does not exist" in listed.stderr, (group, listed)
        assert "yet" not in listed.stderr and listed.stdout == "", (group, listed)
        empty = ok(jan(group, "list", env=cli_env(tmp_path / "fresh")))
        assert "yet" in empty.stderr and empty.stdout == "", (group, empty)  # "no MCP servers yet: ..."
        assert json.loads(ok(jan(group, "list", "--json", env=cli_env(typo))).stdout) == []
    assert not typo.exists()


def test_a_damaged_extension_settings_file_is_told_by_a_local_command(tmp_path, stories_path):
    """An extension's settings.json that is no JSON is left in place and its defaults used: `jan serve` logs it, but
    `jan run` (a process that shows no log) said nothing (and moved the user's file aside, so that a hand edit's one
    typo lost every value). It says which extension's settings, each time until the file is repaired."""
    from test_cli_helpers import cli_env, jan, ok

    data = tmp_path / "data"
    settings = data / "settings" / "llamacpp" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"n_ctx": ')
    result = ok(jan("run", stories_path, "--raw", "Once", "-n", "2", env=cli_env(data)))
    assert "extension 'llamacpp'" in result.stderr and "left as it is" in result.stderr, result.stderr
    assert settings.read_text() == '{"n_ctx": ' and not list(settings.parent.glob("*.corrupt*"))  # left in place
    again = ok(jan("run", stories_path, "--raw", "Once", "-n", "2", env=cli_env(data)))
    assert "extension 'llamacpp'" in again.stderr, again.stderr  # still damaged: told again
    settings.write_text('{}')
    fixed = ok(jan("run", stories_path, "--raw", "Once", "-n", "2", env=cli_env(data)))
    assert "llamacpp" not in fixed.stderr, fixed.stderr


def test_a_disabled_built_in_service_is_told_with_how_to_enable_it(tmp_path, stories_path):
    """With the `models` (or `conversational`) extension disabled, `jan run` said "No enabled extension manages models
    (enable 'models')" and left the user to find how; the engine's own message gives the command. Now both do."""
    from test_cli_helpers import cli_env, fails, jan, ok

    env = cli_env(tmp_path / "data")
    ok(jan("models", "import", stories_path, env=env))
    ok(jan("extensions", "disable", "models", env=env))
    fails(jan("run", "stories260K", "hi", "-n", "2", env=env), "manages models", "`jan extensions enable models`")


def test_a_prompt_past_the_context_names_the_flag_that_makes_it_larger(tmp_path, stories_path):
    """`jan run` of a prompt longer than the context said "use a larger context (ctx_len)" (a model.json key the
    user never typed) and, for --raw, gave no way at all; in this process the context is -c/--ctx-size's."""
    from test_cli_helpers import cli_env, fails, jan

    env = cli_env(tmp_path / "data")
    long = "word " * 300  # ~900 tokens past a 256-token context
    for raw in ([], ["--raw"]):
        said = fails(jan("run", stories_path, *raw, "-c", "256", "-n", "2", env=env, input=long),
                     "context holds 256", "larger context (-c/--ctx-size)")
        assert "ctx_len" not in said, said


def test_a_context_past_memory_is_told_in_the_flag_that_gave_it(tmp_path, stories_path):
    """`jan run -c N` past memory said "--ctx-size: ... use a smaller n_ctx (or fewer slots), or leave it unset": the
    engine's name and slots (one, here) beside the flag; now the flag to change (jan bench's likewise, its own)."""
    from test_cli_helpers import cli_env, fails, jan

    env = cli_env(tmp_path / "data")
    for command in (["run", stories_path, "hi"], ["chat", stories_path]):  # (2**31 tokens: over a terabyte of KV)
        said = fails(jan(*command, "-c", "2147483647", "-n", "2", env=env, input=""),
                     "--ctx-size: a context of 2147483647 tokens",
                     "use a smaller -c/--ctx-size, or leave it unset to fit the free memory")
        assert "n_ctx" not in said and "ctx_len" not in said and "fewer slots" not in said, said


def test_jan_help_prints_a_commands_help_as_ollama_help_does():
    """`jan help` was "No such command 'help'" (exit 2), where `ollama help`, `git help` and `cargo help` print the
    help of the tool or of a command. It is the help `--help` prints, through an alias too."""
    from click.testing import CliRunner

    from jan.cli import main

    runner = CliRunner()

    def out(*args: str):
        result = runner.invoke(main, list(args), prog_name="jan")
        return result.exit_code, result.output

    assert out("help") == out("--help") and out("help")[0] == 0
    assert out("help", "models", "import") == out("models", "import", "--help")
    assert out("help", "models", "remove") == out("models", "rm", "--help")
    assert "help" in out("--help")[1]
    for args, says in ((["modls"], "Did you mean 'models'?"), (["models", "lst"], "Did you mean 'list'?"),
                       (["run", "x"], "`jan run` has no commands of its own")):
        code, text = out("help", *args)
        assert code == 2 and says in text, (args, text)
