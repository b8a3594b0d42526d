"""The README's examples print what the README says they print (issue 10, item 24)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from server_helpers import start_server

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    return README.read_text(encoding="utf-8").split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _run(source: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README example", "exec"), {"__name__": "readme_example"})
    return out.getvalue()


def _promised(section: str) -> list[str]:
    return re.findall(r"prints `(.*?)`", section, flags=re.S)


def test_python_example_prints_what_the_readme_says(stories_path):
    section = _section("Use it from Python")
    source = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    source = source.replace('"../shared/models/stories260K.gguf"', repr(str(stories_path)))
    first_line = _run(source).split("\n")[0]
    promised = _promised(section)[0].removesuffix("...").strip()
    assert first_line.startswith(promised), (first_line, promised)


def test_openai_example_prints_what_the_readme_says(tmp_path, stories_path):
    section = _section("Run the server")
    source = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    srv = start_server(tmp_path, [stories_path])
    try:
        out = _run(source.replace("http://127.0.0.1:1337", srv.base_url))
    finally:
        srv.stop()
    assert out.strip() == _promised(section)[0]
    # and what it says about chatting with a model without a template is what the server sends
    assert 'X-Jan-Chat-Template: chatml; fallback="the model has no chat template"' in section
