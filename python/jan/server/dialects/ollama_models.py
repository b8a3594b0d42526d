"""jan's models as Ollama describes models: ``/api/tags`` entries, ``/api/show``, ``/api/ps``.

The models are the model service's (the same list ``/v1/models`` shows); what
Ollama reports from its manifests (format, family, parameter size,
quantization, template, capabilities) is read from the GGUF file's header
(vocab-only, off the event loop, cached per file version).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import jan
from jan.engine.header import read_info
from jan.file_stamps import FileVersion, file_version
from jan.extensions.models.gguf_info import gguf_arrays, gguf_tensors, gguf_values
from jan.services.abilities import Abilities, model_abilities
from jan.services.model_prompt import model_prompt_problem
from jan.services.models import WEIGHT_KEYS, capabilities as model_capabilities, text_setting
from jan.store.models import API_FORMAT, model_format

__all__ = ["GGUFDetails", "capabilities", "context_window", "format_time", "gguf_details", "listed_name", "llama_meta",
           "model_digest",
           "load_parameters", "model_entry", "parameter_size", "running_entry", "show"]

# llama.cpp's ``general.file_type`` values (enum llama_ftype) and their names as Ollama spells them
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE",
}

#: The bit llama.cpp adds to a type it guessed (a file without ``general.file_type``).
LLAMA_FTYPE_GUESSED = 1024


@dataclass(frozen=True)
class GGUFDetails:
    """What Ollama's ``details`` and ``/api/show`` need from a GGUF header."""

    architecture: str = ""
    n_params: int = 0
    file_type: str = ""
    chat_template: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    has_fim: bool = False
    embedding: bool = False
    # (llama-server's model ``meta``: :func:`llama_meta`)
    vocab_type: int = 0
    n_vocab: int = 0
    size_bytes: int = 0
    ftype: str = ""


def _from_info(info: jan.ModelInfo) -> GGUFDetails:
    meta = dict(info.metadata)
    arch = info.architecture
    # the header's general.file_type, else the type llama.cpp guesses from the tensors (as a load does: the same
    # before a load as after), without llama.cpp's "guessed" mark
    file_type = FILE_TYPES.get(info.file_type & ~LLAMA_FTYPE_GUESSED, "") if info.file_type >= 0 else ""
    special = info.special_tokens
    return GGUFDetails(
        architecture=arch, n_params=info.n_params, file_type=file_type, chat_template=info.chat_template,
        metadata=meta, has_fim=all(k in special for k in ("fim_pre", "fim_suf", "fim_mid")),
        embedding=bool(meta.get(f"{arch}.pooling_type")) or "bert" in arch,
        vocab_type=info.vocab_type, n_vocab=info.n_vocab, size_bytes=info.size_bytes, ftype=info.ftype)


def gguf_details(path: str | None) -> GGUFDetails:
    """The header of the GGUF at ``path`` (blocking: call off the event loop); empty details
    when there is no readable file (a remote model, a download still running)."""
    if not path:
        return GGUFDetails()
    try:
        return _from_info(read_info(path))  # (the header is read once per file version)
    except (OSError, jan.ModelLoadError, ValueError):
        return GGUFDetails()


def parameter_size(n: int) -> str:
    """``7.6B``, ``22.6M``, ``292.8K`` as Ollama shows parameter counts."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + unit
    return str(n) if n else ""


def format_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _modified_at(model: dict[str, Any], path: str | None, written: float | None = None) -> str:
    """Ollama's ``modified_at``: when the model was last written (``written``: its model.json's time, as Ollama's is
    its manifest's: imported, pulled, created, copied or changed), else its weights file's time, else the
    model.json's ``created``. (The weights' own time is no model's: a copy or a model created from another shares
    the file, and a file imported keeps the time it was downloaded or built.)"""
    if written is not None:
        with contextlib.suppress(OverflowError, OSError, ValueError):
            return format_time(datetime.fromtimestamp(written, timezone.utc))
    if path:
        try:
            return format_time(datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc))
        except OSError:
            pass
    created = model.get("created")
    if isinstance(created, (int, float)) and not isinstance(created, bool) and created > 0:
        seconds = created / 1000 if created > 1e11 else created  # Jan writes milliseconds
        with contextlib.suppress(OverflowError, OSError, ValueError):  # a hand-edited year 10^290: unknown
            return format_time(datetime.fromtimestamp(seconds, timezone.utc))
    return format_time(datetime.fromtimestamp(0, timezone.utc))


def model_digest(model: dict[str, Any], path: str | None) -> str:
    """A stable identifier of this model version: sha256 of its id, its model.json as stored (the files resolving it
    found left out) and its file's version (real path, device, inode, mtime, size:
    :func:`jan.file_stamps.file_version`). Ollama's digest is its manifest's hash, which a create that changes only
    the system prompt or a parameter changes too; hashing gigabytes for a listing is not worth it."""
    h = hashlib.sha256(model["id"].encode())
    stored = {k: v for k, v in model.items() if k not in WEIGHT_KEYS}
    h.update(json.dumps(stored, sort_keys=True, default=str).encode())
    if path:
        try:
            real, stamp = file_version(path)
            h.update(f"{real}:{':'.join(map(str, stamp))}".encode())
        except (OSError, ValueError):
            pass
    return h.hexdigest()


def parent_model(model: dict[str, Any]) -> str:
    """Ollama's ``details.parent_model``, kept in the model.json's ``parent_model`` by ``/api/create`` (a copy keeps
    its source's): the model it was created ``from``, as Ollama names it (``stories260K:latest``), or for one created
    from ``files`` the weights' name as the create gave it (``model.gguf``), as Ollama's layers record them; "" for
    a model imported or downloaded."""
    parent = model.get("parent_model")
    return parent if isinstance(parent, str) else ""


def _details(model: dict[str, Any], gguf: GGUFDetails, *, lengths: bool = False, parent: bool = True) -> dict[str, Any]:
    """Ollama's ``details``; with ``lengths`` (``/api/tags``, whose entries have them as Ollama's list does) the
    training context's and the embedding's sizes from the GGUF header, each left out where unknown (Go's
    ``omitempty``: a remote model). ``parent_model`` is always there (Ollama's has no ``omitempty``); without
    ``parent`` (``/api/ps``, whose details Ollama fills without it) it is ``""``."""
    family = gguf.architecture or (model.get("metadata") or {}).get("architecture") or ""
    fmt = model_format(model)
    sizes = {}
    if lengths:
        sizes = {key: n for key in ("context_length", "embedding_length") if (n := _header_int(gguf, key))}
    return {
        "parent_model": parent_model(model) if parent else "",
        # a model another server's API answers has no file format: "" as Ollama tells its cloud models (which
        # ``remote_model`` names, :func:`remote_fields`), not the "gguf" every model.json was given
        "format": "" if fmt == API_FORMAT else fmt or ("gguf" if gguf.architecture else ""),
        "family": family,
        "families": [family] if family else None,
        "parameter_size": parameter_size(gguf.n_params),
        "quantization_level": gguf.file_type,
        **sizes,
    }


def _size(model: dict[str, Any], path: str | None) -> int:
    if path:
        try:
            return os.path.getsize(path)
        except OSError:
            pass
    size = (model.get("metadata") or {}).get("size")
    return int(size) if isinstance(size, (int, float)) else 0


def listed_name(model_id: str) -> str:
    """A model's name as Ollama lists it: with its tag, which for a jan model (ids have none) is Ollama's default,
    ``latest``. Clients match names as Ollama writes them — LangChain's ``validate_model_on_init`` takes ``llama3``
    for a listed ``llama3:latest``, others append ``:latest`` to a bare name before comparing — so a bare id here
    would not be found by them; sent back, the tag is dropped again (:func:`ollama_requests.model_id`)."""
    return f"{model_id}:latest"


def remote_fields(model: dict[str, Any]) -> dict[str, Any]:
    """Ollama's ``remote_model`` and ``remote_host`` for a model another server's API answers (a remote engine's),
    as Ollama marks its cloud models in ``/api/tags``, ``/api/show``, ``/api/ps`` and each ``/api/chat`` and
    ``/api/generate`` object: the name that server knows it by (``settings.model``, else its id), and where it is
    (the origin of the model.json's ``settings.base_url``, ``scheme://host:port`` as Ollama writes
    ``https://ollama.com:443``; never its path or credentials; left out where the model.json names none, the
    remote extension's own base_url serving it). Nothing for a model of a local file."""
    if model_format(model) != API_FORMAT:
        return {}
    settings = model.get("settings") or {}
    upstream = settings.get("model") if isinstance(settings, dict) else None
    out = {"remote_model": upstream if isinstance(upstream, str) and upstream else model["id"]}
    host = _origin(settings.get("base_url") if isinstance(settings, dict) else None)
    if host:
        out["remote_host"] = host
    return out


def _origin(url: Any) -> str | None:
    """``scheme://host:port`` of an http(s) URL (the scheme's port where it names none); None for anything else."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def model_entry(model: dict[str, Any], path: str | None, *, written: float | None = None,
                capabilities: list[str] | None = None) -> dict[str, Any]:
    """One ``/api/tags`` entry (blocking: reads the file's header). ``name`` and ``model`` are the jan model id
    with Ollama's default tag (:func:`listed_name`), which is what clients send back; ``written``: when its
    model.json was written (seconds since the epoch, :func:`_modified_at`); ``capabilities``: what it can do
    (``/api/show``'s, as Ollama's list has them; left out when none, as Go's ``omitempty`` does)."""
    gguf = gguf_details(path)
    entry = {
        "name": listed_name(model["id"]),
        "model": listed_name(model["id"]),
        **remote_fields(model),
        "modified_at": _modified_at(model, path, written),
        "size": _size(model, path),
        "digest": model_digest(model, path),
        "details": _details(model, gguf, lengths=True),
    }
    if capabilities:
        entry["capabilities"] = list(capabilities)
    return entry


#: What Ollama makes of a negative ``keep_alive`` (its "forever"): Go's longest ``time.Duration``, 2^63 - 1 ns (about
#: 292 years), which its ``/api/ps`` adds to now for ``expires_at``.
FOREVER = timedelta(microseconds=(2 ** 63 - 1) // 1000)


def running_entry(model: dict[str, Any], path: str | None, status: dict[str, Any]) -> dict[str, Any]:
    """One ``/api/ps`` entry from a loaded model's engine status (``expires_in`` seconds or none:
    it stays loaded: Ollama's own "forever", its longest duration from now, :data:`FOREVER`). The fields of Ollama's
    ``ProcessModelResponse`` and no others: no ``remote_model``/``remote_host`` (which its ``/api/tags`` and
    ``/api/show`` have), and ``details`` without ``parent_model``'s value or the header's lengths, as Ollama's
    ``/api/ps`` fills them."""
    gguf = gguf_details(path)
    expires_in = status.get("expires_in")
    now = datetime.now(timezone.utc)
    if expires_in is None or expires_in == float("inf"):
        expires = now + FOREVER
    else:
        expires = now + timedelta(seconds=float(expires_in))
    # Ollama's size is all the memory the loaded model takes (its KV cache too), not the file's: the weights (and
    # projector), the KV cache, and a draft model's weights and cache
    size = (status.get("memory_bytes") or _size(model, path)) + sum(
        status.get(key) or 0 for key in ("kv_cache_bytes", "draft_memory_bytes", "draft_kv_cache_bytes"))
    return {
        "name": listed_name(model["id"]),
        "model": listed_name(model["id"]),
        "size": size,
        "digest": model_digest(model, path),
        "details": _details(model, gguf, parent=False),
        "expires_at": format_time(expires),
        "size_vram": size_vram(size, status.get("n_gpu_layers"), gguf),
        "context_length": status.get("n_ctx") or 0,
    }


def size_vram(size: int, gpu_layers: Any, gguf: GGUFDetails) -> int:
    """Ollama's ``size_vram``: the bytes of a loaded model's ``size`` in GPU memory. llama.cpp offloads
    ``gpu_layers`` of the model's ``block_count`` layers plus its output layer (-1, or more than there are: all of
    them), each layer's weights and KV cache with it; so a model that is partly offloaded has that share of its size
    there (an estimate, as Ollama's own is), none with no layer offloaded, all of it with every layer."""
    if not isinstance(gpu_layers, int) or isinstance(gpu_layers, bool) or gpu_layers == 0:
        return 0
    layers = _header_int(gguf, "block_count") + 1  # (and the output layer)
    if gpu_layers < 0 or layers <= 1 or gpu_layers >= layers:
        return size
    return size * gpu_layers // layers


def _typed(value: str) -> Any:
    """llama.cpp renders GGUF values as text; Ollama's ``model_info`` has numbers and booleans."""
    if value in ("true", "false"):
        return value == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def capabilities(model: dict[str, Any], gguf: GGUFDetails, status: dict[str, Any] | None = None,
                 abilities: Abilities | None = None) -> list[str]:
    """Ollama's capability names for a model, its GGUF's header and what its files say it can do (the model
    service's one answer, :func:`jan.services.models.capabilities`; ``status``: a loaded model's engine status;
    ``abilities``: :func:`jan.services.abilities.model_abilities`, None for a model with no GGUF to read). Blocking
    (it may detect the template's format: a render): call it off the event loop."""
    return model_capabilities(model, abilities, chat_template=gguf.chat_template, embedding=gguf.embedding,
                              fim=gguf.has_fim, loaded=(status or {}).get("capabilities"))


def context_window(gguf: GGUFDetails, status: dict[str, Any] | None = None) -> int | None:
    """The tokens a model's context holds: a loaded model's ``n_ctx``, else what it was trained with (the GGUF's
    ``<arch>.context_length``, llama.cpp's n_ctx_train); None when neither is known (a remote model)."""
    n_ctx = (status or {}).get("n_ctx")
    if isinstance(n_ctx, int) and n_ctx > 0:
        return n_ctx
    try:
        trained = int(gguf.metadata.get(f"{gguf.architecture}.context_length", ""))
    except ValueError:
        return None
    return trained if trained > 0 else None


def _header_int(gguf: GGUFDetails, key: str) -> int:
    """``<arch>.<key>`` of the header as a whole number, 0 where it has none (a vocab-only read has no sizes of its
    own: llama.cpp reads them from these keys at a load)."""
    try:
        return max(int(gguf.metadata.get(f"{gguf.architecture}.{key}", "")), 0)
    except ValueError:
        return 0


def llama_meta(gguf: GGUFDetails, status: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """llama-server's ``meta`` of a model in its ``/v1/models`` (and ``/models``) entries: its vocabulary's type
    and size, the context a request gets (the loaded model's, else what it was trained with: :func:`context_window`),
    its training context, embedding size, parameters, weights' bytes and type (the loaded model's as llama.cpp
    named it, else its header's the same way: ``general.file_type``, or llama.cpp's guess from the tensors); None
    for a model without a GGUF (a remote one)."""
    if not gguf.architecture:
        return None
    ftype = (status or {}).get("ftype")
    return {"vocab_type": gguf.vocab_type, "n_vocab": gguf.n_vocab, "n_ctx": context_window(gguf, status) or 0,
            "n_ctx_train": _header_int(gguf, "context_length"), "n_embd": _header_int(gguf, "embedding_length"),
            "n_params": gguf.n_params, "size": gguf.size_bytes,
            "ftype": ftype if isinstance(ftype, str) and ftype else gguf.ftype}


#: Ollama's default template, what a model without one of its own is prompted with on Ollama's API (the
#: conversation's text as it is: :meth:`jan.templates.ChatTemplate.ollama_default`).
OLLAMA_DEFAULT_TEMPLATE = "{{ .Prompt }}"

#: jan's parameter names where Ollama's Modelfile says otherwise (the reverse of ollama_requests.sampling).
OLLAMA_PARAMETER_NAMES = {"max_tokens": "num_predict"}


#: Ollama's ``/api/show`` gives an array of at most this many items whole, a longer one (the vocabulary) as ``[]``
#: unless ``verbose`` asks for every value.
SHORT_ARRAY = 5


@functools.lru_cache(maxsize=64)
def _short_arrays(version: FileVersion) -> dict[str, list[Any]]:
    # kept per file version: walking a 150,000-token vocabulary's strings to skip them takes half a second
    return gguf_arrays(version[0], longest=SHORT_ARRAY)


def _arrays(path: str | None, *, verbose: bool) -> dict[str, list[Any]]:
    """The GGUF header's arrays as Ollama's ``model_info`` has them (blocking): whole with ``verbose``, else those
    of at most :data:`SHORT_ARRAY` items, longer ones ``[]``. None for a model without a readable file."""
    if not path:
        return {}
    try:
        if verbose:
            return gguf_arrays(path)
        return {key: list(values) for key, values in _short_arrays(file_version(path)).items()}
    except (OSError, ValueError):  # the details read from the header still stand; show never fails on these
        return {}


@functools.lru_cache(maxsize=16)
def _file_tensors(version: FileVersion) -> tuple[dict[str, Any], ...]:
    # kept per file version, as the short arrays: reaching the tensor list walks the whole vocabulary
    return tuple(gguf_tensors(version[0]))


def tensors(path: str | None) -> list[dict[str, Any]]:
    """Ollama's ``tensors``: each tensor the GGUF lists, ``{"name", "type", "shape"}`` (blocking: its header); none
    for a model without a readable file."""
    if not path:
        return []
    try:
        return [dict(t, shape=list(t["shape"])) for t in _file_tensors(file_version(path))]
    except (OSError, ValueError):  # the rest of show still stands
        return []


def projector_info(path: str | None, *, verbose: bool = False) -> dict[str, Any]:
    """Ollama's ``projector_info``: the projector GGUF's header (``clip.*``, blocking), its long arrays ``[]`` unless
    ``verbose``, as ``model_info``; empty for a model without a projector, or one whose header cannot be read."""
    if not path:
        return {}
    try:
        values = gguf_values(path, longest=None if verbose else SHORT_ARRAY)
    except (OSError, ValueError):
        return {}
    return dict(sorted(values.items()))


def load_parameters(model: dict[str, Any]) -> dict[str, Any]:
    """The model.json's load settings that Ollama keeps as a Modelfile's parameters (``ctx_len`` as ``num_ctx``, ...:
    the reverse of ``/api/create``'s :data:`~jan.server.dialects.ollama_schemas.LOAD_PARAMETERS`), so that
    ``/api/show`` tells what a create stored, as Ollama's does; values that only jan can spell (``ngl: "auto"``,
    -1 for all layers) or that leave jan's choice are left out."""
    # (imported here: /v1/models imports this module at start, and the Ollama schemas only with Ollama's routes)
    from jan.server.dialects.ollama_schemas import LOAD_PARAMETERS

    settings = model.get("settings")
    if not isinstance(settings, dict):
        return {}
    shown: dict[str, Any] = {}
    for name, key in LOAD_PARAMETERS.items():
        value = settings.get(key)
        if name == "use_mmap":
            if isinstance(value, bool):
                shown[name] = value
        elif isinstance(value, int) and not isinstance(value, bool) and (value > 0 or (value == 0 and name in (
                "num_gpu", "draft_num_predict"))):
            shown[name] = value
    return shown


def _parameter_lines(parameters: dict[str, Any]) -> list[str]:
    """Modelfile PARAMETER values, one line per value (a list, ``stop``, gives one line each), in Go's spelling of
    values (quoted strings, true/false), so that the modelfile shown can be given back to ``ollama create``."""
    return [f"{name:<30} {json.dumps(v) if isinstance(v, (str, bool)) else v}"
            for name, value in parameters.items() for v in (value if isinstance(value, list) else [value])]


def show(model: dict[str, Any], path: str | None, *, verbose: bool = False, written: float | None = None,
         system: str = "", options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``/api/show`` for one model (blocking: reads the file's header, and its projector's: ``model["mmproj_path"]``
    as the model service resolved it); ``written``: when its model.json was written (:func:`_modified_at`).
    ``system`` (the request's, unless ``""``) is shown in place of the model's system prompt, and ``options``
    (Ollama's names) as the Modelfile's PARAMETER lines over the model's own (``parameters`` stays the model's), as
    Ollama's show does with a request's."""
    gguf = gguf_details(path)
    params = {k: v for k, v in (model.get("parameters") or {}).items() if v is not None}
    # Ollama's Modelfile names (jan's max_tokens is its num_predict)
    named = {OLLAMA_PARAMETER_NAMES.get(key, key): value
             for key, value in [*params.items(), *load_parameters(model).items()]}
    parameter_lines = _parameter_lines(named)
    template = text_setting(model, "chat_template") or gguf.chat_template or text_setting(model, "prompt_template") or ""
    if not template and gguf.architecture:  # a GGUF without a template: Ollama's API prompts it as Ollama does
        template = OLLAMA_DEFAULT_TEMPLATE
    model_info: dict[str, Any] = {}
    for key, value in sorted(gguf.metadata.items()):
        if key in ("tokenizer.chat_template", "general.name"):
            continue  # (as Ollama leaves them out: the template is shown on its own, the model named as asked for)
        model_info[key] = _typed(value)
    model_info.update(_arrays(path, verbose=verbose))
    model_info = dict(sorted(model_info.items()))
    if gguf.n_params:
        model_info.setdefault("general.parameter_count", gguf.n_params)
    modelfile = f"# Modelfile generated by jan for the model '{model['id']}'\nFROM {path or model['id']}\n"
    # its own LoRA adapters (settings.lora, as the model service resolved them), as Ollama's ADAPTER lines
    modelfile += "".join(f"ADAPTER {a['path']}\n" for a in model.get("lora_paths") or ()
                         if isinstance(a, dict) and isinstance(a.get("path"), str))
    if template:
        modelfile += f'TEMPLATE """{template}"""\n'
    system, license_ = system or _text(model.get("system")), _text(model.get("license"))
    messages = stored_messages(model)
    # Ollama's order (its Model.String()): FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER, LICENSE, MESSAGE
    if system:
        modelfile += f'SYSTEM """{system}"""\n'
    modelfile += "".join(f"PARAMETER {line}\n" for line in (
        _parameter_lines({**named, **options}) if options else parameter_lines))
    if license_:
        modelfile += f'LICENSE """{license_}"""\n'
    modelfile += "".join(f'MESSAGE {m["role"]} """{m["content"]}"""\n' for m in messages)
    out: dict[str, Any] = {
        "modelfile": modelfile,
        "parameters": "\n".join(parameter_lines),
        "license": license_,
        "template": template,
        "system": system,
        "messages": messages,
        **remote_fields(model),
        "details": _details(model, gguf),
        "model_info": model_info,
        # Ollama's show has the projector's header beside the model's (its CLI lists it under "Projector")
        "projector_info": projector_info(model.get("mmproj_path"), verbose=verbose),
        # (Ollama lists a GGUF model's tensors whether or not verbose is asked)
        "tensors": tensors(path),
        "capabilities": capabilities(model, gguf, abilities=model_abilities({**model, "file_path": path}) if path
                                     else None),
        "modified_at": _modified_at(model, path, written),
    }
    return {k: v for k, v in out.items() if v != "" and not (k in ("projector_info", "messages", "tensors") and not v)}


def _text(value: Any) -> str:
    """A model.json text field as /api/show tells it ("" for none, or for a hand-edited value of another type,
    which chats refuse with a 400 naming it: :mod:`jan.services.model_prompt`)."""
    return value if isinstance(value, str) else ""


def stored_messages(model: dict[str, Any]) -> list[dict[str, str]]:
    """The model.json ``messages`` (its Modelfile MESSAGE lines) as Ollama's ``/api/show`` lists them; none where
    the stored value has another shape (shown as nothing rather than failing the show)."""
    if model_prompt_problem(model, ("messages",)) is not None:
        return []
    return [{"role": m["role"], "content": m["content"]} for m in model.get("messages") or ()]
