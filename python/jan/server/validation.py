"""Reading and validating JSON request bodies.

Every JSON body is checked in this order: the ``Content-Type`` is JSON (a
cross-site form or ``text/plain`` POST gets 415, see ``security``), it holds
at most the server's ``max_json_values`` JSON values, counted in its bytes
before it is parsed (:func:`check_json_values`; a 413), the bytes parse as
JSON nested at most :data:`MAX_JSON_DEPTH` deep (a 10,000-deep
body is a 400, never a ``RecursionError`` in the parser or in pydantic), no
string holds a lone UTF-16 surrogate (a 400 naming the field), and only then
the pydantic model validates it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from jan.json_text import json_type_name, nests_deeper
from jan.server.body_size import PARSE_OFF_LOOP_BYTES, body_is_large, body_step
from jan.server.errors import APIError, from_validation_error, json_error

M = TypeVar("M", bound=BaseModel)

__all__ = ["MAX_JSON_DEPTH", "check_json_values", "json_values_in", "too_many_json_values", "query_choice",
           "query_int", "PARSE_OFF_LOOP_BYTES", "body_is_large", "body_step", "loads_bounded", "parse_body",
           "read_json", "validate_json"]

#: Deepest nesting of arrays/objects a request body may have (JSON schemas and tool parameters
#: written by people stay far below; the recursive parsers behind them do not like much more).
MAX_JSON_DEPTH = 64

# JSON may escape half of a UTF-16 surrogate pair on its own ("\ud800"); Python's parser accepts it and
# gives a str that no UTF-8 encoder takes (not the native engine's, not the store's). A valid pair
# ("\ud83d\ude00", json.dumps' way of writing an emoji) parses into one character. The bytes are
# searched for such an escape first, so only a body that has one is walked.
# A client's body holding one is refused (400 invalid_unicode), in every dialect, rather than read as U+FFFD as a
# model's output is (jan.json_text.loads_json): llama-server's JSON parser refuses such a body too, and nothing jan
# writes holds one any more (a model's lone escape is U+FFFD from its parse on), so a history jan wrote is taken
# back whole. JSON text a client carries inside a string (OpenAI's tool-call ``arguments``, a model's text passed on
# verbatim, by jan before, or by another server) is read as a model's output is: its lone escape is U+FFFD.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_json_content_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type (``application/merge-patch+json``), parameters ignored."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def require_json_content_type(request: web.Request) -> None:
    """415 unless the request says its body is JSON (browsers cannot send that cross-site without asking)."""
    content_type = request.headers.get("Content-Type", "")
    if not is_json_content_type(content_type):
        got = f"'{content_type}'" if content_type else "no Content-Type"
        raise APIError(415, f"The request body must be JSON sent with 'Content-Type: application/json' (got {got})",
                       code="unsupported_media_type")


def json_values_in(raw: bytes) -> int:
    """About how many JSON values the JSON text ``raw`` holds, counted without parsing it: its commas and opening
    brackets outside its strings (every value of an array or object but its last is followed by a comma, and every
    array and object opens with its bracket). The commas of a string's text are no values: counted too, a pasted
    CSV or source file of 1.5 MB sent as one message was refused as "too many values". The scan is the engine's
    (``_engine.json_values``, cpp/json_scan.cpp): a few ms over 16 MiB with the GIL released, so other threads
    (the event loop's) run meanwhile."""
    from jan import _engine  # (the native module as jan.engine loads it: loaded by any server before a request)

    return _engine.json_values(raw)


def too_many_json_values(count: int, limit: int) -> APIError:
    """The 413 of a body holding about ``count`` JSON values, more than the server's ``max_json_values``
    (``limit``); each dialect answers it in its own error shape."""
    return APIError(413, f"The request body holds about {count:,} JSON values (its commas and opening brackets outside strings), "
                         f"more than the {limit:,} this server parses in one request (its max_json_values; "
                         "jan serve --max-json-values); send fewer or larger items (a prompt as text rather "
                         "than token ids, fewer messages or parts)", code="too_many_json_values")


def check_json_values(raw: bytes, limit: int) -> int:
    """Refuse (:func:`too_many_json_values`) a JSON body holding more than ``limit`` values, before it is parsed;
    else return about how many it holds (:func:`json_values_in`).

    Python's JSON parser and pydantic's validator hold the GIL from a body's start to its end, on a worker thread
    too: 16 MiB of tiny values (``[1],[1],...``, 500,000 message parts, 1,000,000 ``logit_bias`` keys) held every
    other request, ``/health`` and other clients' streamed tokens included, for seconds. The count holds it for
    milliseconds."""
    count = json_values_in(raw)
    if count > limit:
        raise too_many_json_values(count, limit)
    return count


def request_json_values_limit(request: web.Request) -> int:
    """The ``max_json_values`` of the server ``request`` came to (its default for an app built without a config)."""
    from jan.server.config import DEFAULT_MAX_JSON_VALUES
    from jan.server.keys import CONFIG  # (jan.core with it: loaded by then, kept out of this module's imports)

    config = request.config_dict.get(CONFIG)
    return config.max_json_values if config is not None else DEFAULT_MAX_JSON_VALUES


def loads_bounded(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON bytes; :class:`APIError` 400 when they are not JSON or nest deeper than ``max_depth``."""
    too_deep = APIError(400, f"The request body nests arrays/objects deeper than {max_depth} levels",
                        code="invalid_json")
    # JSON is exchanged as UTF-8 (RFC 8259 8.1; a UTF-8 BOM is let pass). Python's parser would also read bytes
    # it guesses are UTF-16 or UTF-32, and the checks below, which search the bytes as UTF-8 (the lone surrogate
    # escapes), would miss what those hold: such a text reached the stores, which failed on it with Python's
    # codec message.
    encoding = json.detect_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):
        raise APIError(400, f"The request body is not valid JSON: it is not UTF-8 (it reads as {encoding.upper()});"
                            " send JSON as UTF-8", code="invalid_json")
    # A big body's parse runs on a worker thread (body_step), but the C parser holds the GIL from its start to its
    # end all the same; a Python hook called for each object and integer is where the interpreter lets other
    # threads (the event loop's) run: the worst hold of 512 Ki integers went from ~110 to ~25 ms, of 500,000
    # logit_bias keys from ~1.2 s to ~0.3 s (arrays and strings have no hook: max_json_values bounds those).
    hooks = dict(_YIELDING_HOOKS) if len(raw) > PARSE_OFF_LOOP_BYTES else {}
    if not hooks and _LONG_DIGITS.search(raw):
        hooks["parse_int"] = _int  # (a small body's integers are the C parser's alone, unless one may be that long)
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float, **hooks)
    except RecursionError:
        raise too_deep from None
    except json.JSONDecodeError as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except UnicodeDecodeError as exc:
        # (a body in another charset, latin-1's é say: Python's codec message names a codec, not the fix)
        raise APIError(400, f"The request body is not valid JSON: it is not UTF-8 (byte 0x{raw[exc.start]:02x} at "
                            f"offset {exc.start} starts no UTF-8 character); send JSON as UTF-8",
                       code="invalid_json") from None
    except ValueError:
        # (the one other error of the parser: an integer past Python's limit on reading one, whose own text
        # talks of a Python setting)
        raise APIError(400, f"The request body holds an integer of more than {sys.get_int_max_str_digits():,} "
                            "digits", code="invalid_json") from None
    if nests_deeper(data, max_depth):
        raise too_deep
    if _SURROGATE_ESCAPE.search(raw):
        found = lone_surrogate_at(data)
        if found is not None:
            where, in_key = found
            what = "a key of this object" if in_key else "the text"
            raise APIError(400, f"{where or 'The request body'}: {what} holds a lone UTF-16 surrogate escape "
                                "(\\ud800-\\udfff without its pair), which is not a Unicode character",
                           param=where or None, code="invalid_unicode")
    return data


def lone_surrogate_at(value: Any) -> tuple[str, bool] | None:
    """Where in ``value`` (parsed JSON) a string or key first holds a lone surrogate: its field path
    (``messages[0].content``; ``""`` for the top level) and whether a key of the object there does, or
    None; iterative, in document order."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path, False
        elif isinstance(item, dict):
            for key in item:
                if _SURROGATE.search(key):
                    return path, True
            stack.extend((child, f"{path}.{key}" if path else key) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)  # (what the parser builds itself: the last of a repeated key wins)


#: The most digits an integer past a double's range can be written with and still be within it: 2**1024 (the first
#: one past it, about 1.8e308) has 309.
_DOUBLE_INT_DIGITS = 308
#: A run of more digits than that, somewhere in a body (in a string too: then the hook only reads what it would).
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (_DOUBLE_INT_DIGITS + 1))


def _int(text: str) -> int:
    # An integer past a double's range (a 400-digit number) is valid JSON that Python reads exactly, but every field
    # that takes a number as a real one (a keep_alive, a bias, a timeout, a bound) turns it into a float, which
    # raised OverflowError (a 500 in every dialect): refused here, as 1e999 is (_finite_float).
    value = int(text)  # (what the parser reads itself, its digit limit included)
    if len(text) > _DOUBLE_INT_DIGITS:
        try:
            float(value)
        except OverflowError:
            raise APIError(400, f"The request body holds the integer {text[:40]}... ({len(text.lstrip('-'))} "
                                "digits), beyond the range of a double (about 1.8e308)", code="invalid_json") from None
    return value


_YIELDING_HOOKS: dict[str, Any] = {"object_pairs_hook": _object, "parse_int": _int}


def _finite_float(text: str) -> float:
    # A number past a double's range (1e999) is valid JSON that Python reads as infinity, which no field takes as
    # a number (a JSON schema's bound, a sampling value, a score), and which strict JSON out cannot write back.
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise APIError(400, f"The request body holds the number {shown}, beyond the range of a double (about "
                            "1.8e308)", code="invalid_json")
    return value


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259); Python's parser accepts them unless told not to.
    raise APIError(400, f"The request body is not valid JSON: {name} is not a JSON number", code="invalid_json")


async def end_unreadable_body(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: a request whose body could not be read (a Content-Encoding it does not
    follow, a chunked body cut short; answered 400 ``invalid_body``, :func:`jan.server.errors.to_api_error`)
    ends its connection with the answer.

    What is left of such a body cannot be framed, so the connection is not kept alive; and aiohttp, which
    reads an unread body to its end after a response to keep the connection, would read the broken body
    again and log the client's error as an unhandled server exception (with a traceback): the body is marked
    ended instead."""
    body = request.content
    if body.exception() is not None and not body.is_eof():
        response.force_close()
        response.headers["Connection"] = "close"  # (aiohttp has decided its headers before this hook)
        body.feed_eof()


def decoded_content_codings() -> tuple[str, ...]:
    """The ``Content-Encoding`` values whose bodies aiohttp decodes as it reads them: gzip and deflate always,
    br and zstd only with their optional packages (``Brotli``, ``backports.zstd``; not dependencies of jan)."""
    from aiohttp import compression_utils

    optional = (("br", "HAS_BROTLI"), ("zstd", "HAS_ZSTD"))
    return ("gzip", "deflate") + tuple(name for name, flag in optional if getattr(compression_utils, flag, False))


def unsupported_content_encoding(value: str | None) -> APIError:
    """The 415 for a body sent in a ``Content-Encoding`` (``value``; None: not known) that is not decoded here."""
    *others, last = ("identity",) + decoded_content_codings()
    what = f"Content-Encoding '{value}'" if value else "The request's Content-Encoding"
    stacked = " (one coding at most)" if value and "," in value else ""
    return APIError(415, f"{what} is not supported{stacked}; send {', '.join(others)} or {last}",
                    code="unsupported_content_encoding")


def check_body_codings(request: web.Request) -> None:
    """Refuse a body whose codings would not be undone before it is read.

    aiohttp decodes one ``Content-Encoding`` it knows (:func:`decoded_content_codings`) and passes any other
    (``foo``, ``x-gzip``, stacked ``gzip, br``) through undecoded, so the route would parse compressed bytes
    as JSON (a misleading 400) or store them as they came (an Ollama blob): 415 instead, as RFC 9110 (15.5.16)
    asks. Likewise it frames a ``Transfer-Encoding: gzip, chunked`` body by its chunks and leaves the gzip in:
    501, RFC 9112 (6.1)'s answer to a transfer coding the server does not know. (A br or zstd body without its
    package never gets here: aiohttp refuses it while parsing the headers, see :mod:`jan.server.protocol`.)"""
    if not request.body_exists:
        return
    values = request.headers.getall("Content-Encoding", ())
    if values:
        codings = [c.strip().lower() for value in values for c in value.split(",") if c.strip()]
        # (aiohttp decodes when the header's whole value is one coding it knows: the test it makes itself)
        decoded = len(values) == 1 and values[0].isascii() and values[0].lower() in decoded_content_codings()
        if not decoded and any(c != "identity" for c in codings):
            raise unsupported_content_encoding(", ".join(values))
    transfer = [c.strip() for value in request.headers.getall("Transfer-Encoding", ()) for c in value.split(",")
                if c.strip()]
    if any(c.lower() != "chunked" for c in transfer):
        raise APIError(501, f"Transfer-Encoding '{', '.join(transfer)}' is not supported; send the body chunked or "
                            "with a Content-Length", code="unsupported_transfer_encoding")


@web.middleware
async def body_codings_middleware(request: web.Request, handler):
    """:func:`check_body_codings` before any route reads the body (jan's, a dialect's, an extension's).

    The refusal closes the connection: the body is left unread, not read to its end to keep the connection (which
    would decode it where aiohttp does, and fail: two ``gzip`` headers, one undone)."""
    try:
        check_body_codings(request)
    except APIError as err:
        response = json_error(err, {"Connection": "close"})
        response.force_close()
        return response
    return await handler(request)


async def _read_raw(request: web.Request) -> bytes:
    require_json_content_type(request)
    raw = await request.read()  # over the size limit: aiohttp raises 413 here
    if not raw:
        raise APIError(400, "The request body is empty; expected a JSON object", code="invalid_json")
    body_is_large(len(raw))  # this request's later steps on its body (body_step) run where its size says,
    values = await body_step(check_json_values, raw, request_json_values_limit(request))  # (before any parsing)
    body_is_large(len(raw), values)  # and, once counted, its values
    return raw


async def read_json(request: web.Request) -> object:
    """The request's JSON body: 415 if it is not sent as JSON, 400 if empty, malformed or too deep."""
    return await body_step(loads_bounded, await _read_raw(request))


def validate_json(raw: bytes, model: type[M]) -> M:
    """Blocking: ``raw`` parsed (:func:`loads_bounded`) and validated as ``model``; :class:`APIError` 400 when it
    is not JSON, not an object, or not a valid ``model`` (naming the field by its path in this body)."""
    data = loads_bounded(raw)
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # a 400 naming the field by its path in this body
        raise from_validation_error(exc, data, model) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body validated as ``model``: :func:`read_json`'s errors, then :func:`validate_json`'s.
    A large body is parsed and validated in one worker hop. A request with no body at all (``curl -X POST``, or
    OpenAI's own ``-d ''`` examples for ``POST /v1/threads``) is ``{}``: the model's defaults where it has them
    (``.../runs/{id}/resume``, a new thread), else a 400 naming the field it needs, not a 415 for a body that was
    never sent (the cross-site middleware lets a body-less POST through for the same reason)."""
    if not request.body_exists:
        return await body_step(validate_json, b"{}", model)
    return await body_step(validate_json, await _read_raw(request), model)


async def no_fields(request: web.Request, instead: str = "") -> None:
    """For an action route that takes no body (a model's ``start``/``stop``, a ``cancel``, an ``enable``): a 400
    naming the first field a body sends (``param``, ``unknown_parameter``; ``instead`` says where that setting goes),
    since a field the route would drop unsaid reads as applied (``POST .../start`` with ``{"ctx_len": 8192}``, as
    Cortex's start took it, loaded the model at its stored context). No body, ``{}`` and ``null`` are taken, as
    the SDKs send them; a body that is no JSON is :func:`read_json`'s error (415 for another Content-Type)."""
    if not request.body_exists:
        return
    raw = await request.read()  # (over the size limit: aiohttp's 413)
    if not raw.strip():
        return
    require_json_content_type(request)
    await body_step(check_json_values, raw, request_json_values_limit(request))
    data = await body_step(loads_bounded, raw)
    if data is None or data == {}:
        return
    if not isinstance(data, dict):
        raise APIError(400, f"{request.method} {request.path} takes no body (got {json_type_name(data)})",
                       code="invalid_json")
    field = next(iter(data))
    raise APIError(400, f"{field}: {request.method} {request.path} takes no fields{instead}", param=field,
                   code="unknown_parameter")


#: The bounds of an integer query parameter without a narrower range of its own: a 64-bit integer (what any count
#: or position fits); a longer run of digits is refused unparsed.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_QUERY_INT = re.compile(r"-?[0-9]{1,19}")
_SHOWN = 40  # characters of a bad value an error repeats


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "...")


def query_int(request: web.Request, name: str, default: int, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """The query parameter ``name`` as an integer from ``low`` to ``high`` (``default`` when absent or empty); a 400
    naming it otherwise (``param``, ``invalid_value``; each dialect's shape from the path). The one parser of every
    route's integer query parameters: plain ASCII decimal digits with an optional ``-``, nothing else (``int()``
    would also take ``" 5"``, ``"+5"``, ``"5_0"`` and other scripts' digits, and ``str.isdigit`` ``"²"``, which
    ``int()`` then refuses)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _QUERY_INT.fullmatch(raw):
        if re.fullmatch(r"-?[0-9]+", raw):  # all digits, more than 64 bits hold
            raise APIError(400, f"{name}: must be an integer from {low} to {high}, not {_shown(raw)}", param=name,
                           code="invalid_value")
        raise APIError(400, f"{name}: must be an integer, not {_shown(raw)}", param=name, code="invalid_value")
    value = int(raw)
    if not low <= value <= high:
        raise APIError(400, f"{name}: must be an integer from {low} to {high}, not {_shown(raw)}", param=name,
                       code="invalid_value")
    return value


def query_choice(request: web.Request, name: str, default: str, choices: tuple[str, ...]) -> str:
    """The query parameter ``name`` as one of ``choices`` (``default`` when absent or empty); a 400 naming it
    otherwise, in the same words on every route (``order``: ``asc`` or ``desc``)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        said = " or ".join(repr(c) for c in choices)
        raise APIError(400, f"{name}: must be {said}, not {_shown(raw)}", param=name, code="invalid_value")
    return raw
