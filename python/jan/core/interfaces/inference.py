"""Inference engines: llama.cpp (built in), remote OpenAI-compatible APIs, ...

Two kinds of engine sit behind one interface, and the chat service
(:mod:`jan.services`) speaks to both with typed requests:

* a **local engine** (:class:`LocalInferenceExtension`, e.g. llama.cpp) lends
  the service a loaded model (:class:`LocalModel`: its chat template and a
  ``jan.Model`` that tokenizes and generates tokens); the service renders the
  template, tokenizes, builds grammars, submits, and parses tool calls (and
  reasoning) out of the generated text itself, so every local engine gets
  identical prompts and parsing;
* a **message engine** (any other :class:`InferenceExtension`, e.g. the remote
  OpenAI-compatible one) takes the typed request whole —
  :class:`~jan.services.types.ChatRequest` in,
  :class:`~jan.services.types.ChatDelta` out — because the engine on the other
  side renders and parses for itself.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, ClassVar

from .base import ExtensionInterface, ExtensionType

if TYPE_CHECKING:  # core imports no implementation; these are only annotations
    from jan.services.types import (
        ChatDelta,
        ChatRequest,
        CompletionDelta,
        CompletionRequest,
        EmbeddingRequest,
        EmbeddingResult,
    )

__all__ = ["Claim", "InferenceExtension", "LocalInferenceExtension", "LocalModel", "ModelState"]


class ModelState:
    """Values of the ``"status"`` key that :meth:`InferenceExtension.model_status` returns."""

    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"


class Claim:
    """The hold a model pool's hand-out took on ``model`` for the one request it was handed out for (a
    ``ModelPool.load``/``get`` with ``claim=True``): the model is not unloaded for another one until that request
    begins (:meth:`hold`) or the claim is given back (:meth:`give_back`, a request that will not begin: refused, or
    its client gone, after the hand-out and before its submit). Once either happened, the other does nothing more;
    thread-safe (the hold begins on a worker thread, the give-back comes from the event loop)."""

    def __init__(self, model: Any, give_back: Callable[[], None]):
        self._model = model
        self._give_back = give_back
        self._lock = threading.Lock()
        self._open = True

    def hold(self) -> AbstractContextManager[Any]:
        """``model.hold()``: the claimed request begins (the claim ends); after :meth:`give_back` a hold that begins
        no claimed request (``begins=False``), so that it ends no other request's claim."""
        with self._lock:
            begins, self._open = self._open, False
        return self._model.hold(begins=begins)

    def give_back(self) -> None:
        """The claim given back now (the request will not begin), not held for nobody until the pool's claim grace
        lapses; nothing once the request began or the claim was given back."""
        with self._lock:
            if not self._open:
                return
            self._open = False
        self._give_back()


@dataclass(frozen=True)
class LocalModel:
    """A loaded model a local engine lends to the services for one request.

    ``model`` is a ``jan.Model`` (tokenize, detokenize, ``stream(tokens, ...)``,
    ``embed``); ``template`` the ``jan.templates.ChatTemplate`` chosen for it
    (the model.json ``chat_template`` override, else the GGUF's template, else
    the model.json ``prompt_template``, else ChatML); ``end_of_turn`` stop
    strings to add to chat requests (when the template spells the end of a turn
    as text the model may not know as one token); ``claim``: the pool's hold for this
    request, until it begins (None: the engine took none).
    """

    model: Any
    template: Any
    end_of_turn: tuple[str, ...] = ()
    claim: Claim | None = None

    def hold(self) -> AbstractContextManager[Any]:
        """The model held for this request's work (``jan.Model.hold``): the request the hand-out claimed the model
        for begins here (:meth:`Claim.hold`)."""
        return self.claim.hold() if self.claim is not None else self.model.hold()

    def give_back(self) -> None:
        """This request will not begin (refused, or its client gone, before its :meth:`hold`): the hand-out's claim
        given back at once (:meth:`Claim.give_back`); nothing once it began, or without a claim."""
        if self.claim is not None:
            self.claim.give_back()


class InferenceExtension(ExtensionInterface):
    """An inference engine, registered under :attr:`engine_name`.

    A model is described by its ``model.json`` dict (``id``, ``engine``,
    ``settings`` {``ctx_len``, ``ngl``, ``n_parallel``, ...}, ``parameters``
    {``temperature``, ``max_tokens``, ``stop``, ...}, ``sources``, and, for
    local weights, ``file_path`` as the model extension resolved it). The
    services pick the engine with ``manager.get_inference(model["engine"])``.

    Requests arrive typed (:mod:`jan.services.types`) with the precedence rule
    already applied: ``request.sampling`` holds what the request, thread,
    assistant and model.json gave (``None`` fields were given nowhere; the
    engine applies its own defaults to them). A message engine implements
    :meth:`chat`, :meth:`complete` and :meth:`embed`; a local engine derives
    from :class:`LocalInferenceExtension` instead and the services do those.

    **Streaming contract.** :meth:`chat` and :meth:`complete` are *async
    generators* (write them with ``async def ...: yield``): calling them
    starts nothing; iterating does the work and yields typed deltas
    (:class:`~jan.services.types.ChatDelta` /
    :class:`~jan.services.types.CompletionDelta`), each choice's last one with
    its ``finish_reason``, then one with ``choice=-1`` and ``usage`` when the
    engine knows it.

    **Cancellation contract.** The consumer cancels a request by closing the
    iterator: ``await stream.aclose()``, leaving an ``async for`` over an
    ``aclosing(...)`` block, or cancelling the task that iterates it (the
    server does this when an HTTP client disconnects). The implementation
    must then stop generating and free the slot/KV cache promptly — put that
    cleanup in a ``try/finally`` around the ``yield`` loop — and must not
    swallow ``GeneratorExit``/``CancelledError``. A request that is merely
    abandoned without ``aclose`` is freed when the generator is finalized,
    which may be late; callers should always close.

    **Errors.** Problems are raised from the iterator (or from the awaited
    call) as :class:`jan.errors.JanError` subclasses: ``ModelNotFoundError``,
    ``ModelLoadError``, ``ContextOverflowError``, ``QueueFullError``,
    ``EngineError``. A request that fails before its first delta raises on
    the first ``__anext__``.

    Engines may load a model on demand on first use; the server nevertheless
    calls :meth:`load_model` first to report loading progress through events.
    """

    extension_type: ClassVar[str] = ExtensionType.INFERENCE

    #: The engine's name as written in ``model.json``'s ``engine`` field, e.g.
    #: ``"llama.cpp"`` or ``"openai"``. Implementations set it.
    engine_name: str = ""

    # -- model lifecycle ---------------------------------------------------
    @abstractmethod
    async def load_model(self, model: dict[str, Any]) -> None:
        """Load the model described by its ``model.json`` dict and return when it can serve requests.

        Loading an already loaded model with the same settings is a no-op.
        Raises ``ModelLoadError`` if the file is missing or unusable. Engines
        emit ``ModelInit``/``ModelReady``/``ModelFailed`` on the bus if they
        were given one; the server emits them otherwise.
        """

    @abstractmethod
    async def unload_model(self, model_id: str) -> None:
        """Stop and unload the model, cancelling its running requests; raises ``ModelNotFoundError`` if not loaded."""

    @abstractmethod
    async def loaded_models(self) -> list[str]:
        """Ids of the models that are loaded (or loading) right now."""

    @abstractmethod
    async def model_status(self, model_id: str) -> dict[str, Any]:
        """The state of one model as a dict.

        At least ``{"id": ..., "status": <ModelState value>}``; engines may
        add details (``"error"``, ``"n_ctx"``, ``"n_parallel"``,
        ``"active_requests"``, ...). An unknown model is ``"unloaded"``, not
        an error.
        """

    # -- generation (message engines; local engines get these from the services) -----
    def chat(self, model: dict[str, Any], request: "ChatRequest") -> AsyncIterator["ChatDelta"]:
        """Stream a chat completion as typed deltas (see the class docstring).

        ``request.messages`` hold typed content parts; ``tools``,
        ``tool_choice``, ``response_format``, ``grammar``, ``n``, ``logprobs``
        and ``reasoning`` are as the front end gave them. Raises
        ``NotImplementedError`` for an engine that cannot chat.
        """
        raise NotImplementedError(f"the engine '{self.engine_name}' does not chat")

    def complete(self, model: dict[str, Any], request: "CompletionRequest") -> AsyncIterator["CompletionDelta"]:
        """Stream a text completion as :class:`~jan.services.types.CompletionDelta` (same contracts as :meth:`chat`)."""
        raise NotImplementedError(f"the engine '{self.engine_name}' does not complete text")

    async def embed(self, model: dict[str, Any], request: "EmbeddingRequest") -> "EmbeddingResult":
        """One vector per input (:class:`~jan.services.types.EmbeddingResult`); ``ValueError`` for a
        ``dimensions`` the model cannot give. An engine may answer whole vectors for ``dimensions``: the embedding
        service cuts a list of numbers longer than it (and normalizes it again with ``request.normalize``)."""
        raise NotImplementedError(f"the engine '{self.engine_name}' does not embed")

    @abstractmethod
    async def tokenize(
        self, model: dict[str, Any], text: str, *, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """Token ids of ``text`` with the model's vocabulary (BOS added if ``add_special`` and the model wants it)."""

    @abstractmethod
    async def detokenize(self, model: dict[str, Any], tokens: list[int]) -> str:
        """The text of a list of token ids (the inverse of :meth:`tokenize`)."""


class LocalInferenceExtension(InferenceExtension):
    """An engine that runs models in this process: it loads them and lends them out.

    The services render the chat template, tokenize, build grammars, submit
    token ids to ``LocalModel.model.stream(...)`` and parse the output; the
    engine owns loading (load options, the model pool, keep-alive) and the
    choice of template. :meth:`chat`/:meth:`complete`/:meth:`embed` are not
    called on a local engine.
    """

    @abstractmethod
    async def acquire(self, model: dict[str, Any]) -> LocalModel:
        """Load the model if needed (as :meth:`load_model`) and return it with its chat template.

        Raises ``ModelLoadError`` when it cannot be loaded. Cheap when loaded.
        """
