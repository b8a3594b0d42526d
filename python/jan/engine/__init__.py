"""The engine façade: typed Python API over the native ``jan._engine`` module."""

import sys

if sys.platform.startswith("linux"):
    # Some CUDA toolchains leave libstdc++ symbols exported from libggml-cuda; unless the real
    # libstdc++ is in the global symbol scope first, libllama binds to those copies and crashes
    # in its first std::ostream call (seen with nvcc 13 on an H100 image). Loading it globally
    # before the native module is harmless everywhere else.
    import ctypes

    try:
        ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass

from jan.engine.openmp import spin_count_for_load

with spin_count_for_load():  # libgomp, loaded with the native module, reads its spin count once (openmp.py)
    from jan import _engine  # noqa: F401

from jan.engine.model import Model, ModelInfo, Ranking, Vocabulary
from jan.engine.registry import Engine, ModelPool
from jan.engine.request import Request
from jan.engine.results import Chunk, Completion, TokenLogprob, TopLogprob, Usage

__all__ = ["Chunk", "Completion", "Engine", "Model", "ModelInfo", "ModelPool", "Ranking", "Request", "TokenLogprob", "TopLogprob", "Usage", "Vocabulary"]
