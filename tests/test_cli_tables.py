"""A long free-text cell (an error, a description, a command line) widens no row of a plain (piped) table.

A plain table pads each column to its longest cell: `jan extensions list` put each failed extension's error in its
STATE column, and every row of the table was as wide as the longest error. Errors are told whole after the table
(on stderr, one a line); free-text columns are clipped (``--json`` gives every value whole)."""

from __future__ import annotations

from jan.cli.common import FREE_TEXT_WIDTH, print_table

LONG_ERROR = "import failed: ModuleNotFoundError:" + " no module named 'x'" * 12


def _column_width(header: str, after: str, stdout: str) -> int:
    """How many characters the column ``header`` takes in a plain table (to where the column ``after`` starts)."""
    first = stdout.splitlines()[0]
    return first.index(after) - first.index(header)


def test_notes_go_after_the_table_and_widen_nothing(capsys):
    print_table(["NAME", "STATE", "DESCRIPTION"],
                [["a", "failed", "x" * 500], ["bb", "loaded", "short"]],
                max_widths={"DESCRIPTION": FREE_TEXT_WIDTH}, notes=[("a", f"failed: {LONG_ERROR}")])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3 and max(len(line) for line in lines) == len("NAME  failed  ") + FREE_TEXT_WIDTH
    assert lines[1].endswith("…") and LONG_ERROR not in out
    assert err.splitlines() == [f"jan: a: failed: {LONG_ERROR}"]  # (whole)


def test_mcp_lists_an_invalid_entrys_error_after_the_table(capsys):
    from jan.cli.mcp import _show_servers

    servers = [{"name": "fine", "transport": "stdio", "target": "python -m server " + "--flag " * 40,
                "enabled": True, "state": "running", "tools": [1, 2]}]
    _show_servers(servers, {"broken": LONG_ERROR}, None, as_json=False)
    out, err = capsys.readouterr()
    assert LONG_ERROR not in out and "broken: invalid: " + LONG_ERROR in err
    assert _column_width("STATE", "TOOLS", out) == len("running") + 2
    assert _column_width("COMMAND / URL", "ENABLED", out) <= FREE_TEXT_WIDTH + 2


def test_a_table_at_a_narrow_terminal_never_breaks_an_id(capsys, monkeypatch):
    """At a terminal rich fitted a table to its width by breaking words across lines, cropping the last column and, at
    12 columns, dropping every column but one: `jan threads list` showed no id whole (or none at all), and an id is
    what a user copies. Now a cell wraps at its spaces only (a free-text column may break a long word), and a
    terminal too narrow for that gets the plain columns, each line whole for the terminal to wrap."""
    import jan.cli.common as common

    monkeypatch.setattr(common, "stdout_is_tty", lambda: True)
    ids = ["thread_01M97X5YW96QE6VA39SMNJN8WD", "thread_01M97X3S3EASY2F1PDNDW2Q4XX"]
    rows = [[ids[0], "hello there", "stories260K", "2026-12-07 09:25"],
            [ids[1], "a title of some length " * 3, "all-MiniLM-L6-v2-f32", "2026-12-07 09:24"]]
    for width in (8, 12, 20, 40, 60, 70, 80, 100, 160):
        monkeypatch.setenv("COLUMNS", str(width))
        print_table(["ID", "TITLE", "MODEL", "UPDATED"], rows, max_widths={"TITLE": 40})
        out = capsys.readouterr().out
        for value in [*ids, "stories260K", "all-MiniLM-L6-v2-f32", "2026-12-07", "09:25", "UPDATED"]:
            assert value in out, (width, value, out)
        if "┃" in out:  # (rich's table: it fits the terminal)
            assert max(len(line) for line in out.splitlines()) <= width, (width, out)
