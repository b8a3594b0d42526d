"""Output into a pipe whose reader has gone (`jan --help | head -0`, `jan models list | head -1` once head has what it
wants): status 0, no traceback nor error on stderr, whatever prints it. Before, what click prints as it parses the arguments (`jan
--help`, `jan --version`) ended with status 1 there (click's own answer to EPIPE), where the commands' output ended 0."""

from __future__ import annotations

import os
import subprocess

import pytest

from test_cli_helpers import JAN, cli_env


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["models", "--help"], ["help", "models"],
                                  ["models", "list"], ["models", "list", "--json"], ["info"], ["info", "--json"]],
                         ids=" ".join)
def test_a_reader_gone_is_no_error(data, stories_path, args):
    from jan.store import DataFolder

    DataFolder(data).models.import_gguf(stories_path, mode="reference")  # (a listing with a row to write)
    read, write = os.pipe()
    os.close(read)  # (the reader is gone before anything is written: every write fails with EPIPE)
    try:
        result = subprocess.run([*JAN, *args], env=cli_env(data), stdout=write, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, timeout=120)
    finally:
        os.close(write)
    assert result.returncode == 0, result.stderr
    for said in ("Traceback", "Exception ignored", "Broken pipe", "BrokenPipeError"):
        assert said not in result.stderr, result.stderr
