"""Forward llama.cpp's log lines (collected natively) to Python ``logging``.

The native side never calls into Python from its own threads, so lines wait
in a buffer until one of these drains happens: after a model loads, when a
request finishes, or whenever ``forward_native_logs`` is called.
"""

from __future__ import annotations

import logging
import re

from jan import _engine

logger = logging.getLogger("jan.llama")

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5.
# llama.cpp's INFO is a page of tensor listings per load: DEBUG for us.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR, 5: logging.DEBUG}


#: llama.cpp's warnings that say nothing is wrong: a GGUF's special token id of 0xFFFFFFFF (-1) is the converter's
#: "this model has none" (llama.cpp then uses none: "using default id -1"), which stories260K's, TinyLlama's and many
#: others' files hold; warned of on every load (twice: the vocabulary is read once alone), it read to a server's
#: owner as a damaged model. DEBUG, as llama.cpp's other load chatter.
_UNSET_TOKEN = re.compile(r"bad special token: '[^']*' = 4294967295, using default id -1\s*$")


def _level(level: int, text: str) -> int:
    ours = _LEVELS.get(level, logging.INFO)
    return logging.DEBUG if ours == logging.WARNING and _UNSET_TOKEN.search(text) else ours


def forward_native_logs() -> list[tuple[int, str]]:
    """Emit buffered llama.cpp lines to the ``jan.llama`` logger; returns them as (logging level, text)."""
    records = [(_level(level, text), text) for level, text in _engine.drain_logs()]
    for level, text in records:
        logger.log(level, "%s", text)
    return records


# llama.cpp's last words on a failed load are its most generic ("llama_model_load_from_file_impl: failed to load
# model", libmtmd's "Failed to load CLIP model from PATH"); the line that says why comes before them.
_GENERIC_FAILURE = re.compile(r"(failed to load model( from .*)?|failed to load clip model from .*)$", re.IGNORECASE)
_LOAD_ERROR_PREFIX = re.compile(r"^\w+: error loading model: ")


def native_error_detail(records: list[tuple[int, str]]) -> str:
    """The line of llama.cpp's log (``records``, from :func:`forward_native_logs`) that says why a load failed:
    its last error that is not a bare "failed to load model" (``tensor 'blk.4.ffn_norm.weight' data is not within
    the file bounds, model is corrupted or incomplete``, ``gguf_init_from_reader: failed to read key-value pairs``),
    the last error when every one is; "" without any."""
    errors = [text.strip() for level, text in records if level >= logging.ERROR and text.strip()]
    telling = [text for text in errors if not _GENERIC_FAILURE.search(text)]
    line = (telling or errors or [""])[-1]
    return _LOAD_ERROR_PREFIX.sub("", line)
