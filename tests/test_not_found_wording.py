"""A missing object is told one way on every route (``jan.errors.not_found_message``, OpenAI's ``... not found``):
``<kind> '<id>' not found``, then where it was looked for or why, if anything — for models, threads, messages,
assistants, runs, steps, files, responses, downloads, extensions and MCP servers alike (a model was "The model
'x' does not exist", a run "No run 'x' in this thread", a response "No response found with id 'x'")."""

from __future__ import annotations

import re

from api_helpers import Client

import jan
from jan.errors import not_found_message

WORDING = re.compile(r"^(?P<kind>[A-Za-z][\w ]*) '(?P<id>[^']+)' not found(?: in .+)?(?:: .+| \(.+\))?$")


def _missing(tid: str) -> list[tuple[str, str, dict | None, str, str]]:
    """(method, path, body, kind, id) of a request for an object that does not exist, on each route that looks one
    up by id: reads, changes and deletions."""
    out: list[tuple[str, str, dict | None, str, str]] = []
    for method, body in (("GET", None), ("PATCH", {"metadata": {}}), ("DELETE", None)):
        out.append((method, "/v1/models/nope-model", body, "model", "nope-model"))
    for method, body in (("GET", None), ("POST", {"metadata": {}}), ("PATCH", {"metadata": {}}), ("DELETE", None)):
        out.append((method, "/v1/threads/thread_nope", body, "thread", "thread_nope"))
        out.append((method, f"/v1/threads/{tid}/messages/msg_nope", body, "message", "msg_nope"))
    for method, body in (("GET", None), ("POST", {"metadata": {}}), ("PATCH", {"metadata": {}}), ("DELETE", None)):
        out.append((method, "/v1/assistants/asst_nope", body, "assistant", "asst_nope"))
    out += [
        ("GET", "/v1/threads/thread_nope/messages", None, "thread", "thread_nope"),
        ("GET", f"/v1/threads/{tid}/runs/run_nope", None, "run", "run_nope"),
        ("POST", f"/v1/threads/{tid}/runs/run_nope/cancel", None, "run", "run_nope"),
        ("GET", f"/v1/threads/{tid}/runs/run_nope/steps", None, "run", "run_nope"),
        ("GET", f"/v1/threads/{tid}/runs/run_nope/steps/step_nope", None, "run", "run_nope"),
        ("GET", "/v1/files/file-nope", None, "file", "file-nope"),
        ("GET", "/v1/files/file-nope/content", None, "file", "file-nope"),
        ("DELETE", "/v1/files/file-nope", None, "file", "file-nope"),
        ("GET", "/v1/responses/resp_nope", None, "response", "resp_nope"),
        ("GET", "/v1/responses/resp_nope/input_items", None, "response", "resp_nope"),
        ("DELETE", "/v1/responses/resp_nope", None, "response", "resp_nope"),
        ("GET", "/v1/responses/not-a-response-id", None, "response", "not-a-response-id"),
        ("GET", "/v1/conversations/conv_nope", None, "conversation", "conv_nope"),
        ("POST", "/v1/conversations/conv_nope", {"metadata": {}}, "conversation", "conv_nope"),
        ("DELETE", "/v1/conversations/conv_nope", None, "conversation", "conv_nope"),
        ("GET", "/v1/conversations/conv_nope/items", None, "conversation", "conv_nope"),
        ("POST", "/v1/conversations/conv_nope/items", {"items": [{"role": "user", "content": "x"}]}, "conversation",
         "conv_nope"),
        ("GET", "/v1/conversations/conv_nope/items/msg_nope", None, "conversation", "conv_nope"),
        ("DELETE", "/v1/conversations/conv_nope/items/msg_nope", None, "conversation", "conv_nope"),
        ("POST", "/v1/responses", {"model": "stories260K", "input": "x", "conversation": "conv_nope"}, "conversation",
         "conv_nope"),
        ("DELETE", "/v1/downloads/dl_nope", None, "download", "dl_nope"),
        ("GET", "/v1/extensions/nope-extension", None, "extension", "nope-extension"),
        ("GET", "/v1/mcp/servers/nope-server", None, "MCP server", "nope-server"),
    ]
    return out


async def test_every_missing_object_is_one_wording(server):
    async with Client(server.base_url) as api:
        tid = (await api.ok("POST", "/v1/threads", {}))["id"]
        seen = []
        for method, path, body, kind, oid in _missing(tid):
            status, err = await api.call(method, path, body)
            assert status == 404, (method, path, status, err)
            message = err["error"]["message"]
            got = WORDING.match(message)
            assert got and (got["kind"], got["id"]) == (kind, oid), (method, path, message)
            seen.append(message)
        assert any(" in thread " in m for m in seen)  # a run is looked for in its thread, and says so


def test_the_wording():
    assert not_found_message("thread", "thread_x") == "thread 'thread_x' not found"
    assert not_found_message("run", "run_x", "thread 'thread_x'") == "run 'run_x' not found in thread 'thread_x'"
    assert str(jan.store.errors.NotFoundError("assistant", "asst_x")) == "assistant 'asst_x' not found"


def test_a_typo_is_taken_for_the_one_model_it_is_near():
    from jan.services.models import closest_model_id

    ids = ["stories260K", "stories15M", "qwen3-8b", "qwen3-1b", "all-MiniLM-L6-v2-f32"]
    assert closest_model_id("storis260K", ids) == "stories260K"  # a letter left out
    assert closest_model_id("stories260KK", ids) == "stories260K"  # one too many
    assert closest_model_id("all-minilm-l6-v2", ids) == "all-MiniLM-L6-v2-f32"
    assert closest_model_id("nope", ids) is None and closest_model_id("", ids) is None
    assert closest_model_id("qwen3-4b", ids) is None  # as near to two models: naming one would be a coin toss
    assert closest_model_id("stories260K", ids) is None  # a model's own id is no slip


async def test_a_model_id_off_by_case_its_file_suffix_or_a_typo_names_the_model_meant(tmp_path, stories_path):
    # the README's models are ids such as `stories260K`; `stories260k`, the file's name `stories260K.gguf` or
    # `storis260K` is a natural slip, and "not found" alone leaves the user to list the models to see why
    from api_helpers import running

    with running(tmp_path / "data", stories_path) as server:
        await _ask_with_wrong_ids(server)


async def _ask_with_wrong_ids(server):
    async with Client(server.base_url) as api:
        # (an id with a stray space, which no id can be, was told "not found" alone)
        for wrong in ("stories260k", "STORIES260K", "stories260K.gguf", "storis260K", "Stories260KK", "stories260K ",
                      " stories260K"):
            status, err = await api.call("POST", "/v1/chat/completions", {
                "model": wrong, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
            message = err["error"]["message"]
            assert status == 404 and err["error"]["code"] == "model_not_found", err
            assert message == f"model '{wrong}' not found: did you mean 'stories260K'? (model ids are exact)"
            assert WORDING.match(message)
        # every dialect that resolves through the model service says it (Ollama's own routes keep Ollama's words)
        for path, body in (("/v1/completions", {"prompt": "x", "max_tokens": 1}),
                           ("/v1/messages", {"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
                           ("/v1/responses", {"input": "x", "max_output_tokens": 16})):
            status, err = await api.call("POST", path, {"model": "storis260K", **body})
            assert status == 404 and "did you mean 'stories260K'?" in err["error"]["message"], (path, err)
        status, err = await api.call("POST", "/v1/completions", {"model": "nope", "prompt": "x", "max_tokens": 1})
        assert status == 404 and err["error"]["message"] == "model 'nope' not found"


def test_a_models_file_name_is_taken_for_the_id_its_import_made_of_it(tmp_path, stories_path):
    """`jan models import "my mödel (v2).gguf"` makes the id `my-model-v2`; a user who names the model as they know
    it (its file's name, with spaces, accents or brackets) heard "not found" alone. It is now named, in the CLI and
    on every route (one rule: closest_model_id)."""
    import shutil

    from click.testing import CliRunner

    from jan.cli import main
    from jan.services.models import closest_model_id

    ids = ["my-model-v2", "stories260K"]
    for given in ("my mödel (v2)", "My Mödel (v2).gguf", "my model v2", "my model (v2)"):
        assert closest_model_id(given, ids) == "my-model-v2", given
    assert closest_model_id("(((", ids) is None and closest_model_id("a model", ids) is None

    source = tmp_path / "my mödel (v2).gguf"
    shutil.copy(stories_path, source)
    env = {"JAN_DATA_FOLDER": str(tmp_path / "d"), "JAN_LOCAL": "1"}
    runner = CliRunner()
    assert runner.invoke(main, ["models", "import", str(source)], env=env).stdout.startswith("imported my-model-v2")
    said = runner.invoke(main, ["run", "my mödel (v2)", "hi"], env=env)
    assert said.exit_code == 1 and "did you mean 'my-model-v2'?" in said.stderr, said.output
