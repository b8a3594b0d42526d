"""Reading and validating JSON request bodies."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from jan.server.errors import APIError

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request) -> object:
    raw = await request.read()  # over the size limit: aiohttp raises 413 here
    if not raw:
        raise APIError(400, "The request body is empty; expected a JSON object", code="invalid_json")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object", code="invalid_json")
    return model.model_validate(data)  # ValidationError -> 400 naming the param (error middleware)
