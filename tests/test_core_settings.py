"""Extension settings: validation (pydantic and JSON schema), persistence, change callbacks."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from jan.core.events import LocalEventBus, SettingsChanged
from jan.core.exceptions import SettingsValidationError
from jan.core.settings import ExtensionSettings, JsonSettingsStore


class EngineSettings(BaseModel):
    n_threads: int = Field(4, ge=1, le=512)
    flash_attn: bool = False
    cache_type: Literal["f16", "q8_0", "q4_0"] = "f16"
    devices: list[str] = []


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "base_url": {"type": "string", "pattern": "^https?://", "default": "https://api.openai.com/v1"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 2},
        "models": {"type": "array", "items": {"type": "string"}, "default": []},
        "mode": {"enum": ["fast", "careful"], "default": "fast"},
    },
}


def settings_path(tmp_path, name):
    return tmp_path / "settings" / name / "settings.json"


@pytest.mark.parametrize(
    "values, field",
    [
        ({"n_threads": 0}, "n_threads"),
        ({"n_threads": "many"}, "n_threads"),
        ({"cache_type": "q2"}, "cache_type"),
        ({"devices": "cuda:0"}, "devices"),
        ({"unknown": True}, "unknown"),
    ],
)
def test_pydantic_schema_rejects_bad_values_naming_the_field(tmp_path, values, field):
    settings = ExtensionSettings("engine", EngineSettings, data_folder=tmp_path)
    with pytest.raises(SettingsValidationError) as info:
        settings.update(values)
    assert info.value.field == field
    assert field in str(info.value)
    assert info.value.errors and info.value.errors[0]["field"] == field
    assert not settings_path(tmp_path, "engine").exists()  # nothing written
    assert settings.get("n_threads") == 4


def test_pydantic_schema_accepts_good_values(tmp_path):
    settings = ExtensionSettings("engine", EngineSettings, data_folder=tmp_path)
    assert settings.all() == {"n_threads": 4, "flash_attn": False, "cache_type": "f16", "devices": []}
    changes = settings.update({"n_threads": 16, "cache_type": "q8_0"})
    assert changes == {"cache_type": "q8_0", "n_threads": 16}
    assert settings["n_threads"] == 16 and settings.model.n_threads == 16
    assert json.loads(settings_path(tmp_path, "engine").read_text()) == {"n_threads": 16, "cache_type": "q8_0"}
    assert settings.user_values == {"n_threads": 16, "cache_type": "q8_0"}


class TypedSettings(BaseModel):
    flag: bool = False
    count: int = 1
    ratio: float = 0.5
    name: str | None = None
    tags: list[str] = []


# Before: pydantic's lax mode took each of these as the declared type ("yes" -> True, "16" -> 16, 5 -> "5", 1 -> True)
LOOSE = [("flag", "yes"), ("flag", "true"), ("flag", 1), ("flag", "on"), ("count", "16"), ("count", 2.0),
         ("count", True), ("ratio", "0.5"), ("ratio", True), ("name", 5), ("name", False), ("tags", ["a", 3])]


@pytest.mark.parametrize("key, value", LOOSE)
def test_pydantic_settings_are_checked_strictly_by_their_declared_type(tmp_path, key, value):
    settings = ExtensionSettings("typed", TypedSettings, data_folder=tmp_path)
    with pytest.raises(SettingsValidationError) as info:
        settings.update({key: value})
    assert info.value.field.split(".")[0] == key
    assert str(info.value).startswith(f"extension 'typed': invalid setting '{info.value.field}'")
    assert not settings_path(tmp_path, "typed").exists()


@pytest.mark.parametrize("key, value", LOOSE)
def test_a_loosely_typed_value_in_the_settings_file_is_ignored_and_told(tmp_path, key, value):
    path = settings_path(tmp_path, "typed")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({key: value, "count": 3} if key != "count" else {key: value}))
    settings = ExtensionSettings("typed", TypedSettings, data_folder=tmp_path)
    assert settings.get(key) == TypedSettings().model_dump()[key]
    assert [p["field"] for p in settings.problems] == [key]


def test_strict_settings_still_take_what_json_says_well(tmp_path):
    """An int for a float field is a number (JSON has one kind); a Literal from its string; nested lists."""
    settings = ExtensionSettings("typed", TypedSettings, data_folder=tmp_path)
    settings.update({"flag": True, "count": 7, "ratio": 2, "name": "x", "tags": ["a"]})
    assert settings.all() == {"flag": True, "count": 7, "ratio": 2.0, "name": "x", "tags": ["a"]}
    engine = ExtensionSettings("engine", EngineSettings, data_folder=tmp_path)
    engine.update({"cache_type": "q4_0"})
    assert engine.model.cache_type == "q4_0"


@pytest.mark.parametrize(
    "values, field",
    [
        ({"base_url": "ftp://x"}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"retries": 11}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"models": ["a", 3]}, "models[1]"),
        ({"mode": "yolo"}, "mode"),
        ({"extra": 1}, "extra"),
    ],
)
def test_json_schema_rejects_bad_values_naming_the_field(tmp_path, values, field):
    settings = ExtensionSettings("remote", JSON_SCHEMA, data_folder=tmp_path)
    with pytest.raises(SettingsValidationError) as info:
        settings.update(values)
    assert info.value.field == field


def test_json_schema_defaults_and_good_values(tmp_path):
    settings = ExtensionSettings("remote", JSON_SCHEMA, data_folder=tmp_path)
    assert settings.all() == {
        "base_url": "https://api.openai.com/v1",
        "timeout": 60,
        "retries": 2,
        "models": [],
        "mode": "fast",
    }
    settings.update({"base_url": "http://localhost:8080/v1", "models": ["gpt-4o"], "mode": "careful"})
    again = ExtensionSettings("remote", JSON_SCHEMA, data_folder=tmp_path)
    assert again.get("base_url") == "http://localhost:8080/v1"
    assert again.get("models") == ["gpt-4o"]
    # reset goes back to defaults and only the remaining user values stay on disk
    changes = again.reset("base_url")
    assert changes == {"base_url": "https://api.openai.com/v1"}
    assert json.loads(settings_path(tmp_path, "remote").read_text()) == {"models": ["gpt-4o"], "mode": "careful"}


def test_values_returned_are_copies(tmp_path):
    settings = ExtensionSettings("remote", JSON_SCHEMA, data_folder=tmp_path)
    settings.get("models").append("sneaky")
    settings.all()["models"].append("sneaky")
    assert settings.get("models") == []


def test_no_schema_accepts_any_json(tmp_path):
    settings = ExtensionSettings("free", None, data_folder=tmp_path)
    settings.update({"anything": {"nested": [1, 2]}})
    assert settings.get("anything") == {"nested": [1, 2]}
    with pytest.raises(SettingsValidationError):
        settings.set("bad", object())


async def test_change_callbacks_sync_async_failing_and_unsubscribe(tmp_path, caplog):
    bus = LocalEventBus()
    events: list[SettingsChanged] = []
    bus.subscribe(SettingsChanged, events.append)
    settings = ExtensionSettings("engine", EngineSettings, JsonSettingsStore(tmp_path), bus=bus)
    sync_seen, async_seen = [], []

    async def async_cb(changes):
        await asyncio.sleep(0)
        async_seen.append(changes)

    def failing(changes):
        raise RuntimeError("callback boom")

    unsubscribe = settings.on_change(sync_seen.append)
    settings.on_change(async_cb)
    settings.on_change(failing)
    with caplog.at_level(logging.ERROR, logger="jan.core.settings"):
        settings.set("flash_attn", True)
    await settings.drain()
    assert sync_seen == [{"flash_attn": True}]
    assert async_seen == [{"flash_attn": True}]
    assert "callback boom" in caplog.text
    assert settings.get("flash_attn") is True  # a failing callback does not undo the change
    assert events[-1].changes == {"flash_attn": True} and events[-1].previous == {"flash_attn": False}

    settings.set("flash_attn", True)  # no change -> no callback
    assert len(sync_seen) == 1
    unsubscribe()
    settings.set("n_threads", 2)
    await settings.drain()
    assert len(sync_seen) == 1
    assert async_seen == [{"flash_attn": True}, {"n_threads": 2}]


def test_invalid_stored_values_are_dropped_and_corrupt_files_kept_until_replaced(tmp_path, caplog):
    path = settings_path(tmp_path, "engine")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"n_threads": -3, "flash_attn": True}))
    with caplog.at_level(logging.WARNING, logger="jan.core.settings"):
        settings = ExtensionSettings("engine", EngineSettings, data_folder=tmp_path)
    assert settings.get("n_threads") == 4 and settings.get("flash_attn") is True
    assert "n_threads" in caplog.text
    assert settings.error is None

    # A damaged file is left where it is (a read moved it aside: a hand edit's one typo lost every value at the next
    # start), told in problems; the change that replaces it keeps its bytes beside it.
    path.write_text('{"n_threads": 2,')
    settings = ExtensionSettings("engine", EngineSettings, data_folder=tmp_path)
    assert settings.get("flash_attn") is False and settings.get("n_threads") == 4
    assert path.read_text() == '{"n_threads": 2,' and not list(path.parent.glob("*.corrupt*"))
    assert "left as it is" in settings.problems[0]["message"]
    settings = ExtensionSettings("engine", EngineSettings, data_folder=tmp_path)  # (a second start: still there)
    assert path.read_text() == '{"n_threads": 2,'
    settings.set("flash_attn", True)
    assert (path.parent / "settings.json.corrupt-1").read_text() == '{"n_threads": 2,'
    assert json.loads(path.read_text()) == {"flash_attn": True} and settings.problems == []


def test_reads_jan_desktop_settings_format(tmp_path):
    path = settings_path(tmp_path, "@janhq/inference-extension")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{"key": "n_threads", "title": "Threads", "controllerProps": {"value": 12}}]))
    settings = ExtensionSettings("@janhq/inference-extension", EngineSettings, data_folder=tmp_path)
    assert settings.get("n_threads") == 12


def test_required_values_and_schema_replacement(tmp_path):
    class Needs(BaseModel):
        token: str

    settings = ExtensionSettings("needs", Needs, data_folder=tmp_path)
    assert settings.error is not None and settings.error.field == "token"
    with pytest.raises(SettingsValidationError):
        settings.check()
    settings.set("token", "abc")
    settings.check()
    settings.set_schema({"type": "object", "properties": {"token": {"type": "string", "maxLength": 2}}})
    assert "token" not in settings  # invalid under the new schema -> dropped
    assert settings.json_schema()["properties"]["token"]["maxLength"] == 2


def test_settings_namespace_cannot_escape_the_data_folder(tmp_path):
    from jan.core.exceptions import PathOutsideDataFolderError

    with pytest.raises(PathOutsideDataFolderError):
        ExtensionSettings("../../etc", None, data_folder=tmp_path)


def test_strict_settings_take_python_values_of_the_declared_type(tmp_path):
    """A Python caller may give a Path, an Enum member or a datetime for a field of that type (its JSON form is
    checked); a value that has no JSON form is refused naming the setting."""
    import datetime
    import enum
    from pathlib import Path

    class Mode(str, enum.Enum):
        fast = "fast"
        slow = "slow"

    class Typed(BaseModel):
        where: Path = Path(".")
        mode: Mode = Mode.fast
        when: datetime.datetime | None = None
        pair: tuple[int, int] = (1, 2)

    settings = ExtensionSettings("py", Typed, data_folder=tmp_path)
    settings.update({"where": Path("/x"), "mode": Mode.slow, "when": datetime.datetime(2024, 1, 2), "pair": (3, 4)})
    assert settings.model.where == Path("/x") and settings.model.mode is Mode.slow and settings.model.pair == (3, 4)
    assert json.loads(settings_path(tmp_path, "py").read_text()) == {
        "where": "/x", "mode": "slow", "when": "2024-01-02T00:00:00", "pair": [3, 4]}
    with pytest.raises(SettingsValidationError, match="extension 'py': invalid setting 'where'"):
        settings.update({"where": object()})
    with pytest.raises(SettingsValidationError, match="invalid setting 'pair.0'"):
        settings.update({"pair": ["3", 4]})
