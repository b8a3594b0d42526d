"""What a new user ran into (an outside tester's report), each fault by its kind:

* a damaged file the store sets aside is reported wherever its collection is listed or loaded (models as
  threads: the CLI, ``/v1/models``, the server's start log), also when an earlier command set it aside;
* a read-only data folder can be read (folders are made only when writing) and nothing prints a traceback;
* an extension that failed to load is named, with its cause, wherever its service is asked for (CLI errors,
  the 503, ``/health`` "degraded"), never "enable it";
* ``--ollama-port`` equal to ``--port`` keeps the chat page; ``jan serve -m PATH`` speaks of files;
* SIGTERM/SIGHUP stop ``jan chat`` as Ctrl-C does: the turn in progress is saved, ``stopped``;
* smaller ones: piped prompts, piped ``jan chat`` at EOF, ``/image`` without a projector, ``--mmproj`` checks,
  ``jan.Model(<dir>)``, a pull that stopped after its download.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_cli_helpers import JAN, fails, free_port, jan, ok, read_only_prefix, restore_writable

# --------------------------------------------------------------------------- helpers


def _import(env, path, *args):
    return ok(jan("models", "import", path, *args, env=env))


def _damage(path: Path) -> None:
    path.write_text(path.read_text()[:-3] + "},\n")  # a trailing comma: no longer JSON


def _get(url: str, timeout: float = 30) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


# --------------------------------------------------------------------------- 1. damaged model.json


def test_a_damaged_model_json_is_reported_by_every_models_command(env, data, stories_path):
    _import(env, stories_path)
    model_json = data / "models" / "stories260K" / "model.json"
    _damage(model_json)

    damaged = model_json.read_bytes()
    for _ in range(2):  # (a listing moves nothing: the next one finds it as the first did)
        listed = ok(jan("models", "list", env=env))
        assert "damaged file models/stories260K/model.json" in listed.stderr and "left in place" in listed.stderr
        assert listed.stderr.count("damaged file") == 1
        # the model is still there, shown as damaged rather than vanishing from the list
        assert [line.split()[:2] for line in listed.stdout.splitlines()[1:]] == [["stories260K", "(damaged"]]
        assert model_json.read_bytes() == damaged and not list(model_json.parent.glob("model.json.corrupt-*"))
    where = "repair or remove models/stories260K/model.json"
    fails(jan("models", "show", "stories260K", env=env), "stories260K", "damaged", where)
    fails(jan("run", "stories260K", "--raw", "Once", "-n", "2", env=env), "damaged", where)
    assert model_json.read_bytes() == damaged


def test_the_store_reports_a_file_set_aside_earlier_once(tmp_path):
    from jan.store import DataFolder, NotFoundError

    store = DataFolder(tmp_path / "d")
    store.models.create({"id": "m"})
    path = store.models.folder("m") / "model.json"
    path.write_text("{")
    assert store.models.list() == []
    assert [p.path for p in store.problems] == ["models/m/model.json"]  # found now: told once, not twice
    store.models.list()
    assert len(store.problems) == 1

    path.rename(path.with_name("model.json.corrupt-20260101T000000000000Z"))  # (as a jan before this one set it aside)
    later = DataFolder(tmp_path / "d")  # a new process: it did not see the move
    assert later.models.list() == [] and later.models.list() == []
    (problem,) = later.problems
    assert problem.path == "models/m/model.json" and problem.moved_to.startswith("models/m/model.json.corrupt-")
    with pytest.raises(NotFoundError) as err:
        later.models.get("m")
    assert err.value.damaged == problem.moved_to and "damaged" in str(err.value)
    with pytest.raises(NotFoundError) as err:
        later.models.get("other")
    assert err.value.damaged is None


def test_the_server_reports_damaged_model_json_at_start_and_in_v1_models(tmp_path, stories_path, caplog):
    from api_helpers import running
    from jan.store import DataFolder

    DataFolder(tmp_path / "data").models.import_gguf(stories_path, model_id="tiny", mode="reference")
    _damage(tmp_path / "data" / "models" / "tiny" / "model.json")
    caplog.set_level(logging.WARNING, logger="jan.store")
    with running(tmp_path / "data") as srv:
        assert any("models/tiny/model.json" in r.getMessage() for r in caplog.records)  # the start log
        status, page = _get(srv.base_url + "/v1/models")
        assert status == 200 and page["data"] == []
        assert [p["path"] for p in page["problems"]] == ["models/tiny/model.json"]
        status, body = _get(srv.base_url + "/v1/models/tiny")
        assert status == 404 and "damaged" in body["error"]["message"]


# --------------------------------------------------------------------------- 2. read-only data folder


def test_a_read_only_data_folder_can_be_read(tmp_path, stories_path):
    from test_cli_helpers import cli_env

    folder = tmp_path / "ro"
    env = cli_env(folder)
    _import(env, stories_path)
    for name in ("threads", ".locks", "extensions"):  # folders a read needs not: made only when writing
        shutil.rmtree(folder / name, ignore_errors=True)
    prefix = read_only_prefix(folder)
    if prefix is None:
        pytest.skip("no way to make a folder read-only here (neither a read-only mount nor permission bits)")
    try:
        def run(*args):
            return subprocess.run([*prefix, *JAN, *map(str, args)], env=env, capture_output=True, text=True,
                                  timeout=180, stdin=subprocess.DEVNULL)

        assert "stories260K" in ok(run("models", "list")).stdout
        ok(run("threads", "list"))
        ok(run("models", "show", "stories260K"))
        assert ok(run("run", "stories260K", "--raw", "Once upon a time", "-n", "4", "--temp", "0")).stdout.strip()
        # writing fails with one clear line, never a traceback
        fails(run("extensions", "disable", "tools"), str(folder / "extensions"))
    finally:
        restore_writable(folder)


def test_an_os_error_in_a_command_is_one_line(env, data):
    data.mkdir(parents=True)
    (data / "extensions").write_text("a file where a folder should be")
    err = fails(jan("extensions", "disable", "tools", env=env))
    assert "extensions" in err


# --------------------------------------------------------------------------- 2./3. failed extensions


def test_a_file_where_a_folder_should_be_is_named_by_every_command(env, data, stories_path):
    _import(env, stories_path)
    shutil.rmtree(data / "threads")
    (data / "threads").write_text("x")
    fails(jan("models", "list", env=env), str(data / "threads"), "is not a folder")
    err = fails(jan("run", "stories260K", "hi", "-n", "2", env=env), "'models' is enabled but failed to load",
                "is not a folder")
    assert "enable 'models'" not in err
    fails(jan("chat", "stories260K", env=env, input="hi\n"), "failed to load", "is not a folder")


def test_the_server_names_a_failed_extension_and_is_degraded(tmp_path, monkeypatch):
    from api_helpers import running

    import jan.store

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "threads").write_text("x")
    # (the server's start refuses a file in a layout folder's place itself, jan.store.layout_problem: here one
    # that came after that look, which the extensions meet as they load)
    monkeypatch.setattr(jan.store, "make_data_folder", lambda folder: folder)
    with running(tmp_path / "data") as srv:
        status, health = _get(srv.base_url + "/health")
        assert status == 200 and health["status"] == "degraded"
        assert {e["name"] for e in health["failed_extensions"]} >= {"conversational", "models"}
        for path, service in (("/v1/models", "models"), ("/v1/threads", "conversational")):
            status, body = _get(srv.base_url + path)
            message = body["error"]["message"]
            assert status == 503 and f"'{service}' is enabled but failed to load" in message, message
            assert "is not a folder" in message and "(enable" not in message


def test_manager_lookups_name_the_failed_provider(tmp_path):
    import asyncio

    from jan.core import ExtensionManager, ExtensionNotFoundError, ModelExtension
    from jan.extensions.models.extension import ModelManagerExtension
    from jan.services.errors import ServiceUnavailableError, require

    class Broken(ModelManagerExtension):
        name = "broken-models"

        async def on_load(self, ctx):
            raise OSError(30, "Read-only file system")

    async def main():
        manager = ExtensionManager(tmp_path, discover_entry_points=False)
        manager.register(Broken())
        await manager.start()
        with pytest.raises(ExtensionNotFoundError) as err:
            manager.get(ModelExtension)
        assert err.value.failed and err.value.failed[0][0] == "broken-models"
        assert "Read-only file system" in str(err.value)
        with pytest.raises(ServiceUnavailableError) as err:
            require(manager, ModelExtension, "manages models", "models")
        assert "'broken-models' is enabled but failed to load" in str(err.value)
        assert [r.name for r in manager.failed_extensions()] == ["broken-models"]
        await manager.stop()

    asyncio.run(main())


# --------------------------------------------------------------------------- 4. ports, 6. serve -m


def _serve(tmp_path, *args) -> subprocess.Popen:
    from test_cli_helpers import cli_env

    env = cli_env(tmp_path / "data", local=False)
    return subprocess.Popen([*JAN, "serve", *map(str, args), "--data-folder", str(tmp_path / "data")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_up(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            urllib.request.urlopen(url + "/health", timeout=5).read()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not come up")


def test_an_ollama_port_equal_to_the_port_keeps_the_chat_page(tmp_path):
    port = free_port()
    proc = _serve(tmp_path, "-p", port, "--ollama-port", port)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc)
        status, page = _get(url + "/")
        assert status == 200 and "<html" in page.lower()
        status, version = _get(url + "/api/version")  # Ollama clients are served on it all the same
        assert status == 200 and "version" in version
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


@pytest.mark.parametrize("spec, needle", [("/nonexistent/nope.gguf", "no such file"),
                                          ("./models/x.gguf", "no such file"),
                                          ("DIR", "is a directory")])
def test_serve_model_paths_are_told_as_files(tmp_path, spec, needle):
    spec = str(tmp_path) if spec == "DIR" else spec
    proc = _serve(tmp_path, "-p", "0", "-m", spec)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("jan: error: ") and needle in last and "invalid model id" not in last, err


def test_serve_a_damaged_gguf_is_a_clean_load_error(tmp_path, stories_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(stories_path.read_bytes()[:1000])
    proc = _serve(tmp_path, "-p", "0", "-m", bad)
    _, err = proc.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("jan: error: ") and "path:" not in last, err


# --------------------------------------------------------------------------- 5. SIGTERM / SIGHUP in jan chat


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_saves_the_turn_in_progress(env, data, stories_path, signame):
    _import(env, stories_path)
    # a long answer (no end-of-text, a big context) so the signal lands while it is written
    proc = subprocess.Popen([*JAN, "chat", "stories260K", "--ignore-eos", "-c", "32768", "-n", "30000"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"Tell me a story\n")
        proc.stdin.flush()
        assert proc.stdout.read(8)  # the answer is streaming
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, signame), err
    assert b"Traceback" not in err
    stuck = data / "logs" / "jan-chat.log"
    if stuck.exists():  # it ended by its deadline (test below): where it stuck goes to the run's warnings
        import warnings

        warnings.warn(f"jan chat ended by its stop deadline:\n{stuck.read_text()}", stacklevel=1)
    (thread,) = [p for p in (data / "threads").iterdir() if p.is_dir()]
    messages = [json.loads(line) for line in (thread / "messages.jsonl").read_text().splitlines()]
    assert [(m["role"], m["status"]) for m in messages] == [("user", "ready"), ("assistant", "stopped")]
    assert messages[0]["content"][0]["text"]["value"] == "Tell me a story"


def test_stop_signals_wait_for_a_save(monkeypatch):
    from jan.cli.inference import StopSignals, Terminated

    with StopSignals() as stops:
        with stops.held():
            os.kill(os.getpid(), signal.SIGTERM)  # noted, not raised: a save is not cut in half
            for _ in range(1000):
                if stops.signum is not None:
                    break
                time.sleep(0.01)
        assert stops.signum == signal.SIGTERM and stops.exit_code == 128 + signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # a second one: ignored while stopping
        time.sleep(0.05)
    with pytest.raises(Terminated), StopSignals():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


_STUCK_AFTER_SIGNAL = """
import os, signal, sys, threading, time
from pathlib import Path
from jan.cli.inference import StopSignals, Terminated

stops = StopSignals(deadline_s=0.5, report=Path(sys.argv[1])).__enter__()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(12000):
        time.sleep(0.01)
except Terminated:
    pass
threading.Event().wait()  # what a cleanup that never returns would do
"""


def test_a_stop_signal_ends_the_process_when_something_holds_it_up(tmp_path):
    """After SIGTERM/SIGHUP `jan chat` ends itself within its deadline whatever holds the process up (an unload,
    an extension, a thread the interpreter waits for at exit), saying in the data folder's log where it stuck."""
    report = tmp_path / "logs" / "jan-chat.log"
    proc = subprocess.run([sys.executable, "-c", _STUCK_AFTER_SIGNAL, str(report)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    text = report.read_text()
    assert "still running" in text and "Thread" in text and "_STUCK" not in text, text


def test_closing_a_local_stream_closes_it_while_a_step_runs():
    """Ctrl-C (or a stop signal) may land while a step of a local stream is still running on the runtime's loop
    (its future already dropped): closing then cancels that step and closes the stream, so the engine request
    behind it is cancelled now, not left generating until the model is unloaded."""
    import asyncio
    import threading

    from jan.cli.local import LocalRuntime, SyncStream

    class Runtime:  # LocalRuntime's loop and call(), without extensions
        loop = asyncio.new_event_loop()
        call = LocalRuntime.call

    runtime = Runtime()
    thread = threading.Thread(target=runtime.loop.run_forever, daemon=True)
    thread.start()
    closed = threading.Event()
    waiting = threading.Event()

    async def stream():
        try:
            yield 1
            waiting.set()
            await asyncio.Event().wait()  # the next piece never comes
            yield 2
        finally:
            closed.set()

    try:
        sync = SyncStream(runtime, stream())
        assert next(sync) == 1
        asyncio.run_coroutine_threadsafe(sync._next(), runtime.loop)  # a step whose caller was interrupted
        assert waiting.wait(60)
        sync.close()
        assert closed.wait(60) and sync.closed
        assert list(sync) == []
    finally:
        runtime.loop.call_soon_threadsafe(runtime.loop.stop)
        thread.join(60)


# --------------------------------------------------------------------------- 7. smaller ones


def test_a_piped_prompt_loses_one_trailing_newline(monkeypatch):
    import io

    from jan.cli import run as run_cli

    for piped, prompt in (("Once upon a time\n", "Once upon a time"), ("two\n\n", "two\n"),
                          ("crlf\r\n", "crlf"), ("none", "none")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(piped))
        assert run_cli.read_prompt(()) == prompt


def test_piped_chat_sends_what_the_input_ended_in(monkeypatch):
    from jan.cli.chat import read_message

    def reader(lines):
        feed = iter(lines)

        def ask(prompt):
            try:
                return next(feed)
            except StopIteration:
                raise EOFError from None

        return ask

    assert read_message(reader(['"""', "hello", "there"])) == "hello\nthere"
    assert read_message(reader(["one \\", "two \\"])) == "one \ntwo "
    assert read_message(reader(["plain"])) == "plain"
    with pytest.raises(EOFError):
        read_message(reader([]))


def test_images_are_refused_when_attached_to_a_model_without_projector(env, stories_path, tmp_path):
    from PIL import Image

    image = tmp_path / "i.png"
    Image.new("RGB", (8, 8)).save(image)
    _import(env, stories_path)
    fails(jan("run", "stories260K", "what is it", "--image", image, env=env), "takes no images", "mmproj")
    result = jan("chat", "stories260K", "-n", "2", env=env, input=f"/image {image}\n")
    assert result.returncode == 1 and "takes no images" in result.stderr


def test_mmproj_must_be_a_projector(env, stories_path, tmp_path):
    model = tmp_path / "m.gguf"
    shutil.copy(stories_path, model)
    fails(jan("models", "import", model, "--mmproj", stories_path, env=env), "--mmproj",
          "not a multimodal projector", "'llama'")


def test_mmproj_check_reads_the_header(vision_pair, stories_path, tmp_path):
    from jan.extensions.models.gguf_info import check_projector, gguf_architecture

    model, projector = vision_pair
    assert gguf_architecture(str(projector)) == "clip" and gguf_architecture(str(model)) == "llama"
    check_projector(str(projector))
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(projector.read_bytes()[:40])
    with pytest.raises(ValueError, match="not a multimodal projector"):
        check_projector(str(cut))


def test_model_of_a_directory_says_so(tmp_path):
    import jan as janlib

    with pytest.raises(janlib.ModelLoadError, match="is a directory"):
        janlib.Model(tmp_path)


def test_info_says_the_server_kept_its_models_back(tmp_path, env):
    from api_helpers import running

    with running(tmp_path / "data", api_key="secret") as srv:
        env = {**env, "JAN_API_URL": srv.base_url}
        env.pop("JAN_LOCAL", None)
        out = ok(jan("info", env=env)).stdout
    assert "needs its API key" in out and "models loaded: none" not in out
