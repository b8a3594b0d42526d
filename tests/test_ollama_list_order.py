"""``/api/tags`` lists the most recently modified model first and ``/api/ps`` the one with the longest time left
first, as Ollama's ListHandler and PsHandler sort them (its API docs show the newest first): jan listed both by id,
so an app that takes the first listed model as its default got the first name in the alphabet (here an older copy;
often an embedding model) rather than the model pulled last.

A real server over two copies of stories260K whose model.json files were written at known times (``modified_at``
is when a model was written, as Ollama's is its manifest's: :mod:`test_ollama_model_record`); their weights files
are dated the other way round, which the order must not follow."""

from __future__ import annotations

import os
import shutil

import pytest
from api_helpers import running

import ollama

WAIT_S = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("order")
    older, newer = tmp / "aaa-older.gguf", tmp / "zzz-newer.gguf"
    for path, when in ((older, 1_700_000_000), (newer, 1_600_000_000)):
        shutil.copy(stories_path, path)
        os.utime(path, (when, when))
    with running(tmp / "data", older, newer) as srv:
        for model_id, when in (("aaa-older", 1_600_000_000), ("zzz-newer", 1_700_000_000)):
            os.utime(tmp / "data" / "models" / model_id / "model.json", (when, when))
        yield srv


def test_tags_list_the_most_recently_modified_first(server):
    models = ollama.Client(host=server.base_url, timeout=WAIT_S).list().models
    listed = [m.model for m in models if m.model in ("aaa-older:latest", "zzz-newer:latest")]
    assert listed == ["zzz-newer:latest", "aaa-older:latest"], [(m.model, m.modified_at) for m in models]
    times = [m.modified_at for m in models]
    assert times == sorted(times, reverse=True)


def test_ps_lists_the_longest_time_left_first(server):
    client = ollama.Client(host=server.base_url, timeout=WAIT_S)
    client.generate("aaa-older", keep_alive="5m")  # loaded (and used) first, with less time left
    client.generate("zzz-newer", keep_alive="10m")
    assert [m.model for m in client.ps().models] == ["zzz-newer:latest", "aaa-older:latest"]
    client.generate("aaa-older", keep_alive=-1)  # (used last, and now kept for good)
    assert [m.model for m in client.ps().models] == ["aaa-older:latest", "zzz-newer:latest"]
