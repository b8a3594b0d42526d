"""Changing an extension's settings, or enabling and disabling one, takes its file's lock (another process may hold
it, up to its 30 s timeout) and writes the file in a worker thread, never on the event loop: every other request is
answered meanwhile."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request

import pytest

from jan.core.fs import LocalFileSystem
from jan.core.manager import STATE_FILE
from jan.server.config import ServerConfig
from jan.testing.server import ServerThread

WAIT = 60


@pytest.fixture
def server(tmp_path):
    with ServerThread(ServerConfig(data_folder=tmp_path / "data")) as srv:
        yield srv


def _call(server, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


SETTINGS = "settings/llamacpp/settings.json"


@pytest.mark.parametrize("method,path,body,locked", [
    ("PATCH", "/v1/extensions/llamacpp/settings", {"n_parallel": 2}, SETTINGS),
    ("DELETE", "/v1/extensions/llamacpp/settings", None, SETTINGS),
    ("POST", "/v1/extensions/monitoring/disable", None, STATE_FILE),
    ("PATCH", "/v1/extensions/monitoring", {"enabled": False}, STATE_FILE),
])
def test_other_requests_are_answered_while_a_change_waits_for_its_files_lock(server, monkeypatch, method, path,
                                                                             body, locked):
    folder = server.config.data_folder
    waiting = threading.Event()
    original = LocalFileSystem.lock

    def noted_lock(self, file):  # (tells the test when the server's change has reached the lock)
        @contextlib.contextmanager
        def held():
            if str(file) == locked:
                waiting.set()
            with original(self, file):
                yield
        return held()

    holder_has_it, release = threading.Event(), threading.Event()

    def hold() -> None:  # another holder of the same file's lock (a lock manager of its own: another process's way)
        with original(LocalFileSystem(folder), locked):
            holder_has_it.set()
            release.wait(WAIT)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holder_has_it.wait(WAIT)
    monkeypatch.setattr(LocalFileSystem, "lock", noted_lock)
    change: dict[str, tuple[int, dict]] = {}
    changer = threading.Thread(target=lambda: change.setdefault("answer", _call(server, method, path, body)),
                               daemon=True)
    try:
        changer.start()
        assert waiting.wait(WAIT), "the change never reached the lock"
        status, health = _call(server, "GET", "/health")
        assert status == 200, health
        assert "answer" not in change  # (answered while the change still waits for the lock)
        status, settings = _call(server, "GET", "/v1/extensions/llamacpp/settings")
        assert status == 200 and "answer" not in change
    finally:
        release.set()
        holder.join(WAIT)
        changer.join(WAIT)
    status, answer = change["answer"]
    assert status == 200, answer
    if locked == SETTINGS and method == "PATCH":
        assert answer["user_values"]["n_parallel"] == 2
        assert json.loads((folder / SETTINGS).read_text())["n_parallel"] == 2
    if locked == STATE_FILE:
        assert answer["enabled"] is False
        assert json.loads((folder / STATE_FILE).read_text())["extensions"]["monitoring"]["enabled"] is False


async def test_a_change_off_the_loop_still_tells_its_callbacks_on_the_loop(tmp_path):
    """update_off_loop writes in a worker thread; the callbacks (sync and async) and the bus event come on the
    loop, as update's do."""
    import asyncio

    from jan.core import LocalEventBus
    from jan.core.events import SettingsChanged
    from jan.core.settings import ExtensionSettings

    bus = LocalEventBus()
    settings = ExtensionSettings("demo", {"type": "object", "properties": {"n": {"type": "integer", "default": 1}}},
                                 data_folder=tmp_path, bus=bus)
    loop = asyncio.get_running_loop()
    seen: list = []
    told = asyncio.Event()

    def sync_callback(changes):
        seen.append(("sync", changes, asyncio.get_running_loop() is loop))

    async def async_callback(changes):
        seen.append(("async", changes))
        told.set()

    settings.on_change(sync_callback)
    settings.on_change(async_callback)
    events: list = []
    bus.subscribe(SettingsChanged, events.append)
    assert await settings.update_off_loop({"n": 5}) == {"n": 5}
    await asyncio.wait_for(told.wait(), WAIT)
    assert seen == [("sync", {"n": 5}, True), ("async", {"n": 5})]
    await asyncio.wait_for(settings.drain(), WAIT)
    assert settings["n"] == 5 and json.loads((tmp_path / "settings" / "demo" / "settings.json").read_text()) == {"n": 5}
    assert await settings.reset_off_loop() == {"n": 1} and settings["n"] == 1
    assert [e.changes for e in events] == [{"n": 5}, {"n": 1}]


@pytest.mark.parametrize("method,path", [("GET", "/v1/extensions/monitoring/settings"),
                                         ("PATCH", "/v1/extensions/monitoring/settings"),
                                         ("POST", "/v1/extensions/monitoring/enable")])
def test_the_first_read_of_a_not_loaded_extensions_settings_is_off_the_loop(tmp_path, monkeypatch, method, path):
    """An extension not loaded (disabled here) has not read its settings file: the first request for its settings
    (or its enabling, whose load reads them) reads it in a worker thread, as every later change does. It was read on
    the event loop: a slow disk, a network folder or a pipe in the file's place stalled every other request."""
    from jan.core.settings import JsonSettingsStore

    state = tmp_path / "data" / STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"version": 1, "extensions": {"monitoring": {"enabled": False}}}))
    reading, release = threading.Event(), threading.Event()
    original = JsonSettingsStore.read

    def slow_read(self, namespace):  # (a read that takes as long as the test wants: a slow disk's)
        if namespace == "monitoring":
            reading.set()
            release.wait(WAIT)
        return original(self, namespace)

    monkeypatch.setattr(JsonSettingsStore, "read", slow_read)
    with ServerThread(ServerConfig(data_folder=tmp_path / "data")) as server:
        body = {} if method == "PATCH" else None
        answers: dict[str, tuple[int, dict]] = {}
        caller = threading.Thread(target=lambda: answers.setdefault("answer", _call(server, method, path, body)),
                                  daemon=True)
        try:
            caller.start()
            assert reading.wait(WAIT), "the settings file was never read"
            status, health = _call(server, "GET", "/health")
            assert status == 200, health
            assert "answer" not in answers  # (answered while the read is still under way)
        finally:
            release.set()
            caller.join(WAIT)
        status, answer = answers["answer"]
        assert status == 200, answer
        if path.endswith("/settings"):
            assert answer["object"] == "extension.settings" and answer["extension"] == "monitoring"
        else:
            assert answer["enabled"] is True
