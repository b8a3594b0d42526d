"""jan as a Python library and its CLI, used as a new user would after `pip install`: each failure is told as what it
is (the file that is a device, the truncated tensor llama.cpp found), a handle answers the same when asked twice,
and inputs whose order means nothing are refused rather than embedded in some order."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

import jan
from test_cli_helpers import jan as run_jan


# -- files that are no model ------------------------------------------------------------------------------------------
@pytest.fixture
def not_files(tmp_path):
    """Paths where something is, but no regular file: a character device, a named pipe, a folder."""
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    return {"/dev/null": "a character device", str(fifo): "a named pipe (FIFO)", str(folder): "a directory"}


def test_something_that_is_no_regular_file_is_named_as_what_it_is(not_files, tmp_path, stories_path):
    """/dev/null or a FIFO given as a model were "not found": a user then looks for a file that is there. Every
    place that takes a model's path says what is there instead (and never opens a FIFO, which would block)."""
    from jan.errors import ModelNotFoundError
    from jan.server.preload import resolve_model
    from jan.store import DataFolder, InvalidArgumentError
    from jan.store.models import ModelStore

    store = ModelStore(DataFolder(tmp_path / "data"))
    with jan.ModelPool() as pool:
        for path, kind in not_files.items():
            said = f"is {kind}, not a GGUF file"
            for load in (lambda: jan.Model(path), lambda: pool.load("m", path),
                         lambda: jan.Model(stories_path, draft_model=path), lambda: jan.Model(stories_path, mmproj=path)):
                with pytest.raises(jan.ModelFileError) as caught:
                    load()
                assert said in str(caught.value) and "not found" not in str(caught.value), caught.value
            with pytest.raises(ModelNotFoundError) as caught:  # jan serve -m PATH
                asyncio.run(resolve_model(None, path))
            assert said in str(caught.value)
            with pytest.raises(InvalidArgumentError) as caught:  # the data folder's import
                store.import_gguf(path)
            assert said in str(caught.value)
    assert "not found" in str(pytest.raises(jan.ModelFileError, jan.Model, str(tmp_path / "missing.gguf")).value)


def test_the_cli_names_what_is_there_too(not_files, env):
    for path, kind in not_files.items():
        for args in (("models", "import", path), ("run", path, "--raw", "hi")):
            result = run_jan(*args, env=env)
            assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
            assert f"{path} is {kind}, not a GGUF file" in result.stderr, result.stderr


def test_a_damaged_model_is_told_by_the_reason_llama_cpp_logged(gguf_copy, tmp_path):
    """llama.cpp's last error line on a failed load is always the bare "failed to load model"; the message now
    carries the line before it that says why (where the file ends). A file whose tensor data is cut short (a
    partial download) is told before llama.cpp reads it, with how many bytes are missing (jan.gguf_extent)."""
    whole = gguf_copy.read_bytes()
    cases = {1000: "failed to read key-value pairs",
             len(whole) // 2: f"is cut short: {len(whole) - len(whole) // 2} of its {len(whole)} bytes are missing"}
    for size, reason in cases.items():
        damaged = tmp_path / f"cut-{size}.gguf"
        damaged.write_bytes(whole[:size])
        with pytest.raises(jan.ModelFileError) as caught:
            jan.Model(damaged)
        message = str(caught.value)
        assert reason in message, message
        assert not message.endswith("failed to load model"), message


def test_native_error_detail_prefers_the_line_that_says_why():
    from jan.engine.logs import native_error_detail

    error = logging.ERROR
    records = [(logging.DEBUG, "loading"),
               (error, "llama_model_load: error loading model: tensor 'x' data is not within the file bounds\n"),
               (error, "llama_model_load_from_file_impl: failed to load model\n")]
    assert native_error_detail(records) == "tensor 'x' data is not within the file bounds"
    generic = [(error, "mtmd_init_from_file: error: Failed to load CLIP model from /m.gguf")]
    assert native_error_detail(generic) == generic[0][1]  # nothing better: the generic line itself
    assert native_error_detail([(logging.WARNING, "w")]) == ""


def test_pulling_a_local_file_points_at_import(env, stories_path):
    for source, path in ((str(stories_path), str(stories_path)), (f"file://{stories_path}", str(stories_path)),
                         ("./not-here.gguf", "./not-here.gguf")):
        result = run_jan("models", "pull", source, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"`jan models import {path}`" in result.stderr, result.stderr


# -- a request handle ---------------------------------------------------------------------------------------------------
def test_result_asked_again_returns_the_same_completion(stories):
    request = stories.stream("Once upon a time", max_tokens=8, temperature=0)
    first = request.result()
    assert first.text and request.result() is first  # (it was a Completion of nothing: text "", no tokens)

    async def twice():
        request = stories.stream("Once upon a time", max_tokens=8, temperature=0)
        return await request.aresult(), await request.aresult()

    one, two = asyncio.run(twice())
    assert two is one and one.text == first.text


def test_result_after_reading_part_aggregates_the_rest_once(stories):
    request = stories.stream("Once upon a time", max_tokens=8, temperature=0)
    head = next(iter(request))
    rest = request.result()
    assert head.text + rest.text == stories.generate("Once upon a time", max_tokens=8, temperature=0).text
    assert request.result() is rest


# -- embeddings ---------------------------------------------------------------------------------------------------------
def test_embed_refuses_inputs_without_an_order(minilm_path):
    """Rows come back in the inputs' order; a set has none (its rows could not be matched to its texts), and a dict
    iterates its keys alone: both are a TypeError, not vectors in some order."""
    with jan.Model(minilm_path) as model:
        for inputs in ({"a", "b"}, frozenset({"a"}), {"a": 1}):
            with pytest.raises(TypeError, match=f"got {type(inputs).__name__}"):
                model.embed(inputs)
        assert model.embed(["a", "b"]).shape[0] == 2  # a list, a tuple or a generator: in order
        assert model.embed(x for x in ("a", "b")).shape[0] == 2


# -- the services' typed requests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, -1, 17])
def test_typed_requests_refuse_a_choice_count_outside_the_servers_bounds(n):
    """n=0 made no choice: a chat then failed with an IndexError deep in the service, a completion answered nothing.
    The typed request says it, naming the field, with the bounds every front end has (1 to 16)."""
    from jan.services.errors import RequestError
    from jan.services.types import ChatMessage, ChatRequest, CompletionRequest

    for make in (lambda: ChatRequest(model="m", messages=(ChatMessage.of_text("user", "Hi"),), n=n),
                 lambda: CompletionRequest(model="m", prompts=("Once",), n=n)):
        with pytest.raises(RequestError, match="n: must be >= 1 and <= 16") as caught:
            make()
        assert caught.value.param == "n"
    assert ChatRequest(model="m", messages=(ChatMessage.of_text("user", "Hi"),), n=16).n == 16


def test_results_are_values_that_pickle_and_copy(stories):
    """A Completion (and a Chunk, and a service's result, which hold the same Usage) goes through pickle
    (multiprocessing, a cache on disk) and deepcopy (dataclasses.asdict): the native Usage in it failed both."""
    import copy
    import dataclasses
    import pickle

    from jan.services.types import ChatResult

    completion = stories.generate("Once upon a time", max_tokens=6, temperature=0, logprobs=True, top_logprobs=2)
    again = pickle.loads(pickle.dumps(completion))
    assert again == completion and again.usage.completion_tokens == 6
    assert copy.deepcopy(completion) == completion
    assert dataclasses.asdict(completion)["usage"] == completion.usage
    chunks = list(stories.stream("Once upon a time", max_tokens=3, temperature=0))
    assert pickle.loads(pickle.dumps(chunks)) == chunks
    result = ChatResult(model="stories260K", choices=(), usage=completion.usage)
    assert pickle.loads(pickle.dumps(result)) == result


def test_a_copied_usage_keeps_every_field(stories_path):
    """Every field of a Usage survives pickle and deepcopy, the speculative counts too: a drafted completion copied
    said none of its drafts were accepted (its usage == the original's all the same)."""
    import copy
    import pickle

    from jan.engine.results import Usage

    def fields(usage) -> dict:
        # (its data: to_dict is a method)
        return {name: getattr(usage, name) for name in dir(usage)
                if not name.startswith("_") and not callable(getattr(usage, name))}

    made = Usage(prompt_tokens=3, completion_tokens=5, cached_tokens=1, queue_ms=0.5, prompt_ms=1.5,
                 generation_ms=2.5, draft_tokens=4, draft_accepted=2)
    with jan.Model(stories_path, n_ctx=256, n_threads=1, draft_model=stories_path, draft_p_min=0.0) as model:
        drafted = model.generate("Once upon a time", max_tokens=30, temperature=0)
    assert drafted.usage.draft_accepted > 0
    for usage in (made, drafted.usage):
        assert "draft_accepted" in fields(usage) and "draft_tokens" in fields(usage)
        for copied in (pickle.loads(pickle.dumps(usage)), copy.deepcopy(usage)):
            assert fields(copied) == fields(usage)
    assert fields(pickle.loads(pickle.dumps(drafted)).usage) == fields(drafted.usage)


@pytest.mark.parametrize("command, flag", [
    ("run", "--ctx-size"), ("run", "--threads"), ("run", "--gpu-layers"), ("chat", "--ctx-size"),
    ("serve", "--ctx-size"), ("serve", "--threads"), ("serve", "--gpu-layers"), ("serve", "--max-queue"),
    ("bench", "--ctx"), ("bench", "--batch-size"), ("bench", "--ubatch-size"), ("bench", "--gpu-layers"),
])
def test_a_load_flag_past_the_engines_int32_is_told_by_its_name(command, flag, tmp_path):
    """`jan run M -c 100000000000` was refused as "settings.ctx_len ... (in the model.json of model 'M')": the user's
    flag blamed on a file they never wrote. Every load flag has the engine's bound, so click names the flag."""
    from click.testing import CliRunner

    from jan.cli import main

    args = [command, "some-model", flag, str(2**31)] + (["hi"] if command == "run" else [])
    result = CliRunner().invoke(main, args, env={"JAN_DATA_FOLDER": str(tmp_path / "data"), "JAN_LOCAL": "1"})
    assert result.exit_code == 2, result.output
    assert flag in result.output and "model.json" not in result.output, result.output
    # (threads: ggml's own bound, GGML_MAX_N_THREADS, below int32's)
    assert str(512 if flag == "--threads" else 2**31 - 1) in result.output, result.output


# -- a named pipe given where a file is read ------------------------------------------------------------------------
def _returns(call, timeout: float = 60):
    """``call()``'s result or exception, from a thread, or a failure if it is still blocked after ``timeout``."""
    import threading

    box = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked: the named pipe was opened to wait for a writer"
    return box


def test_a_named_pipe_is_refused_where_a_file_is_read_never_waited_on(tmp_path, env):
    """open() of a FIFO waits for a writer that never comes: `jan files upload`, `jan run --image`, an image path
    given to jan.Model and the read_file tool hung (a worker thread for good, in the tool's case). Each refuses it,
    saying what it is, at once."""
    from jan.engine.media import DEFAULT_LIMITS, sized_image_input
    from jan.extensions.tools.extension import ReadFile

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    said = "it is a named pipe (FIFO), not a regular file"
    box = _returns(lambda: sized_image_input(str(fifo), DEFAULT_LIMITS, "image 1"))
    assert isinstance(box.get("error"), jan.MediaError) and said in str(box["error"]), box
    assert box["error"].reason == "unreadable"
    box = _returns(lambda: asyncio.run(ReadFile(tmp_path).call({"path": "pipe.png"})))
    result = box["value"]
    assert result.is_error and said in result.parts[0].text, result
    for args in (("files", "upload", fifo), ("run", "any-model", "hi", "--image", fifo)):
        done = run_jan(*args, env=env, timeout=60)
        assert done.returncode == 1 and said in done.stderr, done.stderr


# -- a wait that ends without the result ---------------------------------------------------------------------------------
class _InterruptedOnce:
    """A native request whose first wait raises KeyboardInterrupt: where a Ctrl-C during the wait raises it."""

    def __init__(self, native):
        self._native, self._fired = native, False

    def __getattr__(self, name):
        attr = getattr(self._native, name)
        if name in ("wait", "wait_final") and not self._fired:
            def interrupted(*args):
                self._fired = True
                raise KeyboardInterrupt
            return interrupted
        return attr


@pytest.mark.parametrize("how", ["iterate", "result"])
def test_ctrl_c_while_waiting_on_a_stream_stops_the_generation(stories, how):
    """The traceback of a Ctrl-C (a REPL keeps it) holds the handle, so dropping it cancelled nothing: the model went
    on generating to the token limit for nobody. A Ctrl-C during the wait stops it."""
    request = stories.stream("Once upon a time", max_tokens=900, ignore_eos=True)
    request._native = _InterruptedOnce(request._native)
    with pytest.raises(KeyboardInterrupt):
        next(iter(request)) if how == "iterate" else request.result()
    assert request.result().finish_reason == "cancelled"


def test_generate_and_agenerate_stop_their_generation_when_the_wait_ends_without_it(stories, monkeypatch):
    from jan.engine.request import Request

    made = []
    real_result, real_aresult = Request.result, Request.aresult

    def interrupted(self):
        made.append(self)
        raise KeyboardInterrupt

    async def cancelled(self):
        made.append(self)
        raise asyncio.CancelledError  # the task's: asyncio.wait_for's timeout, asyncio.run's Ctrl-C

    monkeypatch.setattr(Request, "result", interrupted)
    monkeypatch.setattr(Request, "aresult", cancelled)
    with pytest.raises(KeyboardInterrupt):
        stories.generate("Once upon a time", max_tokens=900, ignore_eos=True)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(stories.agenerate("Once upon a time", max_tokens=900, ignore_eos=True))
    monkeypatch.setattr(Request, "result", real_result)
    monkeypatch.setattr(Request, "aresult", real_aresult)
    assert [r.result().finish_reason for r in made] == ["cancelled", "cancelled"]


# -- services used after open_services' block ---------------------------------------------------------------------
async def test_services_used_after_their_block_say_they_are_closed(tmp_path):
    """A chat or an embedding asked of the services after ``async with open_services(...)`` ended said "No enabled
    extension manages models: enable 'models'": the extension is enabled, and enabling it changed nothing."""
    from jan.services import open_services
    from jan.services.errors import ServiceUnavailableError
    from jan.services.types import ChatMessage, ChatRequest, EmbeddingRequest

    async with open_services(tmp_path / "data", discover_extensions=False) as services:
        pass
    for use in (lambda: services.chat.complete(ChatRequest(model="m", messages=(ChatMessage.of_text("user", "Hi"),))),
                lambda: services.embeddings.embed(EmbeddingRequest(model="m", inputs=("hi",)))):
        with pytest.raises(ServiceUnavailableError, match="jan's extensions are not running .*services are closed") \
                as caught:
            await use()
        assert "enable" not in str(caught.value)


async def test_services_and_their_manager_refuse_copies_by_name_and_repr_their_folder(tmp_path):
    """A pickled Services (or ExtensionManager, or one service) failed with "Can't pickle local object
    '_weak_handler.<locals>.handler'", and a copy.copy of the manager shared its loaded extensions, so stopping the
    copy unloaded the original's. Each refuses, naming itself, as jan.Model does."""
    import copy
    import pickle

    from jan.services import open_services

    async with open_services(tmp_path / "data", discover_extensions=False) as services:
        for held in (services, services.manager, services.models, services.chat, services.completions,
                     services.embeddings, services.runs):
            for how in (copy.copy, copy.deepcopy, pickle.dumps):
                with pytest.raises(TypeError, match=rf"^{type(held).__name__} cannot be copied or pickled: it holds "):
                    how(held)
        assert services.manager.started
        folder = str(services.manager.data_folder)
        for service in (services.models, services.chat, services.completions, services.embeddings, services.runs):
            assert repr(service) == f"<{type(service).__name__} data_folder={folder!r}>"  # not "<... object at 0x>"
        assert f"chat=<ChatService data_folder={folder!r}>" in repr(services)
