"""``/v1/extensions``: list extensions, enable/disable them at runtime, read and change their settings.

``GET    /v1/extensions``                        every extension (built-in or installed) with its state
``GET    /v1/extensions/{name}``                 one of them
``PATCH  /v1/extensions/{name}``                 ``{"enabled": true|false}``
``POST   /v1/extensions/{name}/enable``          same as ``{"enabled": true}`` (also retries a failed one)
``POST   /v1/extensions/{name}/disable``         same as ``{"enabled": false}``
``GET    /v1/extensions/{name}/settings``        effective values, user values, defaults and JSON schema
``PATCH  /v1/extensions/{name}/settings``        ``{key: value, ...}``; ``null`` resets a key to its default
``DELETE /v1/extensions/{name}/settings``        reset every setting to its default

Scoped names (``@scope/name``) are written URL-encoded (``%40scope%2Fname``).
``enable``/``disable``/``settings`` are reserved path segments; an extension's
own routes live under ``/v1/extensions/<name>/<anything else>``.

Settings the schema marks ``writeOnly`` (API keys) are shown as ``"********"``
once set; sending that marker back leaves the stored value unchanged.

An extension that failed to import, or whose schema is unusable, still has its
stored settings read (``GET``: ``schema`` null, every value shown as the marker,
since which are secrets is unknown, ``error`` saying why) and removed
(``DELETE``); a change (``PATCH``) needs the schema and is a 409.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StrictBool

from jan.core import ExtensionManager, ExtensionNotFoundError, SettingsSchemaError, SettingsValidationError
from jan.server.jsonio import json_response
from jan.server.errors import APIError
from jan.errors import not_found_message
from jan.server.keys import MANAGER
from jan.server.validation import body_step, no_fields, parse_body, read_json

routes = web.RouteTableDef()

#: What a secret (``writeOnly``) setting shows instead of its value.
REDACTED = "********"


class ExtensionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool


def _manager(request: web.Request) -> ExtensionManager:
    return request.app[MANAGER]


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    manager = _manager(request)
    try:
        manager.record(name)
    except ExtensionNotFoundError:
        raise APIError(404, f"{not_found_message('extension', name)}: none of that name is installed",
                       param="name", code="extension_not_found") from None
    return name


def _record(request: web.Request, name: str) -> dict[str, Any]:
    return {"object": "extension", **_manager(request).record(name).to_dict()}


@routes.get("/v1/extensions")
async def list_extensions(request: web.Request) -> web.Response:
    names = [r.name for r in _manager(request).list()]
    return json_response({"object": "list", "data": [_record(request, n) for n in names]})


async def _switch(request: web.Request, name: str, enabled: bool) -> web.Response:
    manager = _manager(request)
    if enabled:
        await manager.enable(name)
    else:
        await manager.disable(name)
    return json_response(_record(request, name))


#: Where an extension's settings go, for a body sent to its enable or disable.
SETTINGS_INSTEAD = " (an extension's settings are changed with PATCH /v1/extensions/{name}/settings)"


@routes.post("/v1/extensions/{name}/enable")
async def enable_extension(request: web.Request) -> web.Response:
    await no_fields(request, SETTINGS_INSTEAD)
    return await _switch(request, _name(request), True)


@routes.post("/v1/extensions/{name}/disable")
async def disable_extension(request: web.Request) -> web.Response:
    await no_fields(request, SETTINGS_INSTEAD)
    return await _switch(request, _name(request), False)


# -- settings -------------------------------------------------------------------------
def _secret_keys(schema: dict[str, Any] | None) -> set[str]:
    props = (schema or {}).get("properties") or {}
    return {k for k, p in props.items() if isinstance(p, dict) and (p.get("writeOnly") or p.get("format") == "password")}


def _redact(values: dict[str, Any], secrets: set[str]) -> dict[str, Any]:
    return {k: (REDACTED if k in secrets and v not in (None, "") else v) for k, v in values.items()}


async def _settings(request: web.Request, name: str):
    try:
        return await _manager(request).settings_off_loop(name)
    except ExtensionNotFoundError as exc:  # failed to import: no schema known
        raise APIError(409, str(exc), param="name", code="extension_unavailable") from None
    except SettingsSchemaError as exc:  # the extension's own schema is unusable: no value of the user's mends that
        raise APIError(409, str(exc), param="name", code="invalid_settings_schema") from None


async def _stored_settings(request: web.Request, name: str):
    """``(settings, why the schema is unknown or None)`` for reading and resetting: an extension that failed to
    import (or whose schema is unusable) has its stored values read and removed without a schema, which neither
    needs; 409 for an entry with no settings of its own."""
    try:
        return await _manager(request).stored_settings_off_loop(name)
    except ExtensionNotFoundError as exc:
        raise APIError(409, str(exc), param="name", code="extension_unavailable") from None


def _settings_body(name: str, settings, unknown: str | None = None) -> dict[str, Any]:
    """The settings API's answer; ``unknown``: why the schema is unknown, every stored value then redacted (which
    of them are secrets, the schema would say) and ``error`` saying why."""
    schema = settings.json_schema()
    secrets = set(settings.user_values) if unknown else _secret_keys(schema)
    return {
        "object": "extension.settings",
        "extension": name,
        "values": _redact(settings.all(), secrets),
        "user_values": _redact(settings.user_values, secrets),
        "defaults": _redact(settings.defaults(), secrets),
        "schema": schema,
        "error": unknown or (str(settings.error) if settings.error else None),
        # what a hand-edited settings.json held that was ignored (the values above are without it); a secret's
        # message may quote its value, so it is told without one
        "problems": [p if p["field"] not in secrets else {**p, "message": "stored value ignored: invalid value"}
                     for p in getattr(settings, "problems", [])],
    }


def _invalid(exc: SettingsValidationError) -> APIError:
    return APIError(400, str(exc), param=exc.field, code="invalid_settings")


@routes.get("/v1/extensions/{name}/settings")
async def get_settings(request: web.Request) -> web.Response:
    name = _name(request)
    return json_response(_settings_body(name, *await _stored_settings(request, name)))


@routes.patch("/v1/extensions/{name}/settings")
async def patch_settings(request: web.Request) -> web.Response:
    name = _name(request)
    settings = await _settings(request, name)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object of settings", code="invalid_json")
    schema = settings.json_schema()
    secrets = _secret_keys(schema)
    body = {k: v for k, v in body.items() if not (k in secrets and v == REDACTED)}
    resets = [k for k, v in body.items() if v is None]
    known = (schema or {}).get("properties")
    for key in resets:
        if isinstance(known, dict) and key not in known:
            raise APIError(400, f"extension {name!r}: invalid setting {key!r}: is not a known setting", param=key,
                           code="invalid_settings")
    values = {k: v for k, v in body.items() if v is not None}
    try:
        # all or nothing: check before resetting anything (a big body's off the event loop: a schema's walk of it)
        await body_step(settings.validate, values)
        # (the file's lock and its write in a worker: another process holding the lock stalls this request only)
        if resets:
            await settings.reset_off_loop(*resets)
        if values:
            await settings.update_off_loop(values)
    except SettingsValidationError as exc:
        raise _invalid(exc) from None
    return json_response(_settings_body(name, settings))


@routes.delete("/v1/extensions/{name}/settings")
async def reset_settings(request: web.Request) -> web.Response:
    name = _name(request)
    settings, unknown = await _stored_settings(request, name)
    try:
        await settings.reset_off_loop()
    except SettingsValidationError as exc:  # a required setting has no default
        raise _invalid(exc) from None
    return json_response(_settings_body(name, settings, unknown))


# The catch-all routes last, so that the more specific ones above win.
@routes.get("/v1/extensions/{name}")
async def get_extension(request: web.Request) -> web.Response:
    return json_response(_record(request, _name(request)))


@routes.patch("/v1/extensions/{name}")
async def patch_extension(request: web.Request) -> web.Response:
    name = _name(request)
    body = await parse_body(request, ExtensionPatch)
    return await _switch(request, name, body.enabled)
