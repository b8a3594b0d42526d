"""Everything a model load can be judged on without loading it, for :class:`jan.ModelPool`.

A pool at its bound unloads a model to make room for the next; a load that fails after that unloaded a
healthy model for nothing (the pool loads it again, which costs its load time). So before anything is
unloaded, the load is checked as :class:`jan.Model` would check it — its options, each of its files
(there, readable, GGUF), their headers (llama.cpp reads them vocab-only: no weights) and what the headers
rule out (KV cache types, a projector on a model that cannot generate). What is left to fail after that
(memory, a backend, weights llama.cpp refuses) is rare.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from jan.engine.gguf_file import check_gguf_file, file_path
from jan.engine.header import read_header
from jan.engine.kv_cache import cache_type_problem, is_embedding_metadata
from jan.engine.model import (COMPANION_FILES, LOAD_OPTION_DEFAULTS, check_load_options, check_lora_files, lora_files,
                              lora_on_embedding_model)
from jan.errors import ModelLoadError, ModelSettingError


def check_load(path: str | os.PathLike, options: Mapping[str, object]) -> None:
    """Raise what loading ``path`` with these :class:`jan.Model` options would, as far as that can be told
    without loading it: TypeError (an unknown option), ValueError naming the option (a bad value, two that
    contradict each other), :class:`~jan.ModelFileError` (a file missing, unreadable or no GGUF llama.cpp
    reads), :class:`~jan.ModelSettingError` (cache types the model cannot hold). Blocking (reads headers)."""
    opts = {**LOAD_OPTION_DEFAULTS, **options}
    check_load_options(opts)
    path = file_path(path, "path")
    check_gguf_file(path, "model file")
    if opts["vocab_only"]:
        return
    companions = {name: str(Path(opts[name])) for name in COMPANION_FILES if opts.get(name) is not None}
    for name, file in companions.items():
        check_gguf_file(file, COMPANION_FILES[name], f"{name}: ")
    lora = lora_files(opts["lora"]) if opts.get("lora") is not None else ()
    check_lora_files(lora)
    meta = read_header(path)
    embedding = opts["embedding"] if opts["embedding"] is not None else is_embedding_metadata(meta)
    if embedding:
        model_id = opts["model_id"] or Path(path).stem
        if "mmproj" in companions:
            raise ModelLoadError(f"model '{model_id}' cannot generate, so it takes no projector (mmproj)")
        if lora:
            raise lora_on_embedding_model(model_id)
        return  # no KV cache, and no draft model is loaded for it
    _check_cache_types(meta, opts)
    if "draft_model" in companions:
        _check_cache_types(read_header(companions["draft_model"], "draft_model: "), opts, "draft_model: ")


def _check_cache_types(meta: Mapping[str, str], opts: Mapping[str, object], what: str = "") -> None:
    problem = cache_type_problem(meta, opts["cache_type_k"] or "f16", opts["cache_type_v"] or "f16",
                                 opts["flash_attn"])
    if problem is not None:
        raise ModelSettingError(f"{what}{problem}", param=problem.option, code="unsupported_cache_type")
