"""File paths given to the library, misused: each is refused naming the argument, and none opens another file.

``Model.slot_action``'s ``path`` went to the engine unchecked: a number was pathlib's "expected str, bytes or
os.PathLike object, not int", bytes failed inside with "endswith first arg must be bytes", a name that is not UTF-8
was pybind11's "incompatible function arguments" dumping the signature, and a name holding NUL saved the slot to
the file named by what came before it (C reads a name to its first NUL). Every path to the engine now goes through
``jan.engine.gguf_file.file_path`` and ``native_path_problem``.
"""

from __future__ import annotations

import pytest

import jan
from jan.errors import BadRequestError, ModelFileError


@pytest.fixture(scope="module")
def model(stories_path):
    with jan.Model(stories_path, n_ctx=64) as m:
        m.generate("Once", max_tokens=2)
        yield m


@pytest.mark.parametrize("action", ["save", "restore"])
def test_a_slot_path_of_no_path_type_is_a_type_error_naming_it(model, action):
    for path in (5, 1.5, ["a.bin"], object()):
        with pytest.raises(TypeError, match=r"^path: expected a file path"):
            model.slot_action(action, 0, path)


@pytest.mark.parametrize("action", ["save", "restore"])
def test_a_slot_file_name_the_engine_cannot_open_as_named_is_refused(model, action, tmp_path):
    for path, said in ((f"{tmp_path}/a\x00b.bin", "NUL"), (f"{tmp_path}/\udcff.bin", "not valid UTF-8")):
        with pytest.raises(BadRequestError, match=said) as caught:
            model.slot_action(action, 0, path)
        assert caught.value.param == "path" and str(caught.value).startswith("path: ")
    assert list(tmp_path.iterdir()) == []  # (the NUL one saved the slot to "a")


def test_a_slot_path_as_bytes_or_a_path_object_is_the_file_it_names(model, tmp_path):
    saved = model.slot_action("save", 0, bytes(tmp_path / "slot.bin"))
    assert (tmp_path / "slot.bin").is_file()
    assert model.slot_action("restore", 0, tmp_path / "slot.bin")["n_tokens"] == saved["n_tokens"]
    for empty in (None, "", b""):
        with pytest.raises(BadRequestError, match="needs a file path"):
            model.slot_action("save", 0, empty)


def test_a_lora_file_name_holding_nul_is_refused_naming_it(stories_path, tmp_path):
    with pytest.raises(ModelFileError, match=r"lora\[0\]"):
        jan.Model(stories_path, n_ctx=64, lora=[f"{tmp_path}/style\x00.gguf"])


def test_an_erase_reads_no_path(model):
    for path in (None, 5, "\udcff", "a\x00b"):
        assert model.slot_action("erase", 0, path)["id_slot"] == 0
