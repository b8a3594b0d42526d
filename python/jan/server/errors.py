"""One place that turns every failure into an OpenAI-shaped error body.

``{"error": {"message", "type", "param", "code"}}`` with the right status;
handlers raise exceptions and never build error responses themselves.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from jan.errors import (CTX_LEN, ContextOverflowError, EngineError, JanError, ModelFileError, ModelLoadError,
                        ModelNotFoundError, QueueFullError)
from jan.server.disconnect import client_gone
from jan.server.jsonio import dumps as strict_dumps

log = logging.getLogger("jan.server")

_NO_DATA: Any = object()  # from_validation_error without the request's data

#: The status the access log shows for a request whose client left before its answer (nginx's 499).
CLIENT_CLOSED_REQUEST = 499
#: Seconds a client told the model's queue is full (503 ``queue_full``) waits before trying again (``Retry-After``):
#: about one short generation; the SDKs (OpenAI's, Anthropic's) wait this long between their retries.
QUEUE_FULL_RETRY_AFTER_S = 2
#: Seconds a client told that what it asked for is on its way (503: an extension that provides it still loading)
#: waits before trying again (``Retry-After``): a few, as a slow ``on_load`` ends within its load timeout (60 s).
EXTENSION_LOADING_RETRY_AFTER_S = 5


class APIError(Exception):
    """An error with its HTTP status and OpenAI fields."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        #: Response headers the error comes with, in every dialect's shape (``Retry-After`` on a full queue).
        self.headers = dict(headers or {})
        #: Numbers a dialect may tell beside the message (llama-server's ``n_prompt_tokens`` and ``n_ctx`` of a
        #: prompt too long, which llama.vscode shows); OpenAI's shape, exactly its four fields, leaves them out.
        self.details = dict(details or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


#: How ``json.dumps(..., allow_nan=False)`` begins its ValueError for a NaN or an infinity (CPython's words).
_NOT_JSON = "Out of range float values are not JSON compliant"
#: A message that begins with the field it is about: ``logit_bias: ...``, ``messages[0].content: ...``.
_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*(?:\[\d+\])*(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])*)*): ")


#: How a dialect writes a field's path in its errors: ``"brackets"``, OpenAI's ``messages[1].content[0]`` (Chat
#: Completions' and the Responses API's alike; jan's own: every message and ``param`` jan builds is written so),
#: or ``"dotted"``, Anthropic's ``messages.1.content.0`` (its API's ``messages.0.content.1.image.source.base64...``).
PathStyle = Literal["brackets", "dotted"]


def path_text(path: tuple, style: PathStyle = "brackets") -> str:
    """A field's path (its names and indexes: ``("messages", 1, "content", 0)``) as ``style`` writes it:
    ``messages[1].content[0]`` or ``messages.1.content.0``; "" for the top level."""
    parts: list[str] = []
    for p in path:
        if isinstance(p, int) and style == "brackets":
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


# A field path jan wrote (brackets) with at least one index, where it stands in a message as a word of its own (not
# part of another word, path, name or URL, nor an opening quote's text): "messages[1].content[0]", "tools[2]",
# "logit_bias[5]"; not "'a[0]'", "my-model[1]", "/x[0]". Past its first name, a name may be a JSON schema's own (a
# keyword, "$defs", a property "Place": "tools[1].input_schema.$defs.Place.anyOf[0].$ref").
_BRACKET_PATH = re.compile(r"(?<![\w.\]'\"`/-])[a-z_][a-z0-9_]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*\[\d+\]"
                           r"(?:\[\d+\]|\.[A-Za-z_$][A-Za-z0-9_$]*)*")
_INDEX = re.compile(r"\[(\d+)\]")
# A value jan quotes in a message (``repr``'s quotes, or backticks: a model id, a tool name, a client's string), a
# quote opening after no letter and closing before none ("can't" opens nothing): its text is the client's, never
# rewritten, whatever words it holds ("model 'my model[0]' not found").
_QUOTED = re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|(?<!\w)\"[^\"\n]*\"(?!\w)|`[^`\n]*`")


def in_path_style(message: str, style: PathStyle) -> str:
    """``message`` (jan's words: its field paths in brackets) with the field paths it names written as ``style``
    writes them: the one place a dialect's path form is applied to what jan says (its errors' messages, a pydantic
    refusal's or a service's alike). ``"brackets"`` leaves it as it is."""
    if style == "brackets" or "[" not in message:
        return message
    out, start = [], 0
    for quoted in _QUOTED.finditer(message):
        out += [_dotted(message[start:quoted.start()]), quoted.group(0)]
        start = quoted.end()
    return "".join(out) + _dotted(message[start:])


def _dotted(text: str) -> str:
    return _BRACKET_PATH.sub(lambda m: _INDEX.sub(r".\1", m.group(0)), text)


# What pydantic puts in an error's ``loc`` besides field names and indexes: the union member it tried
# ("str", "list[str]", "literal['none','auto']", "NamedToolChoice", "tagged-union[...]"), a validator
# ("function-after[...]"), a dict key's own check ("[key]").
_MEMBER = re.compile(r"^(str|int|float|bool|none|list|dict)$|[\[\](]|^[A-Z]|^function-")


def field_path(loc: tuple, data: Any = _NO_DATA, *, missing: bool = True) -> tuple:
    """The fields and indexes of a pydantic error's ``loc``, without the union members, tags and validators
    pydantic adds: ``("stop", "list[str]", 1)`` is ``stop[1]``. With the request ``data`` the path is walked
    through it (exact: a member's or a tag's name is no key there); without, names that look like members
    are dropped. ``missing``: the error says a field is missing (a last name the body lacks is that field; for
    another error, one that is the object's tag is the tag)."""
    if data is _NO_DATA:
        return tuple(p for p in loc if isinstance(p, int) or not _MEMBER.search(str(p)))
    out: list[Any] = []
    cur = data
    for i, p in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(p, int):
            out.append(p)
            cur = cur[p] if isinstance(cur, list) and 0 <= p < len(cur) else None
        elif isinstance(cur, dict):
            nxt = None if last else loc[i + 1]
            if p in cur:
                child = cur[p]
                # a tagged union's tag is the value of "type" and precedes the field: {"type": "text", "text": 5}
                # fails at ("text", "text"); {"type": "function", "function": {}} at ("function", "name"). A field
                # the body lacks after a tag that is a field's name too (Anthropic's {"type": "thinking",
                # "thinking": "..."} fails at ("thinking", "signature")) is the object's own: no text holds a field
                if (not last and p == cur.get("type") and isinstance(nxt, str)
                        and not (isinstance(child, dict) and nxt in child)
                        and (nxt in cur or (not isinstance(child, (dict, list)) and not _MEMBER.search(nxt)))):
                    continue
                out.append(p)
                cur = child
            elif last and not _MEMBER.search(str(p)) and (missing or p != cur.get("type")):
                # a missing field, named where it belongs. Not the object's own tag (its "type"), which ends the loc
                # of an error its model's own validator raised: {"type": "input_file"} with no source was said of
                # "content[0].input_file", a field no body has ({"type": "function"} lacks its field "function").
                out.append(p)
                cur = None
            # else: a union member's or a tag's name
        elif cur is None and not _MEMBER.search(str(p)):
            out.append(p)  # below a missing value: only names pydantic gave
        # else: inside a scalar or a list, a name is a member's
    return tuple(out)


def _present(path: tuple, data: Any) -> bool:
    """Whether the body (``data``) has a value at ``path`` (False without the body)."""
    return _value_at(data, path) is not _NO_DATA


def _tag_not_field(path: tuple, data: Any) -> tuple:
    """The path of a field said missing that :func:`field_path` found in the body (``data``): a tag that is also
    a field's name there was read as that field (the Responses API's function tool_choice sent in chat's shape,
    ``{"type": "function", "function": {"name": "f"}}``, lacks ``tool_choice.name``, not the ``tool_choice.function.name``
    it has); the nearest such tag is dropped. ``path`` itself where no tag explains it."""
    for k in range(len(path) - 1, 0, -1):
        parent = path[:k - 1]
        cur: Any = data
        for p in parent:
            cur = cur[p] if isinstance(cur, (dict, list)) else None
        if isinstance(cur, dict) and cur.get("type") == path[k - 1]:
            meant = path[:k - 1] + path[k:]
            if not _present(meant, data):
                return meant
    return path


#: Error types of jan's own that end like pydantic's wrong-type errors but are a tagged union's refusal of the
#: body's tag (the Responses input item's ``type``): what they say (the tags taken) is the answer, never a union's
#: "Input should be ..." (:func:`_union_refusal`).
_TAG_ERROR_TYPES = ("invalid_item_type",)


def _wrong_type(error: dict) -> bool:
    """A value of another type than the one this alternative wanted (pydantic's ``*_type``/``*_parsing``)."""
    kind = error.get("type", "")
    return kind.endswith(("_type", "_parsing")) and kind not in _TAG_ERROR_TYPES


#: Errors of a union alternative refusing the body's tag: a ``type`` of another literal (pydantic's), or of a tool kind
#: jan does not run (:func:`jan.server.schemas.tool_kind_check`'s).
_TAG_REFUSALS = ("literal_error", "unsupported_tool_kind")


def _tag_refused(error: dict, path: tuple, data: Any) -> bool:
    """Whether ``error`` (at ``path`` in the body ``data``) is an alternative refusing the ``type`` the body gave:
    that alternative is not the one the body meant."""
    return bool(path) and path[-1] == "type" and error.get("type") in _TAG_REFUSALS and _present(path, data)


def _alternative(loc: tuple, path: tuple) -> tuple:
    """The union alternative a pydantic error's ``loc`` is in: ``loc`` up to the last member or tag name it holds
    that its body ``path`` (:func:`field_path`) does not (``("tool_choice", "NamedToolChoice")`` of
    ``("tool_choice", "NamedToolChoice", "function")``); ``()`` where it holds none."""
    j, end = 0, 0
    for i, part in enumerate(loc):
        if j < len(path) and part == path[j]:
            j += 1
        else:
            end = i + 1
    return loc[:end]


#: What a pydantic union member's name (its tag in an error's ``loc``) says a value must be, in a client's terms
_KIND_WORDS = {"str": "a string", "int": "an integer", "constrained-int": "an integer", "float": "a number",
               "constrained-float": "a number", "bool": "a boolean", "none": "null", "constrained-str": "a string"}


def _split_members(text: str) -> list[str]:
    """``a,list[b,c],d`` split at its top-level commas."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def _member_kinds(tag: str) -> list[str] | None:
    """What a union member named ``tag`` (``"list[constrained-int]"``, ``"union[str,MediaPrompt]"``, ``"str"``,
    a model's class name) takes, in words (``["an array of integers"]``); None for a name this cannot read (a
    validator's ``function-after[...]``, a literal): its union is then said as pydantic says it."""
    if tag in _KIND_WORDS:
        return [_KIND_WORDS[tag]]
    literal = re.fullmatch(r"literal\[(.*)\]", tag)
    if literal is not None:  # (pydantic writes the values as Python's repr: 'auto', 3, True)
        return [v if not v.startswith("'") else "'" + v[1:-1] + "'" for v in _split_members(literal[1])]
    if re.fullmatch(r"[A-Z][A-Za-z0-9_]*", tag) or tag.startswith(("dict[", "tagged-union[")):
        return ["an object"]
    inner = re.fullmatch(r"(list|tuple|union|nullable)\[(.*)\]", tag)
    if inner is None:
        return None
    parts = [_member_kinds(t) for t in _split_members(inner[2])]
    if any(p is None for p in parts):
        return None
    words = list(dict.fromkeys(w for p in parts for w in p))  # (in order, once)
    if inner[1] == "union":
        return words
    if inner[1] == "nullable":
        return [*words, "null"]
    items = [_plural(w) for w in words]
    return ["an array of " + (items[0] if len(items) == 1 else "(" + ", ".join(items[:-1]) + " or " + items[-1] + ")")]


def _plural(kind: str) -> str:
    """``"an integer"`` -> ``"integers"``, ``"an array of strings"`` -> ``"arrays of strings"``."""
    if kind == "null":
        return "nulls"
    head, _, rest = kind.partition(" ")[2].partition(" ")
    return head + "s" + (" " + rest if rest else "")


def _union_refusal(errors: list, paths: list, best: int, data: Any) -> tuple[str, str] | None:
    """``(param, message)`` for a value whose kind no alternative of a union field takes (``param``: that value's
    place, ``input[0]``) (``input: [1.5]``, where
    embeddings take a string, an array of strings or of integers, or of arrays of integers): the field and what it
    accepts, and what the value at fault is (``input: Input should be a string, an array of strings, ...; input[0]
    is a number``), rather than the first alternative's own refusal ("Input should be a valid string"), which
    reads as if a string were all it takes. None where the error is no such refusal: an alternative's object
    field of the wrong type is told as it is (its tag chose it), and so is a union whose members cannot be read."""
    loc, path = tuple(errors[best].get("loc", ())), paths[best]
    # the outermost union below which the body's path has only indexes: the first member name of ``loc`` that is no
    # step of the path (a tagged union's tag, a union's member) and is followed by no field of an object alternative
    # (that alternative's own error says it: its tag chose it)
    places, j = [], 0
    for i, part in enumerate(loc):
        if j < len(path) and part == path[j]:
            j += 1
        else:
            places.append((i, j))
    i, j = next(((i, j) for i, j in places if all(isinstance(p, int) for p in path[j:])), (None, None))
    if i is None:
        return None
    union_loc, union_path = loc[:i], path[:j]
    members = list(dict.fromkeys(tuple(e.get("loc", ()))[i] for e in errors
                                 if tuple(e.get("loc", ()))[:i] == union_loc and len(e.get("loc", ())) > i))
    if len(members) < 2:
        return None
    kinds = [_member_kinds(str(m)) for m in members]
    if any(k is None for k in kinds):
        return None
    words = list(dict.fromkeys(w for k in kinds for w in k))
    if len(words) < 2:
        return None
    from jan.json_text import json_type_name

    accepts = ", ".join(words[:-1]) + " or " + words[-1]
    field = path_text(union_path)
    value = _value_at(data, path)
    got = json_type_name(value) if value is not _NO_DATA else None
    if isinstance(value, str) and any(w.startswith("'") for w in words):  # (one of the strings it names, or not)
        got = json.dumps(value if len(value) <= 40 else value[:40] + "...", ensure_ascii=False)
    message = f"{field}: Input should be {accepts}" if field else f"Input should be {accepts}"
    if got is not None:
        message += f", not {got}" if path == union_path else f"; {path_text(path)} is {got}"
    # (the param is the value at fault, as every other error's: the exact place, which the message names too)
    return path_text(path) or None, message


def _value_at(data: Any, path: tuple) -> Any:
    """The body's value at ``path``, or ``_NO_DATA`` where it has none (or no body was given)."""
    cur = data
    for p in path:
        if isinstance(p, int) and isinstance(cur, list) and 0 <= p < len(cur):
            cur = cur[p]
        elif isinstance(p, str) and isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            return _NO_DATA
    return cur


def _meant_field(model: Any, field: str, said: str) -> str:
    """`` (did you mean 'max_tokens'?)`` where an unknown top-level ``field`` of ``model``'s body is a likely typo of
    one of its own fields (jan's one near-name rule); "" where the refusal already says what to send instead (a
    field of another endpoint), or none is near."""
    fields = getattr(model, "model_fields", None)
    if not isinstance(fields, Mapping) or said.endswith(")"):
        return ""
    from jan.near_names import closest_model_id

    names = [*fields, *(info.alias for info in fields.values() if getattr(info, "alias", None))]
    meant = closest_model_id(field, names)
    return f" (did you mean '{meant}'?)" if meant else ""


def from_validation_error(err: ValidationError, data: Any = _NO_DATA, model: Any = None) -> APIError:
    """The 400 for a body that does not validate: the first failing field's error, named by its path in the
    body. When that field is a union (a string or a list, ...), the error of the alternative that got
    furthest into the value is the one that says what is wrong (``messages[0].content[0].text: Field
    required``, not ``content: Input should be a valid string``). An unknown top-level field of a ``model``
    with an ``unknown_field`` classmethod (a dialect's body) is said in that dialect's words."""
    errors = err.errors()
    paths = [field_path(tuple(e.get("loc", ())), data, missing=e.get("type") == "missing") for e in errors]
    paths = [_tag_not_field(path, data) if e.get("type") == "missing" and _present(path, data) else path
             for e, path in zip(errors, paths)]
    head = paths[0]
    # among alternatives that got as deep, one whose value had the right type but broke a bound says what is
    # wrong ([1, -1] as a prompt: "prompt[1]: ... greater than or equal to 0", not the string list's
    # "prompt[0]: Input should be a valid string")
    # ... and at the same depth, a field the body has that the alternative knows beats one the body lacks or one
    # the alternative does not know: that alternative is the one the body meant ({"prompt_string",
    # "multimodal_data": "..."}: "multimodal_data: Input should be a valid list", not the other prompt object's
    # "content: Field required" nor its "prompt_string: Unrecognized")
    # ... and before all of these, an alternative that refused the body's tag (its ``type``) is not the one the body
    # meant, however far it got: none of its errors says what is wrong ({"type": "function", "name": "f"} as a chat
    # tool_choice: "tool_choice.function: Field required", not the allowed_tools choice's "tool_choice.type: Input
    # should be 'allowed_tools'"; {"type": "allowed_tools"}: its missing allowed_tools, not the function choice's
    # missing function)
    # (only where another object alternative of that union took the tag: where every one refused it, the body's
    # tag is the fault, and the first refusal says so: "'any' tools are not run by jan")
    alts = [_alternative(tuple(e.get("loc", ())), path) for e, path in zip(errors, paths)]
    refused = {alt: path[:-1] for e, path, alt in zip(errors, paths, alts) if alt and _tag_refused(e, path, data)}
    refused = {alt for alt, union in refused.items()
               if any(other and other not in refused and len(path) > len(union) and path[:len(union)] == union
                      for other, path in zip(alts, paths))}
    meant = [not any(tuple(e.get("loc", ()))[:len(alt)] == alt for alt in refused) for e in errors]
    best = max((i for i, path in enumerate(paths) if path[:len(head)] == head),
               key=lambda i: (meant[i], len(paths[i]),
                              _present(paths[i], data) and errors[i].get("type") != "extra_forbidden",
                              not _wrong_type(errors[i]), -i))
    first = errors[best]
    param = path_text(paths[best])
    kind = first.get("type", "")
    union = _union_refusal(errors, paths, best, data) if _wrong_type(first) or kind == "literal_error" else None
    if union is not None:  # a value of a kind no alternative of a union takes: what the field accepts
        param, message = union
        return APIError(400, message, param=param, code="invalid_value")
    msg = first.get("msg", "invalid value")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        # an object's field sent something else: said in JSON's words, not pydantic's ("a valid dictionary or
        # instance of FunctionTool" named a class of jan's, and read as if Python objects were sent)
        from jan.json_text import json_type_name

        value = _value_at(data, paths[best])
        msg = "Input should be an object" + (f", not {json_type_name(value)}" if value is not _NO_DATA else "")
    if kind == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]  # our own validators' messages, as written
    unsupported = kind == "value_error" and "not supported" in msg
    named = _FIELD_PREFIX.match(msg) if kind == "value_error" and not unsupported else None
    if named:  # a check of the object as a whole that names its field at fault ("budget_tokens: required ...")
        inner = named.group(1)
        if param != inner and not param.endswith("." + inner):  # (a field's own check naming it again: once)
            param = f"{param}.{inner}" if param else inner
        msg = msg[named.end():]
    leaf = re.sub(r"\[\d+\]", "", param).rsplit(".", 1)[-1] if param else ""
    if kind == "value_error" and leaf and msg.startswith(leaf + " ") and not unsupported:
        msg = msg[len(leaf) + 1:]  # a field's own check naming it ("prompt must not be empty"): named once, in front
    if unsupported and not param and (refused := re.match(r"^([a-z_][a-z0-9_]*) is not supported", msg)):
        param = refused.group(1)  # (a check of the whole body refusing one field: that field is the param)
    said = getattr(model, "unknown_field", None)
    if kind == "extra_forbidden" and said is not None and len(paths[best]) == 1:
        message, code = said(param)
        return APIError(400, message + _meant_field(model, param, message), param=param, code=code)
    if kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
        if len(paths[best]) == 1:
            message += _meant_field(model, param, message)
    elif unsupported:
        message = msg  # "<field> is not supported by jan (...)"
    else:
        message = f"{param}: {msg}" if param else msg
    code = "missing_required_parameter" if kind == "missing" else "unsupported_parameter" if unsupported else "invalid_value"
    return APIError(400, message, param=param or None, code=code)


def to_api_error(exc: BaseException, *, log_internal: bool = True,
                 setting_names: Mapping[str, str] | None = None) -> APIError:
    """Map any exception to the error a client should see (an unexpected one is logged unless ``log_internal``
    is false: the caller logs it, e.g. naming the extension at fault). ``setting_names``: how the dialect names a
    setting an error advises changing (:class:`jan.errors.Advice`, canonical name -> the dialect's: Ollama's
    ``num_ctx``), :data:`API_SETTING_NAMES` when not given."""
    names = API_SETTING_NAMES if setting_names is None else setting_names

    def said(e: BaseException) -> str:
        # (the advice is data on the error: each dialect says the setting by its own name, no text rewritten)
        return e.message(names) if isinstance(e, JanError) else str(e)  # (str(e) where it advises nothing)

    from jan.store.errors import (AlreadyExistsError, CorruptFileError, InvalidIdError, NewerSchemaError,
                                  NotFoundError as StoreNotFound, PartlySavedError)
    from jan.core.exceptions import LockTimeoutError  # (the store's is a subclass; extension settings raise this)
    from jan.core.exceptions import (ExtensionCallError, ExtensionNotFoundError, NotFoundError as CoreNotFound,
                                     SettingsValidationError)
    from jan.services.errors import ServiceUnavailableError

    # The downloader is imported by the first pull (issue 16), and only an error of its own is one of its kind: read
    # from sys.modules, not imported here, or the first error of any request imported it (and a downloader that
    # cannot be imported made every error a crash of this mapping, no longer an answer in the dialect's shape).
    downloads = sys.modules.get("jan.downloads")
    DownloadError = getattr(downloads, "DownloadError", None) if downloads is not None else None

    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, PartlySavedError):  # a save that failed, saying what of its work is on disk nonetheless
        return save_failed_error(exc, exc.what)
    if isinstance(exc, (RequestPayloadError, HttpProcessingError)):
        # the body could not be read as sent: a Content-Encoding it does not follow (gzip that is not gzip), a
        # chunked body cut short; aiohttp raises these from request.read(), the client's fault
        cause = exc.__cause__ or exc
        detail = getattr(cause, "message", None) or str(cause)
        return APIError(400, f"The request body could not be read: {detail}", code="invalid_body")
    if isinstance(exc, ValidationError):
        return from_validation_error(exc)
    if isinstance(exc, ContextOverflowError):  # routes with another prompt field name it (prompt_param)
        return context_error(exc, "messages", names)
    if isinstance(exc, ModelNotFoundError):
        # (param: the field that named it, where not the request's own ``model``: a thread's assistants[0].model.id)
        return APIError(404, str(exc), param=getattr(exc, "param", None) or "model", code="model_not_found")
    if isinstance(exc, (StoreNotFound, CoreNotFound)):
        return APIError(404, str(exc), code="not_found")
    # a pull's failure: the client's URL (400), the source's not-found (404) or fault (502)
    if DownloadError is not None and isinstance(exc, DownloadError):
        return APIError(exc.http_status, str(exc), code=exc.reason,
                        type="invalid_request_error" if exc.http_status < 500 else "server_error")
    if isinstance(exc, ExtensionNotFoundError):
        return APIError(503, f"No enabled extension provides this service: {exc}", type="server_error",
                        code="extension_unavailable", headers=_retry_when_loaded(exc))
    if isinstance(exc, QueueFullError):
        # every slot busy and the wait queue full: try again once a generation has ended (SDKs honour Retry-After)
        return APIError(503, str(exc), type="server_error", code="queue_full",
                        headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)})
    if isinstance(exc, AlreadyExistsError):
        return APIError(409, str(exc), code="already_exists")
    if isinstance(exc, NewerSchemaError):
        # a file a newer jan wrote (or a hand edit gave a higher _schema_version): read as is, never rewritten by this
        # one; the change is refused, naming the file, as the state of the resource and not the request is at fault
        return APIError(409, f"{exc} (upgrade jan, or edit the file's _schema_version by hand)", code="newer_schema")
    if isinstance(exc, LockTimeoutError):
        return APIError(503, str(exc), type="server_error", code="busy")
    if isinstance(exc, InvalidIdError):
        return APIError(400, str(exc), param=getattr(exc, "param", None), code="invalid_id")
    if isinstance(exc, SettingsValidationError):
        return APIError(400, str(exc), code="invalid_settings")
    if isinstance(exc, ServiceUnavailableError):
        return APIError(503, said(exc), type="server_error", code=exc.code, headers=_retry_when_loaded(exc))
    if isinstance(exc, ExtensionCallError):  # an extension's own failure (an engine's too), named in its message
        return APIError(500, said(exc) + (_log_has_it() if exc.__cause__ is not None else ""), type="server_error",
                        code="extension_error")
    if isinstance(exc, ModelFileError):  # the weights the model points at are missing or damaged
        # (or a file its model.json names beside them, a draft model's: that setting is the param, as a missing one's)
        # (its own param is the library's argument, path or mmproj, which no client sent: the model's file unless
        # the llama.cpp extension named the model.json field that gave it, or the server's default, None)
        own = exc.given_by_server is not None or (exc.param or "").startswith("settings.")
        return APIError(400, said(exc), param=exc.param if own else "model", code="invalid_model_file")
    if isinstance(exc, ModelLoadError) and not isinstance(exc, ValueError):
        # (one that is also a ValueError is a fact about the model's configuration, a remote model's base_url say:
        # the 400 naming the setting below, as a ModelFileError is about its weights)
        return APIError(500, said(exc), type="server_error", code="model_load_failed")
    if isinstance(exc, EngineError):  # its message is meant for users (e.g. a remote upstream is unreachable)
        return APIError(getattr(exc, "http_status", 500), said(exc), type="server_error",
                        code=getattr(exc, "code", None) or "engine_error")
    if isinstance(exc, ValueError) and not isinstance(exc, JanError) and str(exc).startswith(_NOT_JSON):
        # the strict JSON writer (jsonio) refusing a NaN or an infinity jan made: a bug of the server, as jsonio says,
        # not the client's 400 (a LoRA scale's NaN logprobs were "invalid_request_error" after the work was done)
        if log_internal:
            log.exception("internal error", exc_info=exc)
        return APIError(500, f"The server had an error while processing your request{_log_has_it()}.",
                        type="server_error", code="internal_error")
    if isinstance(exc, ValueError):  # engine and template argument errors (TemplateError too)
        # the engine's and the stores' messages begin with the field at fault ("logit_bias: token id ...")
        named = _FIELD_PREFIX.match(said(exc))
        param = getattr(exc, "param", None) or (named.group(1) if named else None)
        if isinstance(exc, JanError):  # e.g. a remote upstream's 400, with the field it named
            return APIError(400, said(exc), param=param, code=getattr(exc, "code", None))
        return APIError(400, said(exc), param=param)
    if isinstance(exc, CorruptFileError):  # a data folder's file damaged (a hand edit, a disk): named, no traceback
        return APIError(500, f"A file of the data folder is damaged: {exc}", type="server_error",
                        code="data_folder_damaged")
    storage = storage_error(exc)
    if storage is not None:
        log.warning("data folder write failed: %s", exc)
        return storage
    if log_internal:
        log.exception("internal error", exc_info=exc)
    return APIError(500, f"The server had an error while processing your request{_log_has_it()}.",
                    type="server_error", code="internal_error")


def _log_has_it() -> str:
    """`` (request id req_x: the server's log has its cause)`` for an error whose cause a client is not told: as
    OpenAI's, the request's id, which the server's log line of the cause carries too (empty outside a request)."""
    from jan.server.request_id import current_request_id

    rid = current_request_id.get()
    return f" (request id {rid}: the server's log has its cause)" if rid else ""


#: Errors of the disk under the data folder, which the client cannot fix but the operator can: told by name (a full
#: disk, a read-only mount, a file that cannot be read) instead of "The server had an error", with where they happened.
_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_READ_ONLY = frozenset({errno.EROFS})
_DENIED = frozenset({errno.EACCES, errno.EPERM})
#: A path of the data folder that is not what jan keeps there (a folder in a file's place, a file in a folder's), or
#: a disk that fails reads, or a file larger than any jan writes (jan.local_files.FileTooLargeError, left unread):
#: the file is named, for the operator to repair.
_UNREADABLE = frozenset({errno.EISDIR, errno.ENOTDIR, errno.EIO, errno.ELOOP, errno.ENAMETOOLONG, errno.EFBIG})


#: What a refused write leaves on disk where nothing says otherwise: every store write is atomic.
NOTHING_SAVED = "nothing was saved and what was stored is intact"


def storage_error(exc: BaseException) -> APIError | None:
    """The error to answer for a disk operation the data folder refused (``None`` for any other exception): 507
    Insufficient Storage for a full disk or quota, 500 ``data_folder_unwritable`` for a read-only or forbidden one,
    500 ``data_folder_unreadable`` for a path that cannot be read (a folder where a file should be, an I/O error).
    Every store write is atomic, so the message says that nothing was saved and what was there is kept, unless the
    failure says what of the work is on disk nonetheless (:class:`jan.store.errors.PartlySavedError` in ``exc``'s
    chain: a streamed reply's earlier saves, a thread a request made before its reply was refused): then that."""
    from jan.core.fs import LinkTargetError
    from jan.store.errors import kept_of

    saved = kept_of(exc) or NOTHING_SAVED
    while exc is not None and not isinstance(exc, OSError):  # (wrapped: raise ... from an OSError)
        exc = exc.__cause__
    if isinstance(exc, LinkTargetError):  # a file of the data folder linked to nothing, or to a folder
        return APIError(500, f"A file of the data folder cannot be written ({exc.filename}: {exc.strerror}): "
                             f"{saved}", type="server_error", code="data_folder_unwritable")
    if not isinstance(exc, OSError):
        return None
    # a named pipe or a device where a file of the data folder should be (jan.local_files.open_regular_file names it)
    odd = exc.errno == errno.EINVAL and isinstance(exc.filename, str) and "not a regular file" in str(exc.strerror)
    if exc.errno not in _FULL | _READ_ONLY | _DENIED | _UNREADABLE and not odd:
        return None
    filename = exc.filename if isinstance(exc.filename, str) and exc.filename else None
    where = f" in {os.path.dirname(filename)}" if filename else ""
    reason = exc.strerror or os.strerror(exc.errno)
    if exc.errno in _FULL:
        return APIError(507, f"The data folder is out of disk space ({reason}{where}): {saved}; free some space and "
                             "try again", type="server_error", code="insufficient_storage")
    if exc.errno in _READ_ONLY:
        return APIError(500, f"The data folder cannot be written ({reason}{where}): {saved}", type="server_error",
                        code="data_folder_unwritable")
    if exc.errno in _DENIED:
        told = "what was stored is intact" if saved is NOTHING_SAVED else saved  # (a denied read wrote nothing)
        return APIError(500, f"The data folder refused access ({reason}{where}); {told}",
                        type="server_error", code="data_folder_unwritable")
    told = "" if saved is NOTHING_SAVED else f" ({saved})"
    return APIError(500, f"A path of the data folder cannot be read ({reason}{': ' + filename if filename else ''})"
                         f"{told}; repair or move it", type="server_error", code="data_folder_unreadable")


def save_failed_error(exc: BaseException, what: str, kept: str | None = None) -> APIError:
    """The error to answer for work done (a reply generated) whose save failed with ``exc``, in any way: the disk's
    refusal as :func:`storage_error` tells it; a damaged file (500 ``data_folder_damaged``), a lock held too long
    (503 ``busy``), anything else (500 ``not_saved``, logged with its traceback) named so, never a 200 over work not
    kept, nor a 400 (a save's failure is never the client's). ``what``: what was not saved (``"the turn"``);
    ``kept``: what is on disk nonetheless, where not nothing (:data:`NOTHING_SAVED`) — or the failure's own
    :class:`~jan.store.errors.PartlySavedError` says."""
    from jan.core.exceptions import LockTimeoutError
    from jan.store.errors import CorruptFileError, kept_of, partly_saved

    if kept is not None:
        exc = partly_saved(exc, kept)
    saved = kept_of(exc) or NOTHING_SAVED
    refused = storage_error(exc)
    if refused is not None:
        log.warning("data folder write failed: %s", exc.__cause__ or exc)
        return refused
    cause = exc.__cause__ if kept_of(exc) is not None and exc.__cause__ is not None else exc
    said = what[:1].upper() + what[1:]  # (the sentence's start)
    if isinstance(cause, (CorruptFileError, LockTimeoutError)):  # (named in full: no traceback says more)
        log.warning("could not save %s: %s", what, cause)
    if isinstance(cause, CorruptFileError):
        return APIError(500, f"{said} could not be saved: a file of the data folder is damaged "
                             f"({cause}): {saved}", type="server_error", code="data_folder_damaged")
    if isinstance(cause, LockTimeoutError):
        return APIError(503, f"{said} could not be saved: {cause}: {saved}; try again",
                        type="server_error", code="busy")
    log.error("could not save %s", what, exc_info=cause)
    return APIError(500, f"{said} could not be saved{_log_has_it()}: {saved}",
                    type="server_error", code="not_saved")


def _retry_when_loaded(exc: BaseException) -> dict[str, str] | None:
    """``Retry-After`` for a 503 because an extension is still loading (its ``loading`` names it): it will be
    there shortly, unlike one that is off or failed."""
    return {"Retry-After": str(EXTENSION_LOADING_RETRY_AFTER_S)} if getattr(exc, "loading", ()) else None


def context_error(exc: ContextOverflowError, param: str, setting_names: Mapping[str, str] | None = None) -> APIError:
    """A prompt the context cannot hold, naming the field that carried it (``param``, or the field the error names
    itself, where its raiser knew it better: a rerank body's ``documents[i]``), with its numbers where known; the
    setting to change said as ``setting_names`` (:func:`context_message`)."""
    details = {"n_prompt_tokens": exc.n_tokens, "n_ctx": exc.n_ctx} \
        if exc.n_tokens is not None and exc.n_ctx is not None else None
    return APIError(400, context_message(exc, setting_names), param=getattr(exc, "param", None) or param,
                    code="context_length_exceeded", details=details)


#: How OpenAI's message for a prompt longer than the context begins. Client libraries tell that refusal from any
#: other 400 by these words, not by the code (litellm's ContextWindowExceededError, which its context-window
#: fallbacks and callers that trim the history act on), so jan's message starts with them too.
OPENAI_CONTEXT_WORDS = "This model's maximum context length is"


#: How the HTTP APIs name a setting an error advises changing (:class:`jan.errors.Advice`, by its canonical name):
#: the model.json's, which ``PATCH /v1/models/{id}`` sets (the CLI says its own flags instead).
API_SETTING_NAMES = {CTX_LEN: "ctx_len"}


def context_message(exc: ContextOverflowError, setting_names: Mapping[str, str] | None = None) -> str:
    """The message of a prompt that does not fit the context: OpenAI's opening ("This model's maximum context
    length is N tokens. However, your request has M input tokens"), then jan's own words, which say what did not
    fit (and whether an earlier turn could have been dropped) and what to change (:data:`API_SETTING_NAMES`).
    Without the numbers: the opening, then jan's words."""
    text = exc.message(API_SETTING_NAMES if setting_names is None else setting_names)
    if text.startswith(OPENAI_CONTEXT_WORDS):  # (a remote provider's own message, passed on)
        return text
    if exc.n_tokens is not None and exc.n_ctx is not None:
        return f"{OPENAI_CONTEXT_WORDS} {exc.n_ctx} tokens. However, your request has {exc.n_tokens} input " \
               f"tokens: {text}"
    return f"{OPENAI_CONTEXT_WORDS} less than this request needs: {text}"


def prompt_param(name: str):
    """A decorator for routes: a prompt that does not fit the context is the fault of the field that carried
    it (``messages``, ``prompt``, ``input``), and the error names that one (``param``), or the field the error
    names itself, where its raiser knew it better."""
    def wrap(handler):
        @functools.wraps(handler)
        async def named(request):
            try:
                return await handler(request)
            except ContextOverflowError as exc:
                raise context_error(exc, name) from None
        return named
    return wrap


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """(message, code) of a failure as a client would see it (what a failed run records)."""
    err = to_api_error(exc)
    return err.message, err.code


def _http_error(exc: web.HTTPException) -> APIError:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 401: "invalid_api_key",
             417: "expectation_failed"}
    message = {404: "Unknown route", 405: "Method not allowed", 413: "Request body too large"}.get(exc.status, exc.reason)
    if exc.status == 413:
        message = f"Request body too large: {exc.text}" if exc.text else message
    elif exc.status == 417 and exc.text:  # aiohttp's Expect check names the expectation: "Unknown Expect: 200-ok"
        message = f"Expectation failed: {exc.text}; jan knows only 'Expect: 100-continue'"
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    return APIError(exc.status, message, type=kind, code=codes.get(exc.status))


class ErrorResponse(web.Response):
    """A JSON error response that remembers its :class:`APIError`, so that routes of another
    dialect can re-render it in their clients' error shape (see :func:`dialect_error_middleware`)."""

    def __init__(self, err: APIError, headers: dict | None = None):
        super().__init__(text=strict_dumps(err.body()), status=err.status, headers=headers,
                         content_type="application/json")
        self.api_error = err


def json_error(err: APIError, headers: dict | None = None) -> web.Response:
    """The error's response, with the headers it comes with (:attr:`APIError.headers`) and ``headers``."""
    return ErrorResponse(err, {**err.headers, **(headers or {})} or None)


# Route prefix -> the error body its clients expect (Anthropic's ``{"type": "error", ...}``, ...).
# Dialect route modules register here; every other path keeps OpenAI's shape.
ERROR_SHAPES: dict[str, Callable[[APIError], dict]] = {}
# Route prefix -> the HTTP status its clients expect for an error, where it is not jan's (Anthropic's 529 for an
# overloaded server). Only prefixes with a shape are looked at.
ERROR_STATUSES: dict[str, Callable[[APIError], int]] = {}


# Requests that speak a dialect on paths another dialect shares (Anthropic's SDK on /v1/models, which OpenAI's
# clients read too): request -> the path prefix whose error shape and status it gets instead of its own path's,
# or None. Dialect route modules register here.
ERROR_DIALECTS: list[Callable[[web.Request], str | None]] = []


def _error_path(request: web.Request) -> str:
    """The path whose dialect's error shape a request's errors take: its own, unless a dialect claims it."""
    for dialect in ERROR_DIALECTS:
        path = dialect(request)
        if path is not None:
            return path
    return request.path


def under_prefix(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it (``/api`` and ``/api/`` both cover ``/api/chat``, not ``/apix``)."""
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/")


def _shape_for(path: str) -> Callable[[APIError], dict] | None:
    return _for_path(ERROR_SHAPES, path)


def _for_path(table: dict[str, Any], path: str) -> Any:
    for prefix, value in table.items():
        if under_prefix(path, prefix):
            return value
    return None


@web.middleware
async def dialect_error_middleware(request: web.Request, handler):
    """Outermost: an error produced anywhere below (a handler, the key check, an unknown route)
    on a dialect's routes leaves in that dialect's error shape, headers (CORS, ...) kept."""
    response = await handler(request)
    if not isinstance(response, ErrorResponse):
        return response
    path = _error_path(request)
    if _shape_for(path) is None:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
    shaped = error_response(response.api_error, path, headers)
    shaped.api_error = response.api_error  # (what the access line says of it: jan.server.request_id.AccessLogger)
    if response.keep_alive is False:  # an answer that ends its connection (force_close) still does
        shaped.force_close()
    return shaped


def error_response(err: APIError, path: str, headers: dict | None = None) -> web.Response:
    """The error's response to a request for ``path``: in the error shape and status of the dialect that serves
    the path (OpenAI's for every other path), with the headers the error comes with and ``headers``."""
    if _shape_for(path) is None:
        return json_error(err, headers)
    status, body = error_body(err, path)
    return web.json_response(body, status=status, headers={**err.headers, **(headers or {})} or None,
                             dumps=strict_dumps)


def error_body(err: APIError, path: str) -> tuple[int, dict]:
    """(status, body) of the error as a request for ``path`` is answered it: in the shape and status of the dialect
    that serves the path (OpenAI's for every other path)."""
    shape = _shape_for(path)
    if shape is None:
        return err.status, err.body()
    status_of = _for_path(ERROR_STATUSES, path)
    return (status_of(err) if status_of is not None else err.status), shape(err)


def as_http_exception(err: APIError) -> web.HTTPException:
    """``err`` as an aiohttp ``HTTPException`` (404 or 500) with its JSON body: what code mounted on any aiohttp app
    raises (an extension's routes, :mod:`jan.server.mount`): a plain app answers it as it is, jan's
    :func:`error_middleware` answers ``err`` in the dialect of the path."""
    cls = web.HTTPNotFound if err.status == 404 else web.HTTPInternalServerError
    exc = cls(text=strict_dumps(err.body()), content_type="application/json")
    exc.api_error = err  # type: ignore[attr-defined]
    return exc


# A client given the OpenAI base URL (…/v1) where it wants the server's address (Anthropic's and Ollama's SDKs add
# /v1/messages and /api/chat themselves) asks for /v1/v1/messages or /v1/api/chat: a bare "Unknown route" does not
# say that the URL was one /v1 too long.
_DOUBLED_BASE = (("/v1/v1/", "/v1/"), ("/v1/api/", "/api/"))
# A base URL that ends in "/" (http://HOST:PORT/) where the client adds "/v1/messages" asks for //v1/messages: the
# router serves no empty segment, and the 404 came in OpenAI's shape to an Anthropic or Ollama client, naming nothing.
_EMPTY_SEGMENTS = re.compile(r"/{2,}")


def _meant_path(path: str) -> tuple[str, str] | None:
    """(the path a client likely meant, what was wrong with its base URL) for a path with one /v1 too many or an
    empty segment (``//``), else None."""
    single_slashed = _EMPTY_SEGMENTS.sub("/", path)
    for doubled, single in _DOUBLED_BASE:
        if single_slashed.startswith(doubled):
            return single + single_slashed[len(doubled):], "has one /v1 too many"
    if single_slashed != path:
        return single_slashed, "ends in a slash that the client adds again (the path has an empty segment, //)"
    return None


def _doubled_base_dialect(request: web.Request) -> str | None:
    """Such a request's errors (the hint's 404, the key check's 401) in the shape of the client that sent it, the
    dialect of the route it meant: an Ollama client reads ``{"error": "..."}``, and showed OpenAI's body as a dict."""
    meant = _meant_path(request.path)
    return meant[0] if meant is not None else None


ERROR_DIALECTS.append(_doubled_base_dialect)


async def _with_base_url_hint(request: web.Request, err: APIError) -> APIError:
    """``err`` (a 404 of the router) with the route that was likely meant, when the path is a served one behind an
    extra ``/v1`` — or one without the ``/v1`` it needs: an OpenAI client given ``http://HOST:PORT`` asks for
    ``/responses`` or ``/threads`` (the chat, completions, embeddings and models routes are served bare too, as
    llama-server's; the rest are not) — or one with an empty segment (``//v1/messages``)."""
    path = request.path
    hint = _meant_path(path)
    if hint is not None:
        meant, why = hint
    else:
        if path.startswith(("/v1/", "/api/")) or path == "/":
            return err
        meant, why = "/v1" + path, "lacks /v1"
    try:
        match = await request.app.router.resolve(request.clone(rel_url=meant))
    except Exception:  # noqa: BLE001 - a hint only: no hint rather than another error
        return err
    if match.http_exception is not None:
        return err
    return APIError(404, f"Unknown route {path}; did you mean {meant}? The client's base URL {why}: OpenAI's "
                         "clients take http://HOST:PORT/v1, Anthropic's and Ollama's http://HOST:PORT",
                    type=err.type, code=err.code)


# OpenAI's (and Anthropic's) APIs that jan does not serve, by path prefix (with or without /v1): an OpenAI SDK user calling one (after
# `store: true` on a chat completion, `client.chat.completions.retrieve`) got a bare "Unknown route" (a GET of
# /v1/chat/completions "Method not allowed"), which reads as a wrong base URL or a bug rather than a missing API.
_UNSERVED = (
    ("/chat/completions", "OpenAI's stored chat completions (list, retrieve, update, delete, messages)",
     "jan keeps no chat completions: their 'store' and 'metadata' are accepted and change nothing; the Responses API "
     "stores its responses (POST /v1/responses, GET /v1/responses/{id}), and threads keep conversations"),
    ("/responses/compact", "compaction (responses.compact)", "jan does not compact conversations; a response with "
     "'truncation': 'auto' drops the oldest turns that do not fit the context"),
    ("/audio/speech", "text to speech", "jan's models write text; /v1/audio/transcriptions and /v1/audio/translations "
     "are served"),
    ("/images", "image generation and editing", "jan's models write text; a vision model reads images sent in a chat"),
    ("/moderations", "moderation", "jan has no moderation model"),
    ("/fine_tuning", "fine-tuning", "jan runs models and does not train them; a LoRA adapter GGUF made elsewhere loads "
     "with `jan serve --lora`"),
    ("/vector_stores", "vector stores", "jan has no vector store: a file attached to a thread message is read whole"),
    ("/uploads", "the Uploads API", "upload a file whole with POST /v1/files"),
    ("/realtime", "the Realtime API", "jan serves no realtime sessions"),
    ("/evals", "evals", "jan runs no evaluations"),
    ("/skills", "Anthropic's Agent Skills", "jan runs no skills; give a model tools through MCP servers (`jan mcp add`)"),
    ("/complete", "Anthropic's legacy Text Completions", "use the Messages API, POST /v1/messages"),
    ("/containers", "containers", "jan runs no code interpreter"),
    ("/videos", "video generation", "jan's models write text"),
)


# The unserved APIs' methods whose path a served route answers for another method (the SDK's
# chat.completions.list beside the served POST; responses.compact beside GET /v1/responses/{id}): the router says
# 405 there, for which OpenAI's SDK has no error class (its bare APIStatusError), where the same API's other methods
# (chat.completions.retrieve) raise NotFoundError. These are 404s; any other method there stays the router's 405.
_UNSERVED_METHODS = {("GET", "/chat/completions"), ("POST", "/responses/compact")}


def _unserved_api(request: web.Request, err: APIError) -> APIError:
    """``err`` (the router's 404 or 405) saying which of OpenAI's APIs the path belongs to, and why jan does not serve
    it, where it is one of :data:`_UNSERVED` (a 404, the 405 of one of :data:`_UNSERVED_METHODS` included)."""
    path = request.path[3:] if request.path.startswith("/v1/") else request.path
    for prefix, what, why in _UNSERVED:
        if path == prefix or path.startswith(prefix + "/"):
            if err.status == 405 and (request.method, path) in _UNSERVED_METHODS:
                err = APIError(404, "Unknown route", type=err.type, code="not_found")
            return APIError(err.status, f"{err.message} ({request.method} {request.path}): jan does not serve "
                                        f"{what}; {why}", type=err.type, code=err.code)
    return err


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if isinstance(getattr(exc, "api_error", None), APIError):
            return json_error(exc.api_error)  # type: ignore[attr-defined]
        if exc.content_type == "application/json":
            raise  # already an OpenAI body
        err = _http_error(exc)
        if exc.status == 404:
            err = await _with_base_url_hint(request, err)
        if exc.status in (404, 405):
            err = _unserved_api(request, err)
        # (a 405 made a 404 above keeps no Allow: that header belongs to a 405)
        kept = ("allow", "www-authenticate") if err.status == 405 else ("www-authenticate",)
        return json_error(err, headers={k: v for k, v in exc.headers.items() if k.lower() in kept})
    except asyncio.CancelledError:
        raise
    except ConnectionError as exc:
        if not client_gone(request):  # another connection failed (an upstream's), not the client's: an error
            return json_error(to_api_error(exc))
        # The client went away (before its answer, or while sending its body): nobody is left to answer and
        # nothing went wrong here. Raised on, aiohttp would log it as an ERROR with a traceback; this
        # response is never sent (aiohttp notes the closed connection), only the access log shows it.
        log.debug("%s %s: the client disconnected: %s", request.method, request.path, exc)
        return web.Response(status=CLIENT_CLOSED_REQUEST, reason="Client Closed Request")
    except Exception as exc:  # noqa: BLE001 - this is the one place that maps every error
        return json_error(to_api_error(exc))


class ClientProtocolErrorFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (a URL or header over its limits, a bad method, broken framing) as
    an ERROR with a traceback: the client's fault, answered 400 already, and what port scanners send all day.
    So it logs a body it cannot read (not gzip though it says so, broken chunks) that it reads to drop after the
    route answered without reading it (a 404, a 415): as "Unhandled exception", three tracebacks long.
    Such records are told in one line at INFO instead; every other record of aiohttp's passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (HttpProcessingError, RequestPayloadError)) and record.levelno >= logging.ERROR:
            record.levelno, record.levelname = logging.INFO, "INFO"
            told = record.getMessage() if isinstance(exc, HttpProcessingError) else \
                "The body of a request answered without it could not be read to its end"
            record.msg, record.args = "%s: %s", (told, " ".join(str(exc).split()))
            record.exc_info = record.exc_text = None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def quiet_client_protocol_errors() -> None:
    """Install :class:`ClientProtocolErrorFilter` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientProtocolErrorFilter) for f in logger.filters):
        logger.addFilter(ClientProtocolErrorFilter())
