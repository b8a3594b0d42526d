"""An error or warning line of `jan` echoes what was typed or found (a model id, a file name, a chat command): a NUL
or an ESC sequence in it reached the terminal raw, where the terminal acts on it (``\\x1b[2J`` clears the screen).
Every ``jan: error:`` and ``jan:`` warning line shows them escaped (``\\x1b``, what ``repr`` writes); tab and newline
stay as they are."""

from __future__ import annotations

import pytest

from jan.cli.common import shown_controls

from test_cli_helpers import cli_env, jan

RAW = "\x00\x07\x1b\x7f\x9b"


def test_control_characters_are_written_escaped_tab_and_newline_kept():
    assert shown_controls("a\x1b[31mb\x00c\td\ne\x9b") == "a\\x1b[31mb\\x00c\td\ne\\x9b"
    assert shown_controls("plain 'text' é ✓") == "plain 'text' é ✓"


@pytest.mark.parametrize("args", [("models", "show", "ab\x1b[2Jcd"), ("models", "delete", "x\x07y"),
                                  ("threads", "show", "thread_\x1b]0;title\x07")],
                         ids=["models-show", "models-delete", "threads-show"])
def test_an_error_line_shows_what_was_typed_escaped(tmp_path, args):
    result = jan(*args, env=cli_env(tmp_path / "data"))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("jan: error: "), result.stderr
    assert not any(ch in result.stderr for ch in RAW), repr(result.stderr)
    assert "\\x1b" in result.stderr or "\\x07" in result.stderr, result.stderr
