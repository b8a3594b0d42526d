"""`jan run` hides a model's thinking unless --show-reasoning; `jan chat` shows it and saves it with the reply."""

from __future__ import annotations

from pathlib import Path

import pytest

from jan.testing.gguf_models import vocab_path, write_llama_from_vocab

from conftest import require_model
from test_cli_helpers import cli_env, fails, jan, ok

TEMPLATE = Path(__file__).resolve().parents[1].parent / "shared" / "templates" / "Qwen-QwQ-32B.jinja"


@pytest.fixture(scope="module")
def thinker(tmp_path_factory) -> Path:
    """A tiny random model whose template opens <think> (with thinking on): all it writes is thinking."""
    require_model("vocab/ggml-vocab-qwen2.gguf")
    return write_llama_from_vocab(tmp_path_factory.mktemp("cli-thinker") / "thinker.gguf", vocab_path("qwen2"),
                                  n_embd=16, n_layer=1, n_head=2, n_ff=32, n_ctx=512,
                                  chat_template=TEMPLATE.read_text())


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "data")


def test_run_hides_thinking_unless_asked(thinker, env):
    args = ["run", thinker, "Hi", "--think", "-n", "8", "--temperature", "0", "--ignore-eos"]
    hidden = ok(jan(*args, env=env))
    assert hidden.stdout == "\n"  # the whole output was thinking: no answer
    shown = ok(jan(*args, "--show-reasoning", env=env))
    assert shown.stdout.strip()
    assert "\x1b[" not in shown.stdout  # dimmed only on a terminal
    # --no-think closes the block in the prompt: the same tokens are now the answer
    answer = ok(jan("run", thinker, "Hi", "--no-think", "-n", "8", "--temperature", "0", "--ignore-eos", env=env))
    assert answer.stdout.strip()


@pytest.mark.parametrize("flag", ["--think", "--no-think", "--show-reasoning"])
def test_run_raw_refuses_the_thinking_flags_of_chat(thinker, env, flag):
    # Before: taken and ignored (a plain completion has no template to switch, no thinking told apart), so
    # `--raw --think` wrote an answer as if thinking were on; refused as --system, --image and --audio are
    result = jan("run", thinker, "Hi", "--raw", flag, "-n", "2", env=env)
    assert result.returncode == 2 and f"{flag} applies to chat" in result.stderr, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_chat_shows_thinking_dimmed_and_saves_it(thinker, tmp_path):
    import json

    from test_cli_helpers import JAN, PtyProcess

    data = tmp_path / "jan"
    env = {k: v for k, v in cli_env(data).items() if k != "NO_COLOR"}
    term = PtyProcess([*JAN, "chat", str(thinker), "--think", "--temperature", "0", "--max-tokens", "6",
                       "--ignore-eos", "--threads", "1"], env)
    try:
        term.expect(">>> ")
        term.sendline("Hello")
        answer = term.expect(rb"(?s)Hello\r?\n(.+?)>>> ")
        assert b"\x1b[2m" in answer.group(1)  # dimmed
        term.sendline("/exit")
    finally:
        term.close()
    folder = next(p for p in (data / "threads").iterdir() if (p / "messages.jsonl").is_file())
    messages = [json.loads(line) for line in (folder / "messages.jsonl").read_text().splitlines() if line]
    reply = messages[-1]
    assert reply["role"] == "assistant" and reply["content"][0]["type"] == "reasoning"
    assert reply["content"][0]["text"]["value"].strip()


@pytest.mark.parametrize("through_server", [False, True])
def test_think_on_a_model_that_cannot_think_is_refused(stories_path, thinker, tmp_path, through_server):
    """--think asked of a model whose template has no thinking (stories260K: 'thinking' is not among its capabilities)
    did nothing without a word, where Ollama's ``think`` is refused; now it is said, before the model loads, for
    ``jan run`` and ``jan chat``, in this process and through a server. --no-think, which asks nothing of it, and a
    model that thinks are as before."""
    import contextlib

    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    data = tmp_path / "jan"
    with contextlib.ExitStack() as stack:
        env = cli_env(data)
        ok(jan("models", "import", str(stories_path), env=env))
        ok(jan("models", "import", str(thinker), env=env))
        if through_server:
            served = stack.enter_context(ServerThread(ServerConfig(data_folder=data, n_threads=1)))
            env = cli_env(data, local=False, JAN_API_URL=served.base_url)
        for command in (["run", "stories260K", "Hi"], ["chat", "stories260K"]):
            err = fails(jan(*command, "--think", "-n", "2", env=env, input="Hi\n"), "--think")
            assert "model 'stories260K' does not think" in err, err
        ok(jan("run", "stories260K", "Hi", "--no-think", "-n", "2", env=env))
        ok(jan("run", "thinker", "Hi", "--think", "-n", "2", env=env))
        # /model keeps --think: switching to a model that cannot think is refused as at start, the chat goes on
        switched = jan("chat", "thinker", "--think", "-n", "2", env=env, input="/model stories260K\n/model\n")
        assert switched.returncode == 1, switched.stderr  # (piped: the failed /model is the chat's failure)
        assert "model 'stories260K' does not think" in switched.stderr, switched.stderr
        assert "model: thinker" in switched.stdout + switched.stderr, (switched.stdout, switched.stderr)


def test_chat_keeps_the_thinking_of_a_turn_that_called_a_tool():
    """A turn that thought, then called a tool, lost its thinking: the tool loop's next step sent the calling turn
    back without it (Qwen3's, GLM's, DeepSeek V3.1's and gpt-oss's templates show each step's thinking again; gpt-oss's
    call is made from it), and the thread saved the turn without its ``reasoning`` part, where a run of the thread
    keeps it. Only a turn that answered kept its thinking."""
    from jan.cli.chat import ChatSession
    from jan.cli.inference import Piece

    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

    class Generation:
        finish_reason = None

        def __init__(self, thought, text, calls=()):
            self._pieces = [Piece.thought(thought), Piece(text)] if text else [Piece.thought(thought)]
            self.tool_calls = list(calls)

        def __iter__(self):
            yield from self._pieces
            self.finish_reason = "tool_calls" if self.tool_calls else "stop"

        def cancel(self):
            pass

    turns = [Generation("Need the weather.", "", [call]), Generation("Sunny, it says.", "Sunny in Paris.")]
    sent: list[list[dict]] = []

    class Backend:
        model_id = "m"

        def chat(self, messages, options, **_):
            sent.append([dict(m) for m in messages])
            return turns.pop(0)

    class Tools:
        specs = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

        def call(self, name, arguments):
            return "sunny", False, 1

    class Threads:
        def __init__(self):
            self.saved: list = []

        def create(self, title, assistants, metadata):
            return "thread_1"

        def add(self, thread_id, role, content, *, status="ready", metadata=None):
            self.saved.append((role, content))

    session = ChatSession(None, Backend(), options={}, system=None, autosave=True, load_kwargs={})
    session._threads, session.tools, session.confirm = Threads(), Tools(), lambda prompt: "y"
    session.ask("Weather in Paris?")
    calling = sent[1][1]  # the second step's history: the user's message, the calling turn, its result
    assert calling["tool_calls"] == [call] and calling["reasoning_content"] == "Need the weather."
    saved = session.threads.saved
    assert [role for role, _ in saved] == ["user", "assistant", "tool", "assistant"]
    assert saved[1][1] == [{"type": "reasoning", "text": {"value": "Need the weather.", "annotations": []}}]
    assert saved[3][1][0] == {"type": "reasoning", "text": {"value": "Sunny, it says.", "annotations": []}}


def test_run_json_counts_the_thinking_tokens(thinker, env):
    """`jan run --json` is a chat completion as the server answers it, whose usage tells how many of its tokens went
    to thinking (``completion_tokens_details.reasoning_tokens``): it told none, so a reply that thought for all its
    tokens and one that answered at once looked the same."""
    import json

    def usage(*flags):
        document = json.loads(ok(jan("run", thinker, "Hi", *flags, "-n", "8", "--temperature", "0", "--ignore-eos",
                                     "--json", env=env)).stdout)
        return document["usage"]

    thought = usage("--think")  # (the prompt opened the block: all 8 tokens are thinking)
    assert thought["completion_tokens"] == 8 and thought["completion_tokens_details"] == {"reasoning_tokens": 8}
    assert usage("--no-think")["completion_tokens_details"] == {"reasoning_tokens": 0}


@pytest.mark.parametrize("through_server", [False, True])
def test_run_json_and_verbose_tell_the_usage_alike_here_and_through_a_server(thinker, tmp_path, through_server):
    """`jan run --json`'s usage and `-v`'s summary tell the same counts in this process and through a server: the
    prompt's prefix the KV cache held (``prompt_tokens_details.cached_tokens``, as the server's chat completion
    tells it) and the thinking's share. Through a server `-v` read the cached count where only a local usage kept
    it (the summary said no cached tokens) and `--json` left it out."""
    import contextlib
    import json

    from jan.server.config import ServerConfig
    from jan.testing.server import ServerThread

    data = tmp_path / "jan"
    with contextlib.ExitStack() as stack:
        env = cli_env(data)
        ok(jan("models", "import", str(thinker), env=env))
        if through_server:
            served = stack.enter_context(ServerThread(ServerConfig(data_folder=data, n_threads=1, n_parallel=1)))
            env = cli_env(data, local=False, JAN_API_URL=served.base_url)
        runs = [ok(jan("run", "thinker", "Hi", "--think", "-n", "8", "--temperature", "0", "--ignore-eos", "--json",
                       "-v", env=env)) for _ in range(2)]
    usage = json.loads(runs[-1].stdout)["usage"]
    assert usage["completion_tokens"] == 8 and usage["completion_tokens_details"] == {"reasoning_tokens": 8}
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    # a server's slot keeps the first run's prompt for the second; a process of its own starts with none
    assert (cached > 0) if through_server else cached == 0, usage
    summary = runs[-1].stderr
    assert f"prompt: {usage['prompt_tokens']} tokens" in summary and "8 of them thinking" in summary, summary
    assert (f"({cached} cached)" in summary) if cached else "cached" not in summary, summary
