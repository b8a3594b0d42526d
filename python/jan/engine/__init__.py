"""The engine façade: typed Python API over the native ``jan._engine`` module."""

from jan.engine.model import Model, ModelInfo
from jan.engine.registry import Engine
from jan.engine.request import Request
from jan.engine.results import Chunk, Completion, TokenLogprob, TopLogprob, Usage

__all__ = ["Chunk", "Completion", "Engine", "Model", "ModelInfo", "Request", "TokenLogprob", "TopLogprob", "Usage"]
