"""The error shapes of the dialects jan speaks besides OpenAI's (Anthropic's, llama-server's, Ollama's), registered
with :mod:`jan.server.errors` by path prefix.

They live here, apart from the dialects' wire formats and routes, because an error can come before any of a
dialect's code runs (the key check's 401, an unknown route's 404, a 405, a body over the size limit) and must still
leave in that dialect's shape, while the dialect's own modules (pydantic models, handlers) are only imported on its
first request (:mod:`jan.server.route_index`: resident memory at start, issue 16). Importing this module registers
the shapes; :mod:`jan.server.app` does, and so does each dialect's module (through the functions it takes from here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from jan.server.errors import (ERROR_DIALECTS, ERROR_SHAPES, ERROR_STATUSES, APIError, PathStyle, in_path_style,
                               under_prefix)
from jan.server.request_id import current_request_id

#: How each dialect's errors write a field's path (:func:`jan.server.errors.path_text`): as the API its clients were
#: written for does. OpenAI's (Chat Completions, Completions, Embeddings, Responses: ``input[0].content[0].type``)
#: is jan's own, and so is kept for llama-server's and Ollama's, whose own servers name no nested field (llama.cpp's
#: "'messages' is required", Go's JSON errors); Anthropic's API writes ``messages.1.content.0.text``. Every error
#: body of a dialect is written through its entry here (:func:`jan.server.errors.in_path_style`).
PATH_STYLES: Mapping[str, PathStyle] = {"openai": "brackets", "responses": "brackets", "llamacpp": "brackets",
                                       "ollama": "brackets", "anthropic": "dotted"}

# -- Anthropic (/v1/messages, and Anthropic's SDK on the paths it shares with OpenAI's) ----------------------
#: The Anthropic Messages routes' prefix: every path below it answers errors in Anthropic's shape.
ANTHROPIC_PREFIX = "/v1/messages"
#: The paths OpenAI's and Anthropic's SDKs share: each answers in the dialect of the SDK that asks.
ANTHROPIC_SHARED_PATHS = ("/v1/models", "/v1/files")

_ANTHROPIC_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error",
    503: "overloaded_error", 529: "overloaded_error"}


def from_anthropic_sdk(headers: Mapping[str, str]) -> bool:
    """Whether a request on a path both dialects serve (``/v1/models``, ``/v1/files``) is Anthropic's: its SDKs (and
    Claude Code) send ``anthropic-version`` on every request, OpenAI's never do."""
    return "anthropic-version" in headers


def anthropic_error_status(status: int, code: str | None) -> int:
    """The HTTP status Anthropic's clients expect for jan's error: 529 ``overloaded_error`` when the model's
    queue is full (Anthropic's answer when its servers are overloaded, which its SDKs and Claude Code retry as
    such), else jan's own."""
    return 529 if code == "queue_full" else status


def anthropic_error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    return _ANTHROPIC_ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``, Anthropic's error shape; the field paths
    the message names written as Anthropic's API writes them (``messages.1.content.0.text: Field required``), whoever
    raised it (a body's validation, the chat service, the dialect's own checks).

    ``request_id`` is the id of the request being answered (the one its ``request-id`` header carries), as Anthropic's
    API puts it in every error body, a stream's ``error`` event included: its SDKs' ``ErrorResponse`` reads it, and
    Claude Code prints the body as it came. Outside a request (a batch's item, run by the batch worker) there is
    none, and the field is left out."""
    message = in_path_style(message, PATH_STYLES["anthropic"])
    body: dict[str, Any] = {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}
    rid = current_request_id.get()
    if rid is not None:
        body["request_id"] = rid
    return body


def anthropic_error_shape(err: APIError) -> dict[str, Any]:
    """Anthropic's error body for ``err``, with ``error.details`` for a thread refusal (which the SDK branches
    on: ``error_code``, ...)."""
    body = anthropic_error_body(err.status, err.message)
    details = getattr(err, "details", None)
    if details:
        body["error"]["details"] = details
    return body


def _anthropic_dialect(request: Any) -> str | None:
    # Anthropic's requests on the shared paths get Anthropic's errors, the key check's 401 and an unknown model's
    # or file's 404 included; and so do its requests for a route jan does not serve at all (its SDK's skills, the
    # legacy /v1/complete): they got OpenAI's shape, which the SDK showed as an invalid_request_error.
    if not from_anthropic_sdk(request.headers):
        return None
    if any(under_prefix(request.path, p) for p in ANTHROPIC_SHARED_PATHS) or _unrouted(request):
        return ANTHROPIC_PREFIX
    return None


def _unrouted(request: Any) -> bool:
    """Whether the router found no route for ``request`` (its 404 or 405)."""
    match_info = getattr(request, "match_info", None)
    return getattr(match_info, "http_exception", None) is not None


# -- llama-server (/completion, /infill, ...) ----------------------------------------------------------------
#: llama-server's own routes, served as it does (``jan.server.routes.llamacpp``).
LLAMACPP_PATHS = ("/completion", "/infill", "/props", "/embedding", "/slots", "/lora-adapters", "/models/load",
                  "/models/unload")
#: llama-server's token and template routes, which ``jan.server.routes.openai`` serves beside jan's own ``/v1``
#: twins: no OpenAI client calls them without ``/v1`` (OpenAI has no such API), so their errors take llama-server's
#: shape as on ``/completion`` (a numeric ``code``), the ``/v1`` twins keep OpenAI's.
LLAMACPP_TOKEN_PATHS = ("/tokenize", "/detokenize", "/apply-template")
#: llama-server's APIs that ``jan.server.routes.openai`` serves on both its paths, with and without ``/v1``: reranking
#: (Jina's, Cohere's and Text Embeddings Inference's bodies, all answered in llama-server's error shape by
#: llama-server) and a running reply's control. No OpenAI API has them, so every client of either path is
#: llama-server's, and both take its error shape (a numeric ``code``), the ``/v1`` one included.
LLAMACPP_V1_PATHS = ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking", "/chat/completions/control",
                     "/v1/chat/completions/control")

#: A request's key (set by the route) when an OpenAI path serves it as llama-server's native ``/embedding``: a body
#: with ``content`` on ``/embeddings`` or ``/v1/embeddings`` (llama-server answers such a body natively there).
NATIVE_EMBEDDING = web.RequestKey("jan_native_embedding", bool) if hasattr(web, "RequestKey") else "jan_native_embedding"


def _native_embedding_dialect(request: Any) -> str | None:
    try:
        return "/embedding" if request.get(NATIVE_EMBEDDING) else None
    except (AttributeError, TypeError):  # (not an aiohttp request)
        return None


_LLAMACPP_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 501: "not_supported_error", 503: "unavailable_error"}


def llamacpp_error_status(err: APIError) -> int:
    """The status llama-server answers: an unknown model is its 400 ("model '...' not found"), not jan's 404."""
    return 400 if err.code == "model_not_found" else err.status


def llamacpp_error_body(err: APIError) -> dict[str, Any]:
    """llama-server's error body: ``{"error": {"code": <status>, "message", "type"}}`` (a prompt longer than the
    context is its ``exceed_context_size_error``, with ``n_prompt_tokens`` and ``n_ctx``: what llama.vscode shows)."""
    status = llamacpp_error_status(err)
    message = in_path_style(err.message, PATH_STYLES["llamacpp"])
    if err.code == "context_length_exceeded":
        numbers = {k: err.details[k] for k in ("n_prompt_tokens", "n_ctx") if k in err.details}
        return {"error": {"code": status, "message": message, "type": "exceed_context_size_error", **numbers}}
    kind = _LLAMACPP_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"code": status, "message": message, "type": kind}}


# -- Ollama (/api/*) -----------------------------------------------------------------------------------------
OLLAMA_PREFIX = "/api"


def ollama_error_body(err: APIError) -> dict[str, Any]:
    """Ollama's error body: ``{"error": message}``."""
    return {"error": in_path_style(err.message, PATH_STYLES["ollama"])}


def _register() -> None:
    ERROR_SHAPES[ANTHROPIC_PREFIX] = anthropic_error_shape
    ERROR_STATUSES[ANTHROPIC_PREFIX] = lambda err: anthropic_error_status(err.status, err.code)  # a full queue: 529
    if _anthropic_dialect not in ERROR_DIALECTS:
        ERROR_DIALECTS.append(_anthropic_dialect)
    if _native_embedding_dialect not in ERROR_DIALECTS:
        ERROR_DIALECTS.append(_native_embedding_dialect)
    for path in LLAMACPP_PATHS + LLAMACPP_TOKEN_PATHS + LLAMACPP_V1_PATHS:
        ERROR_SHAPES[path] = llamacpp_error_body
        ERROR_STATUSES[path] = llamacpp_error_status
    # Errors raised before a handler runs (the key check's 401, a foreign Origin's 403, an unknown /api/ route's
    # 404, a body over the size limit) leave in Ollama's shape too.
    ERROR_SHAPES[OLLAMA_PREFIX] = ollama_error_body


_register()
