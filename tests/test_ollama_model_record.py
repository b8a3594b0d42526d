"""What Ollama's model listings say of a model's own record, as today's Ollama fills it (``api/types.go``'s
``ListModelResponse``, ``ShowResponse``, ``ModelDetails``; its list cache and ``GetModelInfo``):

- ``modified_at`` is when the model was written (Ollama: its manifest's time), not its weights file's: a model
  created ``from`` another, or copied, shares the file and reported the file's time (here years old);
- ``details.parent_model`` names the model one was created from (``stories260K:latest``); a copy keeps it; empty
  for a model from a file;
- ``digest`` changes when a create over a model changes only its system prompt (Ollama's manifest hash does);
- ``/api/tags`` entries carry ``capabilities`` and ``details.context_length``/``embedding_length`` (omitted
  where unknown), as Ollama's list has had since it added them; ``/api/show``'s ``model_info`` leaves
  ``general.name`` out, as Ollama's does.

A real server over a copy of stories260K whose file is dated 2020, and the MiniLM embedding model.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime

import httpx
import pytest
from api_helpers import running

import ollama

WAIT_S = 300
OLD = 1_600_000_000  # 2020-09-13: the weights file's time


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path, minilm_path):
    tmp = tmp_path_factory.mktemp("record")
    weights = tmp / "base.gguf"
    shutil.copy(stories_path, weights)
    os.utime(weights, (OLD, OLD))
    with running(tmp / "data", weights, minilm_path) as srv:
        yield srv


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _listed(base_url: str) -> dict[str, dict]:
    return {m["model"]: m for m in httpx.get(f"{base_url}/api/tags", timeout=WAIT_S).json()["models"]}


def test_a_created_model_is_dated_when_made_and_names_its_parent(server):
    client = ollama.Client(host=server.base_url, timeout=WAIT_S)
    before = time.time() - 5  # (a file system's clock may lag the process's by a tick)
    client.create(model="kitty", from_="base", system="You are a cat.")
    listed = _listed(server.base_url)
    made = listed["kitty:latest"]
    assert _seconds(made["modified_at"]) >= before, made["modified_at"]
    assert made["details"]["parent_model"] == "base:latest"
    assert listed["base:latest"]["details"]["parent_model"] == ""  # (made from a file)
    shown = client.show("kitty")
    assert shown.details.parent_model == "base:latest"
    assert _seconds(httpx.post(f"{server.base_url}/api/show", json={"model": "kitty"}, timeout=WAIT_S)
                    .json()["modified_at"]) >= before

    client.copy("kitty", "kitty-copy")  # (Ollama's copy keeps the manifest's layers, and so their parent)
    copied = _listed(server.base_url)["kitty-copy:latest"]
    assert copied["details"]["parent_model"] == "base:latest"
    assert _seconds(copied["modified_at"]) >= _seconds(made["modified_at"])


def test_a_create_that_changes_the_system_prompt_changes_the_digest(server):
    client = ollama.Client(host=server.base_url, timeout=WAIT_S)
    client.create(model="dog", from_="base", system="You are a dog.")
    first = _listed(server.base_url)["dog:latest"]
    client.create(model="dog", from_="dog", system="You are a puppy.")
    second = _listed(server.base_url)["dog:latest"]
    assert first["digest"] != second["digest"]
    assert second["details"]["parent_model"] == "base:latest"  # (a create over itself keeps where it came from)
    assert _seconds(second["modified_at"]) >= _seconds(first["modified_at"])
    # the same model tells the same digest in every listing: /api/ps's (from its resolved record) as /api/tags'
    client.generate("dog", prompt="Once", options={"num_predict": 1})
    running = {m["model"]: m for m in httpx.get(f"{server.base_url}/api/ps", timeout=WAIT_S).json()["models"]}
    assert running["dog:latest"]["digest"] == second["digest"]


def test_tags_tell_capabilities_and_sizes_and_show_leaves_the_name_out(server):
    listed = _listed(server.base_url)
    base, minilm = listed["base:latest"], listed["all-MiniLM-L6-v2-f32:latest"]
    assert base["capabilities"] == ["completion"]
    assert minilm["capabilities"] == ["embedding"]
    assert (base["details"]["context_length"], base["details"]["embedding_length"]) == (2048, 64)
    assert (minilm["details"]["context_length"], minilm["details"]["embedding_length"]) == (512, 384)
    shown = httpx.post(f"{server.base_url}/api/show", json={"model": "base"}, timeout=WAIT_S).json()
    assert "general.name" not in shown["model_info"]
    assert shown["model_info"]["general.architecture"] == "llama"


@pytest.mark.parametrize(("gpu_layers", "share"), [(0, 0), (2, 2), (5, 5), (6, 6), (99, 6), (-1, 6), ("auto", 0)])
def test_ps_size_vram_is_the_offloaded_layers_share(stories_path, gpu_layers, share):
    """``size_vram`` of a model partly offloaded is the offloaded layers' share of its size (stories260K: 5 layers
    and the output layer), where it was all of it as soon as one layer was on the GPU; none with none, all with all
    (-1, or more than there are)."""
    from jan.server.dialects.ollama_models import running_entry

    size = 6_000_000
    entry = running_entry({"id": "stories260K"}, str(stories_path), {"memory_bytes": size, "n_gpu_layers": gpu_layers})
    assert entry["size"] == size and entry["size_vram"] == size * share // 6


def test_a_model_created_from_files_names_the_weights_as_the_create_did(server, stories_path):
    """Ollama records the name a create's ``files`` gave the weights as the model layer's ``from``, which its
    ``details.parent_model`` tells."""
    client = ollama.Client(host=server.base_url, timeout=WAIT_S)
    digest = client.create_blob(stories_path)
    client.create(model="from-files", files={"tiny-story.gguf": digest})
    assert _listed(server.base_url)["from-files:latest"]["details"]["parent_model"] == "tiny-story.gguf"
    assert client.show("from-files").details.parent_model == "tiny-story.gguf"
