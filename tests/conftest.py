"""Shared fixtures: the real models in ../shared/models and a loaded stories260K.

Tests that need the shared models skip with a clear reason when the folder is
absent — except under JAN_REQUIRE_MODELS=1 (set by .ci/run), where a missing
model is a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import os

import pytest

from jan.testing.gguf_models import models_dir

MODELS_MISSING = "shared models missing"


def require_model(*relative: str):
    path = models_dir().joinpath(*relative)
    if not path.exists():
        message = f"{MODELS_MISSING}: {path} not found (set JAN_TEST_MODELS to the shared/models folder)"
        if os.environ.get("JAN_REQUIRE_MODELS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def stories_path():
    return require_model("stories260K.gguf")


@pytest.fixture(scope="session")
def tiny_random_path():
    return require_model("llama-2-tiny-random.gguf")


@pytest.fixture(scope="session")
def minilm_path():
    return require_model("all-MiniLM-L6-v2-f32.gguf")


@pytest.fixture(scope="session")
def vocab_dir():
    return require_model("vocab")


@pytest.fixture(scope="session")
def stories(stories_path):
    """stories260K with 4 slots, shared by tests that only generate."""
    import jan

    model = jan.Model(stories_path, n_parallel=4, n_ctx=1024, n_threads=1)
    yield model
    model.close()


@pytest.fixture(scope="session")
def vision_pair(tmp_path_factory):
    """(model, mmproj) paths of the tiny random-weight vision pair (ChatML llama + LLaVA-style mlp projector)."""
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    require_model("vocab", "ggml-vocab-phi-3.gguf")
    from jan.testing.gguf_models import write_vision_pair

    return write_vision_pair(tmp_path_factory.mktemp("vision"))


@pytest.fixture(scope="session")
def test_image_path():
    """A real photo (JPEG) from llama.cpp's mtmd tests, in ../shared/media."""
    return require_model("..", "media", "test-1.jpeg")
