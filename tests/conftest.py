"""Shared fixtures: the real models in ../shared/models and a loaded stories260K.

Tests that need the shared models skip with a clear reason when the folder is
absent — except under JAN_REQUIRE_MODELS=1 (set by .ci/run), where a missing
model is a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


@pytest.fixture
def gguf_copy(tmp_path, stories_path):
    """A copy of stories260K.gguf of the test's own (``<tmp>/source/stories260K.gguf``), to import, move or damage."""
    path = tmp_path / "source" / "stories260K.gguf"
    path.parent.mkdir()
    shutil.copyfile(stories_path, path)
    return path


@pytest.fixture(scope="session")
def tiny_random_path():
    return require_model("llama-2-tiny-random.gguf")


@pytest.fixture(scope="session")
def minilm_path():
    return require_model("all-MiniLM-L6-v2-f32.gguf")


@pytest.fixture(scope="session")
def vocab_dir():
    return require_model("vocab")


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, vocab_dir):
    """A tiny random model with the qwen2 vocabulary and Qwen3's real tool-calling template, served as
    ``qwen3-tools`` (its calls forced with ``tool_choice``); written once per module that uses it."""
    from jan.testing.gguf_models import write_qwen3_tool_model

    return write_qwen3_tool_model(tmp_path_factory.mktemp("qwen3") / "qwen3-tools.gguf")


@pytest.fixture(scope="module")
def llama():
    """llama.cpp's own grammar engine over the phi-3 vocabulary (tests/grammar_helpers.py), the oracle of the
    grammar tests: whether a GBNF grammar parses and accepts a text."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is needed to check grammars")
    from grammar_helpers import LlamaGrammarChecker

    checker = LlamaGrammarChecker(require_model("vocab", "ggml-vocab-phi-3.gguf"))
    yield checker
    checker.close()


@pytest.fixture(scope="session")
def shared_stories(stories_path):
    """stories260K with 4 slots, shared by tests that only generate (through :func:`stories`)."""
    import jan

    model = jan.Model(stories_path, n_parallel=4, n_ctx=1024, n_threads=1)
    yield model
    model.close()


@pytest.fixture
def stories(shared_stories):
    """The shared stories260K, idle when the test starts: a request an earlier test left finishing (a dropped stream
    is cancelled at the engine's next step) would be decoded in one batch with this test's, whose logits then differ
    in their last bits, and a sample at temperature 1 parted from its seed's replay (4 in 100 seeds with another
    request beside it). Bounded: a model still busy after 60 s is a failure of the test that left it so."""
    import time

    deadline = time.monotonic() + 60
    while shared_stories.busy:  # (the engine tells no event for idleness; its requests end in a step or two)
        assert time.monotonic() < deadline, "the shared stories260K model is still busy with an earlier test's request"
        time.sleep(0.005)
    return shared_stories


@pytest.fixture(scope="session")
def vision_pair(tmp_path_factory):
    """(model, mmproj) paths of the tiny random-weight vision pair (ChatML llama + LLaVA-style mlp projector)."""
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    require_model("vocab", "ggml-vocab-phi-3.gguf")
    from jan.testing.gguf_models import write_vision_pair

    return write_vision_pair(tmp_path_factory.mktemp("vision"))


@pytest.fixture(scope="session")
def qwen2vl_pair(tmp_path_factory):
    """(model, mmproj) paths of a tiny random-weight dynamic-resolution vision pair (a Qwen2-VL text model and
    projector: an image takes as many tokens as its size asks, 8 to 4096 unless image_min/max_tokens say)."""
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    require_model("vocab", "ggml-vocab-phi-3.gguf")
    from jan.testing.gguf_models import write_qwen2vl_pair

    return write_qwen2vl_pair(tmp_path_factory.mktemp("qwen2vl"))


@pytest.fixture(scope="session")
def audio_pair(tmp_path_factory):
    """(model, mmproj) paths of a tiny random-weight audio pair (a ChatML llama with a 4096-token context and a
    Qwen2-Audio whisper encoder: 750 tokens per started 30 s of a clip)."""
    pytest.importorskip("gguf", reason="the gguf package is not installed (test extra)")
    require_model("vocab", "ggml-vocab-phi-3.gguf")
    from jan.testing.gguf_models import write_audio_pair

    return write_audio_pair(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="session")
def test_audio_path():
    """A real speech clip (MP3, 17 s) from llama.cpp's mtmd tests, in ../shared/media."""
    return require_model("..", "media", "test-2.mp3")


@pytest.fixture(scope="session")
def mp3(test_audio_path) -> bytes:
    """That clip's bytes."""
    return test_audio_path.read_bytes()


@pytest.fixture(scope="session")
def test_image_path():
    """A real photo (JPEG) from llama.cpp's mtmd tests, in ../shared/media."""
    return require_model("..", "media", "test-1.jpeg")


# -- a fresh data folder: the CLI tests and the HTTP API tests ---------------------------------------
@pytest.fixture
def data(tmp_path):
    """A data folder for one test, not created yet (``<tmp>/jan``); the CLI creates it on first use."""
    return tmp_path / "jan"


@pytest.fixture
def env(data):
    """The environment for ``jan`` subprocesses that use :func:`data` (see ``test_cli_helpers.cli_env``)."""
    from test_cli_helpers import cli_env

    return cli_env(data)


@pytest.fixture
def server(tmp_path):
    """A real server with no models over the data folder ``<tmp>/data`` (modules that need models
    define their own ``server``)."""
    from api_helpers import running

    with running(tmp_path / "data") as srv:
        yield srv


WEB_ARTIFACTS = Path(__file__).parent / "artifacts" / "web"


# -- browser (tests/test_web_*.py) ---------------------------------------------------------------------
def _unavailable(reason: str):
    if os.environ.get("JAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (JAN_REQUIRE_BROWSER=1) but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium, one per test module: Playwright's sync API runs an event loop in this
    thread while it is open, so it is closed before other modules' tests (which run their own loops)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no `playwright install` needed)")
    executable = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if executable is None:
        _unavailable("no chromium on PATH (apt-get install chromium)")
    WEB_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Pages in fresh contexts (own localStorage); JS errors on any of them fail the test.

    The server's Content-Security-Policy forbids eval, which Playwright's
    ``wait_for_function`` polling uses, so pages bypass it unless ``csp=True``
    (the page itself never needs eval: see test_page_runs_under_its_csp).
    """
    contexts, errors = [], []

    def make(width: int = 1280, height: int = 820, csp: bool = False, **options):
        context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=not csp, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text else None)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
