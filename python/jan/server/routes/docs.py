"""``/openapi.json`` (generated from the routes and the pydantic request models) and ``/docs``."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

import jan
from jan.server.jsonio import json_response
from jan.server import schemas

routes = web.RouteTableDef()

# Request bodies by (method, path); every other route is documented from its handler's docstring.
REQUEST_BODIES: dict[tuple[str, str], type] = {
    ("POST", "/v1/chat/completions"): schemas.ChatCompletionRequest,
    ("POST", "/v1/completions"): schemas.CompletionRequest,
    ("POST", "/v1/embeddings"): schemas.EmbeddingRequest,
    ("POST", "/v1/tokenize"): schemas.TokenizeRequest,
    ("POST", "/v1/detokenize"): schemas.DetokenizeRequest,
}
EXTRA_BODIES: dict[tuple[str, str], type] = {}  # other route modules add theirs

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}


def build_openapi(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict] = {}
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in app.router.routes():
        method = route.method.upper()
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or method in ("HEAD", "OPTIONS", "*") or path.startswith("/static"):
            continue
        doc = (getattr(route.handler, "__doc__", None) or "").strip()
        op: dict[str, Any] = {
            "summary": doc.splitlines()[0] if doc else f"{method} {path}",
            "responses": {"200": {"description": "OK"},
                          "4XX": {"description": "Error", "content": {"application/json": {
                              "schema": {"$ref": "#/components/schemas/Error"}}}}},
        }
        if doc:
            op["description"] = doc
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                for p in params]
        body = REQUEST_BODIES.get((method, path)) or EXTRA_BODIES.get((method, path))
        if body is not None:
            schema = body.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
            for name, definition in schema.pop("$defs", {}).items():
                components[name] = definition
            components[body.__name__] = schema
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "jan", "version": jan.__version__,
                 "description": "OpenAI-compatible local API of jan, plus Jan's threads, assistants and models."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of every endpoint."""
    return json_response(build_openapi(request.app))


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    """Browsable API documentation."""
    spec = build_openapi(request.app)
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
