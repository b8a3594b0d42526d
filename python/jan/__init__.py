"""jan: a ChatGPT alternative that runs entirely on your own computer.

>>> import jan
>>> model = jan.Model("stories260K.gguf")
>>> print(model.generate("Once upon a time", max_tokens=30, temperature=0).text)
"""

# (no ``from __future__ import annotations``: it left its feature object as ``jan.annotations``; the annotations here
# are valid at run time as written)
import importlib as _importlib
import logging as _logging

from jan.errors import (
    ContextOverflowError,
    EngineError,
    JanError,
    BadRequestError,
    BadRequestTypeError,
    DocumentError,
    MediaError,
    ModelClosedError,
    ModelFileError,
    LoraAdapterError,
    ModelLoadError,
    ModelNotFoundError,
    QueueFullError,
)

__version__ = "0.1.0"

# A library configures no output of its own; applications decide (logging.basicConfig, jan serve).
_logging.getLogger("jan").addHandler(_logging.NullHandler())

# The engine's names are imported on first use (PEP 562), not by ``import jan``: loading the native engine, numpy's
# callers and the template machinery takes ~0.2-0.4 s, which every `jan` command paid before it could even parse its
# arguments or handle Ctrl-C (a Ctrl-C then printed an import traceback). ``jan.Model`` and ``from jan import Model``
# work as before.
_ENGINE_NAMES = frozenset({"Chunk", "Completion", "Engine", "Model", "ModelInfo", "ModelPool", "Ranking", "Request",
                           "TokenLogprob", "TopLogprob", "Usage", "Vocabulary"})


def __getattr__(name: str):
    if name in _ENGINE_NAMES:
        engine = _importlib.import_module("jan.engine")
        value = getattr(engine, name)
    elif name == "_engine":
        # ``from jan import _engine`` before anything imported jan.engine: the native module loaded as jan.engine
        # loads it (libstdc++ first, libgomp's spin count set), never bare
        _importlib.import_module("jan.engine")
        return _importlib.import_module("jan._engine")
    elif not name.startswith("__") and name.isidentifier():
        # (an identifier only: ``getattr(jan, "a.b", None)`` is an AttributeError as any module's, not an import of
        # ``jan.a`` that fails with ModuleNotFoundError past ``hasattr`` and ``getattr``'s default)
        try:  # a submodule not imported yet (``jan.engine.registry.ModelPoolBusyError`` after ``import jan``)
            return _importlib.import_module(f"jan.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"jan.{name}":
                raise
            raise AttributeError(f"module 'jan' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'jan' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ENGINE_NAMES)


def system_info() -> dict:
    """llama.cpp version and build, compiled backends, devices (with memory) and CPU features."""
    _importlib.import_module("jan.engine")  # the native module as the engine loads it (see __getattr__)
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
    "BadRequestTypeError",
    "ModelFileError",
    "LoraAdapterError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelPool",
    "QueueFullError",
    "Ranking",
    "Request",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
    "Vocabulary",
    "system_info",
]
