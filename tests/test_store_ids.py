"""Id validation (no request may reach outside the data folder) and id generation."""

from __future__ import annotations

import os

import pytest

from jan.errors import JanError
from jan.store import DataFolder, InvalidIdError, ids

BAD_IDS = [
    "../x",
    "..",
    ".",
    "/etc/passwd",
    "%2e%2e%2fx",
    "..%2fx",
    "..\\x",
    "x\\..\\y",
    "",
    "a\x00b",
    "\x00",
    "x/../../y",
    "a/b",
    ".hidden",
    "-dash",
    "x..y",
    "trailing.",
    "CON",
    "nul.txt",
    "a" * 129,
    "with space",
    "tab\t",
    "new\nline",
    "ünïcode",
    "C:\\Windows",
    "~root",
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_validate_id_rejects(bad):
    with pytest.raises(InvalidIdError) as err:
        ids.validate_id(bad)
    assert isinstance(err.value, ValueError) and isinstance(err.value, JanError)


@pytest.mark.parametrize("bad", [None, 5, b"abc", ["a"]])
def test_validate_id_rejects_non_strings(bad):
    with pytest.raises(InvalidIdError):
        ids.validate_id(bad)


@pytest.mark.parametrize("good", ["jan", "a", "llama3.2-3b-instruct", "Meta-Llama-3-8B.Q4_K_M",
                                  "thread_01HX0000000000000000000000", "jan_1700000000000", "a" * 128])
def test_validate_id_accepts(good):
    assert ids.validate_id(good) == good


def _snapshot(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


@pytest.fixture
def store(tmp_path):
    folder = DataFolder(tmp_path / "data")
    folder.threads.create("existing", thread_id="t1")
    return folder


def _calls(store, bad):
    gguf = store.root.parent / "ok.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    return [
        lambda: store.threads.create("x", thread_id=bad),
        lambda: store.threads.get(bad),
        lambda: store.threads.update(bad, title="x"),
        lambda: store.threads.delete(bad),
        lambda: store.messages.create(bad, "user", "x"),
        lambda: store.messages.list(bad),
        lambda: store.messages.create("t1", "user", "x", message_id=bad),
        lambda: store.messages.get("t1", bad),
        lambda: store.messages.update("t1", bad, status="ready"),
        lambda: store.messages.delete("t1", bad),
        lambda: store.messages.list("t1", after=bad),
        lambda: store.assistants.create("x", assistant_id=bad),
        lambda: store.assistants.get(bad),
        lambda: store.assistants.delete(bad),
        lambda: store.models.get(bad),
        lambda: store.models.create({"id": bad}),
        lambda: store.models.delete(bad),
        lambda: store.models.import_gguf(gguf, model_id=bad),
        lambda: store.settings.set(bad, {"a": 1}),
        lambda: store.settings.get(bad),
    ]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "%2e%2e%2fx", "..\\x", "", "a\x00b", "../../x", ".."])
def test_traversal_ids_touch_nothing(tmp_path, store, bad):
    calls = _calls(store, bad)
    before = _snapshot(tmp_path)
    for call in calls:
        with pytest.raises(InvalidIdError):
            call()
    assert _snapshot(tmp_path) == before
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path.parent / "x")


def test_extension_names():
    assert ids.validate_extension_name("@janhq/inference-cortex-extension") == "@janhq/inference-cortex-extension"
    assert ids.validate_extension_name("jan-llamacpp") == "jan-llamacpp"
    for bad in ["@/x", "@a/../b", "a/b", "@a/b/c", "@a", "../x", "@../x", ""]:
        with pytest.raises(InvalidIdError):
            ids.validate_extension_name(bad)


def test_generated_ids_are_valid_unique_and_sorted():
    made = [ids.new_message_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    for value in (ids.new_thread_id(), ids.new_message_id(), ids.new_assistant_id()):
        ids.validate_id(value)
    assert ids.new_thread_id().startswith("thread_")
    assert ids.new_assistant_id().startswith("asst_")
    assert len(ids.new_ulid()) == 26


def test_slugify_id():
    assert ids.slugify_id("Meta Llama 3 (8B).Q4_K_M") == "Meta-Llama-3-8B-.Q4_K_M"
    assert ids.slugify_id("../../etc") == "etc"
    assert ids.slugify_id("...") == "model"
    assert ids.validate_id(ids.slugify_id("x" * 300))


@pytest.mark.parametrize("name, slug", [("my störy ü", "my-story-u"), ("Crème brûlée 7B", "Creme-brulee-7B"),
                                        ("Ｆｕｌｌ width", "Full-width"), ("model (copy)", "model-copy"),
                                        ("日本語", "model"), ("日本語 7B", "7B"), ("qwen-", "qwen")])
def test_slugify_id_keeps_the_words_of_a_unicode_name(name, slug):
    # an accented letter was a dash ("my störy ü" imported as "my-st-ry-"), and a dash could end the id
    assert ids.slugify_id(name) == slug
