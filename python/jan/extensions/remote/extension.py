"""The remote inference engine: models with ``"engine": "openai"`` are served by an OpenAI-compatible upstream.

The upstream may be another jan, llama.cpp's ``llama-server``, vLLM, or any
OpenAI-compatible API. Every generation is streamed from the upstream (also
for non-streaming callers, who aggregate the chunks), so cancelling a
request here — closing the stream — closes the upstream connection and the
upstream stops generating too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field

from jan.json_text import loads_json
from jan.services import types as t
from jan.services.abilities import generations
from jan.core import InferenceExtension, ModelFailed, ModelInit, ModelReady, ModelState, ModelStopped
from jan.extensions._builtin import BuiltinExtension
from jan.errors import ModelLoadError, ModelNotFoundError
from jan.extensions.remote.upstream import (
    Upstream,
    UpstreamError,
    UpstreamRequestError,
    error_fields,
    error_from_event,
    error_from_response,
    upstream_for,
)

#: model.json ``parameters`` forwarded as request defaults (the request's own values win).
FORWARDED_PARAMETERS = (
    "temperature", "top_p", "max_tokens", "stop", "presence_penalty", "frequency_penalty", "seed",
    "logit_bias", "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
)


class RemoteSettings(BaseModel):
    """Defaults for every remote model (a model's own ``settings`` win)."""

    base_url: str | None = Field(None, pattern=r"^https?://\S+$",
                                 description="OpenAI-compatible API root used when a model.json has no "
                                             "settings.base_url, e.g. http://127.0.0.1:8080/v1")
    api_key: str | None = Field(None, description="API key sent as a bearer token when a model has none",
                                json_schema_extra={"writeOnly": True, "format": "password"})
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="Environment variable holding the API key (instead of api_key)")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent to every upstream")
    timeout: float = Field(600.0, gt=0, le=86400,
                           description="Seconds to wait for the upstream's next bytes (per read, not per request)")
    connect_timeout: float = Field(10.0, gt=0, le=600, description="Seconds to wait for a connection")
    proxy: str | None = Field(None, pattern=r"^https?://\S+$", description="HTTP proxy for upstream requests")
    request_usage: bool = Field(True, description="Ask upstreams for token usage (stream_options.include_usage) "
                                                  "so per-model metrics count tokens")


class _Stats:
    """Per-model request counters (what :meth:`RemoteInferenceExtension.model_status` reports as ``metrics``)."""

    def __init__(self) -> None:
        self.requests_total = 0
        self.requests_active = 0
        self.requests_finished = 0
        self.requests_failed = 0
        self.requests_cancelled = 0
        self.prompt_tokens_total = 0
        self.generated_tokens_total = 0
        self._ttft: deque[float] = deque(maxlen=20)
        self._rates: deque[float] = deque(maxlen=20)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "requests_active": self.requests_active,
            "requests_finished": self.requests_finished,
            "requests_failed": self.requests_failed,
            "requests_cancelled": self.requests_cancelled,
            "prompt_tokens_total": self.prompt_tokens_total,
            "generated_tokens_total": self.generated_tokens_total,
            "time_to_first_token_ms": round(sum(self._ttft) / len(self._ttft), 3) if self._ttft else None,
            "generated_tokens_per_second": round(sum(self._rates) / len(self._rates), 3) if self._rates else None,
        }


class _Request:
    """Bookkeeping of one streamed request (times, usage) for the stats: its ``generations`` (the choices it asks
    the upstream for, each choice of ``n`` of each prompt) each count as one, as the local engine counts them."""

    def __init__(self, stats: _Stats, generations: int = 1) -> None:
        self.stats = stats
        self.generations = generations
        self.started = time.monotonic()
        self.first: float | None = None
        self.usage: dict[str, Any] | None = None
        stats.requests_total += generations
        stats.requests_active += generations

    def chunk(self, chunk: dict[str, Any]) -> None:
        if self.first is None and chunk.get("choices"):
            self.first = time.monotonic()
            self.stats._ttft.append((self.first - self.started) * 1000)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]

    def end(self, outcome: str) -> None:
        stats = self.stats
        stats.requests_active -= self.generations
        if outcome == "finished":
            stats.requests_finished += self.generations
        elif outcome == "cancelled":
            stats.requests_cancelled += self.generations
        else:
            stats.requests_failed += self.generations
        if self.usage:
            prompt = self.usage.get("prompt_tokens") or 0
            generated = self.usage.get("completion_tokens") or 0
            stats.prompt_tokens_total += int(prompt)
            stats.generated_tokens_total += int(generated)
            if generated and self.first is not None:
                elapsed = time.monotonic() - self.first
                if elapsed > 0:
                    stats._rates.append(generated / elapsed)


class RemoteInferenceExtension(BuiltinExtension, InferenceExtension):
    """Serves ``"engine": "openai"`` models by proxying to an OpenAI-compatible server.

    The upstream of a model comes from its model.json ``settings``
    (``base_url``, ``model``, ``api_key`` / ``api_key_env``, ``headers``),
    falling back to this extension's settings; model.json ``parameters``
    are request defaults. See :mod:`jan.extensions.remote.upstream`.
    """

    name = "remote"
    description = "Models served by an OpenAI-compatible server (another jan, llama.cpp, vLLM, OpenAI, ...)"
    settings_schema = RemoteSettings
    engine_name = "openai"

    def __init__(self) -> None:
        self._session: Any = None  # aiohttp.ClientSession, opened by the first upstream request while loaded
        self._loaded = False
        self._ready: dict[str, dict[str, Any]] = {}  # model id -> {"base_url", "model", "listed"}
        self._failures: dict[str, str] = {}
        self._loading: set[str] = set()
        self._stats: dict[str, _Stats] = {}
        self._token_urls: dict[tuple[str, str], str] = {}  # (base_url, "tokenize") -> working URL
        # the upstream responses sent for (each dropped once read and collected), closed by on_unload
        self._responses: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- lifecycle -----------------------------------------------------
    async def on_load(self, ctx) -> None:
        """Ready to serve; the HTTP client session is opened by the first upstream request, so a server with no
        remote model never imports aiohttp's client (issue 16's resident memory; ``jan.server.aiohttp_import``)."""
        self._loaded = True

    async def on_unload(self) -> None:
        """Close the session and the upstream responses still being read: each request reading one ends with a
        503 saying this extension stopped. (aiohttp's ``ClientSession.close()`` alone closes their connections
        without waking a read already waiting on one: a stream being relayed then waited forever.)"""
        self._loaded = False
        session, self._session = self._session, None
        self._ready.clear()
        self._token_urls.clear()
        for response in list(self._responses):
            response.close()
        if session is not None:
            await session.close()

    # -- helpers -------------------------------------------------------
    def _upstream(self, model: dict[str, Any]) -> Upstream:
        return upstream_for(model, self.ctx.settings.all())

    def check_model_settings(self, model: dict[str, Any]) -> None:
        """A model.json about to be stored, read as a load will read it (:func:`upstream_for`): a base_url that is no
        http(s) URL, no upstream at all, headers that are no object... is a :class:`RemoteSettingError` naming the
        field, so that it is refused before it is stored instead of failing every request to the model. An
        api_key_env not set in this process is not judged: the server that serves the model may have it."""
        upstream_for(model, self.ctx.settings.all(), check_env=False)

    def _http(self) -> Any:
        """The client session (opened here on the loop the first time); 503 once the extension is unloaded."""
        if not self._loaded:
            raise self._stopped("is not running")
        if self._session is None:
            import aiohttp

            import jan

            connector = aiohttp.TCPConnector(limit=256)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  headers={"User-Agent": f"jan/{jan.__version__}"})
        return self._session

    @staticmethod
    def _stopped(how: str) -> UpstreamError:
        return UpstreamError(f"the remote inference extension {how}", http_status=503, code="engine_unavailable")

    def _closed_under(self, session: Any) -> bool:
        """Whether this extension closed the client session under a request (it was disabled or is stopping):
        ``session``, the one the request went through, is no longer the open one (None: not known). aiohttp tells a
        request so by a ``ClientError`` ("Server disconnected") or as often by a ``RuntimeError`` ("Session is
        closed", "Connection closed.")."""
        return not self._loaded or (session is not None and session is not self._session)

    def _broken(self, session: Any, exc: BaseException, error: UpstreamError | None) -> UpstreamError | None:
        """What a request whose connection failed with ``exc`` ends with: ``error`` (the upstream's fault), or a 503
        saying this extension stopped where it closed the session under the request. A ``RuntimeError`` that is not
        that is re-raised (a fault of jan's own, not the upstream's)."""
        if self._closed_under(session):
            return self._stopped("was stopped while the request ran")
        if isinstance(exc, RuntimeError):
            raise exc
        return error

    def _timeout(self) -> Any:
        import aiohttp

        s = self.ctx.settings
        return aiohttp.ClientTimeout(total=None, connect=s.get("connect_timeout"), sock_connect=s.get("connect_timeout"),
                                     sock_read=s.get("timeout"))

    def _stats_for(self, model_id: str) -> _Stats:
        stats = self._stats.get(model_id)
        if stats is None:
            stats = self._stats[model_id] = _Stats()
        return stats

    async def _send(self, up: Upstream, method: str, url: str, model_id: str, body: Any = None,
                    *, allow: tuple[int, ...] = ()) -> Any:
        """Send a request; return the open response (status < 400 or in ``allow``) or raise the mapped error."""
        import aiohttp

        from jan.server.aiohttp_import import load_client

        await load_client()  # (off the loop, the first time)
        session = self._http()
        try:
            resp = await session.request(method, url, json=body, headers=up.request_headers(),
                                         timeout=self._timeout(), proxy=self.ctx.settings.get("proxy"))
        except aiohttp.ClientConnectorError as exc:
            os_error = exc.os_error
            reason = "connection refused" if isinstance(os_error, ConnectionRefusedError) else \
                (getattr(os_error, "strerror", None) or str(os_error or exc))
            raise self._broken(session, exc, UpstreamError(
                f"cannot connect to the upstream at {up.base_url} for model '{model_id}' ({reason}); is it running?",
                code="upstream_unreachable")) from None
        except asyncio.TimeoutError:
            raise UpstreamError(f"the upstream at {up.base_url} did not answer in time", http_status=504,
                                code="upstream_timeout") from None
        except (aiohttp.ClientError, RuntimeError) as exc:  # (RuntimeError: see _closed_under)
            raise self._broken(session, exc, UpstreamError(
                f"request to the upstream at {up.base_url} failed: {type(exc).__name__}: {exc}",
                code="upstream_error")) from None
        if resp.status < 400 or resp.status in allow:
            self._responses.add(resp)
            return resp
        try:
            text = await resp.text(errors="replace")
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as exc:  # (RuntimeError: see _closed_under)
            stopped = self._broken(session, exc, None)  # (the upstream's error is told from its status below)
            if stopped is not None:
                raise stopped from None
            text = ""
        finally:
            resp.release()
        try:
            payload = loads_json(text) if text else None
        except ValueError:
            payload = None
        raise error_from_response(resp.status, payload, text, up, model_id)

    async def _json(self, resp: Any, up: Upstream) -> Any:
        import aiohttp

        try:
            return await resp.json(content_type=None)
        except (ValueError, aiohttp.ClientError, RuntimeError) as exc:  # (RuntimeError: see _closed_under)
            raise self._broken(None, exc, UpstreamError(
                f"the upstream at {up.base_url} sent an invalid response: {exc}")) from None
        finally:
            resp.release()

    def _body(self, model: dict[str, Any], body: dict[str, Any], up: Upstream) -> dict[str, Any]:
        body = {**body, "model": up.model, "stream": True}
        if self.ctx.settings.get("request_usage"):
            body["stream_options"] = {"include_usage": True}
        return body

    @staticmethod
    def _sampling(model: dict[str, Any], sampling: t.SamplingOptions) -> t.SamplingOptions:
        """The request's sampling over the model.json ``parameters`` (the services' one rule; a
        no-op when the services layered them already)."""
        params = model.get("parameters") or {}
        forwarded = {k: params[k] for k in FORWARDED_PARAMETERS if params.get(k) is not None}
        return t.merge_options(sampling, t.SamplingOptions.from_mapping(forwarded))

    # -- models --------------------------------------------------------
    async def load_model(self, model: dict[str, Any]) -> None:
        """Check that the upstream answers ``GET <base_url>/models`` (with the API key); nothing is loaded here.

        Raises ``ModelLoadError`` with the reason if the model's upstream is
        misconfigured, unreachable or refuses the key. Emits
        ``ModelInit``/``ModelReady``/``ModelFailed``.
        """
        model_id = model["id"]
        bus = self.ctx.bus
        await bus.emit(ModelInit(model_id=model_id, engine=self.engine_name))
        self._loading.add(model_id)
        try:
            up = self._upstream(model)
            resp = await self._send(up, "GET", up.url("/models"), model_id)
            listing = await self._json(resp, up)
            names = {m.get("id") for m in (listing or {}).get("data", []) if isinstance(m, dict)} \
                if isinstance(listing, dict) else set()
        except Exception as exc:
            message = str(exc)
            self._failures[model_id] = message
            self._ready.pop(model_id, None)
            await bus.emit(ModelFailed(model_id=model_id, engine=self.engine_name, error=message))
            if isinstance(exc, (ModelLoadError, ModelNotFoundError)):
                raise
            raise ModelLoadError(f"model '{model_id}': {message}") from None
        finally:
            self._loading.discard(model_id)
        listed = up.model in names
        if not listed:
            # llama.cpp's server answers under any name; OpenAI-style servers will say 404 at the first request.
            self.ctx.logger.warning("the upstream at %s does not list the model %r (model %s); trying anyway",
                                    up.base_url, up.model, model_id)
        self._failures.pop(model_id, None)
        self._ready[model_id] = {"base_url": up.base_url, "model": up.model, "listed": listed}
        await bus.emit(ModelReady(model_id=model_id, engine=self.engine_name))

    async def unload_model(self, model_id: str) -> None:
        """Forget the model's readiness (the upstream keeps running); ``ModelNotFoundError`` if it was not ready."""
        if model_id not in self._ready:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded")
        del self._ready[model_id]
        await self.ctx.bus.emit(ModelStopped(model_id=model_id, engine=self.engine_name, reason="requested"))

    async def loaded_models(self) -> list[str]:
        """Remote models that passed a readiness check or served a request since jan started."""
        return list(self._ready)

    #: How ``/metrics`` labels this engine's models (``engine``): served elsewhere, not by this machine's engine.
    metrics_label = "remote"

    def metrics(self) -> dict[str, dict]:
        """Per remote model that was sent a request since jan started: its counters as ``/metrics`` reads every
        engine's (:class:`~jan.server.routes.health.EngineCollector`): ``requests_total`` (generations asked of
        the upstream, whatever dialect asked: each choice of ``n`` of each prompt one, as the local engine counts
        them; :func:`jan.services.abilities.generations`), ``requests_cancelled``, ``requests_failed``,
        ``prompt_tokens_total`` and ``generated_tokens_total`` (as the upstream's usage tells them, which
        ``request_usage`` asks for; 0 where it tells none)."""
        keys = ("requests_total", "requests_cancelled", "requests_failed", "prompt_tokens_total",
                "generated_tokens_total")
        return {model_id: {k: v for k, v in stats.as_dict().items() if k in keys}
                for model_id, stats in self._stats.items()}

    async def model_status(self, model_id: str) -> dict[str, Any]:
        """``ready`` once checked or used, with the upstream (``base_url``, remote ``model``) and ``metrics``."""
        stats = self._stats.get(model_id)
        metrics = stats.as_dict() if stats else _Stats().as_dict()
        if model_id in self._loading:
            return {"id": model_id, "status": ModelState.LOADING}
        if model_id in self._ready:
            info = self._ready[model_id]
            return {"id": model_id, "status": ModelState.READY, "engine": self.engine_name,
                    "base_url": info["base_url"], "remote_model": info["model"],
                    "active_requests": metrics["requests_active"], "metrics": metrics}
        if model_id in self._failures:
            return {"id": model_id, "status": ModelState.FAILED, "error": self._failures[model_id]}
        return {"id": model_id, "status": ModelState.UNLOADED}

    # -- generation ----------------------------------------------------
    # The OpenAI wire format (``wire``) and the SSE parser are imported by a remote model's first request: a server
    # with no remote model never needs them (~0.2 MiB resident, issue 16; tests/test_start_imports.py)
    def chat(self, model: dict[str, Any], request: t.ChatRequest) -> AsyncIterator[t.ChatDelta]:
        """Stream ``POST <base_url>/chat/completions`` (always ``stream: true`` upstream) as typed deltas."""
        from jan.extensions.remote import wire

        request = replace(request, sampling=self._sampling(model, request.sampling))
        return self._deltas(model, wire.chat_body(request), "/chat/completions", wire.chat_deltas,
                            generations(request)[0])

    def complete(self, model: dict[str, Any], request: t.CompletionRequest) -> AsyncIterator[t.CompletionDelta]:
        """Stream ``POST <base_url>/completions`` the same way as :meth:`chat`."""
        from jan.extensions.remote import wire

        request = replace(request, sampling=self._sampling(model, request.sampling))
        return self._deltas(model, wire.completion_body(request), "/completions", wire.completion_deltas,
                            generations(request)[0])

    async def _deltas(self, model: dict[str, Any], body: dict[str, Any], path: str,
                      parse: Callable[[dict[str, Any]], list[Any]], count: int) -> AsyncIterator[Any]:
        async with contextlib.aclosing(self._stream(model, body, path, count)) as chunks:
            async for chunk in chunks:
                for delta in parse(chunk):
                    yield delta

    async def _stream(self, model: dict[str, Any], request: dict[str, Any], path: str,
                      count: int = 1) -> AsyncIterator[dict[str, Any]]:
        """The upstream's chunks (OpenAI dicts) of one streamed request, usage included; ``count``: the choices it
        asks for, each counted one generation."""
        import aiohttp

        from jan.extensions.remote.sse import SSEParser

        model_id = model["id"]
        up = self._upstream(model)
        body = self._body(model, request, up)
        tracker = _Request(self._stats_for(model_id), count)
        outcome = "failed"
        resp = None
        try:
            resp = await self._send(up, "POST", up.url(path), model_id, body)
            session = self._session  # the one it was sent through (None when this extension stopped meanwhile)
            self._ready.setdefault(model_id, {"base_url": up.base_url, "model": up.model, "listed": None})
            self._failures.pop(model_id, None)
            if "text/event-stream" not in resp.headers.get("Content-Type", ""):
                # An upstream that ignores "stream": one complete JSON response.
                for chunk in _as_chunks(await self._json(resp, up), path):
                    chunk["model"] = model_id
                    tracker.chunk(chunk)
                    yield chunk
                outcome = "finished"
                return
            parser = SSEParser()
            finished_choices = False
            done = False
            while not done:
                try:
                    received = await resp.content.readany()
                except asyncio.TimeoutError:
                    raise UpstreamError(f"the upstream at {up.base_url} sent nothing for "
                                        f"{self.ctx.settings.get('timeout')} s", http_status=504,
                                        code="upstream_timeout") from None
                except (aiohttp.ClientError, RuntimeError) as exc:  # (RuntimeError: see _closed_under)
                    raise self._broken(session, exc, UpstreamError(
                        f"the connection to the upstream at {up.base_url} broke mid-stream: "
                        f"{type(exc).__name__}: {exc}")) from None
                events = parser.feed_bytes(received) if received else parser.close()
                for event in events:
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        data = loads_json(event.data)
                    except ValueError:
                        raise UpstreamError(f"the upstream at {up.base_url} sent invalid JSON in its stream: "
                                            f"{event.data[:200]!r}") from None
                    if not isinstance(data, dict):
                        continue
                    if event.event == "error" or "error" in data:
                        raise error_from_event(data, up, model_id)
                    data["model"] = model_id
                    tracker.chunk(data)
                    if any(c.get("finish_reason") for c in data.get("choices") or ()):
                        finished_choices = True
                    yield data
                if not received and not done:
                    if not finished_choices:
                        raise UpstreamError(f"the upstream at {up.base_url} ended its stream before finishing")
                    done = True
            outcome = "finished"
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "cancelled"
            raise
        finally:
            tracker.end(outcome)
            if resp is not None:
                if outcome == "finished":
                    resp.release()
                else:
                    resp.close()  # drop the connection: the upstream sees the disconnect and stops generating

    # -- embeddings and tokens -----------------------------------------
    async def embed(self, model: dict[str, Any], request: t.EmbeddingRequest) -> t.EmbeddingResult:
        """``POST <base_url>/embeddings`` with the upstream's model name; float vectors in input order."""
        up = self._upstream(model)
        body: dict[str, Any] = {"input": [x if isinstance(x, str) else list(x) for x in request.inputs],
                                "model": up.model, "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        resp = await self._send(up, "POST", up.url("/embeddings"), model["id"], body)
        result = await self._json(resp, up)
        if not isinstance(result, dict) or not isinstance(result.get("data"), list):
            raise UpstreamError(f"the upstream at {up.base_url} sent an embeddings response without data")
        vectors = _upstream_vectors(result["data"], len(request.inputs))
        if isinstance(vectors, str):  # (an upstream's fault, not the client's: a 502 naming it, never junk sent on)
            raise UpstreamError(f"the upstream at {up.base_url} sent an unusable embeddings response: {vectors}")
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        return t.EmbeddingResult(model["id"], vectors,
                                 tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0
                                 else 0)

    async def _token_call(self, model: dict[str, Any], kind: str, body: dict[str, Any]) -> Any:
        """POST to the upstream's ``/tokenize`` or ``/detokenize`` (jan: under ``/v1``; llama.cpp: at the root)."""
        up = self._upstream(model)
        key = (up.base_url, kind)
        candidates = [self._token_urls[key]] if key in self._token_urls else \
            list(dict.fromkeys([up.url(f"/{kind}"), f"{up.root}/{kind}"]))
        for url in candidates:
            resp = await self._send(up, "POST", url, model["id"], {"model": up.model, **body}, allow=(404, 405))
            if resp.status in (404, 405):
                await self._raise_unknown_model(resp, up, model)
                continue
            self._token_urls[key] = url
            return await self._json(resp, up)
        raise UpstreamRequestError(
            f"model '{model['id']}': the upstream at {up.base_url} has no /{kind} endpoint (OpenAI's API has "
            f"none; jan and llama.cpp's server have one)", code="not_supported")

    async def slots_call(self, model: dict[str, Any], id_slot: int | None = None, action: str | None = None,
                         body: dict[str, Any] | None = None, fail_on_no_slot: bool = False
                         ) -> tuple[int, Any]:
        """llama-server's ``GET /slots`` (``id_slot`` None) or ``POST /slots/{id_slot}?action=`` (with ``body``, its
        ``filename``) forwarded to the upstream's root, where llama.cpp's server (and jan) serves them, the upstream's
        model named as its router reads it (the body's ``model``, or ``?model=``): its status and JSON answer,
        llama-server's refusals (400, 501, 503) included, for the caller to answer as they are. An upstream without
        the route (OpenAI's API, vLLM) is a 400-class error saying so."""
        from urllib.parse import urlencode

        up = self._upstream(model)
        if id_slot is None:
            query = {"model": up.model, **({"fail_on_no_slot": "1"} if fail_on_no_slot else {})}
            url, method, sent = f"{up.root}/slots?{urlencode(query)}", "GET", None
        else:
            url = f"{up.root}/slots/{id_slot}?{urlencode({'action': action or ''})}"
            method, sent = "POST", {**(body or {}), "model": up.model}
        resp = await self._send(up, method, url, model["id"], sent, allow=(400, 404, 405, 501, 503))
        if resp.status in (404, 405):
            await self._raise_unknown_model(resp, up, model)
            raise UpstreamRequestError(
                f"model '{model['id']}': the upstream at {up.base_url} has no /slots endpoint (llama.cpp's server "
                f"and jan have one; OpenAI's API and vLLM have none)", code="not_supported")
        if resp.status >= 400:  # (its message told as the upstream's: a 501 asks for its --slot-save-path, not jan's)
            payload = await self._json_or_none(resp)
            message, code, param = error_fields(payload, "")
            error = payload.get("error") if isinstance(payload, dict) else None
            kind = error.get("type") if isinstance(error, dict) and isinstance(error.get("type"), str) else None
            return resp.status, {"error": {"message": f"the upstream at {up.base_url}: {message}", "type": kind,
                                           "code": code}}
        return resp.status, await self._json(resp, up)

    async def count_chat_tokens(self, model: dict[str, Any], request: t.ChatRequest) -> int:
        """The prompt tokens of ``request`` as the upstream renders it: the chat body :meth:`chat` would send, posted
        to its ``/chat/completions/input_tokens`` (jan's and llama.cpp's server's); a 400-class error where it has
        none (OpenAI's API)."""
        from jan.extensions.remote import wire

        up = self._upstream(model)
        request = replace(request, sampling=self._sampling(model, request.sampling))
        body = {**wire.chat_body(request), "model": up.model}
        resp = await self._send(up, "POST", up.url("/chat/completions/input_tokens"), model["id"], body,
                                allow=(404, 405))
        if resp.status in (404, 405):
            await self._raise_unknown_model(resp, up, model)
            raise UpstreamRequestError(
                f"model '{model['id']}': the upstream at {up.base_url} counts no prompt tokens (it has no "
                "/chat/completions/input_tokens, which jan and llama.cpp's server have; OpenAI's API has none)",
                code="not_supported")
        result = await self._json(resp, up)
        count = result.get("input_tokens") if isinstance(result, dict) else None
        if not isinstance(count, int) or isinstance(count, bool):
            raise UpstreamError(f"the upstream at {up.base_url} sent an input_tokens answer without a count")
        return count

    async def _raise_unknown_model(self, resp: Any, up: Upstream, model: dict[str, Any]) -> None:
        """A 404/405 from the upstream is either its "no such model" (raised as jan's 404 for ``model``) or a route it
        does not have (returns, for the caller to say which route)."""
        payload = await self._json_or_none(resp)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and error.get("code") == "model_not_found":
            raise error_from_response(404, payload, "", up, model["id"])

    async def _json_or_none(self, resp: Any) -> Any:
        try:
            return await resp.json(content_type=None)
        except Exception:  # noqa: BLE001 - only used to read an error body
            return None
        finally:
            resp.release()

    async def tokenize(self, model: dict[str, Any], text: str, *, add_special: bool = True,
                       parse_special: bool = False) -> list[int]:
        """Token ids from the upstream's ``/tokenize`` (jan, llama.cpp); a 400-class error if it has none."""
        result = await self._token_call(model, "tokenize", {"content": text, "add_special": add_special,
                                                            "parse_special": parse_special})
        tokens = result.get("tokens") if isinstance(result, dict) else None
        if not isinstance(tokens, list):
            raise UpstreamError("the upstream's /tokenize answer has no tokens list")
        return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]

    async def detokenize(self, model: dict[str, Any], tokens: list[int]) -> str:
        """Text from the upstream's ``/detokenize`` (jan, llama.cpp); a 400-class error if it has none."""
        result = await self._token_call(model, "detokenize", {"tokens": list(tokens)})
        content = result.get("content") if isinstance(result, dict) else None
        if not isinstance(content, str):
            raise UpstreamError("the upstream's /detokenize answer has no content")
        return content


def _as_chunks(response: Any, path: str) -> list[dict[str, Any]]:
    """A complete (non-streamed) upstream response as the equivalent chunks."""
    if not isinstance(response, dict) or not isinstance(response.get("choices"), list):
        raise UpstreamError("the upstream sent a response without choices")
    head = {k: response[k] for k in ("id", "created", "model", "system_fingerprint") if k in response}
    chunks = []
    if path == "/chat/completions":
        choices = []
        for choice in response["choices"]:
            delta = dict(choice.get("message") or {})
            choices.append({"index": choice.get("index", 0), "delta": delta, "logprobs": choice.get("logprobs"),
                            "finish_reason": choice.get("finish_reason")})
        chunks.append({**head, "object": "chat.completion.chunk", "choices": choices})
    else:
        chunks.append({**head, "object": "text_completion", "choices": response["choices"]})
    if response.get("usage"):
        chunks.append({**head, "object": chunks[0]["object"], "choices": [], "usage": response["usage"]})
    return chunks


__all__ = ["FORWARDED_PARAMETERS", "RemoteInferenceExtension", "RemoteSettings"]


def _upstream_vectors(data: list[Any], count: int) -> tuple[list[float], ...] | str:
    """An OpenAI embeddings answer's ``data`` as one vector per input in input order, or why it is none. Each item's
    ``index`` places it (all of them, each input's once; an answer without any is in input order); an ``embedding``
    sent as base64 (OpenAI's other encoding: an upstream that ignores ``encoding_format``) is decoded as its
    little-endian float32s; the vectors are then checked as any engine's (:func:`embedding_vectors_fault`)."""
    import base64
    import binascii
    import struct

    from jan.services.engine_output import embedding_vectors_fault

    if not all(isinstance(d, dict) for d in data):
        return "an item of its data is not an object"
    indices = [d.get("index") for d in data]
    if any(i is not None for i in indices):
        if sorted(i for i in indices if isinstance(i, int) and not isinstance(i, bool)) != list(range(len(data))):
            return f"its indices {indices!r:.80} are not each of 0 to {len(data) - 1} once"
        data = sorted(data, key=lambda d: d["index"])
    vectors: list[Any] = []
    for i, d in enumerate(data):
        v = d.get("embedding")
        if isinstance(v, str):
            try:
                raw = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                return f"vector {i} is a string that is not base64"
            if not raw or len(raw) % 4:
                return f"vector {i} is base64 of {len(raw)} bytes, not of float32s"
            v = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        vectors.append(v)
    problem = embedding_vectors_fault(vectors, count)
    return problem if problem is not None else tuple([float(x) for x in v] for v in vectors)
