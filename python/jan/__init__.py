"""jan: a ChatGPT alternative that runs entirely on your own computer.

>>> import jan
>>> model = jan.Model("stories260K.gguf")
>>> print(model.generate("Once upon a time", max_tokens=30, temperature=0).text)
"""

from __future__ import annotations

import logging

from jan.errors import (
    ContextOverflowError,
    EngineError,
    JanError,
    BadRequestError,
    DocumentError,
    MediaError,
    ModelClosedError,
    ModelFileError,
    ModelLoadError,
    ModelNotFoundError,
    QueueFullError,
)
from jan.engine import Chunk, Completion, Engine, Model, ModelInfo, ModelPool, Request, TokenLogprob, TopLogprob, Usage, Vocabulary

__version__ = "0.1.0"

# A library configures no output of its own; applications decide (logging.basicConfig, jan serve).
logging.getLogger("jan").addHandler(logging.NullHandler())


def system_info() -> dict:
    """llama.cpp version and build, compiled backends, devices (with memory) and CPU features."""
    from jan import _engine

    info = _engine.system_info()
    info["jan_version"] = __version__
    return info


__all__ = [
    "Chunk",
    "Completion",
    "ContextOverflowError",
    "DocumentError",
    "Engine",
    "EngineError",
    "JanError",
    "MediaError",
    "Model",
    "ModelClosedError",
    "ModelInfo",
    "BadRequestError",
    "ModelFileError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelPool",
    "QueueFullError",
    "Request",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
    "Vocabulary",
    "system_info",
]
