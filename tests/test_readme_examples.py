"""The README's examples print what the README says they print (issue 10, item 24)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from server_helpers import start_server

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    return README.read_text(encoding="utf-8").split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _run(source: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README example", "exec"), {"__name__": "readme_example"})
    return out.getvalue()


def _promised(section: str) -> list[str]:
    return re.findall(r"prints `(.*?)`", section, flags=re.S)


def test_python_example_prints_what_the_readme_says(stories_path):
    section = _section("Use it from Python")
    source = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    source = source.replace('"../shared/models/stories260K.gguf"', repr(str(stories_path)))
    first_line = _run(source).split("\n")[0]
    promised = _promised(section)[0].removesuffix("...").strip()
    assert first_line.startswith(promised), (first_line, promised)


def test_services_example_runs_on_a_data_folder_with_the_model_it_names(tmp_path, stories_path):
    """The second "Use it from Python" example, the services' chat path: on a data folder holding the model it
    names (which `jan models import`, as it says, puts there) it prints an answer; the errors it names are the
    ones a wrong id and a bad field raise."""
    import asyncio

    from jan.services.errors import RequestError
    from jan.services.types import ChatMessage, ChatRequest
    from test_cli_helpers import cli_env, jan, ok

    section = _section("Use it from Python")
    source = re.findall(r"```python\n(.*?)```", section, flags=re.S)[1]
    model = re.search(r'model="([^"]+)"', source).group(1)
    assert f"jan models import ../shared/models/{model}.gguf" in section
    data = tmp_path / "jan"
    ok(jan("models", "import", str(stories_path), env=cli_env(data)))
    out = _run(source.replace('"~/jan"', repr(str(data))))
    assert out.strip(), out

    import pytest

    import jan as jan_package

    with pytest.raises(jan_package.ModelNotFoundError, match="did you mean") as missing:
        asyncio.run(_complete(data, model[:-1]))
    assert f"in the data folder {data}" in str(missing.value)  # (which folder lacked it: a caller may have two)
    with pytest.raises(RequestError) as caught:
        ChatRequest(model=model, messages=(ChatMessage.of_text("user", "Hi"),), n=0)
    assert caught.value.param == "n" and isinstance(caught.value, ValueError)
    assert "`jan.ModelNotFoundError`" in section and "`jan.services.errors.RequestError`" in section


def test_the_services_model_not_found_names_the_data_folder_on_every_path(tmp_path, stories_path):
    """The Python API's "model not found" says which data folder it looked in, and the id likely meant, whether the
    model is resolved for a request or read (``models.get``); it used to say neither for ``get``, nor the folder."""
    import asyncio

    import jan as jan_package
    from jan.services import open_services
    from jan.services.types import EmbeddingRequest
    from test_cli_helpers import cli_env, jan, ok

    data = tmp_path / "second"
    ok(jan("models", "import", str(stories_path), env=cli_env(data)))

    async def misses() -> list[str]:
        said = []
        async with open_services(data) as services:
            for call in (lambda: services.models.get("stories260k"),
                         lambda: services.embeddings.embed(EmbeddingRequest(model="stories260k", inputs=("hi",))),
                         lambda: services.models.get("nothing-like-it")):
                try:
                    await call()
                except jan_package.ModelNotFoundError as exc:
                    said.append(str(exc))
        return said

    near, embed, far = asyncio.run(misses())
    assert near == embed == (f"model 'stories260k' not found in the data folder {data}: did you mean "
                             "'stories260K'? (model ids are exact)")
    assert far == f"model 'nothing-like-it' not found in the data folder {data} (see `jan models list`)"


def test_the_services_model_not_found_in_an_empty_data_folder_says_how_to_add_one(tmp_path):
    """README's services example run on a fresh data folder (before its `jan models import`) said only "model
    'stories260K' not found in the data folder ...": nothing of what to do, where the CLI points to its list."""
    import asyncio

    import jan as jan_package

    with pytest.raises(jan_package.ModelNotFoundError) as missing:
        asyncio.run(_complete(tmp_path / "fresh", "stories260K"))
    assert str(missing.value) == (f"model 'stories260K' not found in the data folder {tmp_path / 'fresh'}: it has no "
                                  "models yet (`jan models import FILE.gguf` or `jan models pull URL` adds one)")


async def _complete(data, model):
    from jan.services import open_services
    from jan.services.types import ChatMessage, ChatRequest

    async with open_services(data) as services:
        return await services.chat.complete(ChatRequest(model=model, messages=(ChatMessage.of_text("user", "Hi"),)))


def test_openai_example_prints_what_the_readme_says(tmp_path, stories_path):
    section = _section("Run the server")
    source = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    srv = start_server(tmp_path, [stories_path])
    try:
        out = _run(source.replace("http://127.0.0.1:1337", srv.base_url))
        # llama-server's /completion, as the README tells its `logit_bias`: a token given as text is tokenized, each
        # of its tokens biased (the README said "a 400: give its id", which only the OpenAI routes answer)
        said = " ".join(section.split("`logit_bias` (an", 1)[1].split("), `return_tokens`", 1)[0].split())
        assert "is tokenized and each of its tokens biased" in said and "a 400" not in said.split("—")[0], said
        import httpx

        ids = httpx.post(f"{srv.base_url}/tokenize", json={"content": "the girl"}, timeout=60).json()["tokens"]
        for bias in ([["the girl", -0.5]], {"the girl": -0.5}):
            done = httpx.post(f"{srv.base_url}/completion", timeout=60,
                              json={"prompt": "Once", "n_predict": 1, "logit_bias": bias})
            assert done.status_code == 200, done.text
            assert done.json()["generation_settings"]["logit_bias"] == [{"token": i, "bias": -0.5} for i in ids]
        refused = httpx.post(f"{srv.base_url}/v1/completions", timeout=60,
                             json={"prompt": "Once", "max_tokens": 1, "logit_bias": [["the", 1]]})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "logit_bias", refused.text
    finally:
        srv.stop()
    assert out.strip() == _promised(section)[0]
    # and what it says about chatting with a model without a template is what the server sends
    assert 'X-Jan-Chat-Template: chatml; fallback="the model has no chat template"' in section


def test_use_jan_from_examples_run_and_name_real_flags(tmp_path, stories_path):
    """"Use jan from…": the Python snippets (Ollama, Responses, Anthropic, the batches of both) run against a real
    server, the Codex config is valid TOML speaking the Responses API, and the flags and variables it names exist."""
    import tomllib

    from click.testing import CliRunner

    from jan.cli import main

    section = _section("Use jan from…")
    snippets = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(snippets) == 3
    # stories260K is a base model: a generating call with no length bound runs on to the end of its context
    # (the Ollama example did: 2,048 tokens, ~25 s on a 2-core machine, for one "Hi")
    calls = [call for source in snippets[:2]
             for call in re.findall(r"\.(?:chat|create)\((.*?)\)(?:\.|\s*#|\n)", source, re.S)]
    assert len(calls) == 4, calls
    for call in calls:
        assert any(bound in call for bound in ("num_predict", "max_tokens", "max_output_tokens")), call
    batch_requests = re.findall(r'"(?:body|params)": \{[^\n]*', snippets[2])  # (each batch request's own bound)
    assert len(batch_requests) == 2 and all('"max_tokens"' in r for r in batch_requests), batch_requests
    srv = start_server(tmp_path, [stories_path])
    try:
        for source in snippets:
            # pulling from the Hugging Face hub needs the network; the pull itself is tested in test_server_ollama
            source = "\n".join(line for line in source.splitlines() if "hf://" not in line)
            out = _run(source.replace("http://127.0.0.1:1337", srv.base_url))
            assert out.strip(), source
    finally:
        srv.stop()

    codex = tomllib.loads(re.findall(r"```toml\n(.*?)```", section, flags=re.S)[0])
    provider = codex["model_providers"][codex["model_provider"]]
    assert provider["wire_api"] == "responses" and provider["base_url"] == "http://127.0.0.1:1337/v1"
    claude = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:1337\n" in claude  # no /v1: the SDK adds /v1/messages
    serve_help = CliRunner().invoke(main, ["serve", "--help"]).output
    for flag in re.findall(r"`(--[a-z-]+)", section):
        assert flag in serve_help, flag


def test_the_clis_first_steps_run_as_shown(tmp_path, stories_path):
    """"Run the server": the first import, run and chat a new user copies (no server: the data folder is used
    in-process); the pull needs the network and is tested with a local hub in test_pull_mmproj."""
    import shlex

    from test_cli_helpers import cli_env, jan, ok

    section = _section("Run the server")
    block = section.split("A first model and a first answer:", 1)[1]
    commands = [shlex.split(line.split("#", 1)[0]) for line in re.findall(r"```bash\n(.*?)```", block, re.S)[0]
                .splitlines() if line.split("#", 1)[0].strip()]
    assert [c[:3] for c in commands] == [["jan", "models", "import"], ["jan", "run", "stories260K"],
                                         ["jan", "chat", "stories260K"], ["jan", "chat", "--thread"],
                                         ["jan", "threads", "list"], ["jan", "models", "pull"]]
    env = cli_env(tmp_path / "jan")
    for command in commands[:3]:
        args = [str(stories_path) if a == "../shared/models/stories260K.gguf" else a for a in command[1:]]
        result = ok(jan(*args, env=env, input="/exit\n" if command[1] == "chat" else None))
        if command[1] == "run":
            assert result.stdout.strip(), result
    ok(jan(*commands[4][1:], env=env))
    # the import modes, the thread commands and the pull's form the comments name are the commands' own
    threads_help = ok(jan("threads", "--help", env=env)).stdout
    assert all(name in threads_help for name in ("show", "export", "rm"))
    import_help = ok(jan("models", "import", "--help", env=env)).stdout
    assert all(mode in import_help for mode in ("copy", "link", "reference"))
    pull_help = ok(jan("models", "pull", "--help", env=env)).stdout
    assert all(said in pull_help for said in ("hf://owner/repo[:QUANT]", "hf.co/owner/repo[:QUANT]", "--sha256",
                                              "--id"))
    assert "-v, --verbose" in ok(jan("run", "--help", env=env)).stdout


@pytest.mark.parametrize("field, value, hint", [
    ("messages", [{"role": "user", "content": "Hi!"}], "ChatMessage.of_text(role, text)"),
    ("sampling", {"temperature": 0}, "jan.services.types.SamplingOptions(...)"),
])
def test_a_dict_where_the_services_example_builds_a_typed_value_says_how_to_build_it(field, value, hint):
    """A user of the README's services example who passes what the OpenAI API takes (a dict message, dict sampling)
    was told only "expected a ChatMessage, got {...}": the error now names the constructor to use."""
    from jan.services.errors import RequestError
    from jan.services.types import ChatMessage, ChatRequest

    kwargs = {"model": "stories260K", "messages": (ChatMessage.of_text("user", "Hi!"),), field: value}
    with pytest.raises(RequestError, match=re.escape(hint)):
        ChatRequest(**kwargs)


def test_every_environment_variable_jan_reads_is_in_the_readme():
    """The reverse of following the README: a variable jan reads that no doc names is a setting nobody can find
    (`$JAN_PROBE_TIMEOUT`, the wait for a running server's /health before a command works alone, was only in a
    docstring). jan.testing's are the tests' own (`$JAN_TEST_MODELS` is in the README too)."""
    package = README.parent / "python" / "jan"
    read = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|envvar=)\s*["'](JAN_[A-Z0-9_]+)["']""")
    names = {name for path in package.rglob("*.py") if "testing" not in path.parts
             for name in read.findall(path.read_text(encoding="utf-8"))}
    assert {"JAN_DATA_FOLDER", "JAN_API_KEY"} <= names, names
    docs = README.read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in (README.parent / "docs").glob("*.md"))
    assert not {n for n in names if not re.search(rf"\b{n}\b", docs)}
    # and the other way: a variable the docs name is one jan reads (jan.testing's included), not a setting that
    # does nothing when a reader exports it
    code = "".join(path.read_text(encoding="utf-8") for path in package.rglob("*.py"))
    documented = set(re.findall(r"\b(?:JAN_[A-Z0-9_]*[A-Z0-9]|HF_TOKEN|HF_ENDPOINT|NO_COLOR)\b", docs))
    assert len(documented) >= 8, documented
    assert not {n for n in documented if not re.search(
        rf"""(?:environ\.get\(|environ\[|getenv\(|envvar=)\s*["']{n}["']""", code)}


def test_the_readmes_benchmark_commands_take_the_flags_they_are_shown_with():
    """Each `python benchmarks/X.py ...` the README (and benchmarks/README.md) shows answers `--help` (exit 0, no traceback) listing every flag
    it is shown with. `python benchmarks/gpu_check.py` took its first argument for the models folder and defaulted
    to benchmarks/, which holds none: as written, and with `--help`, a ModelFileError traceback."""
    import shlex
    import subprocess
    import sys

    shown = re.findall(r"`python (benchmarks/[^`]+\.py[^`]*)`", README.read_text(encoding="utf-8"))
    shown += [line.split("#")[0] for line in re.findall(r"^python (benchmarks/\S+\.py.*)$", (
        README.parent / "benchmarks" / "README.md").read_text(encoding="utf-8"), flags=re.M)]
    commands: dict[str, set[str]] = {}
    for command in shown:
        script, *args = shlex.split(command.replace("[", "").replace("]", ""))
        commands.setdefault(script, set()).update(a.split("=")[0] for a in args if a.startswith("--"))
    assert "benchmarks/gpu_check.py" in commands and len(commands) > 5, commands
    running = {script: subprocess.Popen([sys.executable, script, "--help"], cwd=README.parent, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for script in commands}
    wrong = {}
    for script, process in running.items():
        out, err = process.communicate(timeout=300)
        missing = sorted(flag for flag in commands[script] if flag not in out)
        if process.returncode != 0 or missing or "Traceback" in err:
            wrong[script] = (process.returncode, missing, err.strip().splitlines()[-1:] if err.strip() else "")
    assert not wrong, wrong


def _jan_command_lines() -> list[tuple[str, str]]:
    """(doc, command line) for every `jan ...` the README and docs/ show: the lines of their shell blocks and
    their inline code spans (a `jan ... | head` cut at the pipe, a comment at its #)."""
    found = []
    for doc in (README, *sorted((README.parent / "docs").glob("*.md"))):
        text = doc.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
            found += [(doc.name, line.split(" #", 1)[0].strip()) for line in block.splitlines()
                      if line.startswith("jan ")]
        prose = re.sub(r"```.*?```", "", text, flags=re.S).replace("``", "")
        found += [(doc.name, " ".join(span.split())) for span in prose.split("`")[1::2] if span.startswith("jan ")]
    found += _help_examples()
    return [(doc, re.split(r"\s[|<>]", line, maxsplit=1)[0]) for doc, line in found]


def _help_examples() -> list[tuple[str, str]]:
    """(`jan ... --help`, example) for each example line of a command's own help (an indented `jan ...`, or one
    after a pipe: ``echo ... | jan run ...``)."""
    import click

    from jan.cli import main

    ctx, found = click.Context(main, info_name="jan"), []

    def walk(command, path):
        text = command.get_help(click.Context(command, info_name=" ".join(["jan", *path])))
        found.extend((f"`{' '.join(['jan', *path, '--help'])}`", line)
                     for line in re.findall(r"^ {4,}(?:.*\| )?(jan [a-z].*)$", text, flags=re.M))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])

    walk(main, [])
    return found


def test_every_jan_command_line_in_the_docs_names_real_commands_and_options():
    """Each `jan ...` a reader copies from the README, docs/ or a command's --help names commands and options the
    real parser has (click's own, not a copy of their names): a subcommand or a flag renamed or spelled apart in the
    docs fails here. Placeholders (`MODEL`, `ID`, `N`) and a missing argument are not the docs' faults: only "No such command"
    and "No such option" are."""
    import shlex

    import click

    from jan.cli import COMMANDS, main

    ctx = click.Context(main, info_name="jan")
    lines = _jan_command_lines()
    wrong, checked = [], 0
    for doc, line in lines:
        words = shlex.split(line.replace("...", ""))[1:]
        if not words or not (words[0] in COMMANDS or words[0].startswith("-")):
            continue  # prose that starts with the word jan
        paths = [([], words)]
        while any(isinstance(_command(ctx, main, p), click.Group) and rest and not rest[0].startswith("-")
                  for p, rest in paths):
            grown = []
            for path, rest in paths:
                group = _command(ctx, main, path)
                if not isinstance(group, click.Group) or not rest or rest[0].startswith("-"):
                    grown.append((path, rest))
                    continue
                for name in rest[0].split("/"):  # (`jan files show/delete/download`: each of them)
                    if group.get_command(ctx, name) is None:
                        wrong.append(f"{doc}: `{line}`: no command {' '.join(['jan', *path, name])!r}")
                    else:
                        grown.append(([*path, name], rest[1:]))
            paths = grown
        for path, rest in paths:
            command = _command(ctx, main, path)
            if isinstance(command, click.Group):
                continue
            checked += 1
            try:
                command.make_context(" ".join(["jan", *path]), list(rest))
            except click.NoSuchOption as exc:
                wrong.append(f"{doc}: `{line}`: {exc.format_message()}")
            except (click.exceptions.Exit, click.UsageError, click.ClickException):
                pass  # a placeholder's value, an argument left out: the line's own business
    assert checked > 60, (checked, lines)
    assert not wrong, "\n".join(wrong)


def _command(ctx, group, path):
    for name in path:
        group = group.get_command(ctx, name)
    return group


def _docs() -> list[Path]:
    return [README, *sorted((README.parent / "docs").glob("*.md"))]


#: Paths the docs name that are no route, each for its reason: what a client gets wrong and is told so (a base URL
#: without `/v1` or with one too many), OpenAI's and Anthropic's APIs jan does not serve (a 404 saying so), `jan chat`'s
#: and the thinking switches' slash words, the docs' example extension's own route, and a route named by its
#: method that is not served (llama-server's `POST /props`).
NOT_ROUTES = {("/threads", None), ("/responses/{id}", "GET"), ("/v1/api/chat", None), ("/v1/v1/messages", None),
              ("/v1", None), ("/v1/complete", None), ("/v1/skills", None), ("/v1/moderations", None),
              ("/help", None), ("/command", None), ("/think", None), ("/no_think", None), ("/nothink", None),
              ("/v1/hello", None), ("/props", "POST"),
              # `/v1/audio/transcriptions` and `/translations`: the second is the first's sibling, not a path
              ("/translations", None)}


def _documented_routes() -> set[tuple[str, str | None, str]]:
    """(doc, method or None, path) for every HTTP path the README and docs/ name: a `/v1/...` or `/api/...` anywhere,
    and a code span that is a path alone (`/completion`, `GET /slots`, `/lora-adapters?model=...`)."""
    method = r"(?:\b(GET|POST|PUT|PATCH|DELETE|HEAD)\s+)?"
    found = set()
    for doc in _docs():
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(method + r"`?((?:/v1|/api)/[A-Za-z0-9_{}./:-]*[A-Za-z0-9_}])", text):
            found.add((doc.name, m.group(1), m.group(2)))
        for m in re.finditer(r"`" + method + r"(/[a-z][A-Za-z0-9_{}/-]*)(?:\?[^`]*)?`", text):
            found.add((doc.name, m.group(1), m.group(2)))
    return found


async def test_every_endpoint_the_docs_name_is_routed(tmp_path):
    """Each path a reader copies from the README or docs/ is one the server routes, with the method the docs give
    it (any method where they give none): `POST`/`PATCH /v1/models` in docs/extensions.md named a PATCH that only
    `/v1/models/{id}` takes (a 405 as written). The router is the app's own, every lazily imported route included."""
    from aiohttp.test_utils import make_mocked_request

    from jan.server.app import create_app
    from jan.server.config import ServerConfig
    from jan.server.keys import MANAGER

    app = await create_app(ServerConfig(data_folder=str(tmp_path / "data"), enable_extensions=False))
    try:
        named, wrong = _documented_routes(), []
        assert len(named) > 150, len(named)
        for doc, method, path in sorted(named, key=str):
            if (path, method) in NOT_ROUTES:
                continue
            concrete = re.sub(r"\{[^}]*\}", "x1", path)
            for tried in [method] if method else ["GET", "POST", "PUT", "PATCH", "DELETE"]:
                refused = getattr(await app.router.resolve(make_mocked_request(tried, concrete, app=app)),
                                  "http_exception", None)
                if refused is None or (method is None and refused.status == 405):
                    break
            else:
                wrong.append(f"{doc}: {method or ''} {path}: {refused.status}")
        assert not wrong, "\n".join(wrong)
    finally:
        await app[MANAGER].stop()


def test_every_jan_name_the_docs_give_is_importable():
    """Each dotted `jan.x.y` the README and docs/ name (a module, a class, a function, a constant a reader is told
    to use or read) imports and has that attribute: a name moved or renamed in the code fails here."""
    import importlib

    def resolve(name: str) -> bool:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                if not hasattr(obj, attr):
                    try:
                        obj = importlib.import_module(f"{obj.__name__}.{attr}")
                        continue
                    except (ImportError, AttributeError):
                        return False
                obj = getattr(obj, attr)
            return True
        return False

    names = {(doc.name, name) for doc in [*_docs(), README.parent / "python" / "jan" / "core" / "README.md"]
             for name in re.findall(r"\bjan(?:\.[A-Za-z_]\w*)+", doc.read_text(encoding="utf-8"))
             if not re.fullmatch(r"jan\.(db|json|log|md)", name)}  # file names (`sqlite3 jan.db`)
    assert len(names) > 60, names
    assert not sorted(n for n in names if not resolve(n[1]))


def test_each_default_a_commands_help_states_is_the_codes():
    """`jan serve/run/chat --help` write several defaults into their help text (the options themselves default to
    None: "not given", so that a model.json's settings win), where click cannot check them: each must be the value
    of the one table the code applies — :data:`jan.services.types.LOAD_DEFAULTS` for load options, the engine's
    request defaults (:data:`jan.engine.params.DEFAULTS`) for speculative decoding, the prompt cache's size — and
    the README's words for the same default agree."""
    import click

    from jan.cli import main
    from jan.engine.fit import PROMPT_CACHE_MAX_MIB
    from jan.engine.params import DEFAULTS
    from jan.services.types import LOAD_DEFAULTS

    code = {"n_parallel": LOAD_DEFAULTS.n_parallel, "n_gpu_layers": LOAD_DEFAULTS.n_gpu_layers,
            "max_queue": LOAD_DEFAULTS.max_queue, "cache_type_k": LOAD_DEFAULTS.cache_type_k,
            "cache_type_v": LOAD_DEFAULTS.cache_type_v, "adaptive_threads": LOAD_DEFAULTS.adaptive_threads,
            "draft_p_min": DEFAULTS["draft_p_min"], "draft_max": DEFAULTS["draft_max"],
            "draft_min": DEFAULTS["draft_min"], "ngram": DEFAULTS["ngram"], "cache_ram_mib": PROMPT_CACHE_MAX_MIB}
    ctx, wrong, checked = click.Context(main, info_name="jan"), [], 0
    for name in ("serve", "run", "chat"):
        for option in main.get_command(ctx, name).params:
            stated = re.search(r"\[default: ([^\]]*)\]", getattr(option, "help", None) or "")
            if option.name not in code or stated is None:
                continue
            checked += 1
            if not re.search(rf"(?<![\w.]){re.escape(str(code[option.name]))}(?![\w.])", stated.group(1)):
                wrong.append(f"jan {name} {option.opts[0]}: help says {stated.group(1)!r}, "
                             f"the code's default is {code[option.name]!r}")
    assert checked >= 25, checked
    assert not wrong, "\n".join(wrong)
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert f"`jan serve` gives each model {LOAD_DEFAULTS.n_parallel}" in text
    assert f"`n_gpu_layers`: `\"{LOAD_DEFAULTS.n_gpu_layers}\"` by default" in text
    assert f"default {PROMPT_CACHE_MAX_MIB}, as llama-server's" in text
    # docs/tools.md's tool policy defaults are the tool loop's
    from jan.services.tool_loop import DEFAULT_MAX_STEPS, DEFAULT_TOOL_TIMEOUT

    tools = " ".join((README.parent / "docs" / "tools.md").read_text(encoding="utf-8").split())
    assert f"`max_steps` (model turns per run, default {DEFAULT_MAX_STEPS};" in tools
    assert f"`timeout` (seconds per call, default {DEFAULT_TOOL_TIMEOUT:g})" in tools
    # and so are its safety bounds: the output cut, the image drop, the least a fit leaves of an output, the wait
    # for a server a run names
    from jan.core.tools import DEFAULT_MAX_OUTPUT_CHARS, MAX_IMAGE_BYTES
    from jan.extensions.mcp.extension import LIST_WAIT
    from jan.services.fit import MIN_TOOL_OUTPUT

    assert f"cut to {DEFAULT_MAX_OUTPUT_CHARS:,} characters".replace(",", " ") in tools
    assert f"images over {MAX_IMAGE_BYTES >> 20} MiB are dropped" in tools
    assert f"(at least {MIN_TOOL_OUTPUT} characters stay before turns are dropped)" in tools
    assert f"each at most {LIST_WAIT:g} seconds after it began starting" in tools


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_docs_resolves():
    """Each relative link of the project's Markdown (README, docs/, the core, example and benchmark READMEs) leads
    to a file or folder of the repository, and its `#anchor` to a heading of that file, as GitHub names them."""
    import subprocess

    root = README.parent
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=root, capture_output=True, text=True).stdout.split()
    pages = [root / name for name in listed] or [README, *(root / "docs").glob("*.md")]
    wrong, checked = [], 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https://, mailto:
            checked += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                wrong.append(f"{page.relative_to(root)}: {target}: no such file")
            elif anchor and dest.is_file():
                anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(encoding="utf-8"), flags=re.M)}
                if anchor not in anchors:
                    wrong.append(f"{page.relative_to(root)}: {target}: no heading with that anchor")
    assert checked >= 8, checked
    assert not wrong, "\n".join(wrong)


def test_every_metric_the_docs_name_is_exported(tmp_path, stories_path):
    """Each Prometheus series the README and docs/ tell a reader to watch (`jan_...`, llama-server's `llamacpp:...`)
    is one `/metrics` exports once a model is loaded and has answered: a metric renamed or dropped fails here. The
    docs' example extension's own (`jan_hello`) is its own, and `jan_version` a field of /v1/system."""
    import httpx

    named = {name for doc in _docs() for name in re.findall(r"\b(?:jan_|llamacpp:)[a-z_]*[a-z]\b",
                                                           doc.read_text(encoding="utf-8"))}
    named -= {"jan_hello", "jan_version"}
    assert len(named) > 12, named
    srv = start_server(tmp_path, [stories_path])
    try:
        answer = httpx.post(f"{srv.base_url}/v1/completions", timeout=60,
                            json={"model": "stories260K", "prompt": "Once", "max_tokens": 2})
        assert answer.status_code == 200, answer.text
        exported = {line.split("{")[0].split()[0] for line in httpx.get(f"{srv.base_url}/metrics", timeout=60).text
                    .splitlines() if line and not line.startswith("#")}
    finally:
        srv.stop()
    assert not sorted(named - exported)


def test_every_test_the_docs_cite_exists():
    """The docs prove what they say by naming tests (`tests/test_x.py::test_y`, a bare `test_y`): each is a test
    function of that file (of tests/ for a bare name), so a renamed or removed test does not leave the docs citing
    nothing. (`test_time` is a `jan bench` result key, not a test.)"""
    pages = [*_docs(), README.parent / "python" / "jan" / "core" / "README.md"]
    text = "".join(page.read_text(encoding="utf-8") for page in pages)
    tests = README.parent / "tests"
    defined = {path.name: set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(encoding="utf-8"), flags=re.M))
               for path in tests.glob("test_*.py")}
    cited = re.findall(r"tests/(test_\w+\.py)::(test_\w+)", text)
    bare = set(re.findall(r"`(test_\w+)`", text)) - {"test_time"}
    assert len(cited) > 10 and bare, (cited, bare)
    assert not [f"{file}::{name}" for file, name in cited if name not in defined.get(file, ())]
    assert not sorted(name for name in bare if not any(name in names for names in defined.values()))
