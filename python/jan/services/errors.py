"""Errors the services raise for requests they cannot serve (front ends map them to their dialect)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from jan.errors import BadRequestError, BadRequestTypeError, JanError, ModelClosedError, ModelLoadError, ModelSettingError, QueueFullError
from jan.templates.grammar import GrammarError

__all__ = ["FAILURE_KINDS", "GenerationCancelledError", "PrefillGrammarError", "RequestError", "RequestTypeError", "ServiceUnavailableError", "check_unique_tool_names",
           "failure_kind", "require"]

T = TypeVar("T")


class RequestError(BadRequestError):
    """The request cannot be served as asked; ``param`` names the field, ``code`` the kind
    (an HTTP front end answers 400). A :class:`jan.BadRequestError`, as every bad argument of the library is."""


class RequestTypeError(RequestError, BadRequestTypeError):
    """A typed request's field of the wrong type (``SamplingOptions(temperature="hot")``, ``ChatRequest(messages=
    "hi")``): a :class:`RequestError`, and a ``TypeError`` as every wrong type given to the library is
    (:class:`jan.BadRequestTypeError`)."""


class PrefillGrammarError(GrammarError):
    """A final assistant message (a prefill the reply continues) whose text cannot start the reply its grammar holds:
    a response format's JSON, a tool call a ``tool_choice`` forces. Refused before anything is generated (the
    engine reads the prefill through the grammar: ``grammar_prefix``). A :class:`GrammarError`, so each front end
    says it in its own words (:meth:`said_as`: its name for the format's field); ``param`` is ``messages``.

    ``prefill``: the text read through the grammar; ``at``: its first character the grammar does not allow;
    ``constraint``: what the grammar holds, said with the ``{format}`` field name left to fill in."""

    def __init__(self, prefill: str, at: int, constraint: str, format_field: str = "response_format"):
        self.prefill, self.at, self.constraint = prefill, at, constraint
        shown = prefill if len(prefill) <= 80 else prefill[:77] + "..."
        where = (f"its character {at} ({prefill[at]!r})" if at < len(prefill) else "its end")
        super().__init__(f"messages: the final assistant message is a prefill the reply continues, and its text "
                         f"{shown!r} cannot start {constraint.format(format=format_field)}: the grammar that holds "
                         f"the reply does not allow {where}; send a prefill that begins a valid reply, or none")
        self.param, self.code = "messages", "prefill_not_in_format"

    def said_as(self, format_field: str) -> "PrefillGrammarError":
        """This error with the response format named as a front end names it (``output_config.format``, ``format``)."""
        return PrefillGrammarError(self.prefill, self.at, self.constraint, format_field)


def check_unique_tool_names(named: Iterable[tuple[int, str]], *, param: str = "tools") -> None:
    """A tool name given twice (``named``: each tool's index and name) is a :class:`RequestError` naming the
    second (as Anthropic's "Tool names must be unique"): a model's call could not say which one it means."""
    seen: set[str] = set()
    for i, name in named:
        if name in seen:
            raise RequestError(f"{param}[{i}]: the tool name {name!r} is given twice; tool names must be unique",
                               param=f"{param}[{i}]", code="invalid_value")
        seen.add(name)


#: OpenAI's codes for a generation that failed once accepted: an Assistants run's ``last_error.code`` and a Responses
#: response's ``error.code`` (``status: "failed"``) alike (:func:`failure_kind`).
FAILURE_KINDS = ("server_error", "rate_limit_exceeded", "invalid_prompt")


def failure_kind(exc: BaseException) -> str:
    """OpenAI's code (:data:`FAILURE_KINDS`) for a generation that failed with ``exc`` once it was accepted — an
    Assistants run's ``last_error.code``, a failed Responses response's ``error.code`` — told by the kind of failure,
    never by the HTTP status a front end would answer it with (a full queue is a 503, yet the client's to retry):
    ``rate_limit_exceeded`` for a model too busy to take it (:class:`~jan.QueueFullError`, an upstream's 429),
    ``invalid_prompt`` for input the model cannot be given as it is (too long for the context, media or a template
    or schema it cannot take: the bad-input ``ValueError`` family, not a model's own file or setting), and
    ``server_error`` for everything else. One mapping, so that every front end names a failure alike."""
    if isinstance(exc, QueueFullError) or getattr(exc, "http_status", None) == 429:
        return "rate_limit_exceeded"
    if isinstance(exc, ValueError) and not isinstance(exc, (ModelLoadError, ModelSettingError)):
        return "invalid_prompt"
    return "server_error"


class GenerationCancelledError(ModelClosedError):
    """A generation the server cut off before it finished (``finish_reason`` ``cancelled``: the model was stopped or
    unloaded under it, or the server is shutting down), told as an error by a front end whose wire format has no
    such end: Anthropic's ``stop_reason`` has none, and ``end_turn`` would pass a cut-off answer for a whole one.
    The client may try again, which loads the model anew (the server's 503, as :class:`ModelClosedError`)."""

    code = "generation_cancelled"

    def __init__(self, message: str = "The generation was stopped before it finished: the model was stopped or "
                                      "unloaded on the server (or the server is shutting down). Try again."):
        super().__init__(message)


class ServiceUnavailableError(JanError):
    """No enabled extension provides what the request needs (an HTTP front end answers 503);
    ``builtin`` names the built-in extension to enable; ``loading`` the extensions that would provide it and are
    still loading (asking again shortly may succeed: the front end says when, ``Retry-After``)."""

    http_status = 503
    code = "extension_unavailable"

    def __init__(self, message: str, *, builtin: str | None = None, loading: tuple[str, ...] = ()):
        super().__init__(message)
        self.builtin = builtin
        self.loading = tuple(loading)


def require(manager: Any, interface: type[T], provides: str, builtin: str) -> T:
    """The enabled extension implementing ``interface``, its methods checked (:func:`jan.core.guarded.guarded`: a
    failure of its own is an :class:`~jan.core.ExtensionCallError` naming it); :class:`ServiceUnavailableError`
    naming the built-in to enable when there is none (``provides``: "manages models", "stores threads", ...)."""
    from jan.core import ExtensionNotFoundError

    from jan.core.exceptions import describe_failed, describe_loading

    from jan.core.guarded import get_guarded

    try:
        # checked (jan.core.guarded): what the extension raises or returns against its interface is an error naming
        # it, in every front end alike, not an anonymous 500 wherever the route happens to use it
        return get_guarded(manager, interface)
    except ExtensionNotFoundError as exc:
        if getattr(exc, "loading", ()):  # enabled and on its way: "enable it" would be wrong too
            raise ServiceUnavailableError(f"No extension {provides} yet: {describe_loading(exc.loading)}",
                                          builtin=builtin, loading=exc.loading) from None
        failed = getattr(exc, "failed", ())
        if failed:  # enabled already: "enable it" would send the user the wrong way; the cause is what helps
            raise ServiceUnavailableError(f"No extension {provides}: {describe_failed(failed)}",
                                          builtin=builtin) from None
        if getattr(manager, "started", True) is False:
            # nothing is loaded because nothing runs: a service used after open_services' block (or a server's stop)
            # said "enable 'models'", sending the user to enable what is enabled already
            raise ServiceUnavailableError(f"No extension {provides}: jan's extensions are not running (the services "
                                          "are closed: open_services' block has ended, or the server is stopping; "
                                          "open them again)", builtin=builtin) from None
        # how to enable it, as the engine's message says it: "(enable 'models')" left the user to find how
        raise ServiceUnavailableError(f"No enabled extension {provides}: enable '{builtin}' (`jan extensions enable "
                                      f"{builtin}`, or POST /v1/extensions/{builtin}/enable)", builtin=builtin) from None
