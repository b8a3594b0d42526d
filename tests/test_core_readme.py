"""The complete example of python/jan/core/README.md runs as documented."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jan.core.interfaces

README = Path(jan.core.interfaces.__file__).resolve().parent.parent / "README.md"


def _example_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## 7. A complete example", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    module_source, usage_source = _example_blocks()[:2]
    (tmp_path / "jan_word_count.py").write_text(module_source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        exec(compile(usage_source, "README usage example", "exec"), {"__name__": "readme_example"})
    finally:
        sys.modules.pop("jan_word_count", None)
    assert capsys.readouterr().out.split("\n")[:2] == ["3", "hi there"]


def test_readme_mentions_every_hook_and_interface():
    text = README.read_text(encoding="utf-8")
    for name in ("add_route", "add_subapp", "register_engine", "subscribe", "contribute_settings", "provide",
                 "ConversationalExtension", "InferenceExtension", "ModelExtension", "MonitoringExtension",
                 "AssistantExtension", '[project.entry-points."jan.extensions"]', "requires_api", "aclose"):
        assert name in text, name
