"""Sizes are said in the unit they are counted in: jan's limits are powers of two (512 MiB = 536,870,912 bytes of
upload, 32 MiB of document, ...), and "512 MB" said 512,000,000, 4.9% less than the limit. Every --help, the
README and docs/ say KiB/MiB/GiB (a decimal MB only with its MiB beside it), and a refusal that names a size does
too."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from test_cli_helpers import leaf_commands

ROOT = Path(__file__).resolve().parents[1]
#: A number with a decimal unit (kB, KB, MB, GB), not one of the binary ones.
DECIMAL = re.compile(r"\b\d[\d.,]*\s?(?:[kK]B|MB|GB)\b")


def _unconverted(text: str) -> list[str]:
    """The decimal sizes in ``text`` that no MiB conversion follows (``40 MB (38.1 MiB)`` passes)."""
    return [m.group(0) for m in DECIMAL.finditer(text) if "MiB" not in text[m.end():m.end() + 16]]


@pytest.mark.parametrize("name", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                      for p in (ROOT / "docs").glob("*.md"))])
def test_the_docs_say_binary_units(name):
    assert _unconverted((ROOT / name).read_text()) == []


def test_every_help_says_binary_units():
    found = {}
    for name, command in leaf_commands():
        text = command.get_help(click.Context(command, info_name=name))
        if _unconverted(text):
            found[name] = _unconverted(text)
    assert found == {}


def test_a_document_refused_for_its_size_says_mib():
    from jan.services import documents

    assert documents._amount(documents.MAX_PAGE_CONTENT_BYTES) == "8 MiB"
    assert documents._amount(1000) == "1000 bytes"
