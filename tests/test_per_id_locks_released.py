"""Locks kept per id (a conversation's appends, a model's loads) are released once nobody holds or waits for them:
the conversation lock dictionary kept one lock for every conversation id ever touched, and the llama.cpp engine's
one for every model id ever asked for (a typo's too), for the life of the server."""

from __future__ import annotations

import asyncio
import gc

N = 500


def test_the_conversation_locks_do_not_grow_with_the_ids_touched(tmp_path):
    from jan.server.dialects.responses_store import ResponsesStore

    store = ResponsesStore(tmp_path / "responses", lambda: None)

    async def main():
        for i in range(N):
            async with store.locked(f"thread_{i}"):
                pass
        gc.collect()
        assert len(store._thread_locks) == 0
        # while one holds it, every other caller gets that same lock (the exclusion is kept)
        async with store.locked("thread_x"):
            assert store.locked("thread_x").locked()
            gc.collect()
            assert len(store._thread_locks) == 1
        gc.collect()
        assert len(store._thread_locks) == 0

    asyncio.run(main())


def test_the_model_load_locks_do_not_grow_with_the_ids_asked_for():
    from jan.extensions.llamacpp.extension import LlamaCppExtension

    ext = LlamaCppExtension()

    async def main():
        for i in range(N):
            async with ext._load_lock(f"model-{i}"):
                pass
        gc.collect()
        assert len(ext._load_locks) == 0
        async with ext._load_lock("m"):
            assert ext._load_lock("m").locked()
        gc.collect()
        assert len(ext._load_locks) == 0

    asyncio.run(main())
