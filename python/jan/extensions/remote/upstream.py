"""Where a remote model lives (from model.json + the extension's settings) and what its errors mean here.

model.json of a remote model (``engine: "openai"``)::

    {"id": "gpt-local", "engine": "openai",
     "settings": {"base_url": "http://127.0.0.1:8080/v1",   # the OpenAI-compatible API root
                  "model": "stories260K",                    # the upstream's name (default: the id)
                  "api_key_env": "MY_UPSTREAM_KEY",          # or "api_key": "sk-..."
                  "headers": {"X-Org": "..."}},              # optional extra request headers
     "parameters": {"temperature": 0.7, "max_tokens": 256}}  # request defaults

Each of ``base_url``, ``api_key``, ``api_key_env`` and ``headers`` falls back
to the remote extension's settings (``<data>/settings/remote/settings.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from jan.errors import ContextOverflowError, EngineError, JanError, ModelLoadError, ModelNotFoundError, QueueFullError

__all__ = [
    "MODEL_SETTINGS",
    "Upstream",
    "UpstreamError",
    "UpstreamRequestError",
    "RemoteSettingError",
    "error_from_response",
    "upstream_for",
]


class RemoteSettingError(ModelLoadError, ValueError):
    """A remote model's model.json (or the remote extension's settings) that no request can use: no upstream, a
    base_url that is no http(s) URL, an unset api_key_env... A fact about the model's configuration, as a
    :class:`jan.ModelFileError` is about its weights: still a failed load (:class:`ModelLoadError`), answered as
    every front end answers a bad setting, a 400 naming it (``param``: ``settings.base_url``), never a 500."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = "invalid_model_settings"


#: The keys of model.json ``settings`` the remote engine reads.
MODEL_SETTINGS = ("base_url", "model", "api_key", "api_key_env", "headers")


class UpstreamError(EngineError):
    """The upstream server could not be reached, failed, or answered something unusable.

    ``http_status`` is what jan's server answers (502 Bad Gateway, or 504
    when the upstream timed out); ``code`` goes into the error body.
    """

    def __init__(self, message: str, *, http_status: int = 502, code: str = "upstream_error",
                 upstream_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.upstream_status = upstream_status


class UpstreamRequestError(JanError, ValueError):
    """The upstream refused the request as invalid (its 400/422): the client's problem, answered as a 400."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 upstream_status: int | None = None):
        super().__init__(message)
        self.param = param
        self.code = code
        self.upstream_status = upstream_status


@dataclass(frozen=True)
class Upstream:
    """A resolved upstream: the API root (``.../v1``), the model's name there and the request headers."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """``base_url`` + ``path`` (``path`` starts with ``/``)."""
        return self.base_url + path

    @property
    def root(self) -> str:
        """The server root: ``base_url`` without a trailing ``/v1`` (where llama.cpp serves ``/tokenize``)."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def request_headers(self) -> dict[str, str]:
        """Headers of every upstream request (the API key as a bearer token)."""
        headers = {str(k): str(v) for k, v in self.headers.items()}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def _param(where: str) -> str | None:
    """The model.json field a problem is in (``settings.base_url``); None where it is the remote extension's own
    setting (``where`` then says so), which no model.json names."""
    return where if where.startswith("settings.") else None


def _check_base_url(url: Any, where: str, model_id: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise RemoteSettingError(f"model '{model_id}' (engine openai): {where} must be a URL such as "
                                 f"'http://127.0.0.1:8080/v1'", param=_param(where))
    url = url.strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions"):  # a common mistake: the endpoint instead of the root
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range or no number fails here, not as every request's 502
    except ValueError as exc:  # (a malformed IPv6 literal too)
        raise RemoteSettingError(f"model '{model_id}' (engine openai): {where} {url!r} is not a URL ({exc})",
                                 param=_param(where)) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteSettingError(f"model '{model_id}' (engine openai): {where} {url!r} is not an http(s) URL",
                                 param=_param(where))
    return url


def upstream_for(model: Mapping[str, Any], defaults: Mapping[str, Any], environ: Mapping[str, str] | None = None, *,
                 check_env: bool = True) -> Upstream:
    """Resolve a remote model's upstream from its model.json and the extension's settings.

    Raises ``ModelLoadError`` naming the missing or invalid field.
    """
    model_id = str(model.get("id") or "?")
    settings = model.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise RemoteSettingError(f"model '{model_id}': settings must be an object", param="settings")
    environ = os.environ if environ is None else environ

    if settings.get("base_url"):
        base_url = _check_base_url(settings["base_url"], "settings.base_url", model_id)
    elif defaults.get("base_url"):
        base_url = _check_base_url(defaults["base_url"], "the remote extension's base_url setting", model_id)
    else:
        raise RemoteSettingError(
            f"model '{model_id}' (engine openai) has no upstream: set settings.base_url in its model.json "
            f"(e.g. 'http://127.0.0.1:8080/v1') or the remote extension's base_url setting", param="settings.base_url")

    remote_name = settings.get("model") or model_id
    if not isinstance(remote_name, str):
        raise RemoteSettingError(f"model '{model_id}': settings.model must be a string (the upstream's model name)",
                                 param="settings.model")

    api_key = None
    for source in (settings, defaults):
        if source.get("api_key"):
            api_key = str(source["api_key"])
            break
        env_name = source.get("api_key_env")
        if env_name:
            if env_name not in environ and not check_env:  # (a model.json being stored: the variable may be set
                break                                        # for the server that serves it, not for this process)
            if env_name not in environ:
                raise RemoteSettingError(f"model '{model_id}': the environment variable {env_name} "
                                         f"(api_key_env) is not set", param="settings.api_key_env" if source is settings else None)
            api_key = environ[env_name]
            break

    headers: dict[str, str] = {}
    for source in (defaults, settings):  # the model's headers win
        extra = source.get("headers") or {}
        if not isinstance(extra, Mapping):
            raise RemoteSettingError(f"model '{model_id}': headers must be an object of strings",
                                     param="settings.headers" if source is settings else None)
        headers.update({str(k): str(v) for k, v in extra.items()})
    return Upstream(base_url=base_url, model=remote_name, api_key=api_key, headers=headers)


# -- errors ---------------------------------------------------------------------------
def error_fields(payload: Any, text: str = "") -> tuple[str, str | None, str | None]:
    """``(message, code, param)`` from an upstream error body in any of the usual shapes.

    OpenAI/jan: ``{"error": {"message", "type", "param", "code"}}``; llama.cpp:
    the same with a numeric code; vLLM: ``{"object": "error", "message", ...}``;
    others: ``{"detail": ...}`` or plain text.
    """
    err: Any = payload
    if isinstance(payload, Mapping) and "error" in payload:
        err = payload["error"]
    if isinstance(err, str):
        return err, None, None
    if isinstance(err, Mapping):
        message = err.get("message") or err.get("detail") or err.get("msg")
        if message is None:
            message = json.dumps(err)[:500]
        code = err.get("code")
        param = err.get("param")
        return (str(message), code if isinstance(code, str) else None, param if isinstance(param, str) else None)
    return (text.strip()[:500] or "no details"), None, None


def error_from_response(status: int, payload: Any, text: str, up: Upstream, model_id: str) -> Exception:
    """The jan exception for an upstream HTTP error ``status`` with its parsed body."""
    message, code, param = error_fields(payload, text)
    where = f"the upstream at {up.base_url}"
    if status == 404:
        lowered = message.lower()
        if code in ("model_not_found", "model_not_available") or "model" in lowered:
            return ModelNotFoundError(f"model '{model_id}': {where} does not serve the model '{up.model}' "
                                      f"({message})")
        return UpstreamError(f"{where} answered 404 ({message}); base_url should be the API root, usually "
                             f"ending in /v1", upstream_status=status, code="upstream_not_found")
    if status in (400, 409, 413, 415, 422):
        if code == "context_length_exceeded" or ("context" in message.lower() and "exceed" in message.lower()):
            return ContextOverflowError(message)
        return UpstreamRequestError(message, param=param, code=code or "upstream_invalid_request",
                                    upstream_status=status)
    if status in (401, 403):
        return UpstreamError(f"{where} refused the request ({status}: {message}); check the api_key of model "
                             f"'{model_id}' or of the remote extension", upstream_status=status,
                             code="upstream_unauthorized")
    if status in (429, 503):
        return QueueFullError(f"{where} is busy ({status}): {message}")
    if status in (408, 504):
        return UpstreamError(f"{where} timed out ({status}): {message}", http_status=504,
                             upstream_status=status, code="upstream_timeout")
    return UpstreamError(f"{where} failed ({status}): {message}", upstream_status=status)


def error_from_event(payload: Any, up: Upstream, model_id: str) -> Exception:
    """The exception for an error sent inside the event stream (after the upstream's 200)."""
    status = None
    err = payload.get("error") if isinstance(payload, Mapping) else None
    if isinstance(err, Mapping) and isinstance(err.get("code"), int):
        status = err["code"]  # llama.cpp puts the HTTP status there
    if status is not None and 400 <= status < 600:
        return error_from_response(status, payload, "", up, model_id)
    message, code, _ = error_fields(payload)
    return UpstreamError(f"the upstream at {up.base_url} failed mid-stream: {message}",
                         code=code or "upstream_error")
