"""Model resolution: a request's model id (or none) to its model.json and the engine that serves it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jan.core import ExtensionManager, InferenceExtension, LocalInferenceExtension, ModelExtension, ModelState
from jan.core.held import Held
from jan.core.engine_answers import loaded_ids
from jan.core.guarded import guarded
from jan.services.engine_output import engine_failures
from jan.engine.header import read_header
from jan.engine.kv_cache import cache_type_problem, is_embedding_metadata
from jan.engine.model import (LOAD_PREREQUISITES, check_context_total, check_load_option, prerequisite_error,
                              unmet_prerequisite)
from jan.engine.params import ORDERS, check_order, check_sampling_options, speculative_mode
from jan.errors import BadRequestError, BadRequestTypeError, JanError, ModelNotFoundError, ModelSettingError, not_found_message
from jan.services.abilities import (Abilities, asks_abilities, context_refusal, fan_out_refusal, fill_in_refusal,
                                   generations, listed_ability, model_abilities, pooling_none_refusal, refusal,
                                   refusal_walks_long, request_template, template_abilities, thinking_refusal)
from jan.services.companions import (COMPANIONS, climbs_out, companion_problem, lora_problem,
                                     weights_problem)
from jan.services.errors import RequestError, ServiceUnavailableError, require
from jan.services.local import carries_schemas, check_grammar, check_render, check_schemas
from jan.services.model_prompt import check_model_prompt
from jan.services.model_reasoning import REASONING_SETTINGS, model_reasoning
from jan.services.types import (ChatRequest, CompletionRequest, EmbeddingRequest, LoadOptions, ResponseFormat,
                                SamplingOptions, check_context_keep, resolve_load, sampling_fields)
from jan.store.ids import is_valid_id
# (the rule lives in jan.near_names, free of the services: the engine's "file not found" uses it too); re-exported
from jan.near_names import TYPO_SIMILARITY, closest_model_id, without_ollama_defaults  # noqa: F401
from jan.templates import ChatTemplate, GrammarError, TemplateError, json_schema_to_grammar, resolve_template
from jan.templates.formats import format_for_template
from jan.templates.formats.grammars import raw_value_calls

__all__ = ["GENERATION_SETTINGS", "ModelService", "Target", "canonical_settings", "capabilities", "check_model_kind", "check_parameters",
           "check_prerequisites",
           "unread_server_defaults",
           "check_settings", "gguf_header",
           "refuse_fan_out", "require_model_id", "text_setting", "unload_now", "unload_replaced", "WEIGHT_KEYS"]

#: What :meth:`ModelService.with_weights` adds to a model.json: its weights, projector and draft model files.
WEIGHT_KEYS = ("file_path", "mmproj_path", "draft_model_path", "lora_paths", "mmproj_named")

DEFAULT_ENGINE = "llama.cpp"
#: The built-in extension that provides each built-in engine (only a loaded extension says which engines it has).
BUILTIN_ENGINE_EXTENSIONS = {DEFAULT_ENGINE: "llamacpp"}
#: The engine methods :meth:`ModelService.engine_for` checks (:mod:`jan.core.guarded`): a load's or an unload's
#: exception of the engine's own named it nowhere (a 500 ``internal_error`` from start, stop, delete, Ollama's loads)
ENGINE_LIFECYCLE = ("load_model", "unload_model")


#: model.json ``settings`` a local engine reads as text (file names, templates) besides the load options.
_TEXT_SETTINGS = ("llama_model_path", "mmproj", "draft_model", "chat_template", "prompt_template")


def canonical_settings(settings: Any) -> Any:
    """``settings`` (a model.json's, or a PATCH's) with each setting that is one of a set of words in the spelling the
    engine and llama-server use: ``cache_type_k``/``cache_type_v`` (:data:`jan.engine.model.CACHE_TYPES`: llama-server's
    ``--cache-type-k`` takes only these, in lower case), ``speculative``, ``adaptive_threads``. jan takes them in any
    case, as its command line does (``-ctk F16``), and stores and tells them as they are used: ``"F16"`` was stored as
    written, shown so by every read of the model, while the model loaded with f16. Anything else (a value that is no
    such word: its check refuses it) as it is."""
    from jan.engine.model import ADAPTIVE_THREADS, CACHE_TYPES
    from jan.engine.params import SPECULATIVE

    if not isinstance(settings, Mapping):
        return settings
    words = {"cache_type_k": CACHE_TYPES, "cache_type_v": CACHE_TYPES, "speculative": SPECULATIVE,
             "adaptive_threads": ADAPTIVE_THREADS}
    out = dict(settings)
    for key, choices in words.items():
        value = out.get(key)
        if isinstance(value, str) and value.lower() in choices:
            out[key] = value.lower()
    return out


def check_settings(settings: Mapping[str, Any], keys: Iterable[str] | None = None) -> None:
    """Check a local model's model.json ``settings`` (only ``keys`` of them when given) as loading the
    model reads them — :meth:`LoadOptions.from_model_settings`, then the engine's own
    :func:`jan.engine.model.check_load_option` — so a value that would fail every load of the model is
    refused before it is stored; the thinking defaults as every chat reads them
    (:func:`jan.services.model_reasoning.model_reasoning`). :class:`RequestError` naming the field
    (``settings.ctx_len``). The files a setting names (``draft_model``, ``mmproj``) are judged by
    :meth:`ModelService.check_model_and_file`."""
    for key in settings if keys is None else keys:
        value = settings.get(key)
        if value is None:
            continue  # not set (a PATCH's null removes the key)
        param = f"settings.{key}"
        if key in REASONING_SETTINGS:  # every chat's thinking defaults, read as a chat reads them
            model_reasoning({key: value})
            continue
        # the adapters' files are resolved by the store (lora_paths): ModelService._check_lora judges them where they
        # are stored, the load whether they fit the model
        if key == "lora":
            try:
                adapters = check_load_option("lora", value)
            except (TypeError, ValueError) as exc:
                raise RequestError(f"settings.{exc}", param=param, code="invalid_value") from None
            for i, (name, _) in enumerate(adapters):
                # the store refuses to follow such a name out of the folder: stored, every request to the model and
                # its GET /v1/models/{id} were a 400 until the model.json was mended
                if not os.path.isabs(os.path.expanduser(name)) and climbs_out(name):
                    raise RequestError(f"{param}[{i}]: '{name}' climbs out of the model folder (name a file in it, "
                                       "or give an absolute path)", param=param, code="invalid_value")
            continue
        if key in _TEXT_SETTINGS:
            if not isinstance(value, str):
                raise RequestError(f"{param}: expected a string, got {value!r}", param=param, code="invalid_value")
            continue
        try:
            for name, option in LoadOptions.from_model_settings({key: value}).given().items():
                check_load_option(name, option)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"{param}: {_detail(exc)}", param=param, code="invalid_value") from None
    _check_order(settings, LoadOptions.MODEL_JSON_KEYS, keys, "settings.")
    _check_context_total(settings, keys)
    _check_draft_wanted(settings, keys)


def _check_context_total(settings: Mapping[str, Any], keys: Iterable[str] | None) -> None:
    """:class:`RequestError` when ``ctx_len`` × ``n_parallel``, both given here, are more context than llama.cpp
    counts (:func:`jan.engine.model.check_context_total`): every load would fail. Named by the one a PATCH sets
    (``ctx_len`` when it sets both or the check covers everything)."""
    pair = ("ctx_len", "n_parallel")
    blamed = [key for key in pair if keys is None or key in set(keys)]
    if not blamed or any(settings.get(key) is None for key in pair):
        return
    try:
        check_context_total(settings["ctx_len"], settings["n_parallel"])
    except ModelSettingError as exc:
        param = f"settings.{blamed[0]}"
        detail = str(exc).removeprefix("n_ctx: ")
        raise RequestError(f"{param}: {detail}", param=param, code="invalid_value") from None


def _check_draft_wanted(settings: Mapping[str, Any], keys: Iterable[str] | None) -> None:
    """:class:`RequestError` when ``speculative`` "draft" meets a ``draft_model`` left empty on purpose (no draft
    model, not even the server's): every load would fail. Named by what the check covers (``keys``)."""
    pair = {"speculative", "draft_model"}
    keys = pair if keys is None else pair & set(keys)
    if not keys or "draft_model" not in settings or settings["draft_model"]:
        return
    try:
        if speculative_mode(settings.get("speculative")) != "draft":
            return
    except ValueError:
        return  # its own error
    param = "settings.speculative" if "speculative" in keys else "settings.draft_model"
    raise RequestError(f"{param}: speculative 'draft' needs a draft model, and draft_model is empty (no draft "
                       "model, not even the server's)", param=param, code="conflicting_options")


#: model.json ``settings`` that only text generation reads (:class:`jan.Model` makes its generation context, KV cache,
#: draft model, LoRA adapters and chat template for a model that generates; one that embeds only has none of them).
#: On a model that embeds only (``settings.embedding`` true) each would be stored and never read.
GENERATION_SETTINGS = ("speculative", "draft_max", "draft_min", "ngram", "draft_p_min", "draft_model",
                       "cache_type_k", "cache_type_v", "cache_ram_mib", "kv_unified", "lora",
                       "lora_init_without_apply", "chat_template", "prompt_template", *REASONING_SETTINGS)


def _opts_out(key: str, value: Any) -> bool:
    """Whether a generation setting's value asks for nothing (no draft model, no adapters, no speculation): such a
    value is no setting that goes unread."""
    if key in ("draft_model", "lora", "chat_template", "prompt_template"):
        return not value
    if key == "speculative":
        try:
            return speculative_mode(value) == "none"
        except ValueError:
            return False
    return value is False and key in ("kv_unified", "lora_init_without_apply")


def check_model_kind(model: Mapping[str, Any], changed: Iterable[str] | None = None) -> None:
    """:class:`RequestError` (``invalid_value``) naming the first setting or parameter a model.json gives that its
    model cannot use: on a model that embeds only (:func:`embeds_only`: ``settings.embedding`` true) a
    :data:`GENERATION_SETTINGS` key or any ``parameters`` key (sampling, thinking, ``num_keep``: a request to such a
    model generates nothing). ``changed`` as :meth:`ModelService.check_model` takes it (None: everything); setting
    ``settings.embedding`` judges every stored key. Stored, such a value was accepted and had no effect (``jan serve
    -m`` of the model, ``/v1/embeddings`` never told); a load of a hand-edited model.json is refused the same way."""
    if not embeds_only(model):
        return
    settings = model.get("settings") or {}
    parameters = model.get("parameters") or {}
    every = changed is None or bool({"settings", "parameters", "settings.embedding"} & set(changed))
    changed = set(changed or ())

    def given(field: str, layer: Any) -> list[str]:
        if not isinstance(layer, Mapping):
            return []
        return [key for key in layer if layer[key] is not None and (every or f"{field}.{key}" in changed)]

    for key in given("settings", settings):
        if key in GENERATION_SETTINGS and not _opts_out(key, settings[key]):
            param = f"settings.{key}"
            raise RequestError(f"{param}: model '{model.get('id')}' embeds only (settings.embedding is true), and "
                               f"{key} applies to text generation only; remove it (or set settings.embedding to "
                               "false for a model that generates)", param=param, code="invalid_value")
    for key in given("parameters", parameters):
        param = f"parameters.{key}"
        raise RequestError(f"{param}: model '{model.get('id')}' embeds only (settings.embedding is true), and "
                           "parameters apply to text generation only; remove it", param=param, code="invalid_value")


def _loads_with(model: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """The load options ``model`` (a model.json) loads with as :data:`LOAD_PREREQUISITES` reads them: the server's
    ``defaults`` under its own ``settings`` (an empty or null ``draft_model``/``lora``, or ``speculative`` "none",
    takes none of the server's: :mod:`jan.extensions.llamacpp.drafts`), and the files the model service resolved
    (:data:`WEIGHT_KEYS`: a projector beside a GGUF given by path, which no setting names; ``jan run
    --model-draft``'s draft model)."""
    from jan.extensions.llamacpp.drafts import opts_out as refuses_server_draft

    settings = model.get("settings") or {}
    settings = settings if isinstance(settings, Mapping) else {}
    effective = {**{k: v for k, v in (defaults or {}).items() if v is not None}, **{
        k: v for k, v in settings.items() if v is not None or k in ("draft_model", "lora")}}
    if refuses_server_draft(settings):
        effective.pop("draft_model", None)
    effective.update({key: model[resolved] for key, resolved in (("mmproj", "mmproj_path"), ("draft_model",
                      "draft_model_path"), ("lora", "lora_paths")) if model.get(resolved)})
    return effective


def check_prerequisites(model: Mapping[str, Any], changed: Iterable[str] | None = None,
                        defaults: Mapping[str, Any] | None = None) -> None:
    """:class:`RequestError` (``missing_prerequisite``) naming the first model.json setting that needs something the
    model loads without (:data:`jan.engine.model.LOAD_PREREQUISITES`: ``image_min_tokens`` a projector,
    ``draft_p_min`` a draft model, ``lora_init_without_apply`` LoRA adapters): stored, it was accepted and had no
    effect. ``defaults``: the server's load options for every model (``jan serve --model-draft``, ``--lora``), which
    a model.json that names none of its own loads with (an empty ``draft_model``/``lora`` of its own opts out of
    them); the files :meth:`ModelService.with_weights` resolved (``mmproj_path``...) count as given. ``changed`` as
    :meth:`ModelService.check_model` takes it (None: everything); a change of the prerequisite judges the settings
    that need it."""
    settings = model.get("settings") or {}
    if not isinstance(settings, Mapping):
        return
    effective = _loads_with(model, defaults)
    names = [key for key in LOAD_PREREQUISITES if key in settings and (
        changed is None or {"settings", f"settings.{key}", f"settings.{LOAD_PREREQUISITES[key][0]}"} & set(changed))]
    unmet = unmet_prerequisite(effective, names)
    if unmet is not None:
        raise prerequisite_error(*unmet, named="settings.", kind=RequestError)


def unread_server_defaults(models: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> ModelSettingError | None:
    """The error for server-wide load options (``jan serve``'s flags: ``defaults``, :meth:`ServerConfig.engine_defaults`)
    that no model of ``models`` (the local models the server may load) reads: generation options
    (:data:`GENERATION_SETTINGS`: ``--spec-type``, ``--model-draft``, ``--draft-max``, ``-ctk``...) where every one of
    them embeds only (:func:`embeds_only`); an option that needs what the model loads without
    (:data:`jan.engine.model.LOAD_PREREQUISITES`: ``--image-min-tokens`` a projector) where no model that leaves it to
    the server has that (code ``missing_prerequisite``). The first such model names the error. None when some model
    reads each option given. The error carries
    :class:`jan.errors.ServerDefault` as ``given_by_server``, so ``jan serve`` names its flag."""
    from jan.errors import ServerDefault

    def refused(model: Mapping[str, Any], option: str, why: str, code: str) -> ModelSettingError:
        given = ServerDefault(str(model.get("id")), option, defaults[option], ValueError(f"{option}: {why}"))
        error = ModelSettingError(given.said(), param=None, code=code)
        error.given_by_server = given  # type: ignore[attr-defined]
        return error

    if not models:
        return None
    if all(embeds_only(model) for model in models):
        for option, value in defaults.items():
            if option in GENERATION_SETTINGS and not _opts_out(option, value):
                return refused(models[0], option, "it embeds only (settings.embedding is true), as does every other "
                               f"model the server may load, and {option} applies to text generation only",
                               "invalid_value")
    for option in (key for key in defaults if key in LOAD_PREREQUISITES):
        def lacks(model: Mapping[str, Any]) -> bool:  # loads without what the flag needs (its own, or the server's)
            return unmet_prerequisite({**_loads_with(model, defaults), option: defaults[option]}, [option]) is not None

        # a model reads the flag when it sets no value of its own and has what it needs
        lacking = [model for model in models if lacks(model)]
        if lacking and all(lacks(model) or option in (model.get("settings") or {}) for model in models):
            needed, words = LOAD_PREREQUISITES[option]
            return refused(lacking[0], option, f"it loads with no {words} (settings.{needed}), nor does any other "
                           f"model the server may load that leaves {option} to the server, so it would have no effect",
                           "missing_prerequisite")
    return None


#: The model.json ``settings`` keys a local engine reads, and the ``parameters`` keys a request reads: a key one
#: letter or a case off one of them is a typo :func:`check_known_keys` refuses where it is written.
KNOWN_SETTINGS = frozenset({*LoadOptions.MODEL_JSON_KEYS, *_TEXT_SETTINGS, *REASONING_SETTINGS, "lora"})
KNOWN_PARAMETERS = frozenset({*(f.name for f in sampling_fields()), *REASONING_SETTINGS, "max_completion_tokens",
                              "response_format", "num_keep", "stream"})


def mistyped_keys(layer: Mapping[str, Any], known: frozenset[str], keys: Iterable[str] | None,
                  prefix: str) -> list[tuple[str, str]]:
    """(``prefix.key``, what it says) for each key of ``layer`` (only ``keys`` of it when given) that is no key jan
    reads but a likely typo of one (``Ctx_len``, ``temprature``: :func:`closest_model_id`'s rule), naming the one
    meant. A key like no known one (another app's, a note) is none."""
    found = []
    for key in layer if keys is None else keys:
        if not isinstance(key, str) or key in known:
            continue
        meant = closest_model_id(key, sorted(known))
        if meant:
            param = f"{prefix}.{key}"
            found.append((param, f"{param}: jan reads no such key: did you mean '{prefix}.{meant}'? (a key it does "
                                 "not read is kept but never used)"))
    return found


def model_json_typos(model: Mapping[str, Any]) -> list[tuple[str, str]]:
    """:func:`mistyped_keys` of a stored model.json's ``settings`` and ``parameters`` (``jan models show`` says
    them: a hand-edited file is never refused, and its typo was silently not read)."""
    out = []
    for field, known in (("settings", KNOWN_SETTINGS), ("parameters", KNOWN_PARAMETERS)):
        layer = model.get(field)
        if isinstance(layer, Mapping):
            out += mistyped_keys(layer, known, None, field)
    return out


def check_known_keys(layer: Mapping[str, Any], known: frozenset[str], keys: Iterable[str] | None, prefix: str) -> None:
    """:class:`RequestError` for the first of :func:`mistyped_keys` (only ``keys`` of ``layer`` when given: what is
    being written). Stored, such a key was kept and never read: the model silently ran without it."""
    for param, message in mistyped_keys(layer, known, keys, prefix)[:1]:
        raise RequestError(message, param=param, code="invalid_value")


def check_parameters(parameters: Mapping[str, Any], keys: Iterable[str] | None = None, *,
                     prefix: str | None = "parameters") -> None:
    """Check a layer's ``parameters`` (model.json's, an assistant's, a thread's; only ``keys`` of them
    when given) as every request reads them — :meth:`SamplingOptions.from_mapping`, then the engine's
    :func:`jan.engine.params.sampling_params`; ``response_format`` as runs read it
    (:meth:`ResponseFormat.from_mapping`), ``num_keep`` (Ollama's, for a context's cut) as the chat service
    reads it (:func:`~jan.services.types.check_context_keep`) — so a value that would fail every request is
    refused before it is stored. :class:`RequestError` naming the field (``<prefix>.temperature``; without a
    prefix, the key: top-level fields of a body). Keys that are no sampling option (``stream``, ...) are not
    read by requests and pass."""
    if not isinstance(parameters, Mapping):
        raise RequestError(f"{prefix}: expected an object, got {parameters!r}", param=prefix, code="invalid_value")
    for key in parameters if keys is None else keys:
        value = parameters.get(key)
        if value is None:
            continue
        param = f"{prefix}.{key}" if prefix else key
        try:
            if key == "response_format":
                ResponseFormat.from_mapping(value, param)
                continue
            if key == "num_keep":  # what a cut of an Ollama context keeps (the chat service reads it)
                check_context_keep(value, param)
                continue
            if key in REASONING_SETTINGS:  # settings' thinking defaults, held to the same rule where given here
                model_reasoning({key: value}, prefix=prefix or "")
                continue
            check_sampling_options(**SamplingOptions.from_mapping({key: value}).given())
        except (TypeError, ValueError) as exc:
            text = str(exc)
            if text.startswith(param):  # it names the field itself, perhaps one inside it
                raise RequestError(text, param=text.partition(": ")[0], code="invalid_value") from None
            raise RequestError(f"{param}: {_detail(exc)}", param=param, code="invalid_value") from None
    _check_order(parameters, {}, keys, f"{prefix}." if prefix else "")


def model_sampling(model: Mapping[str, Any]) -> SamplingOptions:
    """A model's model.json ``parameters`` as a sampling layer (under a request's own options). A stored value no
    request could use (a hand edit: ``"temperature": 5``, ``"top_k": "40"``) is a :class:`RequestError` that says it
    is the model.json's and names it there (``parameters.temperature``): said as the request's own field, it sent
    users looking for a ``temperature`` their request never had."""
    try:
        return SamplingOptions.from_mapping(model.get("parameters"))
    except ValueError as exc:
        param = getattr(exc, "param", None) or str(exc).partition(":")[0]
        detail = str(exc).removeprefix(f"{param}: ") if str(exc).startswith(f"{param}: ") else str(exc)
        raise RequestError(f"model '{model.get('id')}' has unusable parameters.{param} in its model.json: {detail}",
                           param=f"parameters.{param}", code="invalid_value") from None


async def check_format_grammar(fmt: ResponseFormat | None, param: str = "response_format") -> None:
    """A ``response_format`` whose schema no grammar can be made of (a ``$ref`` that does not resolve, a type that
    is none, a schema over the grammar's bounds) as the request's :class:`RequestError` naming the schema
    (``<param>.json_schema.schema``, ``code`` ``invalid_schema``), as a chat completion refuses it — for the
    layers a run reads it from, which once took it and failed the run at its first turn. The grammar is made on a
    worker thread, as every grammar is."""
    if fmt is None or fmt.type not in ("json_schema", "json_object") or not fmt.schema:
        return
    where = f"{param}.json_schema.schema" if fmt.type == "json_schema" else f"{param}.schema"
    try:
        await asyncio.to_thread(json_schema_to_grammar, dict(fmt.schema), param=where)
    except GrammarError as exc:
        raise RequestError(str(exc), param=getattr(exc, "param", None) or where,
                           code=getattr(exc, "code", None) or "invalid_schema") from None


def _check_order(layer: Mapping[str, Any], names: Mapping[str, str], keys: Iterable[str] | None, prefix: str) -> None:
    """:class:`RequestError` naming the field when two options one layer gives contradict each other
    (:data:`jan.engine.params.ORDERS`; another layer may complete a pair, so only a pair given here is judged) and
    the check covers one of them (``keys``: what a PATCH sets; None: all). ``names``: the layer's key of each option
    it names otherwise (model.json ``settings``: ``ctx_len`` for ``n_ctx``)."""
    key_of = {option: key for key, option in names.items()}
    options = {name for order in ORDERS for name in (order.low, order.high)}
    values = {option: layer.get(key_of.get(option, option)) for option in options}
    if keys is not None and not {key_of.get(o, o) for o, v in values.items() if v is not None} & set(keys):
        return  # a PATCH that leaves both as they are
    try:
        check_order(values)
    except BadRequestError as exc:
        blamed = exc.param or ""
        if keys is not None and key_of.get(blamed, blamed) not in keys:  # the other one is what this PATCH sets
            order = next(o for o in ORDERS if blamed in (o.low, o.high))
            blamed = order.high if blamed == order.low else order.low
        param = f"{prefix}{key_of.get(blamed, blamed)}"
        raise RequestError(f"{param}: {str(exc).partition(': ')[2]}", param=param,
                           code="conflicting_options") from None


#: model.json ``settings`` whose validity depends on the model's file: the KV cache types (with flash
#: attention, which a quantized V cache needs), and the chat template.
_CACHE_SETTINGS = ("cache_type_k", "cache_type_v", "flash_attn")
_TEMPLATE_SETTINGS = ("chat_template", "prompt_template")
#: Fields that name the weights: when a PATCH changes them, every setting is judged against the new file.
_WEIGHT_FIELDS = frozenset({"sources", "settings.llama_model_path"})
#: A ``chat_template`` that may name one of the file's variants (``tokenizer.chat_template.<name>``).
_TEMPLATE_NAME = re.compile(r"[\w.\-]+")


def gguf_header(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The GGUF key/values of the file at ``path`` as llama.cpp reads them (:func:`jan.engine.header.read_header`:
    a vocab-only load; arrays left out, numbers as text), kept per file version. Blocking: call it off
    the event loop. None when there is no readable GGUF there (a download still running, a damaged
    file): loading the model reports those with their own error."""
    try:
        return read_header(path)
    except (OSError, JanError, ValueError):
        return None


def embeds_only(model: Mapping[str, Any]) -> bool:
    """Whether the model.json says the model makes embeddings and no text (``settings.embedding``, which an
    import of an embedding GGUF writes): the one test, before any load, of every path that generates."""
    settings = model.get("settings")
    return isinstance(settings, Mapping) and settings.get("embedding") is True


def require_generating(target: "Target") -> "Target":
    """``target``, or the :class:`RequestError` (``model_not_supported``) for a model that embeds only
    (:func:`embeds_only`): the engine's own words once such a model is loaded, said before anything loads it."""
    if embeds_only(target.model):
        raise RequestError(f"model '{target.id}' is an embedding model; it cannot generate text", param="model",
                           code="model_not_supported")
    return target


def text_setting(model: Mapping[str, Any], key: str) -> str | None:
    """A model.json's text setting (``chat_template``, ``prompt_template``, ...) where it is text, else None. What
    describes a model (``/v1/models``, ``/api/show``) reads its settings through this: a hand-edited
    ``"chat_template": 5`` is refused when the model loads (naming the field), and must not fail every list of
    models meanwhile."""
    settings = model.get("settings")
    value = settings.get(key) if isinstance(settings, Mapping) else None
    return value if isinstance(value, str) else None


def capabilities(model: Mapping[str, Any], abilities: Abilities | None = None, *, chat_template: str | None = None,
                 embedding: bool = False, fim: bool = False, loaded: Mapping[str, Any] | None = None) -> list[str]:
    """What a model can do, in Ollama's names and order, the one answer every dialect gives (``/api/show``,
    ``/api/tags``, ``/v1/models``): ``completion`` or ``embedding``; ``tools`` and ``thinking`` as an Ollama request is judged
    (:func:`jan.services.abilities.template_refusal` on the template the model chats in: ``abilities``, read from
    its files), so a client that reads them and asks is not refused; ``insert`` (the GGUF has fill-in-the-middle
    tokens); ``vision`` and ``audio`` (``loaded``: the engine's status ``capabilities`` of a loaded projector; else
    the projector's encoders as its header says). Without ``abilities`` (no readable GGUF: a remote model, a
    download still running), from the model.json's and ``chat_template`` (the header's) texts alone: ``thinking``
    and ``tools`` of the template a load resolves from them, judged as a loaded model's
    (:func:`jan.services.abilities.template_abilities`), and ``vision`` for a model.json naming a projector
    (``settings.mmproj``). Ordered as Ollama (0.32) orders a GGUF model that chats in its own chat template, as
    every jan model does: what the template can do (``tools``, ``thinking``), then ``completion``, then ``vision``
    and ``audio``, then ``insert`` (which Ollama reads last, from a Go template's ``.Suffix``). Blocking
    (compiling a template and detecting its format renders it, once per source): call it off the event loop."""
    settings = model.get("settings")
    settings = settings if isinstance(settings, Mapping) else {}
    if embedding or embeds_only(model) or (abilities is not None and abilities.embedding):
        return ["embedding"]
    caps = []
    if abilities is None or abilities.template is None:
        # the template a load would resolve from the same texts, judged as a loaded model's is: the word "tools" in
        # the source listed Command R+'s (which renders no tools) and llama.cpp's R1 template (which names them only
        # in a comment), and ``<think>`` words missed gpt-oss's analysis channel and Solar Open's <|think|>
        from_texts = template_abilities(text_setting(model, "chat_template"), chat_template,
                                        text_setting(model, "prompt_template"))
        # only the template is taken from the texts: what the file itself told (its FIM tokens, its projector's
        # encoders) stays, where a template it cannot resolve would have dropped insert and vision with it
        if abilities is None or from_texts is not None:
            abilities = from_texts if abilities is None else dataclasses.replace(abilities,
                                                                                 template=from_texts.template)
    if abilities is not None and abilities.template is not None:
        caps += [kind for kind in ("tools", "thinking") if listed_ability(abilities, kind)]
    caps.append("completion")
    if isinstance(loaded, Mapping) and (loaded.get("vision") or loaded.get("audio")):
        caps += [kind for kind in ("vision", "audio") if loaded.get(kind)]
    elif abilities is not None and abilities.projector:
        caps += [kind for kind in ("vision", "audio") if getattr(abilities, kind) is not False]
    elif settings.get("mmproj"):
        caps.append("vision")
    read_fim = abilities.fim if abilities is not None else None  # (the file's own tokens, where it was read)
    if read_fim or (read_fim is None and fim):
        caps.append("insert")
    return caps


def _named_weights(model: Mapping[str, Any]) -> str | None:
    """The weights a model.json that is not stored yet names by absolute path (``settings.llama_model_path``,
    a ``sources`` url), as the store reads them; a relative name needs the model's folder, which it does
    not have yet. Blocking (stats files)."""
    settings = model.get("settings") if isinstance(model.get("settings"), Mapping) else {}
    sources = model.get("sources") if isinstance(model.get("sources"), list) else []
    for name in [settings.get("llama_model_path"), *(s.get("url") for s in sources if isinstance(s, Mapping))]:
        if isinstance(name, str) and os.path.isabs(name) and os.path.isfile(name):
            return name
    return None


def _template_problem(settings: Mapping[str, Any],
                      read: Callable[[], Mapping[str, str] | None]) -> tuple[str, str] | None:
    """(setting, why) when the chat template the engine would chat with cannot be made: resolved as
    the engine resolves it (:func:`jan.templates.resolve_template`: ``chat_template`` overrides the
    file's own template, ``prompt_template`` stands in when the file has none), so a name must be a
    built-in or one of the file's variants, and source must compile. ``read()``: the file's header.
    Without it only ``chat_template`` source is judged: a bare name may be one of the file's
    variants, and whether ``prompt_template`` is ever used depends on the file."""
    def text(key: str) -> str | None:
        value = settings.get(key)
        return value if isinstance(value, str) and value.strip() else None

    override, fallback = text("chat_template"), text("prompt_template")
    if override is None and fallback is None:
        return None  # the file's own template, else ChatML: nothing of the model.json's to judge
    header = read()
    if header is None:
        if override is None or _TEMPLATE_NAME.fullmatch(override.strip()):
            return None
        header, fallback = {}, None
    try:
        resolve_template(header, override, fallback=fallback)
    except TemplateError as exc:
        return ("chat_template" if override is not None else "prompt_template"), str(exc)
    return None


async def _check_weights_name(name: Any) -> None:
    """:class:`RequestError` naming ``settings.llama_model_path`` when it names weights no load could use: a
    relative name that climbs out of the model's folder (the store ignores it, so the model went on with its old
    weights while the PATCH answered 200), or an absolute path that is no model GGUF (a missing file, a text file,
    a projector). A relative name inside the folder may name a file still to come (a hub's model.json)."""
    if not isinstance(name, str) or not name:
        return
    param = "settings.llama_model_path"
    if not os.path.isabs(name):
        if climbs_out(name):
            raise RequestError(f"{param}: '{name}' climbs out of the model folder (name a file in it, or give an "
                               "absolute path)", param=param, code="invalid_value")
        return
    why = await asyncio.to_thread(weights_problem, name)
    if why is not None:
        raise RequestError(f"{param}: {why}", param=param, code="invalid_value")


def _missing(model_id: str, exc: BaseException) -> ModelNotFoundError:
    """"The model does not exist" — or, when its model.json was damaged and set aside (the model manager's error
    says so, with ``damaged``), that error itself: "does not exist" would hide a model the user has."""
    if isinstance(exc, ModelNotFoundError) and getattr(exc, "damaged", None):
        return exc
    return ModelNotFoundError(not_found_message("model", model_id))


def _file_problems(settings: Mapping[str, Any], opts: LoadOptions | None, weights: str | None, draft: str | None,
                   templates: bool) -> list[tuple[tuple[str, ...], str]]:
    """What the model's files say against its settings (blocking: reads the GGUF headers): a list of
    (the settings at fault, most to least, why). ``opts``: the effective load options when the KV cache
    types are to be judged; ``templates``: whether the chat template is."""
    @functools.cache
    def read(path: str | None) -> dict[str, str] | None:  # only when a rule needs it: a vocab-only load
        return gguf_header(path) if path else None

    problems: list[tuple[tuple[str, ...], str]] = []
    if opts is not None and any(_quantized(t) for t in (opts.cache_type_k, opts.cache_type_v)):  # else all fits
        header = read(weights)
        embedding = opts.embedding if opts.embedding is not None else bool(header and is_embedding_metadata(header))
        if not embedding:  # an embedding model has no KV cache (jan.Model makes no generation context)
            draft_header = read(draft)
            # no header: the rules that need no file still apply (a quantized V cache without flash attention)
            for meta, what, also in ((header or {}, "", ()), (draft_header, "the draft model: ", ("draft_model",))):
                problem = cache_type_problem(meta, opts.cache_type_k, opts.cache_type_v, opts.flash_attn) \
                    if meta is not None else None
                if problem is not None:  # (a draft's problem is the draft_model's too, when that is what is new)
                    problems.append(((problem.option, *problem.related, *also), what + problem.reason))
    if templates:
        found = _template_problem(settings, lambda: read(weights))
        if found is not None:
            problems.append(((found[0],), found[1]))
    return problems


def _quantized(cache_type: Any) -> bool:
    return isinstance(cache_type, str) and cache_type.lower() not in ("f32", "f16", "bf16")


def _detail(exc: BaseException) -> str:
    """The engine's message without its own field name (the caller names the model.json field)."""
    text = str(exc) or type(exc).__name__
    head, sep, rest = text.partition(": ")
    return rest if sep and " " not in head else text


async def unload_now(engine: InferenceExtension, model_id: str) -> bool:
    """Unload ``model_id`` from ``engine`` if it is loaded or being loaded (a load in progress is
    waited for, then undone: the engine's ``unload_model``); requests running on it end as cancelled.
    True when it was unloaded. For the admin's stop, delete and the like; a client's "done with it"
    (Ollama's ``keep_alive: 0``) waits for running requests instead (``unload_when_idle``)."""
    with engine_failures(engine, "loaded_models()/model_status()"):  # an extension's bug named, not a bare 500
        if model_id not in await engine.loaded_models():
            status = await engine.model_status(model_id)
            if not isinstance(status, dict) or status.get("status") != ModelState.LOADING:
                return False
    try:
        await engine.unload_model(model_id)
    except ModelNotFoundError:  # the load failed, or another stop came first
        return False
    return True


async def unload_replaced(before: Target, after: Mapping[str, Any] | None) -> bool:
    """After the model.json of ``before`` (the model as it was resolved) was written over by ``after`` (the new
    one, resolved; None: gone), as Ollama's ``/api/create`` replaces a model: a loaded copy of the old model is
    unloaded once the requests running on it end (not cancelled here: Ollama lets them finish on the old runner),
    unless the new model.json loads the same files with the same settings (new ``parameters`` reach each request
    as it reads the model.json). A request meanwhile does not get the old model: a local engine loads the model
    again when its model.json changed (in the old one's place, once the requests running on it have ended), and new
    weights never take the old ones' name (:meth:`jan.store.models.ModelStore.import_gguf`). True when it was (or
    will be) unloaded."""
    def loads(model: Mapping[str, Any]) -> tuple[Any, ...]:
        return (*(model.get(key) for key in WEIGHT_KEYS), model.get("settings") or {}, model.get("engine"))

    if after is not None and loads(after) == loads(before.model):
        return False
    engine = before.engine
    when_idle = getattr(engine, "unload_when_idle", None)
    if when_idle is None:  # an engine without running requests to wait for (remote ones)
        return await unload_now(engine, before.id)
    try:
        await when_idle(before.id)  # (a load in progress is waited for first)
    except ModelNotFoundError:
        return False  # not loaded
    return True


@dataclass(frozen=True)
class Target:
    """A resolved model: its model.json dict (with ``file_path`` for local weights) and its engine."""

    model: dict[str, Any]
    engine: InferenceExtension

    @property
    def id(self) -> str:
        return self.model["id"]


def _check_unloaded(request: ChatRequest | CompletionRequest | EmbeddingRequest, template: ChatTemplate | None,
                    settings: Any, model_id: str, grammar: bool, render: bool = True) -> None:
    """Blocking: :meth:`ModelService.require_able`'s checks before a load that need work: the request's constraint
    (:func:`jan.services.local.check_grammar`) and, with ``render``, the chat template's own refusals
    (:func:`jan.services.local.check_render`)."""
    try:
        if grammar:
            check_grammar(request, template, settings, model_id)
        if template is not None and render:
            check_render(request, template, settings, model_id)
    except RequestError as exc:
        if not (exc.param or "").startswith("settings."):
            raise
        # a model.json setting no load can use (a hand-edited reasoning_budget): the load refuses it naming the
        # model.json it is in (the engine's stored-settings check), before anything is read; not said here half-way

def refuse_fan_out(engine: Any, model: dict[str, Any], count: int, param: str) -> None:
    """Raise the refusal of ``count`` generations at once (asked by the field ``param``) that the load options
    ``engine`` would load ``model`` with can never hold (:func:`jan.services.abilities.fan_out_refusal`); nothing
    where it cannot tell. Also asked by a front end before it reads a request's prompts further (llama-server's
    ``/completion`` tokenizes each one first: a list of 100,000 was refused only after 40 s of that)."""
    options = getattr(engine, "load_options", None)
    if options is None or count <= 1:
        return
    try:
        given = options(model)
    except (TypeError, ValueError):
        return  # a setting no load can use: the load names it
    if given.n_parallel is None or given.max_queue is None:
        return
    problem = fan_out_refusal(count, given.n_parallel, given.max_queue, param)
    if problem is not None:
        raise problem


def require_model_id(model_id: Any, *, optional: bool = False, name: str = "model_id") -> None:
    """A public method of :class:`ModelService` takes a model id as text (``optional``: or None, "the default"):
    anything else is a :class:`~jan.BadRequestTypeError` (a ``TypeError``) naming the argument (``name``), not a
    "model not found" for an id no model could have."""
    if not isinstance(model_id, str) and not (optional and model_id is None):
        raise BadRequestTypeError(f"{name}: expected a model id (a string{' or None' if optional else ''}), "
                                  f"got {type(model_id).__name__}", param=name, code="invalid_type")


#: Why a default model that embeds only is refused, after its name (``jan serve --default-model 'x'``, the library's
#: ``default_model: model 'x'``).
DEFAULT_EMBEDS_ONLY = ("embeds only (settings.embedding is true): the requests that name no model (chats, "
                       "completions) would all go to it; name a model that generates")


class ModelService(Held):
    """Finds models and their engines through the extension manager — the one model→engine rule."""

    held = "the extension manager and its loaded models"

    def __init__(self, manager: ExtensionManager, *, default_model: str | None = None, name_folder: bool = False):
        self.manager = manager
        self._transient: dict[str, dict[str, Any]] = {}
        #: The default model whose model.json was last found to generate (checked once per value: :meth:`_default`)
        self._default_checked: str | None = None
        #: The model of requests that name none (``jan serve --default-model``); else the only loaded one.
        self.default_model = default_model
        #: Whether "model not found" names the data folder looked in (and the id likely meant, on every path): a
        #: library caller with two folders could not tell which one lacked the model. Off for the server: its 404
        #: goes to clients that have no business with the host's paths, and its folder is the one it serves.
        self.name_folder = name_folder
        #: Other names of models (llama-server's ``--alias``: ``jan serve --alias``): alias -> model id.
        self.aliases: dict[str, str] = {}
        #: Labels of models (llama-server's ``--tags``, informational): model id -> tags.
        self.tags: dict[str, tuple[str, ...]] = {}

    def name_model(self, model_id: str, aliases: Sequence[str] = (), tags: Sequence[str] = ()) -> None:
        """Give ``model_id`` other names (requests naming one of them get this model, in this process) and labels.
        A ValueError for an alias that another model already answers to (which model it named would be a
        guess); an alias equal to the id itself changes nothing. TypeError for a ``model_id`` that is no string."""
        require_model_id(model_id)
        for alias in aliases:
            owner = self.aliases.get(alias)
            if owner is not None and owner != model_id:
                raise ValueError(f"--alias {alias}: already a name of model '{owner}'")
        self.aliases.update({alias: model_id for alias in aliases if alias != model_id})
        # (no model may be added under an alias later: requests naming it reach this model, and a copy, create or
        # delete of that name acted on this one: Ollama's /api/delete of a model copied there deleted this one)
        try:
            reserve = getattr(self.model_extension(), "reserve_names", None) if self.manager is not None else None
        except ServiceUnavailableError:  # no model manager: nothing can add a model here
            reserve = None
        if reserve is not None:
            reserve(dict(self.aliases))
        if tags:
            self.tags[model_id] = tuple(dict.fromkeys((*self.tags.get(model_id, ()), *tags)))

    def refuse_alias(self, name: str, action: str) -> None:
        """A :class:`RequestError` (400, ``param`` ``model``, code ``model_is_alias``) when ``name`` is an alias
        (:meth:`name_model`) rather than a model's own id: an alias is a name requests reach a model by, not a
        model of its own, so ``action`` (``delete``) on it would act on the model it names — Ollama's ``rm`` of a
        name removes that name only, and here nothing but the aliased model's files could go."""
        owner = self.aliases.get(name)
        if owner is not None:
            raise RequestError(f"'{name}' is a name `jan serve --alias` gives the model '{owner}' in this process, not "
                               f"a model of its own: {action} the model by its id '{owner}' (the alias goes when the "
                               "server restarts without it)", param="model", code="model_is_alias")

    def names_of(self, model_id: str) -> tuple[list[str], list[str]]:
        """``model_id``'s aliases and tags (:meth:`name_model`), as llama-server's ``/v1/models`` lists them."""
        return [a for a, owner in self.aliases.items() if owner == model_id], list(self.tags.get(model_id, ()))

    def add_transient(self, model: dict[str, Any]) -> None:
        """Make ``model`` (a model.json dict) known to this process only, in front of the data
        folder's: a .gguf file given by path (with ``file_path``), or a model.json with settings
        overridden for this process (the CLI's ``--ctx-size``)."""
        self._transient[model["id"]] = dict(model)

    def model_extension(self) -> ModelExtension:
        """The enabled model manager; :class:`ServiceUnavailableError` when none is."""
        return require(self.manager, ModelExtension, "manages models", "models")

    def engine_for(self, model: dict[str, Any]) -> InferenceExtension:
        """The engine named by ``model["engine"]`` (llama.cpp when unset); :class:`RequestError` when
        no enabled extension provides it."""
        name = model.get("engine") or DEFAULT_ENGINE
        try:
            engine = self.manager.get_inference(name)
        except LookupError as exc:
            from jan.core.exceptions import describe_failed, describe_loading

            if getattr(exc, "loading", ()):  # on its way, not missing: the client may retry (503, not 400)
                raise ServiceUnavailableError(f"The engine '{name}' for model '{model['id']}' is not ready: "
                                              f"{describe_loading(exc.loading)}", loading=exc.loading) from None
            failed = getattr(exc, "failed", ())  # enabled but failed to load: its cause, not "not enabled"
            raise RequestError(f"No enabled extension provides the engine '{name}' for model '{model['id']}'"
                               + (f" ({describe_failed(failed)})" if failed else self._disabled_hint(name)),
                               param="model", code="engine_unavailable") from None
        # its loads and unloads checked as the stores' calls are (an exception of its own is an error naming it);
        # what it streams, embeds and tokenizes, and its listings, are checked where they are read, in words of
        # their own (jan.services.engine_output, jan.core.engine_answers)
        return guarded(self.manager, engine, InferenceExtension, only=ENGINE_LIFECYCLE)

    def _disabled_hint(self, engine: str) -> str:
        """How to turn back on the built-in extension that provides ``engine`` when it is disabled (`jan
        extensions disable llamacpp`, or the web page's switch): else the message does not say which one."""
        extension = BUILTIN_ENGINE_EXTENSIONS.get(engine)
        if extension is None:
            return ""
        try:
            enabled = self.manager.record(extension).enabled
        except Exception:  # noqa: BLE001 - a hint only: none where the record cannot be read (not installed)
            return ""
        return "" if enabled else (f" (the extension {extension!r} that provides it is disabled: "
                                   f"`jan extensions enable {extension}`, or POST /v1/extensions/{extension}/enable)")

    def check_model(self, model: Mapping[str, Any], changed: Iterable[str] | None = None) -> None:
        """Check a model.json before it is stored, as the request path will read it: its ``engine``
        must be one an enabled extension provides, its ``parameters`` and (for a local engine) its
        ``settings`` must be values every request can use, its ``system`` a string and its ``messages`` a list
        of text turns (:mod:`jan.services.model_prompt`). ``changed``: the top-level fields a PATCH
        sets, with ``settings.KEY``/``parameters.KEY`` for merged keys (None: check everything).
        :class:`RequestError` naming the field."""
        changed = None if changed is None else set(changed)
        settings = model.get("settings") or {}
        parameters = model.get("parameters") or {}
        engine_changed = changed is None or "engine" in changed
        engine: InferenceExtension | None = None
        try:
            engine = self.engine_for(dict(model))
        except RequestError as exc:
            if engine_changed:
                raise RequestError(str(exc).replace(f" for model '{model.get('id')}'", ""), param="engine",
                                   code="engine_unavailable") from None
            # else the engine it had stays; its extension is off now, which the user may change later

        def keys(field: str) -> Iterable[str] | None:
            if engine_changed:
                return None  # a new model or another engine: every value is read anew
            return [k.split(".", 1)[1] for k in changed if k.startswith(field + ".")]

        check_model_prompt(model, changed)  # system, messages: as every chat reads them
        if not isinstance(parameters, Mapping) or not isinstance(settings, Mapping):
            return  # not objects: the store refuses them with its own message
        check_known_keys(parameters, KNOWN_PARAMETERS, keys("parameters"), "parameters")
        check_parameters(parameters, keys("parameters"))
        if self._is_local(model, engine):
            check_known_keys(settings, KNOWN_SETTINGS, keys("settings"), "settings")
            check_settings(settings, keys("settings"))
            check_model_kind(model, changed)
            server_defaults = getattr(engine, "server_defaults", None)
            check_prerequisites(model, changed, server_defaults() if callable(server_defaults) else None)
        elif engine is not None and callable(getattr(engine, "check_model_settings", None)) and (
                changed is None or engine_changed or any(k == "settings" or k.startswith("settings.") for k in changed)):
            # an engine that reads its own settings (the remote one's base_url, ...) judges them as its load will
            try:
                engine.check_model_settings(dict(model))
            except ValueError as exc:
                param = getattr(exc, "param", None) or "settings"
                raise RequestError(str(exc), param=param, code="invalid_value") from None

    def _is_local(self, model: Mapping[str, Any], engine: InferenceExtension | None = None) -> bool:
        """Whether the model runs on a local engine (its ``settings`` are load options); an engine whose
        extension is off counts as local when it is llama.cpp."""
        if engine is None:
            with contextlib.suppress(RequestError):
                engine = self.engine_for(dict(model))
        if engine is not None:
            return isinstance(engine, LocalInferenceExtension)
        return (model.get("engine") or DEFAULT_ENGINE) == DEFAULT_ENGINE

    async def check_model_and_file(self, model: Mapping[str, Any], changed: Iterable[str] | None = None) -> None:
        """:meth:`check_model`, then the ``settings`` whose validity depends on the model's GGUF file, read
        from its header (off the event loop) when its weights are on disk — ``file_path`` (a file being
        imported), else the stored model's (a PATCH that keeps them), else an absolute path the
        model.json names: a KV cache type the model's heads cannot hold (``cache_type_k`` q4_0 on
        heads of 48 values), or one its attention cannot use (K and V of different types with latent
        attention); a quantized V cache with flash attention off (no file needed); a ``chat_template``
        that is no built-in, none of the file's variants and no template that compiles, or a
        ``prompt_template`` the model would fall back to that cannot be used. The rules are the ones a
        load applies (:mod:`jan.engine.kv_cache`, :func:`jan.templates.resolve_template`), against the
        effective load options (the engine's defaults under the model.json's). Every entry that stores
        a model.json calls this. :class:`RequestError` naming the field; as in :meth:`check_model`, a
        PATCH is judged on what it sets (a bad stored value may stay, or be removed), a new model, a
        new engine or new weights on everything."""
        self.check_model(model, changed)
        settings = model.get("settings") or {}
        if not isinstance(settings, Mapping) or not isinstance(model.get("parameters") or {}, Mapping) \
                or not self._is_local(model):
            return
        if model.get("file_path") and "embedding" not in settings:
            # weights being imported: the import writes settings.embedding from the header (an embedding GGUF), so
            # the settings given with them are judged as that model.json will hold them
            header = await asyncio.to_thread(gguf_header, model["file_path"])
            if header is not None and is_embedding_metadata(header):
                check_model_kind({**model, "settings": {**settings, "embedding": True}}, changed)
        changed = None if changed is None else set(changed)
        everything = changed is None or "engine" in changed or bool(changed & _WEIGHT_FIELDS)

        def touched(key: str) -> bool:
            return everything or f"settings.{key}" in changed

        if touched("llama_model_path"):
            await _check_weights_name(settings.get("llama_model_path"))
        companions = await self._check_companions(model, [key for key in COMPANIONS if touched(key)])
        if touched("lora"):
            await self._check_lora(model)
        if touched("speculative") or touched("draft_model"):
            self._check_some_draft(model)
        # a new draft model is judged against the cache types too: its own cache has the model's types
        cache = any(touched(key) for key in (*_CACHE_SETTINGS, "draft_model"))
        templates = any(touched(key) for key in _TEMPLATE_SETTINGS)
        if not cache and not templates:
            return
        weights, draft = await self._files_of(model, changed)
        if touched("draft_model") and (changed is not None or draft is None):
            draft = companions.get("draft_model")  # the one this entry names ("" or null: none)
        opts = self._load_options(model) if cache else None
        for keys, reason in await asyncio.to_thread(_file_problems, settings, opts, weights, draft, templates):
            blamed = [key for key in keys if touched(key)]
            if blamed:  # else a stored value (or the engine's default) this PATCH leaves as it is
                param = f"settings.{blamed[0]}"
                raise RequestError(f"{param}: {reason}", param=param, code="invalid_value")

    async def _check_companions(self, model: Mapping[str, Any], keys: list[str]) -> dict[str, str]:
        """:class:`RequestError` naming the setting when a file ``settings.draft_model`` or ``settings.mmproj``
        names (``keys``: those to judge) is missing or no such GGUF (:func:`jan.services.companions.companion_problem`),
        resolved as a load resolves it. An empty name (no draft model, not even the server's) passes. Returns the
        files judged, by setting."""
        settings = model.get("settings") or {}
        keys = [key for key in keys if isinstance(settings.get(key), str) and settings[key]]
        if not keys:
            return {}
        resolve = getattr(self.model_extension(), "companion_files", None)
        try:
            if resolve is not None and model.get("id"):
                paths = await resolve(str(model["id"]), dict(settings))
            else:  # a model manager that cannot say (or no id yet): absolute names only
                paths = {key: settings[key] for key in keys if os.path.isabs(settings[key])}
        except ValueError as exc:
            param = "settings.mmproj" if str(exc).startswith("settings.mmproj") else "settings.draft_model"
            detail = str(exc).removeprefix(f"{param}: ")
            raise RequestError(f"{param}: {detail}", param=param, code="invalid_value") from None
        for key in keys:
            if key in paths:
                why = await asyncio.to_thread(companion_problem, key, paths[key])
                if why is not None:
                    param = f"settings.{key}"
                    raise RequestError(f"{param}: {why}", param=param, code="invalid_value")
        return {key: str(paths[key]) for key in keys if key in paths}

    async def _check_lora(self, model: Mapping[str, Any]) -> None:
        """:class:`RequestError` naming ``settings.lora`` when a file it names, resolved as a load resolves it, is
        missing or no LoRA adapter GGUF (:func:`jan.services.companions.lora_problem`): stored, every request to the
        model was a 400. Whether an adapter fits the model's tensors is the load's to judge."""
        settings = model.get("settings") or {}
        resolve = getattr(self.model_extension(), "lora_files", None)
        if not isinstance(settings.get("lora"), list) or not settings["lora"] or resolve is None or not model.get("id"):
            return
        for i, path in enumerate(await resolve(str(model["id"]), dict(settings))):
            why = await asyncio.to_thread(lora_problem, path)
            if why is not None:
                raise RequestError(f"settings.lora[{i}]: {why}", param="settings.lora", code="invalid_value")

    async def _files_of(self, model: Mapping[str, Any], changed: set[str] | None) -> tuple[str | None, str | None]:
        """The weights and draft model files :meth:`check_model_and_file` reads (None: none on disk)."""
        if model.get("file_path"):
            return str(model["file_path"]), model.get("draft_model_path")
        if changed is not None and not changed & _WEIGHT_FIELDS:
            try:  # a PATCH that keeps the weights: the stored model's files, as requests resolve them
                stored = await self.with_weights({"id": model["id"]})
            except (JanError, KeyError, OSError, ValueError):
                return None, None
            draft = None if "settings.draft_model" in changed else stored.get("draft_model_path")
            return stored.get("file_path"), draft
        return await asyncio.to_thread(_named_weights, model), None

    def _check_some_draft(self, model: Mapping[str, Any]) -> None:
        """:class:`RequestError` naming ``settings.speculative`` when it is "draft" and no draft model is there to
        load: neither the model.json's ``draft_model`` nor the server's (``jan serve --model-draft``). Stored, it
        failed every load of the model (``draft_model`` left empty on purpose is :func:`_check_draft_wanted`'s)."""
        settings = model.get("settings") or {}
        try:
            if speculative_mode(settings.get("speculative")) != "draft":
                return
        except ValueError:
            return  # its own error
        if "draft_model" in settings or self._load_options(model).draft_model:
            return
        raise RequestError("settings.speculative: 'draft' needs a draft model, and there is none: this model.json "
                           "names no draft_model and the server was started without one (--model-draft)",
                           param="settings.speculative", code="conflicting_options")

    def _load_options(self, model: Mapping[str, Any]) -> LoadOptions:
        """The load options the model's engine would load it with (its defaults under the model.json's)."""
        with contextlib.suppress(Exception):  # an engine that is off, or no engine with layers of its own
            return self.engine_for(dict(model)).load_options(dict(model))  # type: ignore[attr-defined]
        return resolve_load(LoadOptions.from_model_settings(model.get("settings")))

    def _never_stored(self, model_id: str) -> bool:
        """Whether no model can have the name ``model_id``: it is not this process's and is no id the data folder
        could hold (``llama3.2:3b``, ``openai/gpt-4o``, ``hf.co/owner/repo:Q4_K_M``). A request naming a model
        another server has is told the model is not found (404, as OpenAI, Anthropic and Ollama answer), not that
        its name is malformed: clients act on the 404 (Ollama's pull offer, a fallback model). (A Hugging Face name
        of a model pulled here is found: :meth:`_pulled_as`.)"""
        return model_id not in self._transient and not is_valid_id(model_id)

    def _named(self, model_id: str) -> str:
        """The id ``model_id`` names: its alias's model, or — a name that can be no id (:meth:`_never_stored`) but is
        one in Ollama's spelling — that id: the same server lists its models to Ollama's clients as
        ``stories260K:latest`` (``/api/tags``, ``/api/ps``), and a client that lists them there and asks through
        another dialect (an app's "Ollama" provider speaking OpenAI's ``/v1/chat/completions``, as Ollama serves it)
        sends that name. Every dialect takes it, as Ollama's own OpenAI endpoints do."""
        model_id = self.aliases.get(model_id, model_id)
        if isinstance(model_id, str) and self._never_stored(model_id):
            plain = without_ollama_defaults(model_id)
            if plain != model_id:
                return self.aliases.get(plain, plain)
        return model_id

    async def get(self, model_id: str) -> dict[str, Any]:
        """The model.json of ``model_id`` (or of the model it is an alias of, or that it names in Ollama's spelling:
        :meth:`_named`); ``ModelNotFoundError`` when there is none, TypeError for an id that is no string."""
        require_model_id(model_id)
        model_id = self._named(model_id)
        if model_id in self._transient:
            return dict(self._transient[model_id])
        if self._never_stored(model_id):
            pulled = await self._pulled_as(model_id)
            if pulled is None:
                # (guessed too: a stray space, `stories260K `, is no id, and was told without the one it meant)
                raise await self._missing_with_guess(model_id, ModelNotFoundError(model_id))
            model_id = pulled
        try:
            return await self.model_extension().get_model(model_id)
        except (ModelNotFoundError, KeyError) as exc:
            if self.name_folder:
                raise await self._missing_with_guess(model_id, exc) from None
            raise _missing(model_id, exc) from None

    async def _missing_with_guess(self, model_id: str, exc: BaseException) -> ModelNotFoundError:
        """:func:`_missing`, naming the model a request most likely meant where the id differs from one only in
        case, by the file name's ``.gguf`` or by a typo (``stories260k``, ``stories260K.gguf``, ``storis260K``):
        model ids are exact, and "not found" alone sends the user to list them."""
        error = _missing(model_id, exc)
        if getattr(error, "damaged", None):
            return error
        ids = await self._ids()
        meant = closest_model_id(model_id, ids) if isinstance(model_id, str) and ids else None
        if self.name_folder:
            error = ModelNotFoundError(not_found_message("model", model_id,
                                                         f"the data folder {self.manager.data_folder}"))
        if meant:
            return ModelNotFoundError(f"{error}: did you mean {meant!r}? (model ids are exact)")
        if self.name_folder:  # the Python API's user has no list beside the error: what to do, as the CLI says it
            return ModelNotFoundError(
                f"{error}: it has no models yet (`jan models import FILE.gguf` or `jan models pull URL` adds one)"
                if ids == [] else f"{error} (see `jan models list`)")
        return error

    async def _pulled_as(self, name: str) -> str | None:
        """The id of the model pulled from the Hugging Face repository ``name`` names as Ollama's clients pull one
        (``hf.co/owner/repo[:QUANT]``: :func:`jan.hf_repo.pulled_model_id`), which they then ask for by that name;
        None for any other name, or none pulled from there. (Only a name that can be no id is looked up so.)"""
        from jan.hf_repo import canonical_source, pulled_model_id

        if not isinstance(name, str) or canonical_source(name) == name and not name.startswith("hf://"):
            return None
        try:
            models = await self.model_extension().list_models()
        except Exception:  # noqa: BLE001 - unreadable list: the name is not found, as any other
            return None
        return pulled_model_id(name, models)

    async def _ids(self) -> list[str] | None:
        """The data folder's model ids; None where the list cannot be read (the hints built on it are left out)."""
        try:
            return [m.get("id") for m in await self.model_extension().list_models()]
        except Exception:  # noqa: BLE001 - a hint only: none where the list cannot be read
            return None

    async def meant(self, model_id: str) -> str | None:
        """The model id a name that is none most likely meant (:func:`closest_model_id`: one that differs only in
        case, by the file name's ``.gguf`` or by a typo), or None. (The server's 404 and the CLI's "not found" both
        say it.)"""
        if not isinstance(model_id, str):
            return None
        ids = await self._ids()
        return closest_model_id(model_id, ids) if ids is not None else None

    async def resolve(self, model_id: str | None) -> Target:
        """The model (``None``: the default model if one is configured, else the only loaded model) and its engine.

        Raises ``ModelNotFoundError``, :class:`RequestError` (no model given and not exactly one
        loaded; engine not enabled), :class:`ServiceUnavailableError`, or TypeError for an id that is no string.
        """
        require_model_id(model_id, optional=True)
        if not model_id:
            model_id = await self.default_model_id()
        model_id = self._named(model_id)
        if self._never_stored(model_id):
            pulled = await self._pulled_as(model_id)
            if pulled is None:
                raise await self._missing_with_guess(model_id, ModelNotFoundError(model_id))
            model_id = pulled
        whole = getattr(self.model_extension(), "model_with_weights", None)
        if whole is not None and model_id not in self._transient:
            try:  # the model.json and its files from one read, the path of every request
                model = await whole(model_id)
            except (ModelNotFoundError, KeyError) as exc:
                raise await self._missing_with_guess(model_id, exc) from None
            return Target(model, self.engine_for(model))
        model = await self.get(model_id)
        engine = self.engine_for(model)
        if isinstance(engine, LocalInferenceExtension):
            model = await self.with_weights(model)
        return Target(model, engine)

    async def resolve_generating(self, model_id: str | None) -> Target:
        """:meth:`resolve` for work that generates text: a model whose model.json says it embeds only is a
        :class:`RequestError` (``model_not_supported``) now, the one the engine gives once it is loaded, so that no
        dialect loads an embedding model to refuse a chat, and queued work (a background response, a run) is
        refused when asked rather than failed later."""
        return require_generating(await self.resolve(model_id))

    async def abilities(self, target: Target) -> Abilities | None:
        """What ``target``'s model can do as its files say (:func:`jan.services.abilities.model_abilities`, read
        off the event loop, kept per file version); None for a model on an engine that is not local (its server
        judges its requests)."""
        if not isinstance(target.engine, LocalInferenceExtension):
            return None
        return await asyncio.to_thread(model_abilities, target.model)

    async def require_able(self, target: Target,
                           request: ChatRequest | CompletionRequest | EmbeddingRequest, *,
                           builds_grammar: bool = True) -> Target:
        """``target``, or the refusal of what ``request`` asks that its model cannot do (thinking, tools, images or
        audio; token ids outside its vocabulary; embeddings of another size: :func:`jan.services.abilities.refusal`),
        raised before anything loads the model, as :meth:`resolve_generating` refuses an embedding model: loading
        gigabytes (and perhaps evicting another model) only to refuse is waste. A request that asks none of these
        reads nothing. What the files do not settle is left to the checks after the load. Also refused: more
        generations at once (``n``) than the model's load options give it slots and queue for.

        Every schema the request carries is checked (:func:`jan.services.local.check_schemas`), whatever
        ``tool_choice`` says; ``builds_grammar`` False (the caller builds no grammar of the request right after:
        counting or rendering the prompt, or a generation started later, a background response) checks them for a
        loaded model too, on a worker thread."""
        self._require_load_options(target, request)
        if not isinstance(target.engine, LocalInferenceExtension):
            return target
        grammar = carries_schemas(request)
        asks, chat = grammar or asks_abilities(request), isinstance(request, ChatRequest)
        # (embeddings from a reranker are refused by its header's pooling, as an unloaded model's chat by its template)
        if not asks and not chat and not isinstance(request, EmbeddingRequest):
            return target
        with engine_failures(target.engine, "loaded_models()"):
            loaded = target.id in await target.engine.loaded_models()
        if not asks and loaded:
            return target  # a loaded model's own checks cost what these would
        abilities = await self.abilities(target)
        problem = None
        if abilities is not None:  # (a long walk of the request off the loop: refusal_walks_long)
            problem = await asyncio.to_thread(refusal, abilities, request, target.id) \
                if refusal_walks_long(request) else refusal(abilities, request, target.id)
        if problem is not None:
            raise problem
        if loaded:
            if grammar and not builds_grammar:
                # a loaded model's prompt counted or rendered builds no grammar after: each schema checked alone, kept
                # per schema (the calls' grammar of the tools together is built by the paths that generate: 40 ms a
                # count for 30 tools, where counting is 20 ms in all)
                await asyncio.to_thread(check_schemas, request)
                template = abilities.template if abilities is not None and chat else None
                if template is not None and raw_value_calls(format_for_template(template, True).tool_grammar):
                    # a format writing a call's values raw between tags refuses a schema literal its parser would read
                    # as markup (call_grammar): said here as the generation would say it, for its formats alone
                    await asyncio.to_thread(_check_unloaded, request, request_template(template, request),
                                            target.model.get("settings"), target.id, True, False)
            return target  # (a generation checks its schemas as it builds its grammar after the load)
        template = abilities.template if abilities is not None and chat else None
        template = request_template(template, request) if template is not None else None
        if grammar or template is not None:
            # Off the loop (a big schema or a long conversation takes a while), once, and not again for a loaded
            # model, which does both with the request anyway: a constraint no model could use (a schema that does
            # not compile, its tools' too), and a conversation the chat template refuses itself.
            await asyncio.to_thread(_check_unloaded, request, template, target.model.get("settings"), target.id,
                                    grammar)
        return target

    @staticmethod
    def _require_load_options(target: Target, request: ChatRequest | CompletionRequest | EmbeddingRequest) -> None:
        """What the load options the local engine would load the model with (its defaults under the model.json's)
        refuse, as the loaded model's own checks say it: more generations at once than its slots and queue
        (:func:`jan.services.abilities.fan_out_refusal`), embeddings from a model loaded with pooling none."""
        if not isinstance(request, EmbeddingRequest):
            refuse_fan_out(target.engine, target.model, *generations(request))
            return
        options = getattr(target.engine, "load_options", None)
        if options is None:
            return
        try:
            given = options(target.model)
        except (TypeError, ValueError):
            return  # a setting no load can use: the load names it
        if given.pooling == "none" and not request.per_token:
            raise pooling_none_refusal(target.id)

    async def require_fill_in(self, target: Target, context: Sequence[int] = ()) -> Target:
        """``target``, or the refusal of a ``suffix`` (fill-in-the-middle) for a model whose vocabulary has no FIM
        tokens, or of a ``context`` id outside it, before anything loads it (:meth:`require_able`'s rule); a remote
        engine's model is refused by the infill prompt, which it cannot make."""
        abilities = await self.abilities(target)
        if abilities is not None and abilities.fim is False:
            raise fill_in_refusal(target.id)
        problem = context_refusal(abilities, context) if abilities is not None else None
        if problem is not None:
            raise problem
        return target

    async def require_thinking(self, target: Target) -> Target:
        """``target``, or the refusal of thinking asked with a prompt no chat template wraps (Ollama's raw or
        fill-in-the-middle ``/api/generate``) of a model that cannot think -- the capability ``/api/show`` lists,
        as Ollama checks it on every generate -- before anything loads it (:meth:`require_able`'s rule)."""
        abilities = await self.abilities(target)
        if abilities is not None and listed_ability(abilities, "thinking") is False:
            raise thinking_refusal(target.id)
        return target

    async def with_weights(self, model: dict[str, Any]) -> dict[str, Any]:
        """The model.json with ``file_path``: its weights as the model manager resolves them (resolved
        once, here, so a local engine never looks into the data folder itself), ``mmproj_path``
        for a model with a multimodal projector and ``draft_model_path`` for one with a draft model."""
        if model.get("file_path"):
            return model
        whole = getattr(self.model_extension(), "model_with_weights", None)
        if whole is not None and model.get("id") not in self._transient:
            try:  # one read of the model.json for all three files, not one each
                resolved = await whole(model["id"])
            except (ModelNotFoundError, KeyError):
                pass  # not in the data folder: the per-file lookups below say what they find
            else:
                return {**model, **{key: resolved[key] for key in WEIGHT_KEYS if resolved.get(key)}}
        find = getattr(self.model_extension(), "model_file", None)
        path = await find(model["id"]) if find is not None else None
        find_mmproj = getattr(self.model_extension(), "mmproj_file", None)
        mmproj = await find_mmproj(model["id"]) if find_mmproj is not None else None
        if mmproj:
            model = {**model, "mmproj_path": str(mmproj)}
        else:
            model = await self._mmproj_named(model)
        find_draft = getattr(self.model_extension(), "draft_model_file", None)
        # (a transient model's own, a `jan run --model-draft`'s, is kept: the stored model.json's is not what it loads)
        draft = await find_draft(model["id"]) if find_draft is not None and not model.get("draft_model_path") else None
        if draft:
            model = {**model, "draft_model_path": str(draft)}
        return {**model, "file_path": str(path)} if path else model

    async def _mmproj_named(self, model: dict[str, Any]) -> dict[str, Any]:
        """``model`` with ``mmproj_named`` where its ``settings.mmproj`` resolves (as a load resolves it) to something
        that is there but no file (a folder in the model's folder), as the store's :meth:`with_weights` gives it: the
        load's check then says "is a directory" of it, not "no file"."""
        name = (model.get("settings") or {}).get("mmproj")
        resolve = getattr(self.model_extension(), "companion_files", None)
        if not isinstance(name, str) or not name or resolve is None or not model.get("id"):
            return model
        try:
            named = (await resolve(str(model["id"]), {"mmproj": name})).get("mmproj")
        except (ValueError, OSError):  # (one that climbs out: the load's check says so)
            return model
        return {**model, "mmproj_named": named} if named and os.path.lexists(named) else model

    async def delete_leftover(self, model_id: str) -> bool:
        """Deleting a model by an id that names no model: its folder is removed when it holds no model.json (what a
        pull or import stopped by a kill left, a damaged model.json set aside), so that every front end can delete
        what the list of models reports (``leftovers``, ``problems``). True when it was removed; False where there
        was nothing such (the caller's 404) or the model manager keeps no folders. TypeError for an id that is no
        string."""
        require_model_id(model_id)
        remove = getattr(self.model_extension(), "delete_leftover", None)
        return bool(remove is not None and await remove(model_id))

    async def unload_unlisted(self, model_id: str, *, when_idle: bool = False) -> bool:
        """Unload ``model_id`` now from every engine that holds it loaded, for an admin's stop or delete of a model
        whose model.json no longer reads (damaged, or its folder removed by hand) while it is loaded: its id no longer
        resolves, and without this the weights stayed in memory, listed in ``/health``, until the server stopped.
        True when an engine unloaded it (its running requests end as cancelled, as :func:`unload_now`'s).
        ``when_idle``: a client's "done with it" (Ollama's ``keep_alive: 0``): the requests running on it end first
        (the engine's ``unload_when_idle``, where it has one); True when an engine held it. TypeError for an id that
        is no string."""
        require_model_id(model_id)
        if not model_id:
            return False
        unloaded = False
        for engine in self.manager.engines().values():
            if model_id not in await loaded_ids(engine):  # (bounded: an engine that hangs holds none)
                continue
            later = getattr(engine, "unload_when_idle", None) if when_idle else None
            if later is None:
                unloaded = await unload_now(engine, model_id) or unloaded
                continue
            with contextlib.suppress(ModelNotFoundError):  # (unloaded meanwhile: nothing left to unload)
                await later(model_id)
            unloaded = True
        return unloaded

    async def loaded_with_engines(self) -> list[tuple[str, InferenceExtension]]:
        """Every loaded model's id with the engine that holds it (the first, for one two engines hold), listed
        whether or not its model.json still reads (an engine that fails to answer holds none)."""
        out: list[tuple[str, InferenceExtension]] = []
        for engine in self.manager.engines().values():
            out += [(m, engine) for m in await loaded_ids(engine) if m not in {i for i, _ in out}]
        return out

    async def leftovers(self) -> list[dict[str, Any]]:
        """The model manager's folders without a model.json (``[]`` for one that cannot say): see
        :meth:`jan.extensions.models.extension.ModelManagerExtension.leftovers`."""
        find = getattr(self.model_extension(), "leftovers", None)
        return await find() if find is not None else []

    async def loaded_model_ids(self) -> list[str]:
        """Every engine's loaded models (an engine that fails to answer counts as none)."""
        ids: list[str] = []
        for engine in self.manager.engines().values():
            ids += [m for m in await loaded_ids(engine) if m not in ids]  # (bounded: one that hangs holds none)
        return ids

    @property
    def default_model(self) -> str | None:
        """The model of requests that name none (``jan serve --default-model``; None: the only loaded one). Set to
        anything but a string or None: :class:`~jan.BadRequestTypeError` naming ``default_model``; one that embeds
        only is refused where it is first used (:meth:`_default`), as ``jan serve`` refuses it as it starts."""
        return self._default_model

    @default_model.setter
    def default_model(self, value: str | None) -> None:
        require_model_id(value, optional=True, name="default_model")
        self._default_model = value or None  # ("": none, as an empty --default-model is)

    async def _default(self) -> str:
        """The configured default model, checked (once per value) to be one that generates: a
        :class:`RequestError` naming ``default_model`` (``model_not_supported``) for one whose model.json embeds only
        (:func:`embeds_only`), the rule ``jan serve --default-model`` refuses at start by. A default no model.json
        has yet (an alias, a ``--model`` path's model, named once loaded) is passed on as it is: resolving it says."""
        name = self._default_model
        assert name is not None
        if name != self._default_checked:
            try:
                model = await self.get(name)
            except ModelNotFoundError:
                return name
            if embeds_only(model):
                raise RequestError(f"default_model: model '{name}' {DEFAULT_EMBEDS_ONLY}", param="default_model",
                                   code="model_not_supported")
            self._default_checked = name
        return name

    async def answering_model_id(self) -> str | None:
        """The model of a run that nothing names (neither the run, its thread nor its assistant): the configured
        default model (refused when it embeds only: :meth:`_default`), else the first loaded model that generates
        text — an embedding model loaded beside it cannot answer; None when there is none."""
        if self.default_model:
            return await self._default()
        for model_id in await self.loaded_model_ids():
            try:
                target = await self.resolve(model_id)
            except Exception:  # noqa: BLE001 - a model that cannot be resolved cannot answer either
                continue
            if not embeds_only(target.model):
                return model_id
        return None

    async def default_model_id(self) -> str:
        """The one rule for a request that names no model: the configured default (refused when it embeds only:
        :meth:`_default`), else the only loaded model."""
        if self.default_model:
            return await self._default()
        loaded = await self.loaded_model_ids()
        if len(loaded) == 1:
            return loaded[0]
        detail = "none is loaded" if not loaded else f"{len(loaded)} are loaded: {', '.join(sorted(loaded))}"
        # (the flag named: "a default model is configured" left a user to find how one configures it)
        raise RequestError("Name a model: 'model' may be left out only when exactly one model is loaded or a "
                           f"default model is set (`jan serve --default-model ID`) ({detail})", param="model",
                           code="model_required")
