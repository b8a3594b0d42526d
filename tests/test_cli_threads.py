"""`jan threads` (list, show, export, rm) and `jan bench` (md, csv, json)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from jan.store import DataFolder
from test_cli_helpers import fails, jan, ok


@pytest.fixture
def saved(data):
    store = DataFolder(data)
    older = store.threads.create("Older chat", messages=[{"role": "user", "content": "First?"}])
    thread = store.threads.create(
        "Pirates", assistants=[{"assistant_id": "jan", "model": {"id": "stories"}, "instructions": "Be brief."}],
        messages=[{"role": "user", "content": "Tell me about pirates"},
                  {"role": "assistant", "content": "Pirates sail the *seas*.\nThey say arr."}])
    store.messages.create(thread["id"], "assistant", "half an ans", status="stopped")
    return older, thread


def test_threads_list(env, saved):
    older, thread = saved
    lines = ok(jan("threads", "list", env=env)).stdout.splitlines()
    assert lines[0].split() == ["ID", "TITLE", "MODEL", "UPDATED"]
    assert [line.split()[0] for line in lines[1:]] == [thread["id"], older["id"]]  # newest first
    assert "Pirates" in lines[1] and "stories" in lines[1]
    listed = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)
    assert [t["title"] for t in listed] == ["Pirates", "Older chat"]
    newest = json.loads(ok(jan("threads", "list", "-n", "1", "--json", env=env)).stdout)
    assert [t["id"] for t in newest] == [thread["id"]]


@pytest.mark.parametrize("where", ["local", "server"])
def test_threads_list_and_show_tell_the_model_a_thread_s_runs_use(env, data, where):
    """A thread whose assistant entry names no model had an empty MODEL column (and "thread - - date" in show, no
    model in an export): it shows the model its runs would use — its assistant's, else "(default)" (the server's
    default model)."""
    from api_helpers import running
    from test_cli_helpers import cli_env

    store = DataFolder(data)
    store.assistants.create("Writer", assistant_id="writer", model="stories")
    own = store.threads.create("own", assistants=[{"assistant_id": "writer", "model": {"id": "mine"}}])
    by_assistant = store.threads.create("by assistant", assistants=[{"assistant_id": "writer"}])
    by_default = store.threads.create("by default", assistants=[{"assistant_id": "jan"}])
    bare = store.threads.create("bare")
    want = {own["id"]: "mine", by_assistant["id"]: "stories", by_default["id"]: "(default)", bare["id"]: "(default)"}

    def check(environment) -> None:
        lines = ok(jan("threads", "list", env=environment)).stdout.splitlines()[1:]
        assert {line.split()[0]: line.split()[-3] for line in lines} == want, lines
        for thread_id, model in want.items():
            shown = ok(jan("threads", "show", thread_id, env=environment)).stdout.splitlines()[1]
            assert shown.startswith(f"{thread_id} - {model} - "), shown
            exported = ok(jan("threads", "export", thread_id, env=environment)).stdout.splitlines()[2]
            assert (f"model `{model}`" if model != "(default)" else "model (default)") in exported, exported

    if where == "local":
        check(env)
    else:
        with running(data) as srv:
            check(cli_env(data, local=False, JAN_API_URL=srv.base_url))


def test_threads_list_keeps_one_row_per_line(env, data):
    """A title a client wrote (newlines, tabs, any length) stays in its row: one line per thread, columns
    aligned; --json has it whole."""
    store = DataFolder(data)
    long_title = "Very long " * 1000
    first = store.threads.create("line one\nline two\ttabbed\r")
    second = store.threads.create(long_title)
    lines = ok(jan("threads", "list", env=env)).stdout.splitlines()
    assert len(lines) == 3 and [line.split()[0] for line in lines[1:]] == [second["id"], first["id"]]
    assert "line one line two tabbed" in lines[2]
    assert max(len(line) for line in lines) < 200 and "…" in lines[1]
    listed = json.loads(ok(jan("threads", "list", "--json", env=env)).stdout)
    assert [t["title"] for t in listed] == [long_title, "line one\nline two\ttabbed\r"]


def test_threads_export_markdown_and_json(env, saved, tmp_path):
    _, thread = saved
    markdown = ok(jan("threads", "export", thread["id"], env=env)).stdout
    assert markdown.startswith("# Pirates\n")
    assert "## System\n\nBe brief.\n" in markdown
    assert "## User\n\nTell me about pirates\n" in markdown
    assert "## Assistant\n\nPirates sail the *seas*.\nThey say arr.\n" in markdown
    assert "## Assistant (incomplete: run_cancelled)\n\nhalf an ans\n" in markdown  # as a server tells it
    assert markdown.index("## User") < markdown.index("## Assistant\n")

    exported = json.loads(ok(jan("threads", "export", thread["id"], "--format", "json", env=env)).stdout)
    assert exported["thread"]["id"] == thread["id"] and exported["thread"]["title"] == "Pirates"
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant", "assistant"]
    assert exported["messages"][1]["content"][0]["text"]["value"] == "Pirates sail the *seas*.\nThey say arr."

    target = tmp_path / "out.md"
    result = ok(jan("threads", "export", thread["id"], "-f", "markdown", "-o", target, env=env))
    assert result.stdout == "" and target.read_text() == markdown
    # '-' is stdout, as for `jan files download -o -` (before: a file named '-' in the current folder)
    dash = ok(jan("threads", "export", thread["id"], "-o", "-", env=env, cwd=tmp_path))
    assert dash.stdout == markdown and not (tmp_path / "-").exists()
    shown = ok(jan("threads", "show", thread["id"], env=env)).stdout
    assert "Pirates" in shown and "Tell me about pirates" in shown and "Assistant (incomplete: run_cancelled)" in shown


def test_show_and_export_tell_thinking_tool_calls_and_images_apart(env, data):
    # a run's thread: the thinking was glued to the start of the answer ("I should check.It is sunny."), a turn that
    # only called a tool showed as an empty answer with the call nowhere, and an image as nothing
    import base64, io
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    store = DataFolder(data)
    thread = store.threads.create("Weather")
    store.messages.create(thread["id"], "user", [
        {"type": "text", "text": {"value": "Weather here?", "annotations": []}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()}}])
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    store.messages.create(thread["id"], "assistant", [
        {"type": "reasoning", "text": {"value": "I should check.", "annotations": []}}], metadata={"tool_calls": [call]})
    store.messages.create(thread["id"], "tool", "sunny", metadata={"tool_call_id": "call_1", "name": "get_weather"})
    store.messages.create(thread["id"], "assistant", [
        {"type": "reasoning", "text": {"value": "Now I know.\nSay it.", "annotations": []}},
        {"type": "text", "text": {"value": "It is sunny.", "annotations": []}}])
    markdown = ok(jan("threads", "export", thread["id"], env=env)).stdout
    assert "## User\n\nWeather here?\n[image]\n" in markdown, markdown
    assert "## Assistant\n\n> I should check.\n\nCalls `get_weather({\"city\": \"Oslo\"})`\n" in markdown, markdown
    assert "## Tool (get_weather)\n\nsunny\n" in markdown, markdown
    assert "## Assistant\n\n> Now I know.\n> Say it.\n\nIt is sunny.\n" in markdown, markdown
    shown = ok(jan("threads", "show", thread["id"], env=env)).stdout
    assert "I should check.\n-> get_weather({\"city\": \"Oslo\"})" in shown and "Tool (get_weather)" in shown, shown
    assert "Say it.\nIt is sunny." in shown and "Say it.It is sunny." not in shown, shown
    # a stored response keeps its thinking as the part's text itself: read as a run's is
    from jan.services.tool_loop import reasoning_of
    assert reasoning_of({"content": [{"type": "reasoning", "text": "Hm."}, {"type": "text", "text": "A"}]}) == "Hm."


def test_show_and_export_tell_a_linked_image_and_an_attached_document(env, data):
    """An image link the store kept as given was told as a stored image ("[image]", its URL nowhere: the one thing a
    run fetches), and a document attached to a message not at all: "[image: URL]" and "[file: NAME]"."""
    store = DataFolder(data)
    thread = store.threads.create("Linked")
    store.messages.create(thread["id"], "user", [
        {"type": "text", "text": {"value": "Compare", "annotations": []}},
        {"type": "image_url", "image_url": {"url": "https://images.example.com/cat.png"}}],
        attachments=[{"file_id": "file-abc", "tools": [{"type": "file_search"}],
                      "document": {"text": "Some notes.", "filename": "notes.txt"}}])
    markdown = ok(jan("threads", "export", thread["id"], env=env)).stdout
    assert "## User\n\nCompare\n[image: https://images.example.com/cat.png]\n[file: notes.txt]\n" in markdown, markdown
    shown = ok(jan("threads", "show", thread["id"], env=env)).stdout
    assert "[image: https://images.example.com/cat.png]\n[file: notes.txt]" in shown, shown


def test_show_and_export_tell_each_status_as_a_server_does(env, data):
    """A reply cut at -n showed as whole from the data folder ("Assistant") and "(incomplete: max_tokens)" from a
    server; a stopped one "(stopped)" and "(incomplete: run_cancelled)", a failed one "(error)" and "(incomplete:
    run_failed)". The folder's statuses are now read as the server's messages tell them, so both print the same."""
    from api_helpers import running
    from test_cli_helpers import cli_env

    store = DataFolder(data)
    thread = store.threads.create("Statuses", messages=[{"role": "user", "content": "Go"}])
    for status, metadata in (("ready", {"finish_reason": "length"}), ("ready", {"finish_reason": "stop"}),
                             ("stopped", {"finish_reason": "cancelled"}), ("error", {}),
                             ("stopped", {"stop_reason": "max_completion_tokens"})):
        store.messages.create(thread["id"], "assistant", f"{status} {metadata}", status=status, metadata=metadata)
    local = {args: ok(jan(*args, thread["id"], env=env)).stdout for args in (("threads", "show"), ("threads", "export"))}
    headings = [line for line in local[("threads", "export")].splitlines() if line.startswith("## Assistant")]
    assert headings == ["## Assistant (incomplete: max_tokens)", "## Assistant", "## Assistant (incomplete: run_cancelled)",
                        "## Assistant (incomplete: run_failed)", "## Assistant (incomplete: max_tokens)"], headings
    with running(data) as srv:
        served = cli_env(data, local=False, JAN_API_URL=srv.base_url)
        for args, text in local.items():
            assert ok(jan(*args, thread["id"], env=served)).stdout == text, args


def test_threads_list_reports_a_damaged_thread(env, data, saved):
    older, thread = saved
    (data / "threads" / older["id"] / "thread.json").write_text("{not json")
    result = ok(jan("threads", "list", "--json", env=env))
    assert [t["id"] for t in json.loads(result.stdout)] == [thread["id"]]
    assert "damaged file" in result.stderr and older["id"] in result.stderr


def test_a_damaged_thread_is_told_as_damaged_not_as_missing(env, data, saved, tmp_path):
    """`jan threads show/export` and `jan chat --thread` of a thread whose thread.json is damaged said "not found
    (see `jan threads list`)", locally and from a server (whose 404 says "is damaged: repair or remove ..."), and
    `jan threads list` with only damaged threads said "no threads yet": the thread is there, left to mend."""
    from api_helpers import running
    from test_cli_helpers import cli_env

    older, thread = saved
    (data / "threads" / older["id"] / "thread.json").write_text("{not json")
    (data / "threads" / thread["id"] / "thread.json").write_text("{not json")
    expected = f"repair or remove threads/{older['id']}/thread.json"
    with running(data) as srv:
        for where in (env, cli_env(data, local=False, JAN_API_URL=srv.base_url)):
            for args in (["threads", "show", older["id"]], ["threads", "export", older["id"]],
                         ["chat", "--thread", older["id"]]):
                message = fails(jan(*args, env=where), "is damaged", expected)
                assert "not found" not in message, (args, message)
            listed = ok(jan("threads", "list", env=where))
            assert "no threads yet" not in listed.stderr and "2 damaged" in listed.stderr, listed.stderr
    assert (data / "threads" / older["id"] / "thread.json").read_text() == "{not json"  # left as it was


def test_threads_show_and_export_tell_a_damaged_message_line(env, data, saved):
    """A line of messages.jsonl that is no JSON is skipped (and kept in the file); `jan threads show/export` showed
    the thread without that message and said nothing of it, locally and from a server (whose message list did not
    tell it). Now both warn of it as `jan threads list` warns of a damaged thread.json; GET .../messages lists it in
    ``problems``."""
    import urllib.request

    from api_helpers import running
    from test_cli_helpers import cli_env

    _, thread = saved
    lines = data / "threads" / thread["id"] / "messages.jsonl"
    whole = lines.read_text().splitlines(keepends=True)
    lines.write_text(whole[0] + '{"id": "msg_torn", "role": "us\n' + "".join(whole[1:]))
    before = lines.read_text()
    expected = f"damaged file threads/{thread['id']}/messages.jsonl (line 2 is not a JSON object"
    with running(data) as srv:
        for where in (env, cli_env(data, local=False, JAN_API_URL=srv.base_url)):
            for args in (["threads", "show", thread["id"]], ["threads", "export", thread["id"]]):
                result = ok(jan(*args, env=where))
                assert expected in result.stderr, (args, result.stderr)
                assert "Pirates sail" in result.stdout  # the other messages are shown
        with urllib.request.urlopen(f"{srv.base_url}/v1/threads/{thread['id']}/messages") as response:
            listed = json.load(response)
        assert [p["path"] for p in listed["problems"]] == [f"threads/{thread['id']}/messages.jsonl"], listed
    assert lines.read_text() == before  # the damaged line is kept, for the user to mend


def test_threads_errors(env, saved, tmp_path):
    fails(jan("threads", "show", "thread_nope", env=env), "thread_nope", "not found")
    fails(jan("threads", "export", "../../etc", env=env), "not found")
    _, thread = saved
    fails(jan("threads", "export", thread["id"], "-o", tmp_path / "no" / "dir" / "x.md", env=env), "cannot write")


def test_threads_rm_deletes_locally_and_through_a_server(env, data, saved):
    """`jan chat` saves every exchange as a thread, and no command removed one (`jan threads rm` was "No such
    command"; models, files and MCP servers each have theirs): now `rm` (also `delete`, `remove`), locally and
    through a server alike, with the same not-found words and "did you mean" as show/export."""
    from api_helpers import running
    from test_cli_helpers import cli_env

    older, thread = saved
    missing = fails(jan("threads", "rm", "thread_nope", env=env), "thread 'thread_nope' not found", "jan threads list")
    assert "did you mean" not in missing
    fails(jan("threads", "rm", thread["id"][:20], env=env), "not found", f"did you mean '{thread['id']}'?")
    fails(jan("threads", "delete", "../../etc", env=env), "not found")
    assert ok(jan("threads", "rm", older["id"], env=env)).stdout == f"removed {older['id']}\n"
    assert not (data / "threads" / older["id"]).exists()
    fails(jan("threads", "show", older["id"], env=env), "not found")
    with running(data) as srv:
        served = cli_env(data, local=False, JAN_API_URL=srv.base_url)
        fails(jan("threads", "remove", older["id"], env=served), f"thread '{older['id']}' not found on the server")
        fails(jan("threads", "rm", thread["id"][:20], env=served), f"did you mean '{thread['id']}'?")
        fails(jan("threads", "rm", "../../etc", env=served), "not found")
        assert ok(jan("threads", "delete", thread["id"], env=served)).stdout == f"removed {thread['id']}\n"
        assert json.loads(ok(jan("threads", "list", "--json", env=served)).stdout) == []
    assert not (data / "threads" / thread["id"]).exists()


def test_threads_rm_of_a_folder_that_is_not_there_makes_none(tmp_path):
    from test_cli_helpers import cli_env

    data = tmp_path / "jan"
    fails(jan("threads", "rm", "thread_x", env=cli_env(data, JAN_DATA_FOLDER=str(data))), "thread_x")
    assert not data.exists()


# --------------------------------------------------------------------------- bench

BENCH = ["-p", "16", "-n", "4", "-r", "2", "-t", "1"]


def test_a_thread_id_cut_short_or_mistyped_names_the_one_it_likely_meant(env, saved):
    """A thread id copied short (a terminal's width) or with a wrong character was a bare "not found"."""
    _, thread = saved
    tid = thread["id"]
    for given in (tid[:20], tid[:-1] + ("A" if tid[-1] != "A" else "B"), tid + "x"):
        for args in (("threads", "show", given), ("threads", "export", given)):
            fails(jan(*args, env=env), f"thread '{given}' not found", f"did you mean '{tid}'?")
    said = fails(jan("threads", "show", "thread_nope", env=env), "not found")
    assert "did you mean" not in said  # none near: none named
    fails(jan("threads", "show", "thread_", env=env), "not found")  # (a bare prefix begins every id: no guess)


def test_bench_markdown(env, stories_path):
    out = ok(jan("bench", stories_path, *BENCH, env=env)).stdout
    lines = out.splitlines()
    assert lines[0] == "| model | size | params | backend | threads | ngl | test | t/s |"
    rows = [line for line in lines[2:] if line.startswith("| stories260K")]
    assert [row.split("|")[7].strip() for row in rows] == ["pp16", "tg4"]
    for row in rows:
        mean, sd = row.split("|")[8].strip().split(" ± ")
        assert float(mean) > 0 and float(sd) >= 0
    build = lines[-1]
    assert build.startswith("build: jan 0.1.0, llama.cpp ") and "backends: CPU" in build


def test_bench_csv_and_json(env, stories_path):
    rows = list(csv.DictReader(io.StringIO(ok(jan("bench", stories_path, *BENCH, "-o", "csv", env=env)).stdout)))
    assert [r["test"] for r in rows] == ["pp16", "tg4"]
    assert all(float(r["avg_ts"]) > 0 and r["build_commit"] and r["backends"] == "CPU" for r in rows)
    assert [len(r["samples_ts"].split()) for r in rows] == [2, 2]

    records = json.loads(ok(jan("bench", stories_path, "-p", "8,16", "-n", "0", "-r", "3", "-t", "1", "-o", "json",
                                env=env)).stdout)
    assert [r["test"] for r in records] == ["pp8", "pp16"]
    for r in records:
        assert r["n_threads"] == 1 and r["repetitions"] == 3 and len(r["samples_ts"]) == 3
        assert r["avg_ts"] == pytest.approx(sum(r["samples_ts"]) / 3)
        assert r["model_n_params"] > 0 and r["model_size"] > 0
        assert r["build_commit"] and r["build_version"] and r["jan_version"] == "0.1.0"


def test_bench_reports_the_threads_its_steps_ran_on(env, stories_path):
    # -t 2 on stories260K: a prompt of 64 tokens is worth both threads, a one-token step of a 0.3 M-parameter
    # model one (cpp/step_threads.h); llama-bench would run both on 2, so the row says what was used
    records = json.loads(ok(jan("bench", stories_path, "-p", "64", "-n", "4", "-r", "1", "-t", "2", "-o", "json",
                                env=env)).stdout)
    assert [(r["test"], r["n_threads"], r["step_threads"]) for r in records] == [("pp64", 2, 2), ("tg4", 2, 1)]
    md = ok(jan("bench", stories_path, "-p", "0", "-n", "4", "-r", "1", "-t", "2", env=env)).stdout
    assert "| 2 (1 used) |" in md
    # the governor is off unless asked for (llama-bench keeps its threads whatever else runs); asked for, it is on
    for setting in ("off", "exact", "always"):
        ok(jan("bench", stories_path, *BENCH, "--adaptive-threads", setting, env=env))
    bad = jan("bench", stories_path, *BENCH, "--adaptive-threads", "sometimes", env=env)
    assert bad.returncode == 2 and "'sometimes' is not one of" in bad.stderr


def test_bench_errors(env, stories_path):
    fails(jan("bench", "nope", env=env), "nope", "not found")
    bad = jan("bench", stories_path, "-p", "0", "-n", "0", env=env)
    assert bad.returncode == 2 and "nothing to measure" in bad.stderr, bad.stderr
    for value, says in (("x", "'x' in 'x' is not a whole number"), ("", "must not be empty"),
                        (",", "item 1 of ',' is empty")):  # (an empty list was "values must be >= 0")
        bad = jan("bench", stories_path, "-p", value, env=env)
        assert bad.returncode == 2 and "--n-prompt" in bad.stderr and says in bad.stderr, (value, bad.stderr)
    bad = jan("bench", stories_path, "-n", "4,-1", env=env)
    assert bad.returncode == 2 and "must be 0 to" in bad.stderr, bad.stderr
    # an -ub above -b is refused (a usage error), as n_ubatch above n_batch is everywhere (README), not quietly
    # lowered ...
    bad = jan("bench", stories_path, "-b", "64", "-ub", "128", *BENCH, env=env)
    assert bad.returncode == 2 and "-ub/--ubatch-size (128) must not exceed -b/--batch-size (64)" in bad.stderr
    # ... while -ub's default (512) still follows a smaller -b, as llama-bench's does
    rows = list(csv.DictReader(io.StringIO(ok(jan("bench", stories_path, "-b", "64", *BENCH, "-o", "csv",
                                                  env=env)).stdout)))
    assert {(r["n_batch"], r["n_ubatch"]) for r in rows} == {("64", "64")}


def test_bench_names_its_own_flags_in_a_thread_count_or_context_it_cannot_use(env, stories_path):
    """-t past 512 failed only at the load, after the model was found, as "n_threads: must be >= -1 and <= 512"; a
    context past memory told "n_ctx: ... use a smaller n_ctx (or fewer slots), or leave it unset": names and ways
    the user never typed. -t is checked as `jan run -t` is; the context is -c's, or the one -p/-n asked for."""
    for value in ("9999", "2,513"):
        bad = jan("bench", stories_path, "-t", value, "-p", "8", "-n", "0", "-r", "1", env=env)
        assert bad.returncode == 2 and "thread counts must be 1 to 512" in bad.stderr, (value, bad.stderr)
    # (a context of 2**31 tokens: over a terabyte of KV cache, even for this tiny model)
    said = fails(jan("bench", stories_path, "-c", "2147483647", "-p", "8", "-n", "0", "-r", "1", env=env),
                 "-c/--ctx 2147483647", "give a smaller -c")
    assert "n_ctx" not in said and "fewer slots" not in said, said
    said = fails(jan("bench", stories_path, "-p", "2000000000", "-n", "0", "-r", "1", env=env),
                 "that -p/-n/-pg/-d need", "give smaller -p/-n/-pg/-d")
    assert "n_ctx" not in said, said


def test_bench_warns_before_measuring_past_the_training_context(env, stories_path):
    # stories260K was trained on 2,048 tokens; -p 100000 would run for minutes: the warning comes first
    result = ok(jan("bench", stories_path, "--ctx", "4096", "-p", "16", "-n", "0", "-r", "1", "-t", "1",
                    "--no-warmup", env=env))
    assert "more than stories260K was trained for (2048)" in result.stderr
    quiet = ok(jan("bench", stories_path, *BENCH, env=env))
    assert "trained for" not in quiet.stderr


def test_bench_of_a_model_only_a_running_server_has_says_where_it_is(tmp_path, stories_path):
    # `jan models list` shows the server's models; `jan bench` loads in this process from its own data folder, so an
    # id only the server has is named as the server's, with what to give instead (not a bare "not found"). A
    # folder given by $JAN_DATA_FOLDER that is not the server's is refused before it is read, naming both
    # (test_cli_data_folder_meant.py); one given by --data-folder is read as asked.
    from api_helpers import running
    from test_cli_helpers import cli_env

    with running(tmp_path / "served", stories_path) as srv:
        env = cli_env(tmp_path / "here", local=False, JAN_API_URL=srv.base_url)
        fails(jan("bench", "stories260K", *BENCH, env=env), str(tmp_path / "served"), str(tmp_path / "here"),
              "--data-folder")
        fails(jan("bench", "stories260K", *BENCH, "--url", srv.base_url, "--data-folder", str(tmp_path / "here"),
                  env=env), "is a model of the jan server at", "--data-folder")
        assert not (tmp_path / "here").exists()


def test_bench_prompt_tests_evaluate_every_token(stories_path):
    """As llama-bench clears the memory before each repetition, each pp repetition evaluates all of its tokens: the
    slot kept the last prompt's BOS otherwise, and ``-p 64`` measured 63 tokens, under the 64-query tile of ggml's
    flash attention (its one-row path, 2.5x slower on stories260K)."""
    import random

    import jan as jan_lib
    from jan.cli.bench import run_pp

    rng = random.Random(0)
    with jan_lib.Model(stories_path, n_ctx=256, n_parallel=1, n_threads=1) as model:
        for _ in range(3):
            before = model.metrics()
            run_pp(model, 64, rng)
            after = model.metrics()
            assert after["cached_tokens_total"] == before["cached_tokens_total"]  # nothing of it was reused
            assert after["prompt_tokens_total"] - before["prompt_tokens_total"] == 64 + 1  # (+1: the untimed reset)


def test_bench_measures_the_kv_cache_the_model_is_served_with(env, data, stories_path):
    """`jan bench MODEL_ID` loads the model as its model.json keeps it (cache_type_k/v, flash_attn) unless -ctk,
    -ctv or -fa say otherwise, and every output says which: it measured an f16 cache whatever the model kept, and
    nothing told. A value the model cannot use is named as it was given (the flag, or the model.json's setting)."""
    DataFolder(data).models.import_gguf(stories_path, model_id="f32kv", mode="reference",
                                        settings={"cache_type_k": "f32", "flash_attn": False})
    fields = ("type_k", "type_v", "flash_attn")
    rows = list(csv.DictReader(io.StringIO(ok(jan("bench", "f32kv", *BENCH, "-o", "csv", env=env)).stdout)))
    # (flash_attn as llama-bench's json and csv write it: -1 auto, 0 off, 1 on)
    assert {tuple(r[f] for f in fields) for r in rows} == {("f32", "f16", "0")}
    table = ok(jan("bench", "f32kv", *BENCH, env=env)).stdout
    assert "| type_k |" in table and "| f32 |" in table and "| off |" in table, table
    rows = json.loads(ok(jan("bench", "f32kv", *BENCH, "-ctk", "BF16", "-fa", "on", "-o", "json", env=env)).stdout)
    assert {tuple(r[f] for f in fields) for r in rows} == {("bf16", "f16", 1)}
    plain = ok(jan("bench", stories_path, *BENCH, "-o", "csv", env=env)).stdout  # a path: llama-bench's defaults
    assert {tuple(r[f] for f in fields) for r in csv.DictReader(io.StringIO(plain))} == {("f16", "f16", "-1")}
    assert "type_k" not in ok(jan("bench", stories_path, *BENCH, env=env)).stdout  # (md: only what differs)
    fails(jan("bench", stories_path, *BENCH, "-ctk", "q8_0", env=env), "-ctk/--cache-type-k: q8_0")
    DataFolder(data).models.import_gguf(stories_path, model_id="q8kv", mode="reference",
                                        settings={"cache_type_v": "q8_0", "flash_attn": False})
    fails(jan("bench", "q8kv", *BENCH, env=env), "settings.cache_type_v:")
    # a value no model can use, edited into the model.json by hand: named as the file's field too (was told as the
    # engine's "cache_type_k: ...", which is no field of the file nor flag of the command)
    for setting, value in (("cache_type_k", "bogus"), ("flash_attn", "maybe")):
        DataFolder(data).models.import_gguf(stories_path, model_id=f"hand-{setting}", mode="reference")
        stored = data / "models" / f"hand-{setting}" / "model.json"
        doc = json.loads(stored.read_text())
        doc["settings"][setting] = value
        stored.write_text(json.dumps(doc))
        fails(jan("bench", f"hand-{setting}", *BENCH, env=env), f"settings.{setting}: expected")


# ------------------------------------------------- bench as llama-bench: its lists, its tests, its formats

# the keys a script reading llama-bench's json (or csv) reads, and how llama-bench writes them
LLAMA_BENCH_KEYS = {"build_commit": str, "cpu_info": str, "gpu_info": str, "backends": str, "model_filename": str,
                    "model_type": str, "model_size": int, "model_n_params": int, "n_batch": int, "n_ubatch": int,
                    "n_threads": int, "type_k": str, "type_v": str, "n_gpu_layers": int, "flash_attn": int,
                    "n_prompt": int, "n_gen": int, "n_depth": int, "test_time": str, "avg_ns": int,
                    "stddev_ns": int, "avg_ts": float, "stddev_ts": float, "samples_ns": list, "samples_ts": list}


def test_bench_list_options_take_llama_bench_ranges_and_repeats():
    """`-t 1-4` and `-p 16-64*2` were refused as "not a whole number"; `-p 16 -p 32` ran pp32 alone, the first
    dropped without a word. Every list option takes llama-bench's lists, ranges and repeated flags."""
    import click

    from jan.cli.bench import bench

    params = {p.name: p for p in bench.params}

    def parse(name, *values):
        return params[name].callback(None, params[name], values)

    assert parse("n_prompt", "16", "32") == [16, 32]
    assert parse("n_prompt", "1-8+2,64", "16-64*2") == [1, 3, 5, 7, 64, 16, 32, 64]
    assert parse("n_prompt", "4-4") == [4] and parse("n_depth", "0-256+128") == [0, 128, 256]
    assert parse("threads", "1-2") == [1, 2] and parse("threads") and parse("n_gpu_layers", "-1,0") == [-1, 0]
    assert parse("n_batch", "64", "128-256*2") == [64, 128, 256]
    assert parse("flash_attn", "on,0", "-1") == ["on", "off", "auto"]
    assert parse("n_pg", "16,4", "32,8") == [(16, 4), (32, 8)] and parse("n_pg") == []
    for name, value, says in (("n_prompt", "8-4", "is empty"), ("n_prompt", "1-8+0", "never ends"),
                              ("n_prompt", "1-8*1", "never ends"), ("n_prompt", "0-8*2", "never ends"),
                              ("n_prompt", "1-2000000000", "more than 1024 values"), ("n_prompt", "1,,2", "empty"),
                              ("n_prompt", "1-x", "not a whole number"), ("threads", "0-2", "must be 1 to 512"),
                              ("threads", "500-520", "got 513"), ("n_batch", "0", "must be 1 to"),
                              ("n_gpu_layers", "-2", "must be -1 to"), ("n_pg", "8", "expected PP,TG"),
                              ("n_pg", "8,4,2", "expected PP,TG"), ("n_pg", "8,0", "must be 1 to"),
                              ("n_pg", "8,,4", "empty"), ("flash_attn", "maybe", "not one of")):
        with pytest.raises(click.BadParameter, match=says):
            parse(name, value)


def test_bench_runs_every_combination_as_llama_bench_does(env, stories_path):
    """-pg (pp+tg timed together) and -d (tokens already in the context) were not there; -b, -ub, -fa, -ctk, -ctv
    and -ngl took one value. Each combination of settings runs every test, in llama-bench's order (at each depth:
    pp, tg, pp+tg); the table shows the settings that differ."""
    records = json.loads(ok(jan("bench", stories_path, "-p", "8", "-p", "16", "-n", "4", "-pg", "8,4", "-d", "0,16",
                                "-b", "32,64", "-r", "2", "-t", "1", "-o", "json", env=env)).stdout)
    shape = [(r["n_batch"], r["test"], r["n_prompt"], r["n_gen"], r["n_depth"]) for r in records]
    tests = [("pp8", 8, 0, 0), ("pp16", 16, 0, 0), ("tg4", 0, 4, 0), ("pp8+tg4", 8, 4, 0),
             ("pp8 @ d16", 8, 0, 16), ("pp16 @ d16", 16, 0, 16), ("tg4 @ d16", 0, 4, 16), ("pp8+tg4 @ d16", 8, 4, 16)]
    assert shape == [(b, *t) for b in (32, 64) for t in tests]
    table = ok(jan("bench", stories_path, "-p", "8", "-n", "0", "-b", "32,64", "-fa", "on,off", "-r", "1",
                   "-t", "1", env=env)).stdout
    assert table.splitlines()[0] == ("| model | size | params | backend | threads | ngl | n_batch | n_ubatch | fa "
                                     "| test | t/s |")
    assert [row.split("|")[7:10] for row in table.splitlines()[2:6]] == [
        [" 32 ", " 32 ", " on "], [" 32 ", " 32 ", " off "], [" 64 ", " 64 ", " on "], [" 64 ", " 64 ", " off "]]


def test_bench_formats_are_llama_bench_s(env, stories_path):
    """json, jsonl, csv and sql carry llama-bench's keys, types and meanings: a tg test had n_prompt 1 (llama-bench's
    is 0: 1 reads as a pp1+tg test), flash_attn "auto" (llama-bench's -1), no n_depth, avg_ns, stddev_ns nor
    samples_ns, a test_time in another form; -o jsonl and -o sql were refused."""
    import sqlite3

    args = [stories_path, "-p", "8", "-n", "4", "-pg", "8,2", "-d", "0,8", "-r", "3", "-t", "1"]
    records = json.loads(ok(jan("bench", *args, "-o", "json", env=env)).stdout)
    for r in records:
        for key, kind in LLAMA_BENCH_KEYS.items():
            assert isinstance(r[key], kind) and not isinstance(r[key], bool), (key, r[key])
        assert r["flash_attn"] == -1 and r["test_time"].endswith("Z")
        assert len(r["samples_ns"]) == len(r["samples_ts"]) == 3 and all(isinstance(s, int) for s in r["samples_ns"])
        assert r["avg_ns"] == pytest.approx(sum(r["samples_ns"]) / 3, abs=1)
        # each sample's rate is its tokens over its time, as llama-bench's
        for ns, ts in zip(r["samples_ns"], r["samples_ts"]):
            assert ts == pytest.approx((r["n_prompt"] + r["n_gen"]) / (ns / 1e9), rel=1e-6)
    assert [(r["n_prompt"], r["n_gen"], r["n_depth"]) for r in records] == [
        (8, 0, 0), (0, 4, 0), (8, 2, 0), (8, 0, 8), (0, 4, 8), (8, 2, 8)]

    lines = ok(jan("bench", *args, "-o", "jsonl", env=env)).stdout.splitlines()
    assert len(lines) == 6 and all(set(json.loads(line)) == set(records[0]) for line in lines)

    rows = list(csv.DictReader(io.StringIO(ok(jan("bench", *args, "-o", "csv", env=env)).stdout)))
    assert set(LLAMA_BENCH_KEYS) <= set(rows[0]) and [r["n_prompt"] for r in rows] == ["8", "0", "8"] * 2
    assert all(len(r["samples_ns"].split()) == 3 for r in rows)

    db = sqlite3.connect(":memory:")
    db.executescript(ok(jan("bench", *args, "-o", "sql", env=env)).stdout)
    got = db.execute("SELECT n_prompt, n_gen, n_depth, flash_attn, typeof(avg_ns), typeof(avg_ts) "
                     "FROM llama_bench").fetchall()
    assert got == [(p, n, d, -1, "integer", "real") for d in (0, 8) for p, n in ((8, 0), (0, 4), (8, 2))]


def test_bench_progress_delay_and_second_output(env, stories_path):
    """--progress, --delay and -oe (llama-bench's) were "No such option" (-oe read as `-o e`)."""
    result = ok(jan("bench", stories_path, "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--progress", "--delay", "0.01",
                    "-oe", "csv", env=env))
    assert result.stdout.startswith("| model |")
    err = result.stderr.splitlines()
    assert [line.split(":")[1].strip() for line in err if line.startswith("jan bench: test")] == \
        ["test 1/2", "test 2/2"]
    rows = list(csv.DictReader(io.StringIO("\n".join(err[err.index(next(e for e in err
                                                                        if e.startswith("build_commit,"))):]))))
    assert [r["test"] for r in rows] == ["pp8", "tg2"]


def test_bench_context_past_llama_cpp_s_is_named_as_the_flags(env, stories_path):
    """-p and -d together past 2**31 tokens were told as the engine's "n_ctx: must be ... <= 2147483647"; both that and
    a -c smaller than the tests need are flags contradicting each other: click's usage error (exit 2, as -ub above -b),
    where they were a runtime `jan: error:` (exit 1) after the models had been looked up (a missing one's error came
    first)."""
    bad = jan("bench", stories_path, "-p", "2000000000", "-d", "2000000000", "-n", "0", "-r", "1", env=env)
    assert bad.returncode == 2 and "give smaller -p/-n/-pg/-d" in bad.stderr, bad.stderr
    assert "n_ctx" not in bad.stderr and "jan: error" not in bad.stderr
    bad = jan("bench", stories_path, "-c", "64", "-d", "128", "-p", "8", "-n", "0", "-r", "1", env=env)
    assert bad.returncode == 2 and "-c/--ctx 64 is too small for these tests (needs at least 137" in bad.stderr, \
        bad.stderr
    # the command line is judged before any model is looked for
    bad = jan("bench", "no-such-model", "-c", "64", "-p", "128", "-n", "0", "-r", "1", env=env)
    assert bad.returncode == 2 and "-c/--ctx 64 is too small" in bad.stderr, bad.stderr
    ok(jan("bench", stories_path, "-c", "137", "-d", "128", "-p", "8", "-n", "0", "-r", "1", "-t", "1", env=env))


def test_bench_refuses_a_quantized_v_cache_with_flash_attention_off_as_a_usage_error(env, stories_path):
    """-ctv q8_0 with -fa off contradict each other whatever the model (llama.cpp reads a quantized V cache with flash
    attention only): a usage error (exit 2) naming both flags, before any model is looked up, in any combination of
    their lists; it was the load's `jan: error:` (exit 1) naming the engine's flash_attn, after the earlier rows."""
    for flags in (["-ctv", "q8_0", "-fa", "off"], ["-ctv", "f16,q4_0", "-fa", "on", "-fa", "0"]):
        bad = jan("bench", "no-such-model", "-p", "8", "-n", "0", "-r", "1", *flags, env=env)
        assert bad.returncode == 2 and "-ctv/--cache-type-v q" in bad.stderr, (flags, bad.stderr)
        assert "with -fa/--flash-attn off: a quantized V cache needs flash attention" in bad.stderr, bad.stderr
    ok(jan("bench", stories_path, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-ctv", "f16", "-fa", "off", env=env))


def test_bench_takes_several_models_and_llama_bench_s_m(env, stories_path):
    """llama-bench's `-m MODEL` (given again for more) was "No such option: -m", and one MODEL was all: every model
    is found before any is measured (a mistyped second one failed after the first one's minutes otherwise)."""
    tiny = str(Path(stories_path).parent / "llama-2-tiny-random.gguf")
    records = json.loads(ok(jan("bench", "-m", stories_path, "-m", tiny, "-p", "8", "-n", "0", "-r", "1", "-t", "1",
                                "-o", "json", env=env)).stdout)
    assert [r["model"] for r in records] == ["stories260K", "llama-2-tiny-random"]
    rows = list(csv.DictReader(io.StringIO(ok(jan("bench", stories_path, tiny, "-p", "8", "-n", "0", "-r", "1",
                                                  "-t", "1", "-o", "csv", env=env)).stdout)))
    assert [r["model"] for r in rows] == ["stories260K", "llama-2-tiny-random"]
    bad = jan("bench", stories_path, "-m", "/nope/x.gguf", "-p", "8", "-n", "0", "-r", "1", "--progress", env=env)
    fails(bad, "no such file: /nope/x.gguf")
    assert bad.stdout == "" and "jan bench: test" not in bad.stderr
    bad = jan("bench", "-p", "8", env=env)
    assert bad.returncode == 2 and "give a MODEL to measure" in bad.stderr


# ------------------------------------------ bench: llama-bench's model, context and threadpool options

# llama-bench's keys for them, their json types and their values when none is given (llama-bench 0.3.36's json)
LLAMA_BENCH_SETTINGS = {"cpu_mask": "0x0", "cpu_strict": False, "poll": 50, "n_gpu_layers": -1, "n_cpu_moe": 0,
                        "split_mode": "layer", "main_gpu": 0, "no_kv_offload": False, "tensor_split": "0.00",
                        "tensor_buft_overrides": "none", "load_mode": "auto", "lazy_mode": "auto",
                        "embeddings": False, "no_op_offload": 0, "no_host": False, "devices": "auto"}


def test_bench_parses_llama_bench_s_model_context_and_thread_options():
    """-sm, -mg, -ts, -ot, -nkvo, -embd, -lm/-mmp, -C, --cpu-strict, --poll were refused as unknown options. Each
    takes llama-bench's values and lists; a value llama-bench's parser refuses, or one ggml cannot use (--poll 101,
    which llama-bench passed on), is a usage error naming the flag."""
    import click

    from jan.cli.bench import bench

    params = {p.name: p for p in bench.params}

    def parse(name, *values):
        return params[name].callback(None, params[name], values)

    assert parse("split_mode", "none,row", "layer") == ["none", "row", "layer"] and parse("split_mode") is None
    assert parse("main_gpu", "0-2") == [0, 1, 2]
    assert parse("tensor_split", "3/1,1;1;2") == [(3.0, 1.0), (1.0, 1.0, 2.0)]
    assert parse("override_tensor", r"blk\.0\..*=CPU;output=CPU", "x=CUDA0") == [
        ((r"blk\.0\..*", "CPU"), ("output", "CPU")), (("x", "CUDA0"),)]
    assert parse("no_kv_offload", "0,1") == [False, True] and parse("embeddings", "1") == [True]
    assert parse("cpu_strict", "1", "0") == [True, False] and parse("mmap", "0") == [False]
    assert parse("load_mode", "mmap+mlock,dio", "AUTO") == ["mmap+mlock", "dio", "auto"]
    assert parse("cpu_mask", "0x3,ff", "0X10") == ["0x3", "ff", "0X10"]
    assert parse("poll", "0,100", "10-30+10") == [0, 100, 10, 20, 30]
    assert parse("n_gpu_layers", *params["n_gpu_layers"].default) == [-1]  # llama-bench's default: every layer
    assert parse("n_cpu_moe", "0-2") == [0, 1, 2] and parse("lazy_mode", "on,off") == ["on", "off"]
    assert parse("no_op_offload", "1") == [True] and parse("no_host", "0,1") == [False, True]
    assert parse("repack", "0") == [False] and parse("repack") == []
    assert parse("devices", "auto,none", "CUDA0/CUDA1") == [None, (), ("CUDA0", "CUDA1")]
    for name, value, says in (("split_mode", "rows", "not one of"), ("main_gpu", "-1", "must be 0 to"),
                              ("tensor_split", "1/x", "not a share"), ("tensor_split", "1/-1", "not a share"),
                              ("tensor_split", "nan", "not a share"), ("tensor_split", "1,,2", "empty"),
                              ("override_tensor", "blk", "not PATTERN=BUFFER_TYPE"),
                              ("override_tensor", "=CPU", "not PATTERN=BUFFER_TYPE"),
                              ("override_tensor", "a=CPU;", "not PATTERN=BUFFER_TYPE"),
                              ("no_kv_offload", "2", "not 0 or 1"), ("embeddings", "yes", "not 0 or 1"),
                              ("cpu_strict", "-1", "not 0 or 1"), ("mmap", "true", "not 0 or 1"),
                              ("load_mode", "mmap2", "not one of"), ("cpu_mask", "0xZZ", "hexadecimal"),
                              ("cpu_mask", "0x", "hexadecimal"), ("cpu_mask", "f" * 129, "at most 128"),
                              ("poll", "101", "must be 0 to 100"), ("poll", "-5", "must be 0 to 100"),
                              ("n_cpu_moe", "-1", "must be 0 to"), ("lazy_mode", "lazy", "not one of"),
                              ("no_op_offload", "2", "not 0 or 1"), ("no_host", "x", "not 0 or 1"),
                              ("repack", "on", "not 0 or 1"), ("devices", "CUDA0/", "empty device name")):
        with pytest.raises(click.BadParameter, match=says):
            parse(name, value)


def test_bench_refuses_nonsense_process_options_and_unknown_buffer_types(env, stories_path):
    args = [stories_path, "-p", "8", "-n", "0", "-r", "1", "-t", "1"]
    for flag, value in (("--prio", "5"), ("--prio", "-2"), ("--numa", "spread"), ("-sm", "rows"), ("-nkvo", "2")):
        result = jan("bench", *args, flag, value, env=env)
        assert result.returncode == 2 and f"Invalid value for '{flag}" in result.stderr, result.stderr
    # what only the build can tell: named as the flag, with what this build has
    fails(jan("bench", *args, "-ot", "x=GPU9", env=env), "-ot/--override-tensor: unknown buffer type 'GPU9'",
          "this build has: CPU")
    fails(jan("bench", *args, "-ot", "(=CPU", env=env), "-ot/--override-tensor: '(' is not a regular expression")
    fails(jan("bench", *args, "-ts", "/".join(["1"] * 300), env=env), "-ts/--tensor-split: at most")
    fails(jan("bench", *args, "-dev", "CPU", env=env), "-dev/--device: 'CPU' is no GPU device of this build")
    from jan.engine.model import extra_buffers_by_default

    if not extra_buffers_by_default():  # (a CPU with AMX buffers: llama.cpp's AMX matmul crashes off the main thread)
        fails(jan("bench", *args, "--repack", "1", env=env), "--repack 1: this CPU has llama.cpp's AMX")


def test_bench_reports_llama_bench_s_settings_keys_and_columns(env, stories_path):
    """json, csv and sql carry llama-bench's keys for these settings with its types and defaults (cpu_strict,
    no_kv_offload, embeddings true/false in json, 0/1 in csv and sql; -ts as 1.00/2.00; -ot as PATTERN=BUFT;...), and
    -ngl is -1 (every layer) as llama-bench's; the md table shows the columns that differ, named as llama-bench's."""
    import sqlite3

    base = [stories_path, "-p", "8", "-n", "0", "-r", "1", "-t", "1"]
    plain = json.loads(ok(jan("bench", *base, "-o", "json", env=env)).stdout)[0]
    assert {key: plain[key] for key in LLAMA_BENCH_SETTINGS} == LLAMA_BENCH_SETTINGS
    # (llama-bench's repack default is true; jan's is too, except on a CPU with AMX buffers: what the load used)
    from jan.engine.model import extra_buffers_by_default

    assert plain["repack"] is extra_buffers_by_default()
    table = ok(jan("bench", *base, env=env)).stdout
    assert table.splitlines()[0] == "| model | size | params | backend | threads | ngl | test | t/s |"

    given = [*base, "-sm", "none", "-mg", "1", "-ts", "1/2/0", "-ot", r"blk\.0\..*=CPU;output=CPU", "-nkvo", "1",
             "-embd", "0,1", "-lm", "none", "-C", "0x1", "--cpu-strict", "1", "--poll", "0", "--prio", "1"]
    records = json.loads(ok(jan("bench", *given, "-o", "json", env=env)).stdout)
    want = {"cpu_mask": "0x1", "cpu_strict": True, "poll": 0, "split_mode": "none", "main_gpu": 1,
            "no_kv_offload": True, "tensor_split": "1.00/2.00", "tensor_buft_overrides": r"blk\.0\..*=CPU;output=CPU",
            "load_mode": "none"}
    assert [{key: r[key] for key in [*want, "embeddings"]} for r in records] == [
        {**want, "embeddings": False}, {**want, "embeddings": True}]
    assert all(r["avg_ts"] > 0 for r in records)
    rows = list(csv.DictReader(io.StringIO(ok(jan("bench", *given, "-o", "csv", env=env)).stdout)))
    assert [(r["cpu_strict"], r["no_kv_offload"], r["embeddings"], r["tensor_split"]) for r in rows] == [
        ("1", "1", "0", "1.00/2.00"), ("1", "1", "1", "1.00/2.00")]
    db = sqlite3.connect(":memory:")
    db.executescript(ok(jan("bench", *given, "-o", "sql", env=env)).stdout)
    assert db.execute("SELECT cpu_strict, poll, main_gpu, no_kv_offload, embeddings, split_mode FROM llama_bench"
                      ).fetchall() == [(1, 0, 1, 1, 0, "none"), (1, 0, 1, 1, 1, "none")]
    lines = ok(jan("bench", *given, env=env)).stdout.splitlines()
    assert lines[0] == ("| model | size | params | backend | threads | ngl | cpu_mask | cpu_strict | poll | main_gpu "
                        "| sm | nkvo | ts | ot | lm | embd | test | t/s |")
    assert [row.split("|")[7:17] for row in lines[2:4]] == [
        [f" {v} " for v in ("0x1", "1", "0", "1", "none", "1", "1.00/2.00", r"blk\.0\..*=CPU;output=CPU", "none", e)]
        for e in ("0", "1")]
    more = json.loads(ok(jan("bench", *base, "-ncmoe", "1", "-lzm", "off", "-nopo", "1", "--no-host", "1", "--repack",
                             "0", "-o", "json", env=env)).stdout)[0]
    assert [more[k] for k in ("n_cpu_moe", "lazy_mode", "no_op_offload", "no_host", "repack")] == [1, "off", 1, True,
                                                                                                  False]
    lines = ok(jan("bench", *base, "-ncmoe", "1", "-lzm", "off", "-nopo", "1", "--no-host", "1", "--repack", "0,1"
                   if extra_buffers_by_default() else "0", env=env)).stdout.splitlines()
    assert lines[0].startswith("| model | size | params | backend | threads | ngl | n_cpu_moe | lazy_mode | nopo | noh ")
    assert [r["devices"] for r in json.loads(ok(jan("bench", *base, "-dev", "none,auto", "-o", "json",
                                                    env=env)).stdout)] == ["none", "auto"]
    # -mmp, llama-bench's older spelling of -lm
    assert [r["load_mode"] for r in json.loads(ok(jan("bench", *base, "-mmp", "0,1", "-o", "json",
                                                      env=env)).stdout)] == ["none", "mmap"]


def test_bench_passes_each_setting_to_llama_cpp_as_llama_bench_does(stories_path, tmp_path, monkeypatch):
    """Each option reaches the engine's model and context parameters, those that mean nothing on a CPU-only build
    (-sm, -mg, -ts, -nkvo) included, so that the same command on a GPU build of jan measures what llama-bench does;
    a threadpool of -C, --cpu-strict, --poll and --prio is attached to every test's context, as llama-bench's."""
    from click.testing import CliRunner

    from jan.cli.bench import bench
    from jan.engine import model as model_module

    loads, contexts = [], []
    real_load, real_scheduler = model_module.load_weights, model_module._engine.Scheduler

    def spy_load(path, mp, *args, **kwargs):
        loads.append({k: getattr(mp, k) for k in ("n_gpu_layers", "main_gpu", "split_mode", "tensor_split",
                                                  "tensor_buft_overrides", "load_mode", "lazy_mode", "no_host",
                                                  "extra_buffers", "devices")})
        return real_load(path, mp, *args, **kwargs)

    def spy_scheduler(native, cp, *args):
        contexts.append({k: getattr(cp, k) for k in ("offload_kqv", "embeddings", "threadpool", "cpumask",
                                                     "cpu_strict", "poll", "prio", "op_offload")})
        return real_scheduler(native, cp, *args)

    monkeypatch.setattr(model_module, "load_weights", spy_load)
    monkeypatch.setattr(model_module._engine, "Scheduler", spy_scheduler)
    monkeypatch.setenv("JAN_DATA_FOLDER", str(tmp_path / "data"))
    monkeypatch.setattr("jan.cli.bench._set_process", lambda prio, numa: None)  # (the test's own priority kept)
    result = CliRunner().invoke(bench, [str(stories_path), "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-o", "json",
                                        "-ngl", "0", "-sm", "row", "-mg", "2", "-ts", "3/1", "-ot", "output=CPU",
                                        "-nkvo", "1", "-embd", "1", "-lm", "mmap+mlock,none", "-C", "0x5",
                                        "--cpu-strict", "1", "--poll", "7", "--prio", "2", "-ncmoe", "2", "-lzm", "on",
                                        "--no-host", "1", "--repack", "0", "-nopo", "1", "-dev", "none"])
    assert result.exit_code == 0, result.output
    experts = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
    assert loads == [{"n_gpu_layers": 0, "main_gpu": 2, "split_mode": 2, "tensor_split": [3.0, 1.0],
                      "tensor_buft_overrides": [("output", "CPU"), (rf"blk\.0{experts}", "CPU"),
                                                (rf"blk\.1{experts}", "CPU")],
                      "load_mode": mode, "lazy_mode": 2, "no_host": True, "extra_buffers": 0, "devices": []}
                     for mode in (3, 0)]
    assert contexts == [{"offload_kqv": False, "embeddings": True, "threadpool": True,
                         "cpumask": [True, False, True, False], "cpu_strict": True, "poll": 7, "prio": 2,
                         "op_offload": False}] * 2
    # llama-bench's defaults: every layer, its split, automatic loading, and its default threadpool
    loads.clear(), contexts.clear()
    result = CliRunner().invoke(bench, [str(stories_path), "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert loads == [{"n_gpu_layers": -1, "main_gpu": 0, "split_mode": 1, "tensor_split": [0.0],
                      "tensor_buft_overrides": [], "load_mode": -1, "lazy_mode": 1, "no_host": False,
                      "extra_buffers": -1, "devices": None}]
    assert contexts == [{"offload_kqv": True, "embeddings": False, "threadpool": True, "cpumask": [False] * 4,
                         "cpu_strict": False, "poll": 50, "prio": 0, "op_offload": True}]


def test_bench_verbose_prints_llama_cpp_s_log_and_numa_is_taken(env, stories_path):
    """-v printed nothing of llama.cpp's log (an unknown option); --numa was one too."""
    args = [stories_path, "-p", "8", "-n", "0", "-r", "1", "-t", "1"]
    quiet = ok(jan("bench", *args, env=env))
    assert "llama_model_loader" not in quiet.stderr
    loud = ok(jan("bench", *args, "-v", "--numa", "distribute", env=env))
    assert "llama_model_loader: loaded meta data" in loud.stderr and loud.stdout.startswith("| model |")


def test_model_takes_llama_cpp_s_placement_options_and_refuses_nonsense(stories_path):
    """jan.Model's own options for what jan bench passes (llama.cpp's model and context parameters), checked before
    the weights are read, each error naming the option."""
    from jan.engine.model import check_load_option, cpu_mask_bits

    assert cpu_mask_bits("cpu_mask", "0x5") == [True, False, True, False]
    assert cpu_mask_bits("cpu_mask", "10") == [False] * 4 + [True] + [False] * 3
    for name, value, says in (("split_mode", "diagonal", "split_mode: expected one of"),
                              ("load_mode", 1, "load_mode: expected one of"),
                              ("tensor_split", "1/2", "tensor_split: expected a list"),
                              ("tensor_split", [1, -1], r"tensor_split\[1\]"),
                              ("tensor_split", [True], r"tensor_split\[0\]"),
                              ("tensor_buft_overrides", [("x",)], r"tensor_buft_overrides\[0\]"),
                              ("tensor_buft_overrides", "x=CPU", "expected a list"),
                              ("cpu_mask", 3, "cpu_mask: expected a hexadecimal"), ("poll", 101, "poll"),
                              ("prio", -2, "prio"), ("cpu_strict", 1, "cpu_strict: expected true or false"),
                              ("offload_kqv", "no", "offload_kqv"), ("output_embeddings", 1, "output_embeddings"),
                              ("lazy_mode", "lazy", "lazy_mode: expected one of"), ("n_cpu_moe", -1, "n_cpu_moe"),
                              ("no_host", "1", "no_host"), ("op_offload", 0, "op_offload"),
                              ("devices", "CUDA0", "devices: expected a list"), ("devices", [""], r"devices\[0\]")):
        with pytest.raises(ValueError, match=says):
            check_load_option(name, value)
    with pytest.raises(ValueError, match="tensor_buft_overrides: unknown buffer type 'NOPE'"):
        jan_model(stories_path, tensor_buft_overrides=[("output", "NOPE")])
    with jan_model(stories_path, split_mode="none", tensor_split=[1, 0], tensor_buft_overrides=[("output", "CPU")],
                   load_mode="none", offload_kqv=False, output_embeddings=True, cpu_mask="0x1", cpu_strict=True,
                   poll=0, prio=0, lazy_mode="off", no_host=True, n_cpu_moe=2, op_offload=False) as m:
        # the same greedy text as without them: none of them changes what a CPU build computes
        with jan_model(stories_path) as plain:
            want = plain.generate("Once upon a time", max_tokens=8, temperature=0).text
        assert m.generate("Once upon a time", max_tokens=8, temperature=0).text == want


def jan_model(path, **options):
    import jan as jan_library

    return jan_library.Model(path, n_ctx=64, n_threads=1, **options)
