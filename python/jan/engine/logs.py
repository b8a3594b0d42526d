"""Forward llama.cpp's log lines (collected natively) to Python ``logging``.

The native side never calls into Python from its own threads, so lines wait
in a buffer until one of these drains happens: after a model loads, when a
request finishes, or whenever ``forward_native_logs`` is called.
"""

from __future__ import annotations

import logging

from jan import _engine

logger = logging.getLogger("jan.llama")

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5.
# llama.cpp's INFO is a page of tensor listings per load: DEBUG for us.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR, 5: logging.DEBUG}


def forward_native_logs() -> list[tuple[int, str]]:
    """Emit buffered llama.cpp lines to the ``jan.llama`` logger; returns them as (logging level, text)."""
    records = [(_LEVELS.get(level, logging.INFO), text) for level, text in _engine.drain_logs()]
    for level, text in records:
        logger.log(level, "%s", text)
    return records
