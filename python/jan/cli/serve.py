"""``jan serve``: the OpenAI-compatible API and the chat page."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import signal
import socket
import sys
from pathlib import Path

import click

from jan.server.aiohttp_import import defer_client

# Before aiohttp's first import: its server's modules without its client (see jan.server.aiohttp_import).
defer_client()

from aiohttp import web

from jan.cli.common import (INT32_MAX, CLIError, GpuLayers, PathParam, allow_media_option, check_flag_order, comma_items,
                            lora_flags, lora_options, nonempty_param, reader_gone, sendable_api_key, typed_flags, Words)
from jan.cli.speed_flags import speed_options
from jan.engine.model import ADAPTIVE_THREADS, LOAD_RANGES
from jan.server.config import (DEFAULT_MAX_JSON_VALUES, DEFAULT_PORT, DEFAULT_READ_TIMEOUT_S, DEFAULT_WRITE_TIMEOUT_S,
                               OLLAMA_PORT, ServerConfig, default_data_folder)
from jan.store.uploads import DEFAULT_MAX_UPLOAD_BYTES

logger = logging.getLogger("jan.cli.serve")


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A duration in seconds, checked here, before anything starts (the engine refuses it only after every
    extension is loaded): not negative, and a number (click's FloatRange lets NaN through)."""
    if value is not None and (math.isnan(value) or value < 0):
        raise click.BadParameter(f"{value} is not a number of seconds >= 0")
    return value


def _duration(value: str | None) -> float | None:
    """``--keep-alive``: seconds, or a duration as Ollama's ``keep_alive`` (and ``OLLAMA_KEEP_ALIVE``) takes it,
    ``5m``, ``1h30m``, read by the Ollama API's own parser: ``--keep-alive 5m`` was "'5m' is not a valid float". Not
    negative (Ollama's "forever" is jan's default: leave the flag out)."""
    if value is None:
        return None
    from jan.server.dialects.ollama_schemas import parse_keep_alive

    try:
        seconds = None if value.strip().startswith("-") else parse_keep_alive(value)
    except ValueError:
        seconds = None
    if seconds is None:
        raise click.BadParameter(f"{value} is not a number of seconds >= 0 nor a duration such as 5m or 1h30m "
                                 "(leave it out to keep models loaded until they are unloaded)")
    return _seconds(None, None, seconds)  # type: ignore[arg-type]


def _bound_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A bound in seconds (``--read-timeout``, ``--write-timeout``): a finite number > 0, checked here as a usage
    error naming the flag.
    click's FloatRange lets NaN and ``inf`` through, and the server's config refuses them only as a traceback."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a finite number of seconds > 0")
    return value


def _origins(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """``--cors-origin`` values as a browser's ``Origin`` header spells them
    (:func:`jan.server.security.cors_origin`); one that is no origin is a usage error naming it."""
    from jan.server.security import cors_origin

    try:
        return tuple(cors_origin(value) for value in nonempty_param(ctx, param, values))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _names(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """``--alias``/``--tags`` values as llama-server reads them: comma-separated, each stripped, each once
    (repeating the option adds more). An empty one (``a,,b``, ``--alias ""``) is a usage error naming the option
    (:func:`~jan.cli.common.comma_items`): it was dropped without a word."""
    return list(dict.fromkeys(name for value in values for name in comma_items(value, param, ctx)))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, callback=nonempty_param, help="Address to bind (loopback by default).")
@click.option("--port", "-p", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0: any free one).")
@click.option("--ollama-port", type=click.IntRange(0, 65535), default=None, is_flag=False, flag_value=OLLAMA_PORT,
              help=f"Also listen on this port (bare flag: Ollama's {OLLAMA_PORT}; 0: any free one, as for --port) "
                   "for Ollama clients that hard-code it; the Ollama API (/api/*) is served on --port as well, so "
                   "the same port as --port adds nothing.")
@click.option("--data-folder", type=PathParam(file_okay=False, path_type=Path), default=None,
              help="Jan data folder [default: $JAN_DATA_FOLDER or ~/jan]")
@click.option("--model", "-m", "models", multiple=True, callback=nonempty_param,
              help="Model id or GGUF path to load at start (repeatable; paths are imported by reference).")
@click.option("--alias", "-a", "aliases", multiple=True, callback=_names,
              help="Other names for the one --model, comma-separated (llama-server's): requests may name it by any "
                   "of them; /v1/models lists them as its aliases.")
@click.option("--tags", "tags", multiple=True, callback=_names,
              help="Labels for the one --model, comma-separated (informational; /v1/models lists them).")
@click.option("--default-model", default=None, callback=nonempty_param,
              help="Model id used by requests that name none [default: the only loaded model].")
@click.option("--api-key", envvar="JAN_API_KEY", default=None, callback=sendable_api_key,
              help="Require 'Authorization: Bearer KEY' or 'x-api-key: KEY' [env JAN_API_KEY]")
@click.option("--cors-origin", "cors_origins", multiple=True, callback=_origins,
              help="Allowed CORS origin, as a browser sends it: scheme://host[:port] (repeatable; '*' for any).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, callback=nonempty_param,
              help="Extra Host header to accept when bound to loopback (repeatable).")
@allow_media_option("Fetch the images requests link to (else only inline data: URLs are taken)")
@click.option("--max-upload-bytes", "max_upload_bytes", default=DEFAULT_MAX_UPLOAD_BYTES, show_default=True,
              type=click.IntRange(1), metavar="N",
              help="The largest file POST /v1/files stores, in bytes; a larger upload is refused (413). "
                   "Uploads stream to disk: this bounds the disk a client may fill.")
@click.option("--max-json-values", "max_json_values", default=DEFAULT_MAX_JSON_VALUES, show_default=True,
              type=click.IntRange(1), metavar="N",
              help="The most JSON values (about: commas and opening brackets outside strings) one request body may hold; more is "
                   "refused (413) unparsed, since parsing holds every other request meanwhile.")
@click.option("--read-timeout", "read_timeout", default=DEFAULT_READ_TIMEOUT_S, show_default=True,
              type=click.FloatRange(0, min_open=True), callback=_bound_seconds, metavar="SECONDS",
              help="How long a client may stall a request it began (its headers, or between two pieces of its "
                   "body) before it is answered 408 and its connection closed.")
@click.option("--write-timeout", "write_timeout", default=DEFAULT_WRITE_TIMEOUT_S, show_default=True,
              type=click.FloatRange(0, min_open=True), callback=_bound_seconds, metavar="SECONDS",
              help="How long a client may leave its answer unread (taking none of what the server has ready to "
                   "send) before its connection is closed and its generation stopped.")
@click.option("--parallel", "-np", "n_parallel", default=None, type=click.IntRange(1, int(LOAD_RANGES["n_parallel"].le)),
              help="Requests each model serves at once [default: the llamacpp extension's setting, 4].")
@click.option("--ctx-size", "-c", "n_ctx", default=None, type=click.IntRange(64, INT32_MAX),
              help="Context tokens per request: each slot's (llama-server's -c is all --parallel slots' together).")
@click.option("--threads", "-t", "n_threads", default=None, type=click.IntRange(1, int(LOAD_RANGES["n_threads"].le)),
              help="Generation threads (at most ggml's 512).")
@click.option("--adaptive-threads", "adaptive_threads", default=None, type=Words(ADAPTIVE_THREADS),
              help="Fewer threads while other processes keep cores busy: where the output stays the same "
                   "(exact), on every step (always: fastest under load, a long lone generation may differ), "
                   "or never (off) [default: exact].")
@click.option("--gpu-layers", "-ngl", "n_gpu_layers", default=None, type=GpuLayers(),
              help="Layers to offload to the GPU: a count, -1 or 'all' for all, 'auto' for as many as the GPUs' "
                   "free memory holds, none without a GPU [default: the llamacpp extension's setting, auto].")
@click.option("--max-queue", default=None, type=click.IntRange(0, INT32_MAX),
              help="Requests waiting for a slot before 503 [default: the llamacpp extension's setting, 64].")
@speed_options("a model.json's settings.draft_model wins")
@click.option("--cache-ram", "-cram", "cache_ram_mib", default=None,
              type=click.IntRange(-1, int(LOAD_RANGES["cache_ram_mib"].le)), metavar="MIB",
              help="Host memory (MiB) keeping more conversations' KV caches than there are slots, as "
                   "llama-server's: -1 no limit, 0 off [default: 8192, at most a quarter of the RAM].")
@lora_options("the models load with; requests pick their own scales with 'lora', POST /lora-adapters sets the "
              "defaults; a model.json's settings.lora wins")
@click.option("--lora-init-without-apply", "lora_init_without_apply", is_flag=True, default=None,
              help="Load the LoRA adapters with every default scale 0 (apply them with POST /lora-adapters or a "
                   "request's 'lora').")
@click.option("--slot-save-path", "slot_save_path", default=None,
              type=PathParam(exists=True, file_okay=False, writable=True, resolve_path=True), metavar="FOLDER",
              help="Serve llama-server's POST /slots/{id}?action=save|restore|erase, slot files kept in FOLDER "
                   "(an existing folder jan may write) [default: those actions refused].")
@click.option("--slots/--no-slots", "endpoint_slots", default=True, show_default=True,
              help="Serve llama-server's GET /slots (each slot's state and request); --no-slots answers it 501, as "
                   "llama-server's flag does.")
@click.option("--image-min-tokens", "image_min_tokens", default=None,
              type=click.IntRange(1, int(LOAD_RANGES["image_min_tokens"].le)), metavar="N",
              help="Fewest tokens one image takes, on projectors that resize images to a number of tokens "
                   "(Qwen2/2.5/3-VL, Pixtral, ...; others ignore it) [default: the projector's own].")
@click.option("--image-max-tokens", "image_max_tokens", default=None,
              type=click.IntRange(1, int(LOAD_RANGES["image_max_tokens"].le)), metavar="N",
              help="Most tokens one image takes (a bigger one is scaled down), on projectors that resize images "
                   "(Qwen2/2.5/3-VL: 4096 by default) [default: the projector's own].")
@click.option("--keep-alive", default=None, callback=lambda ctx, param, value: _duration(value),
              metavar="SECONDS|DURATION",
              help="How long an idle model stays loaded: seconds, or a duration as Ollama's keep_alive takes it (5m, "
                   "1h30m); an Ollama request's keep_alive sets it for its model, and one without it sets this "
                   "again [default: until unloaded].")
@click.option("--max-loaded-models", default=None, type=click.IntRange(1),
              help="Models loaded at once; loading one more unloads the least recently used idle one "
                   "(at least as many as --model gives) [default: the llamacpp extension's setting, no limit].")
@click.option("--no-extensions", is_flag=True, help="Load only built-in extensions.")
@click.option("--log-level", default="info", show_default=True,
              type=Words(["debug", "info", "warning", "error"], {"warn": "warning"}))
def serve(host, port, ollama_port, data_folder, models, aliases, tags, default_model, api_key, cors_origins,
          allowed_hosts, allow_media_from, max_upload_bytes, max_json_values, read_timeout, write_timeout,
          n_parallel, n_ctx, n_threads, adaptive_threads, n_gpu_layers, max_queue, cache_type_k, cache_type_v,
          cache_ram_mib, speculative, draft_model, lora, lora_scaled, lora_init_without_apply, slot_save_path,
          endpoint_slots, draft_p_min, draft_max, draft_min, ngram, image_min_tokens, image_max_tokens, keep_alive,
          max_loaded_models,
          no_extensions, log_level) -> None:
    """Run the OpenAI-compatible API server and the web chat page."""
    logging.basicConfig(level=log_level.upper())
    from jan.server.request_id import install_log_filter
    install_log_filter()  # each line says which request it was written for (the id its answer carried)
    if log_level != "debug":
        logging.getLogger("jan.llama").setLevel(logging.WARNING)
    adapters = lora_flags(lora, lora_scaled)
    if draft_model is not None:
        # a file that is no GGUF model (a projector, a text file) started the server, and every request to every
        # model was then a 400 about it: refused before anything starts, as --lora's files are
        from jan.services.companions import companion_problem

        why = companion_problem("draft_model", str(draft_model))
        if why is not None:
            raise CLIError(f"--model-draft: {why}")
    # before anything starts: exit 1 naming the flag
    check_flag_order(draft_min=draft_min, draft_max=draft_max, n_ctx=n_ctx, n_parallel=n_parallel,
                     image_min_tokens=image_min_tokens, image_max_tokens=image_max_tokens)
    # More --model than may stay loaded would load each and unload the first ones again at once, so that the
    # server starts without models it was told to have ready: refused before anything starts, as a user asking
    # for those models loaded expects (the alternative, keeping the last N, would drop what was asked for).
    wanted = list(dict.fromkeys(models))
    if (aliases or tags) and len(wanted) != 1:
        # (llama-server's name one model; with several --model, which one they named would be a guess)
        flag = "--alias" if aliases else "--tags"
        raise click.UsageError(f"{flag} names the one model given with --model; give exactly one --model "
                               f"(got {len(wanted)})")
    if max_loaded_models is not None and len(wanted) > max_loaded_models:
        # (the command line contradicts itself: a usage error, as --alias with several --model is)
        raise click.UsageError(f"{len(wanted)} models given with --model ({', '.join(wanted)}) but "
                               f"--max-loaded-models {max_loaded_models}: they cannot all stay loaded; give at most "
                               f"{max_loaded_models} --model, or raise --max-loaded-models")
    from jan.cli.common import data_folder_problem

    problem = data_folder_problem(data_folder or default_data_folder())
    if problem:  # as every other command says it, before any extension tries (and fails on) its own file
        raise CLIError(problem)
    config = ServerConfig(
        host=host, port=port, ollama_port=ollama_port, data_folder=data_folder or default_data_folder(), api_key=api_key,
        cors_origins=list(cors_origins), allowed_hosts=list(allowed_hosts), models=list(models),
        allow_media_from=list(allow_media_from), max_upload_bytes=max_upload_bytes, max_json_values=max_json_values,
        read_timeout=read_timeout, write_timeout=write_timeout, default_model=default_model, aliases=aliases, tags=tags,
        n_parallel=n_parallel, n_ctx=n_ctx, n_threads=n_threads, adaptive_threads=adaptive_threads,
        n_gpu_layers=n_gpu_layers, max_queue=max_queue,
        cache_type_k=cache_type_k, cache_type_v=cache_type_v, cache_ram_mib=cache_ram_mib,
        speculative=speculative, draft_max=draft_max, draft_min=draft_min, ngram=ngram, draft_p_min=draft_p_min,
        draft_model=draft_model, lora=adapters, lora_init_without_apply=lora_init_without_apply,
        slot_save_path=str(slot_save_path) if slot_save_path else None, endpoint_slots=endpoint_slots,
        image_min_tokens=image_min_tokens, image_max_tokens=image_max_tokens,
        keep_alive=keep_alive,
        max_loaded_models=max_loaded_models, enable_extensions=not no_extensions)
    try:
        from jan.core.bounded import run_loop

        run_loop(run_server(config))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - a clear message and a non-zero exit, not a trace
        # (`jan: error: ...`, exit 1, as every command says a failure; it said `jan serve: ...`). A load option a
        # flag gave every model is named by that flag (-ctk/--cache-type-k q8_0), as `jan bench` names it: it was
        # "the server's cache_type_k", the engine's field, which the user never typed
        given = getattr(exc, "given_by_server", None)
        raise CLIError(given.said(_flag_names()) if given is not None else str(exc)) from None


def _flag_names() -> dict[str, str]:
    """The running command's flags by the load option each gives (``n_ctx`` -> ``-c/--ctx-size``), and by the
    model.json setting an error's advice names (``ctx_len``: :class:`jan.errors.Advice`)."""
    from jan.services.types import LoadOptions

    flags = typed_flags()
    return {**flags, **{key: flags[option] for key, option in LoadOptions.MODEL_JSON_KEYS.items() if option in flags}}


def release_startup_memory() -> None:
    """Hand the heap that start-up freed (import-time temporaries, model-load scratch) back to the OS:
    ~1.5 MiB of resident memory after start-up (:func:`jan.engine.heap.release_free_memory`)."""
    import gc

    from jan.engine.heap import release_free_memory

    gc.collect()
    release_free_memory()


async def _check_default_model(app: web.Application, config: ServerConfig, *, loaded: bool = False) -> bool:
    """RuntimeError when ``--default-model`` names no model of the data folder (remote ones included) nor one a
    ``--model`` loads (by its id or an ``--alias``), or one that embeds only (every request that names no model
    would go to it). True when it may be one a ``--model`` GGUF path imports, known only once it is loaded: called
    again then with ``loaded``."""
    from jan.errors import ModelNotFoundError
    from jan.server.keys import SERVICES
    from jan.services.models import DEFAULT_EMBEDS_ONLY, embeds_only
    from jan.store import is_valid_id

    name = config.default_model
    if not name:
        return False
    if not is_valid_id(name):
        raise RuntimeError(f"--default-model '{name}' is no model id (1-128 of A-Z a-z 0-9 . _ - starting with "
                           f"a letter or digit; see `jan models list`)")
    try:
        model = await app[SERVICES].models.get(name)
    except ModelNotFoundError as exc:
        if getattr(exc, "damaged", None):  # a model whose model.json is damaged: "no model" would send one looking
            raise RuntimeError(f"--default-model: {exc}") from None
    else:
        if embeds_only(model):
            # every chat and completion that names no model would go to it, each refused as one to an embedding model
            raise RuntimeError(f"--default-model '{name}' {DEFAULT_EMBEDS_ONLY}")
        return False
    if not loaded and (name in config.aliases or any(os.path.isfile(os.path.expanduser(spec))
                                                     for spec in config.models)):
        # a GGUF path's model is imported (and named) by its load, and an --alias names its model once loaded (as
        # llama-server's -a names its only model): asked again then
        return True
    meant = await app[SERVICES].models.meant(name)
    guess = f"; did you mean {meant!r}? (model ids are exact)" if meant else " (see `jan models list`)"
    raise RuntimeError(f"--default-model '{name}' is no model in {config.data_folder} nor one given with "
                       f"--model{guess}")


def listen(host: str, port: int, flag: str = "--port") -> socket.socket:
    """Bind and listen now, so a busy or forbidden port fails before any model is loaded.
    Connections that arrive while models load wait in the backlog. ``flag``: the option that gave ``port``, which
    the error tells the user to change."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.create_server(address, family=family, backlog=128)
    except OSError as exc:  # the system's words alone: create_server's add "(while attempting to bind on ...)"
        words = os.strerror(exc.errno) if exc.errno and not isinstance(exc, socket.gaierror) else exc.strerror or exc
        raise RuntimeError(f"cannot listen on {host}:{port}: {words}{_listen_hint(exc, flag)}") from None
    except UnicodeError:  # a name no DNS label can spell ("bad..host", a label over 63 characters): the idna codec's
        # "encoding with 'idna' codec failed (UnicodeError: label empty or too long)" named neither --host nor why
        raise RuntimeError(f"cannot listen on {host}:{port}: --host {host!r} is no host name or address"
                           f"{_listen_hint(socket.gaierror(), flag)}") from None
    sock.setblocking(False)
    return sock


def _listen_hint(exc: OSError, flag: str) -> str:
    """What to do about a port that cannot be had, for the errors a user meets first: the port taken (most often by
    a `jan serve` started earlier: jan's port is fixed, so a second one always meets the first), a port below 1024
    without the right, a --host that is no address of this machine."""
    if isinstance(exc, socket.gaierror):
        return "; give --host an address or name of this machine (127.0.0.1: this machine only, 0.0.0.0: every network)"
    if exc.errno == errno.EADDRINUSE:
        return (f" (another program uses it: perhaps a `jan serve` already running, which `jan info` shows); stop it, "
                f"or give another port with {flag} (0: any free one)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"; ports below 1024 need administrator rights: give {flag} 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "; give --host an address of this machine (127.0.0.1: this machine only, 0.0.0.0: every network)"
    return ""


def _data_folder_error(exc: OSError, folder: Path) -> RuntimeError:
    """An OSError of the server's start as the CLI's other commands say it: the data folder could not be opened
    (read-only, no permission, a full disk) with where to give another — not ``[Errno 30] ...`` — or, for a file
    elsewhere, its path and the system's words."""
    from jan.cli.common import os_error_message

    where = exc.filename if isinstance(exc.filename, str) else None
    folder = Path(os.path.abspath(folder))
    if where is not None and (Path(os.path.abspath(where)) == folder or folder in Path(os.path.abspath(where)).parents):
        return RuntimeError(f"cannot open the data folder {folder}: {os_error_message(exc)}; give a folder "
                            f"with --data-folder or $JAN_DATA_FOLDER")
    return RuntimeError(os_error_message(exc))


#: The most model ids the start names (a folder of dozens would fill the screen): the rest are counted.
_START_MODELS_NAMED = 10


async def _models_line(app: web.Application) -> str:
    """What the start says of the models it serves: their ids, the loaded ones marked (the start's other lines say
    what it serves and where; the seven "extension ... loaded" lines said nothing of the models)."""
    # (from common, which the server has loaded: ``jan.cli.models`` would bring the other commands' modules along)
    from jan.cli.common import damaged_model_ids, no_model_but_damaged
    from jan.server.keys import SERVICES

    services = app[SERVICES].models
    try:
        extension = services.model_extension()
        ids = sorted(m["id"] for m in await extension.list_models())
        loaded = set(await services.loaded_model_ids())
        problems = getattr(extension, "problems", None)
        damaged = damaged_model_ids(problems("models/") if callable(problems) else [])
    except Exception as exc:  # (the listing is the server's own; a start never fails for want of this line)
        logger.debug("the start's model list: %s: %s", type(exc).__name__, exc)
        return "jan: models: see GET /v1/models"
    if not ids:
        # a damaged model.json is a model still (left in place, its warning above): "no models yet" said there was none
        return (f"jan: no model can be served: {no_model_but_damaged(damaged)}" if damaged else
                "jan: no models yet: add one with `jan models pull URL` or `jan models import FILE.gguf`")
    named = [f"{i} (loaded)" if i in loaded else i for i in ids[:_START_MODELS_NAMED]]
    more = f" and {len(ids) - _START_MODELS_NAMED} more (`jan models list`)" if len(ids) > _START_MODELS_NAMED else ""
    return f"jan: {len(ids)} model{'s' if len(ids) != 1 else ''}: {', '.join(named)}{more}"


def _tell(text: str, err: bool = False) -> None:
    """One of the server's own lines (where it listens, its models, its stop) on stdout (or stderr). A reader that
    went away — `jan serve | head -1`, a script that read the URL and closed the pipe — stops no server: that stream
    goes to /dev/null from then on. (The next line, the models', ended the server with "[Errno 32] Broken pipe".)"""
    try:
        click.echo(text, err=err)
    except BrokenPipeError:
        reader_gone(sys.stderr if err else sys.stdout)


async def run_server(config: ServerConfig) -> None:
    from jan.server.app import create_app
    from jan.server.keys import MANAGER
    from jan.server.protocol import AppRunner

    # Every port is bound before any model loads: a busy or forbidden port fails at once. The Ollama API is
    # served on --port anyway, so an --ollama-port equal to it is no second port: dropped here, so that nothing
    # (GET / answering "Ollama is running" instead of the chat page) treats jan's own port as Ollama's. 0 is
    # any free port, for either option.
    if config.ollama_port is not None and config.ollama_port == config.port and config.port != 0:
        _tell(f"jan: --ollama-port is --port ({config.port}), which serves the Ollama API (/api) already",
                   err=True)
        config.ollama_port = None
    ports = [config.port] + ([config.ollama_port] if config.ollama_port is not None else [])
    socks: list[socket.socket] = []
    try:
        for port, flag in zip(ports, ("--port", "--ollama-port")):
            socks.append(listen(config.host, port, flag))
        config.port = socks[0].getsockname()[1]
        if len(socks) > 1:
            config.ollama_port = socks[1].getsockname()[1]
        try:
            app = await create_app(config)
        except OSError as exc:  # the data folder (or a folder in it) cannot be made or written
            raise _data_folder_error(exc, Path(config.data_folder)) from None
        runner = None
        try:
            # known before the models load: a default naming nothing would turn every request that names no
            # model into a 404, noticed only then
            later = await _check_default_model(app, config)
            # one access log line per request (INFO), with the id its answer carried (x-request-id)
            runner = AppRunner(app, shutdown_timeout=5.0, handle_signals=False,
                               access_log=logging.getLogger("aiohttp.access"))
            await runner.setup()  # loads the models given with --model (its cleanup stops the extensions)
            if later:
                await _check_default_model(app, config, loaded=True)
        except BaseException:
            if runner is None:
                await app[MANAGER].stop()  # the extensions create_app started (sessions, engines) are closed
            else:
                await runner.cleanup()
            raise
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    for sock in socks:
        await web.SockSite(runner, sock).start()
    # from here a Ctrl-C stops the server as any later one (the start's lines that follow read the models list)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    release_startup_memory()
    if not config.bound_to_loopback and not config.api_key:
        # the README asks for a key with --host 0.0.0.0, and nothing said so when it was left out (told before the
        # line that says where it listens, which scripts and tests wait for)
        _tell(f"jan: warning: listening on {config.host} without --api-key: anyone who can reach this port can "
                   "use its models and read and change the data folder's threads, files and models; give --api-key "
                   "KEY (or $JAN_API_KEY)", err=True)
    _tell(f"jan is listening on {config.base_url}  (API: {config.base_url}/v1, data: {config.data_folder})",
               err=False)
    if len(ports) > 1:
        _tell(f"jan: Ollama clients can also use port {config.ollama_port} (API: /api)", err=False)
    try:
        # the models line races the stop: a listing that is slow (a folder of many models, a remote extension's
        # list) must not hold a Ctrl-C until it returns; a stop first drops the line
        line = asyncio.ensure_future(_models_line(app))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((line, stopped), return_when=asyncio.FIRST_COMPLETED)
            if line.done() and not line.cancelled() and line.exception() is None:
                _tell(line.result(), err=False)
            await stopped
        finally:
            for task in (line, stopped):
                task.cancel()  # (no-op on a done one)
            await asyncio.gather(line, stopped, return_exceptions=True)
        _tell("jan: shutting down (finishing open streams, unloading models)")
    finally:
        # Streams still running after shutdown_timeout are cancelled, which
        # cancels their generations; cleanup then unloads every model.
        await runner.cleanup()
