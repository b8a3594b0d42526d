"""``/openapi.json`` (generated from the routes and the pydantic request models) and ``/docs``."""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any

from aiohttp import web

import jan
from jan.server.errors import under_prefix
from jan.server.jsonio import json_response
from jan.server import schemas

log = logging.getLogger("jan.server")
routes = web.RouteTableDef()

# Request bodies by (method, path); every other route is documented from its handler's docstring.
REQUEST_BODIES: dict[tuple[str, str], type] = {
    ("POST", "/v1/chat/completions"): schemas.ChatCompletionRequest,
    ("POST", "/v1/chat/completions/input_tokens"): schemas.ChatCompletionRequest,
    ("POST", "/v1/completions"): schemas.CompletionRequest,
    ("POST", "/v1/embeddings"): schemas.EmbeddingRequest,
    ("POST", "/v1/rerank"): schemas.RerankRequest,
    ("POST", "/v1/reranking"): schemas.RerankRequest,
    ("POST", "/v1/tokenize"): schemas.TokenizeRequest,
    ("POST", "/v1/detokenize"): schemas.DetokenizeRequest,
    ("POST", "/v1/chat/completions/control"): schemas.ChatControlRequest,
}
EXTRA_BODIES: dict[tuple[str, str], type] = {}  # other route modules add theirs

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}

_OBJECT = {"type": "object"}
_USAGE = {"type": "object", "required": ["prompt_tokens", "total_tokens"], "properties": {
    "prompt_tokens": {"type": "integer", "minimum": 0}, "completion_tokens": {"type": "integer", "minimum": 0},
    "total_tokens": {"type": "integer", "minimum": 0}}}
_TOOL_CALL = {"type": "object", "required": ["id", "type", "function"], "properties": {
    "id": {"type": "string"}, "type": {"const": "function"},
    "function": {"type": "object", "required": ["name", "arguments"],
                 "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}}}}}
#: llama-server's ``timings`` of a generation (its clients read them), on a local model's answer and on a stream's
#: last chunk of each result
_TIMINGS = {"type": "object", "description": "llama-server's timings of the generation (a local model's)",
            "properties": {k: {"type": "integer" if k.endswith("_n") else "number"}
                           for k in ("cache_n", "prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second",
                                     "predicted_n", "predicted_ms", "predicted_per_token_ms",
                                     "predicted_per_second")}}
_FINISH = {"type": ["string", "null"], "enum": ["stop", "length", "tool_calls", "content_filter", None]}
#: Response bodies of the OpenAI routes (what clients parse); jan's own resources are JSON objects.
RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "usage": _USAGE, "timings": _TIMINGS,
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message", "finish_reason"],
                                                "properties": {
            "index": {"type": "integer", "minimum": 0}, "finish_reason": _FINISH,
            "message": {"type": "object", "required": ["role"], "properties": {
                "role": {"const": "assistant"}, "content": {"type": ["string", "null"]},
                "reasoning_content": {"type": ["string", "null"]},
                "tool_calls": {"type": "array", "items": _TOOL_CALL}}},
            "logprobs": {"type": ["object", "null"]}}}}}},
    "Completion": {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
        "id": {"type": "string"}, "object": {"const": "text_completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "usage": _USAGE, "timings": _TIMINGS,
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "text", "finish_reason"],
                                                "properties": {
            "index": {"type": "integer", "minimum": 0}, "text": {"type": "string"}, "finish_reason": _FINISH,
            "logprobs": {"type": ["object", "null"]}}}}}},
    "EmbeddingList": {"type": "object", "required": ["object", "data", "model"], "properties": {
        "object": {"const": "list"}, "model": {"type": "string"}, "usage": _USAGE,
        "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                             "properties": {
            "object": {"const": "embedding"}, "index": {"type": "integer", "minimum": 0},
            "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}}}}}},
    "Reranked": {"oneOf": [
        {"type": "object", "required": ["object", "model", "results"], "properties": {
            "object": {"const": "list"}, "model": {"type": "string"}, "usage": _USAGE,
            "results": {"type": "array", "items": {"type": "object", "required": ["index", "relevance_score"],
                                                    "properties": {
                "index": {"type": "integer", "minimum": 0}, "relevance_score": {"type": "number"},
                "document": {"type": "object", "description": "{\"text\"} for a string document, an object "
                             "document as it was given", "properties": {"text": {"type": "string"}}}}}}}},
        {"type": "array", "description": "For a body with Text Embeddings Inference's texts", "items": {
            "type": "object", "required": ["index", "score"], "properties": {
                "index": {"type": "integer", "minimum": 0}, "score": {"type": "number"}, "text": {"type": "string"}}}}]},
    "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
        "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
        "owned_by": {"type": "string"}, "state": {"type": ["string", "null"]},
        "weights_missing": {"type": "boolean", "description": "true for a model whose weights file is not on disk "
                                                               "(left out otherwise)"}}},
    "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
    "List": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": _OBJECT}}},
    "Tokens": {"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": {
        "oneOf": [{"type": "integer", "minimum": 0}, {"type": "object", "required": ["id", "piece"]}]}}}},
    "Detokenized": {"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}},
    "Health": {"type": "object", "required": ["status", "uptime_seconds"], "properties": {
        "status": {"const": "ok"}, "uptime_seconds": {"type": "number", "minimum": 0},
        "models": {"type": "array", "items": {"type": "string"},
                   "description": "Loaded models; only to a request with the API key (or without --api-key)"}}},
}

JSON, SSE, HTML = "application/json", "text/event-stream", "text/html"


#: One server-sent event, as OpenAPI 3.1 has an event stream's ``schema`` describe it (each event, not the whole
#: stream: OpenAPI 3.2's ``itemSchema`` says so explicitly): its fields as the SSE format names them, ``data`` the
#: text of its data lines (a JSON document in every stream jan sends, ``[DONE]`` at the end of OpenAI's).
_SSE_EVENT = {"type": "object", "properties": {"data": {"type": "string"}, "event": {"type": "string"},
                                               "id": {"type": "string"}, "retry": {"type": "integer"}}}


def _content(media: str, schema: dict[str, Any] | str | None = None) -> dict[str, Any]:
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    default = _OBJECT if media == JSON else _SSE_EVENT if media == SSE else {"type": "string"}
    return {media: {"schema": schema or default}}


#: Successful answers by (method, path) where they are not a 200 JSON object:
#: ``{status: (description, {media type: schema name, schema or None})}``.
RESPONSES: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any]]]] = {
    ("GET", "/"): {"200": ("The chat page", {HTML: None})},
    ("GET", "/favicon.ico"): {"200": ("The page's icon", {"image/svg+xml": None})},
    ("GET", "/docs"): {"200": ("This documentation as a page", {HTML: None})},
    ("GET", "/metrics"): {"200": ("Prometheus text format", {"text/plain": None})},
    ("GET", "/health"): {"200": ("Ready", {JSON: "Health"})},
    ("GET", "/v1/health"): {"200": ("Ready", {JSON: "Health"})},
    ("POST", "/v1/chat/completions"): {"200": ("A chat completion, or with stream: true its chunks as server-sent "
                                                "events", {JSON: "ChatCompletion", SSE: None})},
    ("POST", "/v1/completions"): {"200": ("A completion, or with stream: true its chunks as server-sent events",
                                          {JSON: "Completion", SSE: None})},
    ("POST", "/v1/embeddings"): {"200": ("One embedding per input", {JSON: "EmbeddingList"})},
    ("POST", "/v1/rerank"): {"200": ("The documents most relevant first", {JSON: "Reranked"})},
    ("POST", "/v1/reranking"): {"200": ("The documents most relevant first", {JSON: "Reranked"})},
    ("POST", "/v1/tokenize"): {"200": ("Token ids", {JSON: "Tokens"})},
    ("POST", "/v1/detokenize"): {"200": ("Text", {JSON: "Detokenized"})},
    ("GET", "/v1/models"): {"200": ("The models in the data folder", {JSON: "ModelList"})},
    ("GET", "/v1/models/{model_id}"): {"200": ("The model", {JSON: "Model"})},
    ("POST", "/v1/models"): {"201": ("The model was added", {JSON: "Model"})},
    ("POST", "/v1/models/pull"): {"200": ("Progress as server-sent events", {SSE: None}),
                                  "202": ("Started (stream: false)", {JSON: None})},
    ("GET", "/v1/threads/{thread_id}/files/{file_id}"): {"200": ("The image file", {
        "image/png": None, "image/jpeg": None, "image/webp": None, "image/gif": None})},
    ("POST", "/v1/threads/{thread_id}/runs"): {"200": ("The run, or with stream: true its events",
                                                        {JSON: None, SSE: None})},
    ("POST", "/v1/threads/runs"): {"200": ("The run on the new thread, or with stream: true thread.created and "
                                           "the run's events", {JSON: None, SSE: None})},
}
#: Error bodies of other dialects, by path prefix: ``{prefix: (schema name, schema)}`` (jan's own: OpenAI's).
DIALECT_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {}
#: Paths also served without /v1 (as llama-server does); documented like their /v1 twin.
UNPREFIXED = {"/chat/completions", "/completions", "/embeddings", "/models", "/tokenize", "/detokenize", "/rerank",
              "/reranking", "/responses", "/responses/input_tokens", "/chat/completions/input_tokens",
              "/chat/completions/control"}
#: Paths open without the API key.
OPEN = {"/", "/favicon.ico", "/health", "/v1/health"}
#: A path segment that is a literal next to a parameter at the same place (``/v1/models/pull`` and
#: ``/v1/models/{model_id}``): the parameter's schema excludes it, so no two operations overlap.
RESERVED_SEGMENTS = {"/v1/models/{model_id}": ("model_id", ["pull"]),
                     "/v1/threads/{thread_id}": ("thread_id", ["runs"])}


def _responses(method: str, path: str) -> dict[str, Any]:
    twin = "/v1" + path if path in UNPREFIXED else path
    ok = RESPONSES.get((method, twin), {"200": ("OK", {JSON: None})})
    out: dict[str, Any] = {status: {"description": desc, "content": {
        media: _content(media, schema)[media] for media, schema in contents.items()}}
        for status, (desc, contents) in ok.items()}
    error_name = next((name for prefix, (name, _) in DIALECT_ERRORS.items() if under_prefix(path, prefix)), "Error")
    error = {"content": {JSON: {"schema": {"$ref": f"#/components/schemas/{error_name}"}}}}
    out["4XX"] = {"description": "The request cannot be served as sent (the body names the param)", **error}
    if path not in ("/", "/favicon.ico", "/health", "/v1/health", "/docs", "/openapi.json"):
        out["503"] = {"description": "Busy (queue full), shutting down, or the extension that serves this is off",
                      **error}
    return out


def _path_parameters(path: str) -> list[dict[str, Any]]:
    params = []
    for seg in path.split("/"):
        if not (seg.startswith("{") and seg.endswith("}")):
            continue
        name = seg[1:-1]
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        for prefix, (param, words) in RESERVED_SEGMENTS.items():
            if path.startswith(prefix) and param == name:
                schema["not"] = {"enum": words}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def build_openapi(app: web.Application) -> dict[str, Any]:
    from jan.server.route_index import ModuleLoadError, load_all, target

    # The routes imported on first use are documented by their modules (request models, docstrings, dialect errors):
    # imported now, if they were not yet. One that cannot be imported fails its own routes (a 500 each, logged), not
    # the description of every other: its routes are listed by their method and path.
    for name, exc in load_all().items():
        log.warning("the API description leaves out what jan.server.routes.%s says of its routes: %s", name, exc)

    def documented(handler: Any) -> Any:
        try:
            return target(handler)
        except ModuleLoadError:  # (said above)
            return None

    paths: dict[str, dict] = {}
    components: dict[str, Any] = {"Error": ERROR_SCHEMA, **RESPONSE_SCHEMAS,
                                  **{name: schema for name, schema in DIALECT_ERRORS.values()}}
    for route in app.router.routes():
        method = route.method.upper()
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or method in ("HEAD", "OPTIONS", "*") or path.startswith("/static"):
            continue
        doc = (getattr(documented(route.handler), "__doc__", None) or "").strip()
        op: dict[str, Any] = {
            "summary": doc.splitlines()[0] if doc else f"{method} {path}",
            "responses": _responses(method, path),
        }
        if doc:
            op["description"] = doc
        if path in OPEN:
            op["security"] = []
        params = _path_parameters(path)
        if params:
            op["parameters"] = params
        twin = "/v1" + path if path in UNPREFIXED else path
        body = REQUEST_BODIES.get((method, twin)) or EXTRA_BODIES.get((method, twin))
        if body is not None:
            schema = body.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
            for name, definition in schema.pop("$defs", {}).items():
                components[name] = definition
            components[body.__name__] = schema
            op["requestBody"] = {"required": True, "content": {JSON: {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "jan", "version": jan.__version__,
                 "description": "OpenAI-compatible local API of jan, plus Jan's threads, assistants and models. "
                                "With --api-key, send the key as 'Authorization: Bearer KEY' or 'x-api-key: KEY'."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
        "security": [{"bearer": []}, {"apiKey": []}],
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of every endpoint."""
    # (in a worker: it imports the routes not loaded yet and builds every request model's JSON schema)
    return json_response(await asyncio.to_thread(build_openapi, request.app))


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    """Browsable API documentation."""
    spec = await asyncio.to_thread(build_openapi, request.app)
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            fields = ""
            if ref:
                props = spec["components"]["schemas"][ref].get("properties", {})
                required = set(spec["components"]["schemas"][ref].get("required", []))
                fields = "".join(
                    f"<li><code>{html.escape(name)}</code>{' <b>required</b>' if name in required else ''}"
                    f" <span>{html.escape(str(p.get('description') or p.get('type') or ''))}</span></li>"
                    for name, p in props.items())
                fields = f"<ul>{fields}</ul>"
            rows.append(
                f"<details><summary><span class='m {method}'>{method.upper()}</span> <code>{html.escape(path)}</code>"
                f" — {html.escape(op['summary'])}</summary>{fields}</details>")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>jan API</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em}}
details{{border:1px solid #ddd;border-radius:6px;margin:.4em 0;padding:.4em .8em}}
summary{{cursor:pointer}} .m{{display:inline-block;min-width:4.5em;font-weight:600}}
.get{{color:#0a7}} .post{{color:#06c}} .delete{{color:#c30}} .patch{{color:#a60}} span{{color:#555}}</style>
</head><body><h1>jan API <small>{html.escape(jan.__version__)}</small></h1>
<p>OpenAI-compatible: point any OpenAI client at <code>{html.escape(str(request.url.origin()))}/v1</code>.
Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>{''.join(rows)}</body></html>"""
    return web.Response(text=page, content_type="text/html")
