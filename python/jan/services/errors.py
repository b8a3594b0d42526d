"""Errors the services raise for requests they cannot serve (front ends map them to their dialect)."""

from __future__ import annotations

from jan.errors import JanError

__all__ = ["RequestError", "ServiceUnavailableError"]


class RequestError(JanError, ValueError):
    """The request cannot be served as asked; ``param`` names the field, ``code`` the kind
    (an HTTP front end answers 400)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


class ServiceUnavailableError(JanError):
    """No enabled extension provides what the request needs (an HTTP front end answers 503);
    ``builtin`` names the built-in extension to enable."""

    http_status = 503
    code = "extension_unavailable"

    def __init__(self, message: str, *, builtin: str | None = None):
        super().__init__(message)
        self.builtin = builtin
