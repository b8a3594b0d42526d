"""An engine extension whose generations never end by themselves: what a client leaving, or the server stopping,
must stop (tests/test_stream_left_writing_nothing.py, tests/test_shutdown_whole_answers.py)."""

from __future__ import annotations

import asyncio
import threading

from jan.core import Extension, InferenceExtension
from jan.services.types import ChatDelta, CompletionDelta


_M = [{"role": "user", "content": "hi"}]
#: Each generating route's streamed body (without ``model``), for the tests that stop or leave its stream
STREAMED = {
    "/v1/chat/completions": {"messages": _M, "stream": True},
    "/v1/completions": {"prompt": "hi", "stream": True},
    "/v1/messages": {"messages": _M, "stream": True, "max_tokens": 100},
    "/v1/responses": {"input": "hi", "stream": True},
    "/api/chat": {"messages": _M},  # (Ollama streams by default)
    "/api/generate": {"prompt": "hi"},
    "/completion": {"prompt": "hi", "stream": True},
}


class EndlessEngine(Extension, InferenceExtension):
    """Serves models of the engine "endless": says "ok ", then makes deltas with nothing in them until it is closed.
    ``started`` is set when a generation begins, ``closed`` when one is closed (cleared by the test between them)."""

    name = "endless-ext"
    engine_name = "endless"

    def __init__(self):
        super().__init__()
        self.started, self.closed = threading.Event(), threading.Event()

    def clear(self) -> None:
        self.started.clear()
        self.closed.clear()

    async def load_model(self, model): ...
    async def unload_model(self, model_id): ...
    async def loaded_models(self): return []
    async def model_status(self, model_id): return {"id": model_id, "status": "ready"}

    async def _endless(self, first, empty):
        self.started.set()
        try:
            yield first
            while True:
                await asyncio.sleep(0.005)  # (the engine's pace; a tight loop would starve the event loop)
                yield empty
        finally:
            self.closed.set()

    def chat(self, model, request):
        return self._endless(ChatDelta(content="ok "), ChatDelta())

    def complete(self, model, request):
        return self._endless(CompletionDelta(text="ok "), CompletionDelta(text=""))

    async def embed(self, model, request): ...
    async def tokenize(self, model, text, *, add_special=True, parse_special=False): return [1, 2]
    async def detokenize(self, model, tokens): return ""


def endless_server(data_folder, engine: EndlessEngine, model_id: str = "endless"):
    """A test server (``with endless_server(...) as srv``) serving ``model_id`` with ``engine``."""
    from jan.server.config import ServerConfig
    from jan.store import DataFolder
    from jan.testing.server import ServerThread

    DataFolder(data_folder).models.create({"id": model_id, "engine": "endless", "object": "model"})
    return ServerThread(ServerConfig(data_folder=data_folder, models=[], n_threads=1), extensions=[engine])
