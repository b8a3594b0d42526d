"""The local llama.cpp inference engine (``engine: "llama.cpp"`` in model.json)."""

from jan.extensions.llamacpp.extension import LlamaCppExtension

__all__ = ["LlamaCppExtension"]
