"""Helpers for jan's tests and benchmarks (not used at runtime).

``jan.testing.gguf_models`` writes small GGUF model files with the ``gguf``
package. That package is a test/benchmark extra: it is imported lazily, so
importing ``jan.testing`` never requires it.
"""

from __future__ import annotations

from . import gguf_models as _gguf_models
from .gguf_models import (
    bench_model_path,
    gguf_param_count,
    llama_param_count,
    models_dir,
    repo_root,
    vocab_path,
    write_bench_llama,
    write_llama_from_vocab,
    write_not_gguf,
    write_phi3_chat_model,
    write_tool_template_model,
    write_truncated_copy,
)

# Everything imported above, in gguf_models' order (one list of names, not two to keep in step).
__all__ = [name for name in _gguf_models.__all__ if name in globals()]
