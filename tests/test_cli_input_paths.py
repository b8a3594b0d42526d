"""Every ``jan`` option or argument that names an input path says a missing one the same way: a runtime error (exit
1), one ``jan: error:`` line naming the option and the path, ``~`` expanded. Before, those checked by click
(``files upload PATH``, ``--mmproj``, ``--model-draft``, ``--allow-media-from``, a file given as ``--data-folder``)
were click's usage error (exit 2, "File '...' does not exist.") while the rest (``models import PATH``, ``--image``,
a MODEL path) were jan's exit 1 without the option's name."""

from __future__ import annotations

import pytest

from test_cli_helpers import cli_env, fails, jan

#: (command line with {P} for the missing path, how the error names the parameter, what it says of the path)
INPUT_PATHS = {
    "files upload PATH": (["files", "upload", "{P}"], "PATH", "no such file: {P}"),
    "models import PATH": (["models", "import", "{P}"], "PATH", "no such file: {P}"),
    "models import --mmproj": (["models", "import", "{STORIES}", "--mmproj={P}"], "--mmproj", "no such file: {P}"),
    "serve --model-draft": (["serve", "--model-draft={P}"], "--model-draft", "no such file: {P}"),
    "serve --allow-media-from": (["serve", "--allow-media-from={P}"], "--allow-media-from", "no such folder: {P}"),
    "run --image": (["run", "stories260K", "hi", "--image={P}"], "--image", "cannot read image '{P}'"),
    "run MODEL": (["run", "{P}", "hi"], "MODEL", "no such file: {P}"),
    "chat MODEL": (["chat", "{P}"], "MODEL", "no such file: {P}"),
    "bench MODEL": (["bench", "{P}"], "MODEL", "no such file: {P}"),
}


@pytest.mark.parametrize("name", list(INPUT_PATHS))
@pytest.mark.parametrize("spelled", ["absolute", "tilde"])
def test_a_missing_input_path_is_exit_1_naming_the_option_and_the_path(name, spelled, data, tmp_path, stories_path):
    args, label, said = INPUT_PATHS[name]
    env = cli_env(data)  # HOME is tmp_path: "~/..." is a path under it
    given = "~/missing.gguf" if spelled == "tilde" else str(tmp_path / "missing.gguf")
    expanded = str(tmp_path / "missing.gguf")
    result = jan(*[a.format(P=given, STORIES=stories_path) for a in args], env=env)
    assert result.returncode == 1, result.stderr
    err = fails(result, f"{label}: {said.format(P=expanded)}")
    assert err.startswith(f"jan: error: {label}: "), err
    assert "~" not in err and "Usage:" not in result.stderr


@pytest.mark.parametrize("name", [n for n in INPUT_PATHS if "folder" not in INPUT_PATHS[n][2]])
def test_a_missing_input_path_names_the_file_beside_it_that_was_meant(name, data, tmp_path, stories_path):
    """A path one letter or a case off a file that is there (``stories260k.gguf`` beside ``stories260K.gguf``,
    ``photo.jpg`` beside ``photo.jpeg``) is "no such file" with the file meant, as a model id one letter off is: before,
    the user was left to list the folder."""
    args, label, said = INPUT_PATHS[name]
    (tmp_path / "Missing.gguf").write_bytes(stories_path.read_bytes())
    given = str(tmp_path / "missing.gguf")
    result = jan(*[a.format(P=given, STORIES=stories_path) for a in args], env=cli_env(data))
    assert result.returncode == 1, result.stderr
    fails(result, f"{label}: {said.format(P=given)}", f": did you mean '{tmp_path / 'Missing.gguf'}'?")


def test_serve_model_path_missing_names_the_file_beside_it_that_was_meant(data, tmp_path, stories_path):
    (tmp_path / "stories260K.gguf").write_bytes(stories_path.read_bytes())
    result = jan("serve", "-p", "0", f"--model={tmp_path / 'stories260k.gguf'}", env=cli_env(data))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (f"jan: error: no such file: {tmp_path / 'stories260k.gguf'}: "
                                                      f"did you mean '{tmp_path / 'stories260K.gguf'}'?")


@pytest.mark.parametrize("args, label, wants", [
    (["threads", "list", "--data-folder={F}"], "--data-folder", "is a file, not a folder"),
    (["files", "upload", "{D}"], "PATH", "is a folder, not a file"),
    (["models", "import", "{STORIES}", "--mmproj={D}"], "--mmproj", "is a folder, not a file"),
    (["serve", "--model-draft={D}"], "--model-draft", "is a folder, not a file"),
    (["serve", "--allow-media-from={F}"], "--allow-media-from", "is not a folder"),
    (["threads", "export", "x", "-o", "{D}"], "--output", "is a folder, not a file"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_file_or_folder_in_the_wrong_place_is_exit_1_too(args, label, wants, data, tmp_path, stories_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x\n")
    a_dir = tmp_path / "somewhere"
    a_dir.mkdir()
    path = a_file if "{F}" in " ".join(args) else a_dir
    result = jan(*[a.format(F=a_file, D=a_dir, STORIES=stories_path) for a in args], env=cli_env(data))
    assert result.returncode == 1, result.stderr
    fails(result, f"{label}: {path} {wants}")


def test_serve_model_path_missing_names_the_expanded_path(data, tmp_path):
    """``serve -m`` is checked as the server starts (an id or a path): exit 1, in serve's own words, ~ expanded."""
    result = jan("serve", "-p", "0", "--model=~/missing.gguf", env=cli_env(data))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("jan: error: no such file: " + str(tmp_path / "missing.gguf")), result.stderr


def test_an_empty_path_stays_a_usage_error(data):
    """An empty value is the command line's own mistake (an unset shell variable): click's usage error, exit 2."""
    result = jan("files", "upload", "", env=cli_env(data))
    assert result.returncode == 2 and "must not be empty" in result.stderr


def test_a_draft_model_that_is_no_gguf_model_stops_serve_before_it_starts(data, tmp_path):
    """``serve --model-draft`` given a file that exists but is no GGUF model (a text file, a projector) started the
    server, and then every request to every model was a 400 about the draft: refused at start (exit 1, naming the
    flag), as ``--lora`` refuses a file that is no adapter."""
    notes = tmp_path / "notes.txt"
    notes.write_text("x\n")
    result = jan("serve", "-p", "0", f"--model-draft={notes}", env=cli_env(data), timeout=60)
    assert result.returncode == 1, result.stderr
    fails(result, f"--model-draft: {notes} is not a GGUF file")
    assert "listening" not in result.stdout + result.stderr
