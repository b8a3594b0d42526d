"""What a request names that is not there, or not well formed, is refused when the request is made, naming the
field (``param``) and what is wrong (``code``) — never accepted into the data folder to break what comes later.

The example found by outside testing: a thread message whose ``image_file`` part named an image that is not in
the thread was stored, and from then on every run of the thread failed until the message was found and deleted.
Its kind: a reference (an image, a list cursor) checked late or named vaguely, in every place that takes one.
"""

from __future__ import annotations

import base64
import urllib.request

import pytest
from cut_off_helpers import png_bytes, post, request
from server_helpers import start_server

MISSING = "img-" + "0" * 32 + ".png"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("refs"), [stories_path])
    yield srv
    srv.stop()


def _thread(srv, **body) -> str:
    status, data = post(srv, "/v1/threads", body)
    assert status == 200, data
    return data["id"]


def _image_file(file_id: str) -> dict:
    return {"type": "image_file", "image_file": {"file_id": file_id}}


def _error(data: dict) -> tuple[str | None, str | None]:
    return data["error"]["param"], data["error"]["code"]


def test_a_message_naming_an_image_that_is_not_in_the_thread_is_refused(server):
    thread = _thread(server)
    status, data = post(server, f"/v1/threads/{thread}/messages",
                        {"role": "user", "content": [{"type": "text", "text": "hi"}, _image_file(MISSING)]})
    assert status == 400, data
    assert _error(data) == ("content[1].image_file.file_id", "file_not_found")
    status, _, page = request(server, "GET", f"/v1/threads/{thread}/messages")
    assert status == 200 and page["data"] == []  # nothing was stored


def test_a_new_thread_naming_an_image_it_does_not_come_with_is_refused(server):
    status, data = post(server, "/v1/threads", {"messages": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, _image_file(MISSING)]}]})
    assert status == 400, data
    assert _error(data) == ("messages[1].content[1].image_file.file_id", "file_not_found")


def test_an_edit_naming_an_image_that_is_not_in_the_thread_is_refused(server):
    thread = _thread(server, messages=[{"role": "user", "content": "hi"}])
    _, _, page = request(server, "GET", f"/v1/threads/{thread}/messages")
    message = page["data"][0]["id"]
    status, data = post(server, f"/v1/threads/{thread}/messages/{message}",
                        {"content": [{"type": "text", "text": "hi"}, _image_file(MISSING)]})
    assert status == 400, data
    assert _error(data) == ("content[1].image_file.file_id", "file_not_found")


def test_an_image_saved_with_the_thread_can_be_named_again(server):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    thread = _thread(server, messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]}])
    _, _, page = request(server, "GET", f"/v1/threads/{thread}/messages")
    saved = [p for p in page["data"][0]["content"] if p["type"] == "image_file"][0]["image_file"]["file_id"]
    status, data = post(server, f"/v1/threads/{thread}/messages",
                        {"role": "user", "content": [{"type": "text", "text": "again"}, _image_file(saved)]})
    assert status == 200, data


@pytest.mark.parametrize("file_id", ["../../x", "img-1.png", 7])
def test_a_malformed_image_id_names_its_part(server, file_id):
    thread = _thread(server)
    status, data = post(server, f"/v1/threads/{thread}/messages",
                        {"role": "user", "content": [{"type": "text", "text": "hi"}, _image_file(file_id)]})
    assert status == 400, data
    assert _error(data) == ("content[1].image_file.file_id", "invalid_id")


@pytest.mark.parametrize("query, param", [("after=nonexist", "after"), ("before=nonexist", "before"),
                                          ("after=..%2Fx", "after"), ("limit=0", "limit"), ("order=up", "order")])
@pytest.mark.parametrize("listing", ["messages", "runs"])
def test_list_cursors_and_limits_name_the_parameter(server, listing, query, param):
    thread = _thread(server, messages=[{"role": "user", "content": "hi"}])
    status, _, data = request(server, "GET", f"/v1/threads/{thread}/{listing}?{query}")
    assert status == 400, data
    assert data["error"]["param"] == param and data["error"]["code"] in ("invalid_value", "invalid_id"), data


@pytest.mark.parametrize("url, code", [("data:image/png;base64,%%%", "unsupported_format"),
                                       ("data:image/png;base64," + base64.b64encode(b"BM" + b"\0" * 64).decode(),
                                        "unsupported_format")])
def test_a_bad_image_in_a_thread_message_has_the_code_chat_gives_it(server, url, code):
    """(The same image sent to /v1/chat/completions is a 400 with that code; the thread route said ``code: null``.)"""
    thread = _thread(server)
    status, data = post(server, f"/v1/threads/{thread}/messages", {"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": url}}]})
    assert status == 400, data
    assert _error(data) == ("content[1].image_url.url", code)


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "file:///etc/hosts", "/tmp/x.png"])
def test_a_linked_image_the_server_may_not_read_is_refused_when_the_message_is_written(server, url):
    """(It was stored as a link, which no run reads: the model never saw the image.)"""
    thread = _thread(server)
    status, data = post(server, f"/v1/threads/{thread}/messages", {"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": url}}]})
    assert status == 400, data
    assert _error(data) == ("content[1].image_url.url", "not_allowed")


@pytest.fixture(scope="module")
def media_server(tmp_path_factory, stories_path):
    tmp = tmp_path_factory.mktemp("refs-media")
    (tmp / "media").mkdir()
    (tmp / "media" / "cat.png").write_bytes(png_bytes())
    srv = start_server(tmp, [stories_path], allow_media_from=[str(tmp / "media")])
    srv.media = tmp / "media"
    yield srv
    srv.stop()


@pytest.mark.parametrize("where", ["message", "thread", "edit"])
def test_a_linked_image_the_server_may_read_is_kept_in_the_thread(media_server, where):
    srv = media_server
    link = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": str(srv.media / "cat.png")}}]
    if where == "thread":
        thread = _thread(srv, messages=[{"role": "user", "content": link}])
    else:
        thread = _thread(srv, messages=[{"role": "user", "content": "hi"}] if where == "edit" else [])
        if where == "message":
            status, data = post(srv, f"/v1/threads/{thread}/messages", {"role": "user", "content": link})
        else:
            _, _, page = request(srv, "GET", f"/v1/threads/{thread}/messages")
            status, data = post(srv, f"/v1/threads/{thread}/messages/{page['data'][0]['id']}", {"content": link})
        assert status == 200, data
    _, _, page = request(srv, "GET", f"/v1/threads/{thread}/messages")
    files = [p["image_file"]["file_id"] for p in page["data"][0]["content"] if p["type"] == "image_file"]
    assert len(files) == 1
    with urllib.request.urlopen(f"{srv.base_url}/v1/threads/{thread}/files/{files[0]}", timeout=60) as resp:
        assert resp.read() == png_bytes()


@pytest.mark.parametrize("route", ["run", "thread-and-run"])
def test_a_runs_messages_link_images_as_thread_messages_do(server, route):
    """``additional_messages`` (and createThreadAndRun's ``thread.messages``) are thread messages too."""
    link = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]
    if route == "run":
        thread = _thread(server)
        status, data = post(server, f"/v1/threads/{thread}/runs", {"model": "stories260K", "additional_messages": [
            {"role": "user", "content": link}]})
        where = "additional_messages[0].content[1].image_url.url"
    else:
        status, data = post(server, "/v1/threads/runs", {"model": "stories260K", "thread": {"messages": [
            {"role": "user", "content": link}]}})
        where = "thread.messages[0].content[1].image_url.url"
    assert status == 400, data
    assert _error(data) == (where, "not_allowed")


@pytest.mark.parametrize("cursor_of", ["thread", "message", "assistant", "file", "run"])
@pytest.mark.parametrize("listing", ["messages", "messages?all=true", "assistants", "files"])
def test_a_cursor_naming_an_object_of_another_kind_is_refused(server, listing, cursor_of):
    """A list places a cursor whose item was deleted by the time its id says it was made (a client deleting what
    it pages); an id of another kind of object (a thread's id as a message cursor) was placed the same way, and
    the page quietly cut there (``after=thread_...`` gave an empty page). It names no item of this list: a 400."""
    thread = _thread(server, messages=[{"role": "user", "content": "hi"}])
    status, _, run = request(server, "POST", f"/v1/threads/{thread}/runs", {"max_tokens": 1})
    assert status == 200, run
    ids = {"thread": thread, "run": run["id"],
           "message": request(server, "GET", f"/v1/threads/{_thread(server, messages=[{'role': 'user', 'content': 'x'}])}"
                                             "/messages")[2]["data"][0]["id"],
           "assistant": post(server, "/v1/assistants", {"model": "*"})[1]["id"],
           "file": _upload(server)}
    own = {"messages": "message", "messages?all=true": "message", "assistants": "assistant", "files": "file"}[listing]
    if own == cursor_of:
        return  # (a cursor of the list's own kind that is gone keeps its place: tested with each list)
    path = f"/v1/threads/{thread}/{listing}" if listing.startswith("messages") else f"/v1/{listing}"
    glue = "&" if "?" in listing else "?"
    for name in ("after", "before"):
        status, _, data = request(server, "GET", f"{path}{glue}{name}={ids[cursor_of]}")
        assert status == 400, (listing, cursor_of, data)
        assert data["error"]["param"] == name, data


def _upload(srv) -> str:
    from api_helpers import post_form

    status, data = post_form(srv.base_url, {"purpose": "assistants"})
    assert status == 200, data
    return data["id"]


BAD_PNG = "data:image/png;base64," + base64.b64encode(b"BM" + b"\0" * 64).decode()


@pytest.mark.parametrize("part, field", [({"type": "image_url", "image_url": {"url": BAD_PNG}}, "image_url.url"),
                                         (_image_file(MISSING), "image_file.file_id")])
def test_a_runs_additional_message_the_store_refuses_is_named_and_leaves_nothing(server, part, field):
    """An ``additional_messages`` entry the store refuses (an image that does not decode, an image the thread does
    not have) was answered with the bare ``content[0]...`` of a single message, and the entries before it stayed in
    the thread, which no run then answered. It is named as the body has it, and the thread is left as it was."""
    thread = _thread(server, messages=[{"role": "user", "content": "hi"}])
    before = request(server, "GET", f"/v1/threads/{thread}/messages?all=true")[2]["data"]
    status, data = post(server, f"/v1/threads/{thread}/runs", {"max_tokens": 1, "additional_messages": [
        {"role": "user", "content": "first"}, {"role": "user", "content": [{"type": "text", "text": "x"}, part]}]})
    assert status == 400, data
    assert data["error"]["param"] == f"additional_messages[1].content[1].{field}", data
    assert data["error"]["message"].startswith("additional_messages[1].content[1]"), data
    assert request(server, "GET", f"/v1/threads/{thread}/messages?all=true")[2]["data"] == before
    assert request(server, "GET", f"/v1/threads/{thread}/runs")[2]["data"] == []


def test_additional_messages_that_leave_nothing_to_answer_are_not_kept(server):
    thread = _thread(server)
    status, data = post(server, f"/v1/threads/{thread}/runs", {"additional_messages": [{"role": "user", "content": ""}]})
    assert status == 400 and data["error"]["code"] == "empty_thread", data
    assert request(server, "GET", f"/v1/threads/{thread}/messages?all=true")[2]["data"] == []


def test_a_new_threads_message_the_store_refuses_is_named_from_the_thread(server):
    """``POST /v1/threads/runs``: the refused message is ``thread.messages[k]...``, as the body has it (it was
    ``messages[k]...``, a field the body does not have), and no thread is left behind."""
    listed = request(server, "GET", "/v1/threads?limit=100")[2]["data"]
    status, data = post(server, "/v1/threads/runs", {"thread": {"messages": [
        {"role": "user", "content": "ok"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": BAD_PNG}}]}]}})
    assert status == 400, data
    assert data["error"]["param"] == "thread.messages[1].content[0].image_url.url", data
    assert request(server, "GET", "/v1/threads?limit=100")[2]["data"] == listed


GOOD_CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
#: a message's record keys of a type no run reads, and the field each refusal names
BAD_RECORDS = [({"tool_calls": "lookup"}, "metadata.tool_calls"),
               ({"tool_calls": [GOOD_CALL, "lookup"]}, "metadata.tool_calls[1]"),
               ({"tool_calls": [{**GOOD_CALL, "id": 5}]}, "metadata.tool_calls[0].id"),
               ({"tool_calls": [{**GOOD_CALL, "type": "mcp"}]}, "metadata.tool_calls[0].type"),
               ({"tool_calls": [{"id": "call_1", "function": {"name": 7}}]}, "metadata.tool_calls[0].function.name"),
               ({"tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": {"a": 1}}}]},
                "metadata.tool_calls[0].function.arguments"),
               ({"tool_call_id": 5}, "metadata.tool_call_id"),
               ({"name": ["f"]}, "metadata.name")]


@pytest.mark.parametrize("metadata, field", BAD_RECORDS)
def test_a_message_whose_records_no_run_can_read_is_refused_when_written(server, metadata, field):
    """A message's ``metadata.tool_calls`` / ``tool_call_id`` / ``name`` (jan's records of a tool loop, which every
    run of the thread reads back) of another type were stored, and from then on every run of the thread was a 400
    naming a bare ``id`` or ``arguments``. Each place that writes a message refuses them, naming the field."""
    thread = _thread(server, messages=[{"role": "user", "content": "hi"}])
    before = request(server, "GET", f"/v1/threads/{thread}/messages?all=true")[2]["data"]
    message = {"role": "assistant", "content": "", "metadata": metadata}
    for path, body in [("/v1/threads", {"messages": [message]}),
                       (f"/v1/threads/{thread}/messages", message),
                       (f"/v1/threads/{thread}/messages/{before[0]['id']}", {"metadata": metadata}),
                       (f"/v1/threads/{thread}/runs", {"max_tokens": 1, "additional_messages": [message]})]:
        status, data = post(server, path, body)
        assert status == 400, (path, data)
        assert data["error"]["param"].endswith(field), (path, data)
    assert request(server, "GET", f"/v1/threads/{thread}/messages?all=true")[2]["data"] == before


def test_a_stored_call_of_another_shape_is_left_out_of_the_prompt_not_every_run(server, tmp_path):
    """A call written into the data folder by hand (past the API's check) with an ``id`` that is a number: a run
    of the thread leaves that call and its result out of the prompt and answers, rather than failing."""
    thread = _thread(server, messages=[{"role": "user", "content": "hi"},
                                       {"role": "assistant", "content": "", "metadata": {"tool_calls": [GOOD_CALL]}},
                                       {"role": "tool", "content": "42", "metadata": {"tool_call_id": "call_1"}},
                                       {"role": "user", "content": "and?"}])
    path = server.config.data_folder / "threads" / thread / "messages.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"id":"call_1"', '"id":5')
    assert '"id":5' in lines[1]
    path.write_text("\n".join(lines) + "\n")
    status, run = post(server, f"/v1/threads/{thread}/runs", {"max_tokens": 1})
    assert status == 200, run
