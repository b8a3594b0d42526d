"""Every curl example in the docs that posts a JSON body to jan's own API says it is JSON.

jan answers 415 to a body without ``Content-Type: application/json`` on its own
routes (not the Ollama dialect's ``/api/*``, which accepts any), so an example
without the header fails for whoever copies it.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _curl_commands(text: str) -> list[str]:
    """curl commands with their backslash continuations and multi-line quoted bodies."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        if re.search(r"\bcurl\s", lines[i]):
            cmd = lines[i]
            while (cmd.rstrip().endswith("\\") or cmd.count("'") % 2) and i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
            out.append(cmd)
        i += 1
    return out


def test_json_bodies_are_sent_with_a_json_content_type():
    missing = []
    for doc in DOCS:
        for cmd in _curl_commands(doc.read_text(encoding="utf-8")):
            posts_json = re.search(r"\s(-d|--data|--data-raw)\s+'\s*[{\[]", cmd)
            ollama = re.search(r"/api/", cmd)
            if posts_json and not ollama and not re.search(r"content-type:\s*application/json", cmd, re.I):
                missing.append(f"{doc.name}: {cmd.splitlines()[0]}")
    assert not missing, missing
