"""Locks kept per id (a conversation's appends, a model's loads) are released once nobody holds or waits for them:
the conversation lock dictionary kept one lock for every conversation id ever touched, and the llama.cpp engine's
one for every model id ever asked for (a typo's too), for the life of the server."""

from __future__ import annotations

import asyncio
import gc

import pytest

N = 500


def _conversation_locks(tmp_path):
    from jan.server.dialects.responses_store import ResponsesStore

    store = ResponsesStore(tmp_path / "responses", lambda: None)
    appends = store._appends  # (an asyncio lock per lock file in use, and the OS lock of that file)
    return store.locked, appends._locks, lambda key: appends._locks(str(appends.path(f"threads/{key}")))


def _model_load_locks(tmp_path):
    from jan.extensions.llamacpp.extension import LlamaCppExtension

    ext = LlamaCppExtension()
    return ext._load_lock, ext._load_locks, ext._load_lock


@pytest.mark.parametrize("owner", [_conversation_locks, _model_load_locks], ids=["conversations", "model-loads"])
def test_the_locks_per_id_do_not_grow_with_the_ids_asked_for(tmp_path, owner):
    lock_for, table, asyncio_lock = owner(tmp_path)

    async def main():
        for i in range(N):
            async with lock_for(f"id-{i}"):
                pass
        gc.collect()
        assert len(table) == 0
        # while one holds it, every other caller gets that same lock (the exclusion is kept)
        async with lock_for("x"):
            assert asyncio_lock("x").locked()
            gc.collect()
            assert len(table) == 1
        gc.collect()
        assert len(table) == 0

    asyncio.run(main())
