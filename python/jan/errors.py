"""Exceptions raised by jan.

The native engine raises these classes too (it looks them up here), so
``except jan.ModelLoadError`` works the same for Python and C++ failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

#: The canonical name of the context-size setting (a model.json's ``settings.ctx_len``; ``n_ctx`` to the engine).
CTX_LEN = "ctx_len"


@dataclass(frozen=True)
class Advice:
    """What an error's message advises changing, as data, so that each front end says it with its own name for the
    setting (`jan run`'s ``-c/--ctx-size``, an HTTP API's ``ctx_len``) without editing a finished message.

    ``setting``: the setting's canonical name (the model.json's, :data:`CTX_LEN`); ``text``: the advice, with
    ``{setting}`` where that name goes (nothing else in braces); ``name``: how the raiser's own layer calls the
    setting when the caller names none (the engine's ``n_ctx``), ``setting`` itself when None."""

    setting: str
    text: str
    name: str | None = None

    def said(self, names: Mapping[str, str] | None = None) -> str:
        """``text`` with the setting named as ``names`` (canonical name -> a front end's) says, else as the
        raiser's layer calls it."""
        return self.text.replace("{setting}", (names or {}).get(self.setting) or self.name or self.setting)


#: The advice of a prompt past the context: a shorter prompt, or a larger context.
LARGER_CONTEXT = Advice(CTX_LEN, "shorten it or use a larger context ({setting})")

@dataclass(frozen=True)
class ServerDefault:
    """A load option a model could not load with that the server gave every model (``jan serve``'s flags), as data,
    so that the command that gave it names its flag (``-ctk/--cache-type-k q8_0``) and an HTTP client, which never
    sent it, hears it was the server's. ``option``: the load option (``cache_type_k``, ``n_ctx``, ``draft_model``);
    ``value``: as given; ``cause``: the engine's error (``"cache_type_k: ..."``), whose own advice names the setting
    the same way."""

    model_id: str
    option: str
    value: object
    cause: BaseException

    def said(self, names: Mapping[str, str] | None = None) -> str:
        """The message, the option named as ``names`` says (option -> a front end's flag), else as the server's."""
        flag = (names or {}).get(self.option)
        cause = self.cause.message(names) if flag and isinstance(self.cause, JanError) else str(self.cause)
        head, sep, rest = cause.partition(": ")
        if sep and head.split("[", 1)[0] in (self.option, flag):  # (said once, in front; lora[1]: as lora)
            cause = rest
        value = self.value if not isinstance(self.value, (list, tuple)) else ", ".join(
            str(v[0] if isinstance(v, (list, tuple)) else v) for v in self.value)
        given = (f"{flag} {value}" if flag else
                 f"the server's {self.option} ({self.value!r}, given for every model when the server started)")
        return f"model '{self.model_id}' cannot load with {given}: {cause}"


E = TypeVar("E", bound="JanError")


class JanError(Exception):
    """Base class of every error jan raises on purpose.

    An error whose message advises changing a setting carries it as data (:meth:`advise`): :attr:`reason` (what is
    wrong), :attr:`advice` (:class:`Advice`) and :attr:`tail` (what follows the advice), and ``str(exc)`` is
    ``"{reason}; {advice}{tail}"`` with the raiser's name for the setting; :meth:`message` says it with a front
    end's."""

    reason: str | None = None
    advice: Advice | None = None
    tail: str = ""
    #: Whether the message begins with the error's ``param`` (``n_ctx: ...``), as a BadRequestError's may.
    named: bool = False
    #: Set when the option at fault is one the server gave every model (:class:`ServerDefault`): the message is its.
    given_by_server: ServerDefault | None = None

    def advise(self: E, reason: str, advice: Advice, tail: str = "", *, named: bool = False) -> E:
        """Make the message ``reason`` then ``advice`` then ``tail`` (kept apart, as data), after the error's
        ``param`` and ": " when ``named``; returns ``self``, for ``raise ContextOverflowError("", n, m).advise(...)``."""
        self.reason, self.advice, self.tail, self.named = reason, advice, tail, named
        self.args = (self.message(), *self.args[1:])
        return self

    def message(self, names: Mapping[str, str] | None = None) -> str:
        """The message with the settings it names as data said as ``names`` says (a canonical setting or a
        ``param`` -> a front end's name: ``{"ctx_len": "-c/--ctx-size"}``), else as the raiser said them;
        ``str(self)`` for an error that advises nothing."""
        if self.given_by_server is not None:
            return self.given_by_server.said(names)
        if self.advice is None or self.reason is None:
            return str(self)
        param = getattr(self, "param", None) if self.named else None
        head = f"{(names or {}).get(param) or param}: " if param else ""
        return f"{head}{self.reason}; {self.advice.said(names)}{self.tail}"


class ModelLoadError(JanError):
    """A model file is missing, not GGUF, truncated, or llama.cpp refused it."""


class BadRequestError(JanError, ValueError):
    """A request that can never succeed as sent (HTTP 400); ``param`` names the field at fault.

    The library's one rule for a bad argument: every call of jan's Python API (``jan.Model``, its methods,
    ``jan.ModelPool``, ``jan.Vocabulary``, the services of :func:`jan.services.open_services`) refuses a bad
    argument value with a BadRequestError (a ``ValueError``) whose ``param`` names the argument as the call takes it
    (``max_tokens``, ``inputs[1]``, ``tokens[0]``) and whose message begins with that name; one of the wrong type
    (a string where a number belongs, ``True`` where an integer does, bytes where text does) is a
    :class:`BadRequestTypeError`, also a ``TypeError``. The kinds below are BadRequestErrors too: a grammar or JSON
    schema no grammar can be made of (:class:`jan.templates.GrammarError`), a media item the model cannot use
    (:class:`MediaError`), a services request's bad field (:class:`jan.services.errors.RequestError`)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


class BadRequestTypeError(BadRequestError, TypeError):
    """A bad argument of the wrong type (``tokenize(5)``, ``max_tokens="5"``, ``seed=True``, ``embed(b"...")``): a
    :class:`BadRequestError` naming it (``param``), and a ``TypeError`` too, so ``except TypeError`` (Python's
    convention for a wrong type) and ``except jan.BadRequestError`` (jan's for any bad argument) both catch it. The
    server answers it as any BadRequestError: HTTP 400 with the raiser's ``code`` (``invalid_type`` where it gives
    one)."""


class GrammarPrefixError(BadRequestError):
    """A ``grammar_prefix`` (the reply text a generation continues) that its grammar cannot start with: the engine
    reads the prefix through the grammar before anything is generated. ``offset``: the prefix's first byte the
    grammar does not take (UTF-8), where a client should look."""

    def __init__(self, message: str, *, offset: int = 0, param: str | None = "grammar_prefix",
                 code: str | None = "grammar_prefix_rejected"):
        super().__init__(message, param=param, code=code)
        self.offset = offset


class ModelSettingError(BadRequestError):
    """A load option (a model.json setting) that this model's file cannot use: a KV cache type its
    attention heads cannot hold, a quantized V cache without flash attention. Raised before the
    context is made, so the model is not loaded; ``param`` names the option (``cache_type_v``), and
    the server answers HTTP 400 as it does when the same setting is refused by a PATCH."""


class ModelFileError(ModelLoadError, ValueError):
    """The model's weights are missing, not GGUF, or a GGUF llama.cpp cannot read.

    A fact about the file the model points at, not a failure of the server:
    the server answers it with HTTP 400 (``invalid_model_file``), as it does
    when the same file is imported. Other load failures (a backend error, no
    memory for the weights) stay plain :class:`ModelLoadError` (a context with no
    room in memory is the setting's: :class:`ModelSettingError`, :class:`ContextFitError`).

    ``param``: the argument that named the file, as the library call takes it (``path``, ``mmproj``,
    ``draft_model``, ``lora[1]``: the one rule for a bad argument, :class:`BadRequestError`), None where no argument
    did (a model.json's weights the server found missing). The server's answer names its own field instead
    (``model``, ``settings.draft_model``): a library caller's argument is no field of an HTTP request.
    """

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


class ContextFitError(ModelSettingError, ModelLoadError):
    """A model loaded without a context size (``n_ctx``; a model.json's ``ctx_len``) whose smallest fitted
    context (:data:`jan.engine.fit.MIN_FIT_CTX` tokens a slot) has no room for its KV cache in the memory free now.
    As an explicit context too large for that memory is, the setting's 400 (``code`` ``context_too_large``), its
    advice naming the context setting as each front end does (``ctx_len``, ``-c/--ctx-size``, Ollama's
    ``num_ctx``); it was a 500 ``model_load_failed`` advising the engine's ``n_ctx``, a name no HTTP client or
    command line takes. Still a :class:`ModelLoadError` (the load failed), as it was."""


class LoraAdapterError(ModelFileError):
    """A LoRA adapter file that this model cannot use: missing, not GGUF, not an adapter (``general.type``),
    another architecture, tensors of other shapes, or an activated LoRA (aLoRA, which jan does not run). The
    message says which file and llama.cpp's reason; like any model file's fault, HTTP 400 on the server."""


class ContextOverflowError(JanError, ValueError):
    """The input does not fit in the context window.

    ``n_tokens`` is the input's size and ``n_ctx`` the context's, when known; ``param``, the field that carried
    the input when the raiser knows it better than the route (one of a rerank's ``documents``).
    """

    def __init__(self, message: str, n_tokens: int | None = None, n_ctx: int | None = None, *,
                 param: str | None = None):
        super().__init__(message)
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx
        self.param = param


class QueueFullError(JanError):
    """Every slot is busy and the wait queue is at its bound."""


class SlotFileError(BadRequestError):
    """A slot file a model cannot restore (``jan.Model.slot_restore``, llama-server's
    ``POST /slots/{id}?action=restore``): missing, unreadable, not a slot save of this model, or more tokens than a
    slot's context holds. The slot is left empty."""

    def __init__(self, message: str, *, param: str | None = "filename", code: str | None = "invalid_value"):
        super().__init__(message, param=param, code=code)


class EngineError(JanError):
    """llama.cpp failed while evaluating (decode error, out of memory)."""


class ModelClosedError(EngineError, RuntimeError):
    """The model was unloaded before it could serve the request (an admin's stop, shutdown): the
    client may try again, which loads it anew (the server's 503)."""

    http_status = 503
    code = "model_unloaded"


class EmbeddingCancelledError(ModelClosedError):
    """An embedding that was running when its model was unloaded (an admin's stop, shutdown): it ended between two
    batches, unfinished. (A request that had not started when the model went is a plain :class:`ModelClosedError`.)"""


class EmbeddingStoppedError(JanError):
    """An embedding its caller stopped (the ``cancel`` event of :meth:`jan.Model.embed` set: the server sets it when
    the client that asked goes away): it ended before its next batch, unfinished."""


def not_found_message(kind: str, resource_id: str, where: str | None = None) -> str:
    """The one wording of "no such object" (every 404 for a missing model, thread, message, assistant, run,
    file, response, ...), OpenAI's ``... not found``: ``thread 'thread_x' not found``; ``where`` names what it
    was looked for in (``in thread 'thread_x'``)."""
    return f"{kind} {resource_id!r} not found" + (f" in {where}" if where else "")


class ModelNotFoundError(JanError, KeyError):
    """No model with that id is known or loaded."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "model not found"


class MediaError(BadRequestError):
    """An image, audio or document input cannot be used.

    ``reason`` says why: ``unsupported_format``, ``too_large``, ``too_many``,
    ``unreadable``, ``not_allowed`` (a URL or path the server may not fetch) or
    ``no_projector`` (the model cannot take this kind of media). ``message_index``: the
    typed request's message whose media it is, where one is (a front end names that message's
    field in its own body's terms); ``part_index``: the part of that message's content at fault,
    where one is. ``item_index``: which of the media items given to
    :meth:`jan.Model.prepare_media` (in prompt order) could not be used, where one could not.
    """

    item_index: int | None = None

    def __init__(self, message: str, reason: str = "unsupported_format", param: str | None = None,
                 message_index: int | None = None, part_index: int | None = None):
        # (``code``: the error code the HTTP front ends report, the reason)
        super().__init__(message, param=param, code=reason)
        self.reason = reason
        self.message_index = message_index
        self.part_index = part_index


class DocumentError(MediaError):
    """A document (a PDF, a text file) that cannot be read as text: HTTP 400.

    ``reason`` (also the error ``code``) says why: ``encrypted`` (a PDF locked by a password),
    ``damaged`` (a PDF that does not parse), ``no_text`` (a PDF without a text layer: likely
    scanned), ``unsupported_format`` (a binary type jan does not read, or text that is not UTF-8),
    ``too_large``, ``not_allowed`` (a URL the server may not fetch) or ``file_not_found``.
    A :class:`MediaError`, so every front end names the field at fault as it does for images
    (``message_index``, ``part_index``).
    """
