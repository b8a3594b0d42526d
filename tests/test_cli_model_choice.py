"""Which model `jan chat` picks, how piped chats report failure, empty prompts, `jan serve`'s start-up checks,
and the stand-in chat template's warning (an outside tester's report)."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import signal
import subprocess
import threading

import aiohttp
import httpx
import pytest
from click.testing import CliRunner
from server_helpers import start_server
from test_cli_helpers import JAN, cli_env, fails, jan, ok

MINILM = "all-MiniLM-L6-v2-f32"


# --------------------------------------------------------------------------- helpers


class Served:
    """`jan serve --port 0` in a subprocess; ready once it prints the line saying where it listens."""

    def __init__(self, data, *args):
        self.env = cli_env(data, local=False)
        self.proc = subprocess.Popen([*JAN, "serve", "--port", "0", "--threads", "1", "--ctx-size", "512",
                                      "--parallel", "1", "--log-level", "warning", *map(str, args)],
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout] + [lines.put("")],
                         daemon=True).start()
        while True:
            line = lines.get(timeout=180)  # a bound on a hung start, not a measurement
            assert line, f"jan serve ended: {self.proc.stderr.read()}"
            if line.startswith("jan is listening on "):
                self.url = line.split()[4]
                break
        self.env["JAN_API_URL"] = self.url

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=120)
        return err


def serve_fails(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([*JAN, "serve", "--port", "0", *map(str, args)], check=False,
                          env=cli_env(tmp_path / "data", local=False),
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- jan chat's model, through a server


@pytest.fixture
def embedder_and_writer(tmp_path, stories_path, minilm_path):
    srv = Served(tmp_path / "data", "-m", minilm_path, "-m", stories_path)
    yield srv
    srv.stop()


def test_chat_without_a_model_picks_the_loaded_model_that_writes_text(embedder_and_writer):
    result = ok(jan("chat", "-n", "3", "--no-save", env=embedder_and_writer.env, input="hi\n"))
    assert "embedding" not in result.stderr and result.stdout.strip()


def test_chat_refuses_switching_to_an_embedding_model(embedder_and_writer):
    result = jan("chat", "stories260K", "-n", "3", "--no-save", env=embedder_and_writer.env,
                 input=f"/model {MINILM}\nhi\n")
    assert result.returncode == 1  # (piped: the failed /model is the chat's failure, though it went on)
    assert (f"jan: error: /model: could not switch to model '{MINILM}': model '{MINILM}' is an embedding model; "
            "it cannot generate text") in result.stderr, result.stderr
    assert result.stderr.count("jan: error:") == 1  # the turn after it went to stories260K, as before
    assert result.stdout.strip()


def test_chat_and_run_refuse_an_embedding_model_named_on_the_command_line(embedder_and_writer):
    env = embedder_and_writer.env
    fails(jan("chat", MINILM, env=env, input="hi\n"), "is an embedding model")
    fails(jan("run", MINILM, "hi", env=env), "is an embedding model")


def test_chat_asks_which_model_when_several_loaded_models_write_text(tmp_path, stories_path, minilm_path,
                                                                     tiny_random_path):
    srv = Served(tmp_path / "data", "-m", minilm_path, "-m", stories_path, "-m", tiny_random_path)
    try:
        err = fails(jan("chat", "-n", "3", env=srv.env, input="hi\n"), "which model?")
        assert "stories260K" in err and "llama-2-tiny-random" in err and MINILM not in err
    finally:
        srv.stop()


# --------------------------------------------------------------------------- the same choice in-process


def test_local_chat_chooses_as_the_server_does(tmp_path, stories_path, minilm_path, tiny_random_path):
    env = cli_env(tmp_path / "data")
    for path in (minilm_path, stories_path):
        ok(jan("models", "import", "--mode", "reference", path, env=env))
    result = ok(jan("chat", "-n", "3", "--no-save", env=env, input="hi\n"))
    assert result.stdout.strip()
    result = jan("chat", "stories260K", "-n", "3", "--no-save", env=env, input=f"/model {MINILM}\nhi\n")
    assert result.returncode == 1 and "is an embedding model" in result.stderr and result.stdout.strip()
    ok(jan("models", "import", "--mode", "reference", tiny_random_path, env=env))
    err = fails(jan("chat", "-n", "3", env=env, input="hi\n"), "which model? several are available")
    assert MINILM not in err


def test_a_thread_goes_on_with_its_own_model(tmp_path, stories_path, tiny_random_path):
    # `jan chat --thread T` with no MODEL took the loaded (or only) model: with two it asked "which model?", and
    # with another one it changed the thread's model without a word
    env = cli_env(tmp_path / "data")
    for path in (stories_path, tiny_random_path):
        ok(jan("models", "import", "--mode", "reference", path, env=env))
    ok(jan("chat", "stories260K", "-n", "3", env=env, input="hi\n/model llama-2-tiny-random\nagain\n"))
    [thread] = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)
    assert thread["assistants"][0]["model"]["id"] == "llama-2-tiny-random"  # /model changed the thread's model too
    result = ok(jan("chat", "--thread", thread["id"], "-n", "3", env=env, input="/model\n"))
    assert "model: llama-2-tiny-random" in result.stdout + result.stderr  # the model of its last reply
    ok(jan("models", "rm", "llama-2-tiny-random", env=env))
    fails(jan("chat", "--thread", thread["id"], env=env, input="hi\n"), "llama-2-tiny-random",
          f"jan chat MODEL --thread {thread['id']}")


def test_only_embedding_models_is_no_model_to_chat_with(tmp_path, minilm_path):
    env = cli_env(tmp_path / "data")
    ok(jan("models", "import", "--mode", "reference", minilm_path, env=env))
    fails(jan("chat", env=env, input="hi\n"), "no models that write text", MINILM)


def test_a_piped_turn_that_fails_makes_the_chat_fail(monkeypatch, tmp_path):
    import jan.cli.chat as chat_module
    from jan.cli.common import CLIError

    class Failing:
        model_id, path, takes_images, embedding_only = "m", None, None, False

        def chat(self, messages, options, **kwargs):
            raise CLIError("server: the model broke (HTTP 500)")

        def close(self):
            pass

    monkeypatch.setattr(chat_module, "open_backend", lambda *args, **kwargs: Failing())
    result = CliRunner().invoke(chat_module.chat, ["m", "--local", "--no-save", "--data-folder", str(tmp_path)],
                                input="hi\nagain\n")
    assert result.exit_code == 1, result.output
    assert result.output.count("jan: error: server: the model broke (HTTP 500)") == 2  # each turn told, then on


# --------------------------------------------------------------------------- empty prompts


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_run_refuses_an_empty_prompt_argument_as_an_empty_stdin(tmp_path, stories_path, prompt):
    env = cli_env(tmp_path / "data")
    fails(jan("run", stories_path, prompt, env=env), "the prompt given as an argument is empty")
    fails(jan("run", stories_path, "--raw", prompt, "", env=env), "the prompt given as an argument is empty")
    fails(jan("run", stories_path, env=env, input=prompt), "the prompt read from stdin is empty")


# --------------------------------------------------------------------------- jan serve's start-up checks


@pytest.mark.parametrize("value", ["-5", "nan", "-inf"])
def test_serve_refuses_a_bad_keep_alive_before_starting_anything(tmp_path, value):
    result = serve_fails(tmp_path, f"--keep-alive={value}")
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--keep-alive'" in result.stderr and "Traceback" not in result.stderr
    assert "extension" not in result.stderr and "Unclosed" not in result.stderr  # nothing was started


@pytest.mark.parametrize("value, seconds", [("5m", 300.0), ("1h30m", 5400.0), ("90", 90.0), ("2.5", 2.5),
                                            ("300ms", 0.3), ("0", 0.0)])
def test_serve_keep_alive_takes_seconds_or_a_duration_as_ollama_does(value, seconds):
    """`jan serve --keep-alive 5m` (Ollama's keep_alive, OLLAMA_KEEP_ALIVE) was "'5m' is not a valid float"; read by
    the Ollama API's own parser, a negative value still refused (Ollama's "forever" is jan's default)."""
    from jan.cli.serve import _duration

    assert _duration(value) == pytest.approx(seconds)


def test_serve_starts_with_a_keep_alive_duration(tmp_path):
    Served(tmp_path / "data", "--keep-alive", "5m").stop()


def test_serve_refuses_a_default_model_that_names_no_model(tmp_path, stories_path):
    result = serve_fails(tmp_path, "--default-model", "nope", "-m", stories_path, "--log-level", "warning")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("jan: error: --default-model 'nope' is no model")
    assert "Unclosed" not in result.stderr and "listening" not in result.stdout
    result = serve_fails(tmp_path, "--default-model", "not an id!", "--log-level", "warning")
    assert result.returncode == 1 and "jan: error: --default-model 'not an id!' is no model id" in result.stderr
    assert "Unclosed" not in result.stderr


def test_serve_takes_a_default_model_given_with_model_or_in_the_data_folder(tmp_path, stories_path):
    srv = Served(tmp_path / "data", "--default-model", "stories260K", "-m", stories_path)
    assert srv.stop().count("Unclosed") == 0
    srv = Served(tmp_path / "data", "--default-model", "stories260K")  # imported by the first start
    srv.stop()


def test_serve_takes_an_alias_as_the_default_model(tmp_path, stories_path):
    """`jan serve -m X --alias tiny --default-model tiny` was refused at start ("'tiny' is no model"): the alias names
    its model only once it is loaded, after the check. Requests that name no model get the aliased model."""
    Served(tmp_path / "data", "-m", stories_path).stop()  # imported: named by its id below (a path passed the check)
    srv = Served(tmp_path / "data", "-m", "stories260K", "--alias", "tiny", "--default-model", "tiny")
    try:
        answer = httpx.post(srv.url + "/v1/chat/completions", timeout=120,
                            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert answer.status_code == 200 and answer.json()["model"] == "stories260K", answer.text
    finally:
        srv.stop()


async def test_an_app_that_fails_to_build_stops_the_extensions_it_started(tmp_path, monkeypatch):
    from jan.core import ExtensionManager
    from jan.server.app import create_app
    from jan.server.config import ServerConfig

    stopped = []
    real_stop = ExtensionManager.stop

    async def stop(self):
        stopped.append(self)
        await real_stop(self)

    monkeypatch.setattr(ExtensionManager, "stop", stop)
    with pytest.raises(ValueError, match="keep_alive"):
        await create_app(ServerConfig(data_folder=tmp_path / "data", keep_alive=-5, enable_extensions=False))
    assert len(stopped) == 1


# --------------------------------------------------------------------------- the stand-in template's warning


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("stand-in"), [stories_path])
    yield srv
    srv.stop()


def _told(caplog) -> int:
    return sum("chatting with it uses ChatML" in r.getMessage() for r in caplog.records)


async def test_the_stand_in_template_is_told_once_per_load_and_only_for_chats(server, caplog):
    caplog.set_level(logging.WARNING, logger="jan.llamacpp")
    base = server.base_url
    chat = {"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    async with aiohttp.ClientSession() as s:
        async def post(path, body):
            async with s.post(base + path, json=body) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()

        async def reload():
            await post("/v1/models/stories260K/stop", {})
            await post("/v1/completions", {"model": "stories260K", "prompt": "Once", "max_tokens": 1})

        await reload()
        caplog.clear()
        # no ChatML in any of these: text completions, Ollama's generate, a status read
        await post("/v1/completions", {"model": "stories260K", "prompt": "Once", "max_tokens": 2})
        await post("/api/generate", {"model": "stories260K", "prompt": "Once", "stream": False,
                                     "options": {"num_predict": 2}})
        async with s.get(base + "/v1/models/stories260K") as resp:
            assert (await resp.json())["chat_template_in_use"]["name"] == "chatml"
        assert _told(caplog) == 0
        # the first chats after a load, all at once: told once
        await post("/v1/models/stories260K/stop", {})
        await asyncio.gather(*(post("/v1/chat/completions", chat) for _ in range(4)))
        await post("/v1/chat/completions", chat)
        assert _told(caplog) == 1
        await reload()  # a new load is told again, at its first chat
        assert _told(caplog) == 1
        await post("/v1/chat/completions", chat)
        assert _told(caplog) == 2


class _Answering:
    """A backend that answers every turn with one fixed text (no model needed)."""

    model_id, path, takes_images, embedding_only = "m", None, None, False

    def chat(self, messages, options, **kwargs):
        from jan.cli.inference import Generation

        class Answer(Generation):
            finish_reason = "stop"

            def __iter__(self):
                yield "Hello there."

            def cancel(self):
                pass

        return Answer()

    def close(self):
        pass


class _FullDisk:
    """Stands in for the tempfile module of jan.core.fs: every atomic write's temporary file is refused."""

    @staticmethod
    def mkstemp(*args, dir=None, **kwargs):
        import errno

        raise OSError(errno.ENOSPC, "No space left on device", f"{dir}/.x.tmp")


def test_a_piped_chat_whose_exchange_could_not_be_saved_fails(monkeypatch, tmp_path):
    """Before: "could not save the conversation: [Errno 28] ..." on stderr and exit 0, so a script piping into
    `jan chat` took an exchange the data folder never kept for a success."""
    import jan.cli.chat as chat_module
    import jan.core.fs

    monkeypatch.setattr(chat_module, "open_backend", lambda *args, **kwargs: _Answering())
    monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk)
    result = CliRunner().invoke(chat_module.chat, ["m", "--local", "--data-folder", str(tmp_path / "jan")],
                                input="hi\n")
    assert result.exit_code == 1, result.output
    assert "Hello there." in result.output
    assert "jan: error: could not save the conversation: " in result.output and "No space left on device" in result.output
    assert "Errno" not in result.output


def test_a_piped_chat_saved_in_the_end_succeeds(monkeypatch, tmp_path):
    """A save that failed and a later one that wrote everything: the exchange is kept, the chat succeeds."""
    import jan.cli.chat as chat_module
    import jan.core.fs

    monkeypatch.setattr(chat_module, "open_backend", lambda *args, **kwargs: _Answering())
    real = jan.core.fs.tempfile
    calls = {"turns": 0}
    original_ask = chat_module.ChatSession.ask

    def ask(self, text):
        calls["turns"] += 1
        monkeypatch.setattr(jan.core.fs, "tempfile", _FullDisk if calls["turns"] == 1 else real)
        return original_ask(self, text)

    monkeypatch.setattr(chat_module.ChatSession, "ask", ask)
    result = CliRunner().invoke(chat_module.chat, ["m", "--local", "--data-folder", str(tmp_path / "jan")],
                                input="hi\nagain\n")
    assert result.output.count("could not save the conversation") == 1, result.output
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("key", [False, True])
def test_serve_warns_when_it_listens_on_every_network_without_a_key(tmp_path, key):
    # the README says to give --api-key with --host 0.0.0.0; jan serve said nothing when it was left out
    served = Served(tmp_path / "data", "--host", "0.0.0.0", *(["--api-key", "k"] if key else []))
    err = served.stop()
    assert ("without --api-key" in err) is not key, err


def test_serve_starts_by_saying_where_it_listens_and_its_models_not_its_built_in_extensions(tmp_path, stories_path,
                                                                                             minilm_path):
    """A plain `jan serve` began with seven INFO lines, one per built-in extension loaded, and never named the models
    it serves: its start is now where it listens and the models, the loaded ones marked."""
    data = tmp_path / "data"
    ok(jan("models", "import", minilm_path, "--mode", "reference", env=cli_env(data)))
    proc = subprocess.Popen([*JAN, "serve", "--port", "0", "--threads", "1", "--ctx-size", "512", "--parallel", "1",
                             "-m", str(stories_path)], env=cli_env(data, local=False), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put("")], daemon=True).start()
    try:
        first = lines.get(timeout=180)  # (bounds a hung start, measures nothing)
        assert first.startswith("jan is listening on "), (first, proc.stderr.read() if proc.poll() is not None else "")
        assert lines.get(timeout=180).strip() == f"jan: 2 models: {MINILM}, stories260K (loaded)"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert "model stories260K loaded" in err  # (a model's load is still said; the built-in extensions' are not)
    assert not [line for line in err.splitlines() if "extension" in line and "loaded" in line], err
