"""Inference engines: llama.cpp (built in), remote OpenAI-compatible APIs, ..."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, AsyncIterator, ClassVar

from .base import ExtensionInterface, ExtensionType

__all__ = ["InferenceExtension", "ModelState"]


class ModelState:
    """Values of the ``"status"`` key that :meth:`InferenceExtension.model_status` returns."""

    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"


class InferenceExtension(ExtensionInterface):
    """An inference engine, registered under :attr:`engine_name`.

    A model is described by its ``model.json`` dict (``id``, ``engine``,
    ``settings`` {``ctx_len``, ``ngl``, ``n_parallel``, ...}, ``parameters``
    {``temperature``, ``max_tokens``, ``stop``, ...}, ``sources``, ...). The
    server picks the engine with ``manager.get_inference(model["engine"])``.

    **Streaming contract.** :meth:`chat` and :meth:`complete` are *async
    generators* (write them with ``async def ...: yield``): calling them
    starts nothing; iterating does the work and yields OpenAI chunk dicts.
    Non-streaming callers aggregate the chunks (see
    :func:`jan.core.aggregate_chat_chunks`).

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
    ``EngineError``. A request that fails before its first chunk raises on
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

    # -- generation ----------------------------------------------------------
    @abstractmethod
    def chat(self, model: dict[str, Any], request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream a chat completion as OpenAI ``chat.completion.chunk`` dicts.

        ``request`` is the body of ``POST /v1/chat/completions`` (``messages``,
        ``temperature``, ``max_tokens``, ``stop``, ``tools``,
        ``response_format``, ``logprobs``, ...); ``model`` supplies defaults
        for whatever the request leaves out. Each chunk has ``id``,
        ``object``, ``created``, ``model`` and ``choices`` with ``delta``
        (``role``, ``content``, ``tool_calls``) and ``finish_reason`` (set on
        the last chunk of each choice). If ``stream_options.include_usage``
        is set, a final chunk with empty ``choices`` carries ``usage``.
        Implement as an async generator; see the class docstring for the
        cancellation (``aclose``) contract.
        """

    @abstractmethod
    def complete(self, model: dict[str, Any], request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream a text completion as OpenAI ``text_completion`` chunk dicts.

        ``request`` is the body of ``POST /v1/completions`` (``prompt``,
        ``max_tokens``, ``stop``, ``echo``, ``logprobs``, ...). Each chunk has
        ``choices`` with ``text``, ``index`` and ``finish_reason`` (on the
        last). Same streaming and cancellation contract as :meth:`chat`.
        """

    @abstractmethod
    async def embed(self, model: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        """Compute embeddings; returns an OpenAI embeddings response.

        ``request`` is the body of ``POST /v1/embeddings`` (``input`` as a
        string, list of strings or token lists, ``encoding_format``,
        ``dimensions``). The result is ``{"object": "list", "data": [{"object":
        "embedding", "index": i, "embedding": [...]}], "model": ...,
        "usage": {"prompt_tokens": n, "total_tokens": n}}``.
        """

    @abstractmethod
    async def tokenize(
        self, model: dict[str, Any], text: str, *, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """Token ids of ``text`` with the model's vocabulary (BOS added if ``add_special`` and the model wants it)."""

    @abstractmethod
    async def detokenize(self, model: dict[str, Any], tokens: list[int]) -> str:
        """The text of a list of token ids (the inverse of :meth:`tokenize`)."""
