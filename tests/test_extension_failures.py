"""A third-party extension that fails is an error naming it, in every dialect and in the CLI, and jan goes on serving.

The kind: the routes reach the conversation store, the assistant store, the model catalogue and the MCP host through
the extension in use, and what its author got wrong was an anonymous 500 ``internal_error`` in every dialect (the log
named no extension) — an exception of its own, or a return value its interface does not promise (``None`` for a list
was an AttributeError 500 later; ``["x"]`` for a dict became ``dict(["x"])``'s ValueError, the *client's* 400). Now
each is a 500 ``extension_error`` naming the extension, its package and the interface method, in each dialect's own
shape (:mod:`jan.core.guarded`, applied where every front end gets an implementation); what the interface lets an
implementation raise (``NotFoundError``: 404, ``ValueError``: 400) keeps its meaning. An engine's ``load_model`` and
``unload_model`` (a start, stop or delete, Ollama's load before a request) were the same kind, and are checked alike.

The extension is installed as an author's would be: a distribution whose entry points name it, on ``sys.path``.
"""

from __future__ import annotations

import inspect
import sys
import textwrap

import pytest

from extension_helpers import call, on_sys_path, records, write_distribution
from server_helpers import start_server
from test_cli_helpers import cli_env, fails, jan

DIST = "jan-bad-ext 0.0.1"

MODULE = textwrap.dedent('''
    import os

    from jan.core import (ConversationalExtension, Extension, InferenceExtension, McpHost, ModelExtension,
                          NotFoundError, ToolProvider)
    from jan.errors import ModelNotFoundError
    from jan.services.types import ChatDelta, CompletionDelta

    #: What every method does now (the test sets it; a CLI run reads the environment): "raises" (a bug of its own),
    #: "wrong" (returns what its interface does not promise), "not_found" (its typed error), "invalid" (a ValueError).
    MODE = {"kind": os.environ.get("JAN_BAD_EXT_MODE", "raises")}


    def answer(wrong, missing=NotFoundError):
        kind = MODE["kind"]
        if kind == "raises":
            raise RuntimeError("secret detail of the bug")
        if kind == "not_found":
            raise missing("'x' not found")
        if kind == "invalid":
            raise ValueError("limit: must be at most 100")
        return wrong


    class BadStore(Extension, ConversationalExtension):
        name = "bad-store"

        async def list_threads(self, *, limit=None, order="desc", after=None, before=None): return answer(None)
        async def get_thread(self, thread_id): return answer(["x"])
        async def create_thread(self, thread): return answer("thread")
        async def update_thread(self, thread_id, patch): return answer(None)
        async def delete_thread(self, thread_id): return answer(None)
        async def list_messages(self, thread_id, *, limit=None, order="asc", after=None, before=None, run_id=None):
            return answer([{"id": "msg_1"}, None])
        async def get_message(self, thread_id, message_id): return answer(None)
        async def create_message(self, thread_id, message): return answer(None)
        async def update_message(self, thread_id, message_id, patch): return answer(None)
        async def delete_message(self, thread_id, message_id): return answer(None)
        async def list_assistants(self): return answer({"data": []})
        async def get_assistant(self, assistant_id): return answer(3)
        async def create_assistant(self, assistant): return answer(None)
        async def update_assistant(self, assistant_id, patch): return answer(None)
        async def delete_assistant(self, assistant_id): return answer(None)


    class BadModels(Extension, ModelExtension):
        name = "bad-models"

        async def list_models(self): return answer(None, ModelNotFoundError)
        async def get_model(self, model_id): return answer("m", ModelNotFoundError)
        async def import_model(self, path, *, model_id=None, mode="symlink"): return answer(None, ModelNotFoundError)
        async def update_model(self, model_id, patch): return answer(None, ModelNotFoundError)
        async def delete_model(self, model_id): return answer(None, ModelNotFoundError)
        async def pull(self, source, model_id=None): return answer(None, ModelNotFoundError)
        async def cancel_pull(self, task_id): return answer("yes", ModelNotFoundError)
        async def list_downloads(self): return answer(None, ModelNotFoundError)


    class BadMcp(Extension, McpHost):
        name = "bad-mcp"

        async def list_servers(self): return answer([{"name": "s"}])
        async def server(self, name, *, connect=True): return answer({"name": name})
        async def set_enabled(self, name, enabled): return answer(None)


    class BadTools(Extension, ToolProvider):
        name = "bad-tools"

        async def list_tools(self): return answer(None)


    class BadEngine(Extension, InferenceExtension):
        """Serves ``bad-m`` (and says it is loaded), but cannot load or unload it."""

        name = "bad-engine"
        engine_name = "bad"

        async def load_model(self, model): raise RuntimeError("secret load bug")
        async def unload_model(self, model_id): raise RuntimeError("secret unload bug")
        async def loaded_models(self): return ["bad-m"]
        async def model_status(self, model_id): return {"id": model_id, "status": "ready"}
        async def chat(self, model, request): yield ChatDelta(content="hi", finish_reason="stop")
        async def complete(self, model, request): yield CompletionDelta(text="hi", finish_reason="stop")
        async def embed(self, model, request): raise NotImplementedError
        async def tokenize(self, model, text, *, add_special=True, parse_special=False): return []
        async def detokenize(self, model, tokens): return ""
''')

ANTHROPIC = {"anthropic-version": "2023-06-01"}
MESSAGES = [{"role": "user", "content": "hi"}]
#: (extension, interface, method, dialect, HTTP method, path, body, headers): every route that reaches each interface
#: in each dialect that reaches it (a thread's run, the web page's calls and the Responses store reach the same
#: implementations through the same wrapper)
ROUTES = [
    ("bad-store", "ConversationalExtension", "list_threads", "openai", "GET", "/v1/threads", None, None),
    ("bad-store", "ConversationalExtension", "create_thread", "openai", "POST", "/v1/threads", {}, None),
    ("bad-store", "ConversationalExtension", "get_thread", "openai", "GET", "/v1/threads/thread_x", None, None),
    ("bad-store", "ConversationalExtension", "update_thread", "openai", "POST", "/v1/threads/thread_x",
     {"metadata": {"a": "b"}}, None),
    ("bad-store", "ConversationalExtension", "delete_thread", "openai", "DELETE", "/v1/threads/thread_x", None, None),
    ("bad-store", "ConversationalExtension", "list_messages", "openai", "GET", "/v1/threads/thread_x/messages",
     None, None),
    ("bad-store", "ConversationalExtension", "create_message", "openai", "POST", "/v1/threads/thread_x/messages",
     {"role": "user", "content": "hi"}, None),
    ("bad-store", "ConversationalExtension", "get_message", "openai", "GET",
     "/v1/threads/thread_x/messages/msg_x", None, None),
    ("bad-store", "AssistantExtension", "list_assistants", "openai", "GET", "/v1/assistants", None, None),
    ("bad-store", "AssistantExtension", "get_assistant", "openai", "GET", "/v1/assistants/asst_x", None, None),
    ("bad-store", "AssistantExtension", "delete_assistant", "openai", "DELETE", "/v1/assistants/asst_x", None, None),
    ("bad-models", "ModelExtension", "list_models", "openai", "GET", "/v1/models", None, None),
    ("bad-models", "ModelExtension", "get_model", "openai", "GET", "/v1/models/m", None, None),
    ("bad-models", "ModelExtension", "list_models", "anthropic", "GET", "/v1/models", None, ANTHROPIC),
    ("bad-models", "ModelExtension", "get_model", "anthropic", "GET", "/v1/models/m", None, ANTHROPIC),
    ("bad-models", "ModelExtension", "list_models", "ollama", "GET", "/api/tags", None, None),
    ("bad-models", "ModelExtension", "get_model", "ollama", "POST", "/api/show", {"model": "m"}, None),
    ("bad-models", "ModelExtension", "get_model", "openai", "POST", "/v1/chat/completions",
     {"model": "m", "messages": MESSAGES}, None),
    ("bad-models", "ModelExtension", "get_model", "anthropic", "POST", "/v1/messages",
     {"model": "m", "max_tokens": 5, "messages": MESSAGES}, None),
    ("bad-models", "ModelExtension", "get_model", "ollama", "POST", "/api/chat",
     {"model": "m", "stream": False, "messages": MESSAGES}, None),
    ("bad-models", "ModelExtension", "get_model", "openai", "POST", "/v1/responses", {"model": "m", "input": "hi"},
     None),
    ("bad-mcp", "McpHost", "list_servers", "openai", "GET", "/v1/mcp/servers", None, None),
    ("bad-mcp", "McpHost", "server", "openai", "GET", "/v1/mcp/servers/s", None, None),
    ("bad-mcp", "McpHost", "list_servers", "openai", "GET", "/v1/tools", None, None),
]
#: methods whose interface returns nothing: what they return is never read, so "wrong" is no fault of theirs
RETURNS_NOTHING = {"delete_thread", "delete_assistant"}


def _ids(route) -> str:
    return f"{route[3]}-{route[4]}-{route[5]}-{route[2]}"


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """``(server, the extension's module)``: a server with the distribution installed, its module to set ``MODE``."""
    tmp = tmp_path_factory.mktemp("bad-ext")
    site = tmp / "site"
    write_distribution(site, "jan-bad-ext", "0.0.1", {
        "bad-store": "jan_bad_ext:BadStore", "bad-models": "jan_bad_ext:BadModels",
        "bad-mcp": "jan_bad_ext:BadMcp", "bad-tools": "jan_bad_ext:BadTools", "bad-engine": "jan_bad_ext:BadEngine",
    }, {"jan_bad_ext/__init__.py": MODULE})
    with on_sys_path(site, "jan_bad_ext"):
        srv = start_server(tmp, [])
        try:
            yield srv, sys.modules["jan_bad_ext"]
        finally:
            srv.stop()


@pytest.fixture
def mode(bad):
    """Sets what the extension's methods do for one test (raising again after it)."""
    _, module = bad

    def set_mode(kind: str) -> None:
        module.MODE["kind"] = kind

    yield set_mode
    module.MODE["kind"] = "raises"


def _message(dialect: str, answer) -> str:
    """The error message of a dialect's error answer, its shape checked."""
    if dialect == "anthropic":
        assert answer["type"] == "error" and answer["error"]["type"] == "api_error", answer
        return answer["error"]["message"]
    if dialect == "ollama":
        assert isinstance(answer["error"], str), answer
        return answer["error"]
    assert answer["error"]["code"] == "extension_error" and answer["error"]["type"] == "server_error", answer
    return answer["error"]["message"]


@pytest.mark.parametrize("route", ROUTES, ids=_ids)
def test_an_exception_of_the_extensions_own_is_a_500_naming_it(bad, mode, route):
    srv, _ = bad
    extension, interface, method, dialect, verb, path, body, headers = route
    mode("raises")
    status, answer = call(srv, verb, path, body, headers=headers)
    assert status == 500, answer
    message = _message(dialect, answer)
    assert f"the extension '{extension}' ({DIST}) failed in {interface}.{method}() with RuntimeError" in message
    assert "the server's log has its cause" in message and "secret" not in message


@pytest.mark.parametrize("route", [r for r in ROUTES if r[2] not in RETURNS_NOTHING], ids=_ids)
def test_a_return_value_against_the_interface_is_a_500_naming_it(bad, mode, route):
    srv, _ = bad
    extension, interface, method, dialect, verb, path, body, headers = route
    mode("wrong")
    status, answer = call(srv, verb, path, body, headers=headers)
    assert status == 500, answer
    message = _message(dialect, answer)
    assert message.startswith(f"the extension '{extension}' ({DIST}): {interface}.{method}() returned "), message


def test_the_message_says_what_was_returned_and_what_was_promised(bad, mode):
    srv, _ = bad
    mode("wrong")
    for path, said in (("/v1/threads", "returned NoneType, not list[dict[str, Any]]"),
                       ("/v1/threads/thread_x", "returned list, not dict[str, Any]"),
                       ("/v1/threads/thread_x/messages", "returned a list holding NoneType, not list[dict[str, Any]]"),
                       ("/v1/mcp/servers", "returned a list holding dict, not list[McpServerStatus]")):
        status, answer = call(srv, "GET", path)
        assert status == 500 and said in answer["error"]["message"], answer


@pytest.mark.parametrize("route", [r for r in ROUTES if r[5].split("/")[-1] in ("thread_x", "msg_x", "asst_x", "m")
                                   and r[4] == "GET"], ids=_ids)
def test_what_the_interface_lets_it_raise_keeps_its_meaning(bad, mode, route):
    """A NotFoundError (ModelNotFoundError for a model) is the dialect's 404, not an extension_error."""
    srv, _ = bad
    *_, verb, path, body, headers = route
    mode("not_found")
    status, answer = call(srv, verb, path, body, headers=headers)
    assert status == 404, answer
    assert "extension_error" not in str(answer)


def test_a_value_error_is_still_the_clients_400(bad, mode):
    srv, _ = bad
    mode("invalid")
    for path in ("/v1/threads", "/v1/assistants", "/v1/models"):
        status, answer = call(srv, "GET", path)
        assert status == 400 and answer["error"]["message"] == "limit: must be at most 100", answer


def test_a_failing_tool_provider_costs_only_itself(bad, mode):
    """(A provider's listing was already tolerated by the tool registry: the others' tools are listed.)"""
    srv, _ = bad
    mode("raises")
    status, answer = call(srv, "POST", "/v1/extensions/bad-mcp/disable")
    assert status == 200, answer
    try:
        for kind in ("raises", "wrong"):
            mode(kind)
            status, answer = call(srv, "GET", "/v1/tools")
            assert status == 200, answer
            assert "current_time" in [t["function"]["name"] for t in answer["data"]]
    finally:
        assert call(srv, "POST", "/v1/extensions/bad-mcp/enable")[1]["state"] == "loaded"


def test_the_server_goes_on_serving_and_jans_own_extensions_keep_their_statuses(bad, mode):
    """Nothing of the failures unloads the extension or harms the server; with them disabled, the built-ins serve
    again, their own typed errors (404s) passing the same wrapper unchanged."""
    srv, _ = bad
    mode("raises")
    assert call(srv, "GET", "/health")[0] == 200
    found = records(srv)
    assert all(found[name]["state"] == "loaded" for name in ("bad-store", "bad-models", "bad-mcp", "bad-tools"))
    for name in ("bad-store", "bad-models", "bad-mcp"):
        assert call(srv, "POST", f"/v1/extensions/{name}/disable")[0] == 200
    try:
        status, thread = call(srv, "POST", "/v1/threads", {})
        assert status == 200 and thread["object"] == "thread", thread
        assert call(srv, "GET", f"/v1/threads/{thread['id']}")[0] == 200
        status, answer = call(srv, "GET", "/v1/threads/thread_missing")
        assert status == 404 and answer["error"]["code"] == "not_found", answer
        status, answer = call(srv, "GET", "/v1/assistants/asst_missing")
        assert status == 404 and answer["error"]["code"] == "not_found", answer
        status, answer = call(srv, "GET", "/v1/models/missing")
        assert status == 404 and answer["error"]["code"] == "model_not_found", answer
        status, answer = call(srv, "GET", "/api/tags")
        assert status == 200 and answer["models"] == [], answer
        assert call(srv, "GET", "/v1/mcp/servers")[0] == 200
    finally:
        for name in ("bad-store", "bad-models", "bad-mcp"):
            assert call(srv, "POST", f"/v1/extensions/{name}/enable")[1]["state"] == "loaded"
    status, answer = call(srv, "GET", "/v1/threads")  # the third party is in use again, and named again
    assert status == 500 and "'bad-store'" in answer["error"]["message"], answer


# -- an engine's loads and unloads ------------------------------------------------------------------------------------



@pytest.fixture
def engine_server(bad):
    """The server with jan's own model catalogue in use (a model of the engine 'bad' in it)."""
    from jan.store import DataFolder

    srv, _ = bad
    DataFolder(srv.config.data_folder).models.create({"id": "bad-m", "engine": "bad", "object": "model"})
    assert call(srv, "POST", "/v1/extensions/bad-models/disable")[1]["state"] == "disabled"
    try:
        yield srv
    finally:
        assert call(srv, "POST", "/v1/extensions/bad-models/enable")[1]["state"] == "loaded"
        DataFolder(srv.config.data_folder).models.delete("bad-m")


@pytest.mark.parametrize("method,dialect,verb,path,body", [
    ("load_model", "openai", "POST", "/v1/models/bad-m/start", {}),
    ("unload_model", "openai", "POST", "/v1/models/bad-m/stop", {}),
    ("unload_model", "openai", "DELETE", "/v1/models/bad-m", None),
    ("load_model", "ollama", "POST", "/api/generate", {"model": "bad-m"}),
    ("load_model", "ollama", "POST", "/api/chat", {"model": "bad-m", "stream": False, "messages": MESSAGES}),
])
def test_an_engines_failing_load_or_unload_is_a_500_naming_it(engine_server, method, dialect, verb, path, body):
    """The same kind in an engine's lifecycle: a start, stop or delete, or Ollama's load before a request, was an
    anonymous 500 when the engine's own load_model/unload_model raised."""
    status, answer = call(engine_server, verb, path, body)
    assert status == 500, answer
    message = _message(dialect, answer)
    assert (f"the engine 'bad' of the extension 'bad-engine' ({DIST}) failed in "
            f"InferenceExtension.{method}() with RuntimeError") in message and "secret" not in message
    # what streams is still the engine's to answer, and the model is still there
    status, answer = call(engine_server, "POST", "/v1/chat/completions", {"model": "bad-m", "messages": MESSAGES})
    assert status == 200 and answer["choices"][0]["message"]["content"] == "hi", answer


# -- the CLI's local mode: the same services in this process ----------------------------------------------------------

@pytest.fixture
def cli(tmp_path):
    site = tmp_path / "site"
    write_distribution(site, "jan-bad-ext", "0.0.1", {
        "bad-store": "jan_bad_ext:BadStore", "bad-models": "jan_bad_ext:BadModels",
    }, {"jan_bad_ext/__init__.py": MODULE})
    import os

    def run(*args: str, kind: str = "raises", input: str | None = None):
        env = cli_env(tmp_path / "data", PYTHONPATH=os.pathsep.join([str(site), *sys.path]), JAN_BAD_EXT_MODE=kind)
        return jan(*args, env=env, input=input)

    return run


def test_the_cli_says_one_line_naming_the_extension_and_exits_1(cli, stories_path):
    """The CLI's user runs the extension: it is told the cause's text too (which a server keeps to its log)."""
    result = cli("run", "m", "hi")
    assert result.returncode == 1
    fails(result, f"the extension 'bad-models' ({DIST}) failed in ModelExtension.get_model() with RuntimeError: "
                  "secret detail of the bug")
    result = cli("run", "m", "hi", kind="wrong")
    assert result.returncode == 1
    fails(result, f"the extension 'bad-models' ({DIST}): ModelExtension.get_model() returned str, not dict[str, Any]")
    # a conversation saved through the store (a model given by path needs no catalogue)
    result = cli("chat", str(stories_path), "--thread", "thread_x", input="hi\n")
    assert result.returncode == 1
    fails(result, f"the extension 'bad-store' ({DIST}) failed in ConversationalExtension.get_thread() with RuntimeError")


# -- the wrapper itself -----------------------------------------------------------------------------------------------

async def test_the_wrapper_keeps_what_callers_rely_on(tmp_path):
    """isinstance and signatures (a route asks whether ``list_messages`` takes ``run_id``) hold as unwrapped; a file's
    OSError passes as it is (a full disk is told by its path), another OSError is the extension's; an extension
    registered in code is named without a package; a method written without ``async`` is served too."""
    import errno

    from jan.core import ConversationalExtension, ExtensionCallError, ExtensionManager
    from jan.core.guarded import get_guarded
    from jan.extensions.conversational.extension import ConversationalStoreExtension as Builtin

    raised: list[BaseException] = []

    class InCode(Builtin):
        name = "in-code-store"
        priority = 0

        async def list_threads(self, **kwargs):
            raise raised[0]

        def get_thread(self, thread_id):  # (no async def: its caller awaits what it returns)
            return {"id": thread_id}

    manager = ExtensionManager(tmp_path / "data", discover_entry_points=False)
    manager.register(InCode)
    async with manager:
        store = get_guarded(manager, ConversationalExtension)
        assert isinstance(store, ConversationalExtension) and isinstance(store, InCode)
        assert "run_id" in inspect.signature(store.list_messages).parameters
        assert await store.get_thread("t") == {"id": "t"}
        raised[:] = [OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json"))]
        with pytest.raises(OSError) as disk:
            await store.list_threads()
        assert not isinstance(disk.value, ExtensionCallError)
        raised[:] = [ConnectionRefusedError(errno.ECONNREFUSED, "refused")]
        with pytest.raises(ExtensionCallError) as theirs:
            await store.list_threads()
        assert str(theirs.value) == ("the extension 'in-code-store' failed in "
                                     "ConversationalExtension.list_threads() with ConnectionRefusedError")
        assert theirs.value.extension == "in-code-store"
        assert theirs.value.method == "ConversationalExtension.list_threads"
        assert isinstance(theirs.value.__cause__, ConnectionRefusedError) and theirs.value.code == "extension_error"


def test_a_package_installed_twice_says_which_version_is_imported_and_which_is_not(tmp_path, caplog):
    """Two versions of one extension package on sys.path (site-packages and a ``--target``/``--user`` folder):
    Python imports the first, and ``importlib.metadata`` dropped the other's entry points without a word, so an
    upgrade installed elsewhere "did nothing". The record's ``source`` (API, ``jan extensions``) and the log say
    which copy is never imported; one folder on sys.path twice is no second copy."""
    from jan.core.manager import ExtensionManager

    module = "from jan.core import Extension\n\nclass Twice(Extension):\n    name = 'twice'\n"
    new, old = tmp_path / "new", tmp_path / "old"
    write_distribution(new, "jan-twice", "2.0", {"twice": "jan_twice:Twice"}, {"jan_twice.py": module})
    write_distribution(old, "jan-twice", "1.0", {"twice": "jan_twice:Twice"}, {"jan_twice.py": module})
    with on_sys_path(old, "jan_twice"), on_sys_path(new, "jan_twice"), on_sys_path(new, "jan_twice"):
        with caplog.at_level("WARNING", logger="jan.core.manager"):
            manager = ExtensionManager(tmp_path / "data")
            manager.discover()
        record = next(r for r in manager.list() if r.name == "twice")
    assert record.version == "2.0"
    assert record.source.startswith("entry point twice = jan_twice:Twice (jan-twice 2.0)"), record.source
    assert f"also installed, never imported: 1.0 at {old}" in record.source
    assert str(new) not in record.source  # (the folder listed twice)
    assert any("jan-twice 2.0 is installed more than once" in r.getMessage() and str(old) in r.getMessage()
               for r in caplog.records), caplog.text


@pytest.mark.parametrize(("attr", "value", "said"), [
    ("version", 3, "version must be text such as '1.0.0', not 3 (of type int)"),
    ("description", ["x"], "description must be text, not ['x'] (of type list)"),
    ("depends_on", "base", "depends_on must be a tuple of extension names, not 'base' (of type str)"),
    ("depends_on", ("base", 2), "depends_on must be a tuple of extension names"),
    ("priority", "high", "priority must be a number, not 'high' (of type str)"),
    ("priority", True, "priority must be a number, not True (of type bool)"),
    ("enabled_by_default", "no", "enabled_by_default must be true or false, not 'no' (of type str)"),
])
async def test_a_declared_attribute_of_the_wrong_type_fails_its_extension_naming_it(tmp_path, attr, value, said):
    """Declarations were taken as given: ``depends_on = "base"`` became the dependencies b, a, s, e; a ``priority``
    of ``"high"`` a TypeError in every later choice between implementations; ``version = 3`` a number in the API.
    The extension is listed failed naming the attribute; the others load."""
    from jan.core import Extension
    from jan.core.manager import ExtensionManager

    class Base(Extension):
        name = "base"

    odd = type("Odd", (Extension,), {"name": "odd", attr: value})
    manager = ExtensionManager(tmp_path / "data", discover_entry_points=False)
    manager.register(Base)
    manager.register(odd)
    await manager.start()
    try:
        listed = {r.name: r for r in manager.list()}
        assert listed["base"].state == "loaded"
        assert listed["odd"].state == "failed" and said in listed["odd"].error, listed["odd"]
    finally:
        await manager.stop()


async def test_a_package_installed_twice_is_still_named_by_its_errors(tmp_path):
    """The note of a copy never imported (after the package in ``source``) left the package out of the errors that
    name it (``the extension 'x' (jan-x 2.0) failed in ...``), which read it from the end of ``source``."""
    from jan.core.manager import ExtensionManager

    module = textwrap.dedent("""
        from jan.core import Extension, ToolProvider

        class Twice(Extension, ToolProvider):
            name = 'twice'

            async def list_tools(self):
                return []
    """)
    new, old = tmp_path / "new", tmp_path / "old"
    write_distribution(new, "jan-twice", "2.0", {"twice": "jan_twice:Twice"}, {"jan_twice.py": module})
    write_distribution(old, "jan-twice", "1.0", {"twice": "jan_twice:Twice"}, {"jan_twice.py": module})
    with on_sys_path(old, "jan_twice"), on_sys_path(new, "jan_twice"):
        manager = ExtensionManager(tmp_path / "data")
        await manager.start()
        try:
            assert manager.provider_of(manager.get_extension("twice")) == ("twice", "jan-twice 2.0")
        finally:
            await manager.stop()
