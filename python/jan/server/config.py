"""Server settings, from the command line or code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jan.local_files import expand_home
from jan.store.uploads import DEFAULT_MAX_UPLOAD_BYTES

DEFAULT_PORT = 1337
OLLAMA_PORT = 11434  # Ollama's default, which some Ollama clients hard-code
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Seconds a client may keep the server waiting for the rest of a request it began: its headers (all of them, from
#: the connection's start or its first byte), or its body's next piece (between two pieces: a slow large upload
#: that keeps coming is never cut). nginx's client_header_timeout and client_body_timeout (60 s each); without a
#: bound, a client that declares a body and never sends it holds its connection, and what the route holds with it,
#: forever. `jan serve --read-timeout`.
DEFAULT_READ_TIMEOUT_S = 60.0
#: Seconds a client may leave its answer unread: while the server's send buffers for its connection stay full (the
#: kernel's, then aiohttp's 64 KiB) and the client takes none of what waits in them, for this long, the connection is
#: closed, which ends its handler as a client that left does (a generation is cancelled, its slot freed). nginx's
#: send_timeout (60 s); without a bound, a client that never reads held its handler, the engine's events queued for
#: it and its connection forever. A slow reader that keeps taking bytes is never cut. `jan serve --write-timeout`.
DEFAULT_WRITE_TIMEOUT_S = 60.0
#: The most JSON values (about: its commas and opening brackets outside strings, counted before it is parsed) one request body may
#: hold. Python's JSON parser and pydantic's validator each hold the GIL for the whole of a body, a worker thread's
#: included: 16 MiB of ``[1],[1],...`` stopped every other request (``/health``, other clients' streamed tokens) for
#: seconds. A body past this is a 413, refused unparsed. 320 Ki values hold the largest request the domain's own
#: limits admit as token ids (an embedding request's 300,000 tokens in all, MAX_EMBEDDING_TOKENS, in its 2,048
#: lists) and a 128k-token prompt twice over; a 16 MiB base64 image or a long conversation holds far fewer (the
#: commas of its text count too). A body at the limit still holds the others for up to a few hundred milliseconds in its worst shapes (benchmarks/FINDINGS.md):
#: lower it where that matters more than big bodies. Like aiohttp's ``client_max_size``
#: (:attr:`ServerConfig.max_body_bytes`) for bytes. `jan serve --max-json-values`.
DEFAULT_MAX_JSON_VALUES = 320 * 1024


def default_data_folder() -> Path:
    """``JAN_DATA_FOLDER`` or ``~/jan`` (Jan's own default)."""
    env = os.environ.get("JAN_DATA_FOLDER")
    return expand_home(env) if env else Path.home() / "jan"


def api_key_problem(key: str) -> str | None:
    """Why no client can send ``key`` as it is (None when one can): HTTP takes the whitespace off a header value's
    ends, so a key with a space, tab or newline there (a ``.env`` line's trailing blank) never matched and every
    request was a 401; a control character or one past ASCII is refused by most clients before it is sent
    (``Authorization``/``x-api-key`` are ASCII in practice)."""
    if key == "":
        return "must not be empty"
    if key != key.strip():
        return "must not begin or end with whitespace (HTTP drops it from the header a client sends, so no request " \
               "would match the key)"
    bad = next((c for c in key if not " " <= c <= "~"), None)
    if bad is not None:
        return f"must be printable ASCII, as HTTP clients send a header (it holds {bad!r})"
    return None


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # Also listen here (same app, same host), for Ollama clients that only know Ollama's port.
    ollama_port: int | None = None
    data_folder: Path = field(default_factory=default_data_folder)
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    # Extra Host header values accepted when bound to loopback (DNS-rebinding guard).
    allowed_hosts: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # GGUF paths or model ids to load at start
    # The model of requests that name none (else: the only loaded model, else a 400).
    default_model: str | None = None
    # llama-server's --alias and --tags, for the one --model: other names requests may give it, and labels
    # (informational); /v1/models lists both
    aliases: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    # Load options from the command line; None = not given (the llama.cpp extension's settings,
    # then jan.services.types.LOAD_DEFAULTS decide). A model.json's own settings win over these.
    n_parallel: int | None = None
    n_ctx: int | None = None
    n_threads: int | None = None
    adaptive_threads: str | None = None  # "exact", "always", "off" (jan.Model's adaptive_threads)
    n_gpu_layers: int | str | None = None  # a count, -1 all, "auto"
    max_queue: int | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    cache_ram_mib: int | None = None  # host-memory prompt cache, MiB (-1 no limit, 0 off; jan.Model's)
    # "ngram": every request drafts with n-grams unless it says otherwise; "draft": with the draft model
    speculative: str | None = None
    draft_max: int | None = None
    draft_min: int | None = None
    ngram: int | None = None
    draft_p_min: float | None = None
    draft_model: str | None = None  # a GGUF drafting for the loaded models (a model.json's own wins)
    # LoRA adapters the loaded models load with, (file, default scale) each (a model.json's own settings.lora win)
    lora: list[tuple[str, float]] | None = None
    lora_init_without_apply: bool | None = None  # every adapter's default scale 0
    # llama-server's --slot-save-path: the folder POST /slots/{id}?action=save|restore writes slot files to and reads
    # them from (None: those actions, and erase, are refused as llama-server refuses them)
    slot_save_path: str | None = None
    # llama-server's --slots / --no-slots: whether GET /slots is served (False: its 501, and /props'
    # endpoint_slots false)
    endpoint_slots: bool = True
    # tokens one image may take on dynamic-resolution projectors (jan.Model's; None: each projector's own)
    image_min_tokens: int | None = None
    image_max_tokens: int | None = None
    max_loaded_models: int | None = None
    keep_alive: float | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_json_values: int = DEFAULT_MAX_JSON_VALUES  # see DEFAULT_MAX_JSON_VALUES; more is a 413
    # The largest file POST /v1/files stores (OpenAI's limit); a larger one is a 413. Uploads stream to disk,
    # so this bounds the disk a client may fill, not memory.
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # `jan serve --max-upload-bytes`
    # Where images given by URL or path may come from (http(s) URL prefixes, local folders); empty:
    # inline (data:) images only. See jan.server.media_fetch.
    allow_media_from: list[str] = field(default_factory=list)
    read_timeout: float = DEFAULT_READ_TIMEOUT_S  # see DEFAULT_READ_TIMEOUT_S; a stalled request is a 408
    write_timeout: float = DEFAULT_WRITE_TIMEOUT_S  # see DEFAULT_WRITE_TIMEOUT_S; an unread answer's connection closes
    enable_extensions: bool = True  # False: only the built-in extensions (jan's own entry points)

    def __post_init__(self) -> None:
        # A folder given as text ("~/jan", as open_services and DataFolder take it) is the same folder: the app
        # makes and reads it as a Path, and a str failed there with "'str' object has no attribute 'mkdir'".
        if isinstance(self.data_folder, (str, os.PathLike)):
            self.data_folder = expand_home(self.data_folder)
        for name in ("read_timeout", "write_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"{name}: must be a number of seconds > 0, not {value!r}")
        if isinstance(self.max_json_values, bool) or not (isinstance(self.max_json_values, int)
                                                          and self.max_json_values >= 1):
            raise ValueError(f"max_json_values: must be an integer >= 1, not {self.max_json_values!r}")
        if self.api_key is not None:
            why = api_key_problem(self.api_key) if isinstance(self.api_key, str) else "must be a string"
            if why is not None:
                raise ValueError(f"api_key: {why}")

    @property
    def bound_to_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def engine_defaults(self) -> dict:
        """The load options given on the command line (those not given are left out)."""
        opts = {"n_parallel": self.n_parallel, "max_queue": self.max_queue, "n_gpu_layers": self.n_gpu_layers,
                "n_ctx": self.n_ctx or None, "n_threads": self.n_threads or None,
                "adaptive_threads": self.adaptive_threads,
                "cache_type_k": self.cache_type_k, "cache_type_v": self.cache_type_v,
                "cache_ram_mib": self.cache_ram_mib,
                "speculative": self.speculative, "draft_max": self.draft_max, "draft_min": self.draft_min,
                "ngram": self.ngram, "draft_p_min": self.draft_p_min, "draft_model": self.draft_model,
                "lora": tuple(tuple(a) for a in self.lora) if self.lora else None,
                "lora_init_without_apply": self.lora_init_without_apply,
                "image_min_tokens": self.image_min_tokens, "image_max_tokens": self.image_max_tokens}
        return {k: v for k, v in opts.items() if v is not None}
