"""OpenAI's Files API (``/v1/files``) with the official SDK against a real server over a real data folder, and the
uploads where OpenAI uses them for images: a thread message's ``image_file`` and a Responses ``input_image``'s
``file_id``. The store underneath (:mod:`jan.store.uploads`) is also tried directly for what a crash leaves."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import openai
import pytest
from api_helpers import post_form, running
from cut_off_helpers import png_bytes, post, request

from jan.store.uploads import UploadStore, clean_filename


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _leftovers(data: Path) -> list[str]:
    """Hidden files and folders under ``<data>/files``: temporary uploads, deletions not finished."""
    folder = data / "files"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")) if folder.exists() else []


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server without models; uploads past 64 KiB are refused (so the limit is cheap to reach)."""
    with running(tmp_path_factory.mktemp("files") / "data", max_upload_bytes=64 * 1024) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_assistants_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's Assistants API
        yield


# -- the Files API -----------------------------------------------------------------------------------
def test_upload_retrieve_list_content_delete(srv):
    client = _client(srv)
    data = srv.config.data_folder
    png = png_bytes()
    image = client.files.create(file=("red.png", png), purpose="vision")
    notes = client.files.create(file=("notes.txt", b"some notes\n"), purpose="user_data")
    assert image.id.startswith("file-") and image.object == "file" and image.bytes == len(png)
    assert (image.filename, image.purpose, image.status, image.expires_at) == ("red.png", "vision", "processed", None)
    assert client.files.retrieve(image.id) == image
    # on disk: the bytes and a small JSON of metadata, in the file's own folder
    assert (data / "files" / image.id / "content").read_bytes() == png
    assert json.loads((data / "files" / image.id / "file.json").read_text())["filename"] == "red.png"

    ids = [f.id for f in client.files.list()]
    assert ids.index(notes.id) < ids.index(image.id)  # newest first
    assert [f.id for f in client.files.list(purpose="vision")] == [image.id]
    assert [f.id for f in client.files.list(purpose="batch")] == []

    raw = client.files.with_raw_response.content(image.id)
    assert raw.content == png and raw.headers["content-type"] == "image/png"
    raw = client.files.with_raw_response.content(notes.id)
    assert raw.content == b"some notes\n" and raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert raw.headers["x-content-type-options"] == "nosniff"

    assert client.files.delete(notes.id).model_dump() == {"id": notes.id, "object": "file", "deleted": True}
    assert not (data / "files" / notes.id).exists()
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as info:
            call(notes.id)
        assert info.value.body["type"] == "invalid_request_error" and info.value.body["code"] == "not_found"
    assert notes.id not in [f.id for f in client.files.list()]
    assert _leftovers(data) == []
    client.files.delete(image.id)


def test_list_pages_with_cursors(srv):
    client = _client(srv)
    made = [client.files.create(file=(f"{i}.jsonl", b"{}\n"), purpose="batch").id for i in range(5)]
    page = client.files.list(purpose="batch", limit=2, order="asc")
    assert [f.id for f in page.data] == made[:2] and page.has_more
    assert [f.id for f in client.files.list(purpose="batch", limit=2, order="asc")] == made  # auto-paging
    assert [f.id for f in client.files.list(purpose="batch", limit=3)] == made[::-1]
    after = client.files.list(purpose="batch", order="asc", after=made[2])
    assert [f.id for f in after.data] == made[3:] and not after.has_more
    for query, param in (("limit=0", "limit"), ("limit=10001", "limit"), ("order=up", "order"),
                         ("after=file-nope", "after")):
        status, _, err = request(srv, "GET", f"/v1/files?{query}")
        assert status == 400 and err["error"]["param"] == param, (query, err)
    for file_id in made:
        client.files.delete(file_id)



def test_deleting_the_files_listed_while_the_sdk_pages_them(srv):
    """The SDK asks for the page after the last id of the one before, which a client deleting what it lists has just
    deleted: that cursor keeps its place (as OpenAI's), the loop sees every file once; an id that never was is
    still refused."""
    client = _client(srv)
    made = [client.files.create(file=(f"{i}.jsonl", b"{}\n"), purpose="evals").id for i in range(5)]
    seen = []
    for file in client.files.list(purpose="evals", limit=2, order="asc"):
        seen.append(file.id)
        client.files.delete(file.id)
    assert seen == made and client.files.list(purpose="evals").data == []
    status, _, err = request(srv, "GET", "/v1/files?after=file-nope")
    assert status == 400 and err["error"]["param"] == "after"

def test_files_survive_a_restart(tmp_path):
    png = png_bytes()
    with running(tmp_path / "data") as first:
        kept = _client(first).files.create(file=("kept.png", png), purpose="assistants")
    with running(tmp_path / "data") as second:
        client = _client(second)
        assert client.files.retrieve(kept.id) == kept
        assert [f.id for f in client.files.list()] == [kept.id]
        assert client.files.content(kept.id).content == png


def test_upload_form_is_checked(srv):
    client = _client(srv)
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("x.txt", b"x"), purpose="homework")  # type: ignore[arg-type]
    assert (info.value.body["param"], info.value.body["code"]) == ("purpose", "invalid_value")
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("x.txt", b"x"), purpose="user_data", extra_body={"colour": "red"})
    assert info.value.body["param"] == "colour" and "Unrecognized" in info.value.body["message"]
    status, err = post(srv, "/v1/files", {"purpose": "user_data"})  # JSON is no upload
    assert status == 415 and err["error"]["code"] == "unsupported_media_type"
    status, err = post_form(srv.base_url, {"purpose": "user_data"}, with_file=False)
    assert status == 400 and (err["error"]["param"], err["error"]["code"]) == ("file", "missing_required_parameter")
    status, err = post_form(srv.base_url, {}, with_file=True)
    assert status == 400 and (err["error"]["param"], err["error"]["code"]) == ("purpose", "missing_required_parameter")
    # OpenAI's expires_after: counted from created_at, between an hour and 30 days
    expiring = client.files.create(file=("x.txt", b"x"), purpose="user_data",
                                   expires_after={"anchor": "created_at", "seconds": 3600})
    assert expiring.expires_at == expiring.created_at + 3600
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("x.txt", b"x"), purpose="user_data",
                            expires_after={"anchor": "created_at", "seconds": 60})
    assert info.value.body["param"] == "expires_after.seconds"
    client.files.delete(expiring.id)
    assert _leftovers(srv.config.data_folder) == []


def test_client_file_names_are_data_never_paths(srv):
    data = srv.config.data_folder
    before = sorted(p.name for p in data.iterdir())
    status, file = post_form(srv.base_url, {"purpose": "user_data"}, with_file=True, filename="../../etc/x.txt")
    assert status == 200 and file["filename"] == "x.txt"
    assert sorted(p.name for p in data.iterdir()) == before  # nothing written beside the files folder
    assert sorted(p.name for p in (data / "files" / file["id"]).iterdir()) == ["content", "file.json"]
    assert clean_filename("C:\\fakepath\\photo.png") == "photo.png" and clean_filename("\x00\n") == "upload"
    _client(srv).files.delete(file["id"])


def test_odd_ids_are_not_found(srv):
    for odd in ("file-nope", "nope", "..%2F..%2Fetc%2Fpasswd", "file-" + "a" * 300, "%00"):
        for method, path in (("GET", f"/v1/files/{odd}"), ("GET", f"/v1/files/{odd}/content"),
                             ("DELETE", f"/v1/files/{odd}")):
            status, _, err = request(srv, method, path)
            assert status == 404 and err["error"]["code"] == "not_found", (method, path, err)


def test_an_upload_past_the_limit_is_a_413_and_leaves_nothing(srv):
    client = _client(srv)
    limit = srv.config.max_upload_bytes
    before = {f.id for f in client.files.list()}
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("big.bin", b"\0" * (limit + 1)), purpose="user_data")
    assert info.value.status_code == 413 and info.value.body["code"] == "file_too_large"
    at_limit = client.files.create(file=("fits.bin", b"\0" * limit), purpose="user_data")
    assert at_limit.bytes == limit
    assert {f.id for f in client.files.list()} == before | {at_limit.id}
    client.files.delete(at_limit.id)
    assert _leftovers(srv.config.data_folder) == []


def test_a_body_announced_far_past_the_limit_is_refused_unread(srv):
    host, port = srv.base_url.split("//")[1].split(":")
    head = (f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {10 ** 12}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(head)
        received = b""
        while chunk := s.recv(65536):  # the server answers and closes: no body is waited for
            received += chunk
    headers, _, body = received.partition(b"\r\n\r\n")
    assert headers.startswith(b"HTTP/1.1 413") and b"connection: close" in headers.lower()
    assert json.loads(body)["error"]["code"] == "file_too_large"


def test_uploads_from_another_origin_are_refused(srv):
    status, err = _form_post_with(srv, {"Origin": "http://evil.example"})
    assert status == 403 and err["error"]["code"] == "origin_not_allowed"


def _form_post_with(srv, headers: dict[str, str]) -> tuple[int, dict]:
    body = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n--b--\r\n'
    req = urllib.request.Request(srv.base_url + "/v1/files", data=body, method="POST",
                                 headers={"Content-Type": "multipart/form-data; boundary=b", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- uploads as images in threads ---------------------------------------------------------------------
def _image_file(file_id: str) -> dict:
    return {"type": "image_file", "image_file": {"file_id": file_id}}


def test_thread_messages_take_uploaded_images(srv):
    """An ``image_file`` naming an upload is copied into the thread's images when the message is written (thread
    create, message create and edit): runs read it from there, and deleting the upload leaves it."""
    client = _client(srv)
    png = png_bytes()
    upload = client.files.create(file=("red.png", png), purpose="vision")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, _image_file(upload.id)]}])
    first = client.beta.threads.messages.list(thread.id).data[0]
    stored = first.content[1].image_file.file_id
    assert stored.startswith("img-") and stored.endswith(".png")
    thread_dir = srv.config.data_folder / "threads" / thread.id
    assert (thread_dir / "files" / stored).read_bytes() == png

    added = client.beta.threads.messages.create(thread.id, role="user", content=[_image_file(upload.id)])
    assert added.content[0].image_file.file_id == stored  # the same picture: one file
    status, _, edited = request(srv, "POST", f"/v1/threads/{thread.id}/messages/{added.id}",
                                {"content": [{"type": "text", "text": "again"}, _image_file(upload.id)]})
    assert status == 200 and edited["content"][1]["image_file"]["file_id"] == stored

    client.files.delete(upload.id)
    with urllib.request.urlopen(f"{srv.base_url}/v1/threads/{thread.id}/files/{stored}", timeout=60) as resp:
        assert resp.read() == png
    # the thread's own image ids still work as before
    again = client.beta.threads.messages.create(thread.id, role="user", content=[_image_file(stored)])
    assert again.content[0].image_file.file_id == stored


def _huge_header_png() -> bytes:
    """A PNG whose header says 20000x20000 pixels (over the engine's 40-megapixel limit)."""
    import struct
    import zlib

    png = bytearray(png_bytes())
    png[16:24] = struct.pack(">II", 20000, 20000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def test_uploads_that_are_not_images_or_not_there_are_refused_naming_the_part(srv):
    client = _client(srv)
    notes = client.files.create(file=("notes.txt", b"not a picture"), purpose="assistants")
    # an image's magic bytes, but cut off or too big to decode: said of the image_file that named the upload, not
    # of the data: URL jan makes of it (a field the client never sent)
    cut = client.files.create(file=("cut.png", png_bytes()[:40]), purpose="vision")
    huge = client.files.create(file=("huge.png", _huge_header_png()), purpose="vision")
    gone = client.files.create(file=("red.png", png_bytes()), purpose="vision")
    client.files.delete(gone.id)
    thread = client.beta.threads.create()
    cases = [
        ("POST", f"/v1/threads/{thread.id}/messages", {"role": "user", "content": [_image_file(notes.id)]},
         "content[0].image_file.file_id", "unsupported_format"),
        ("POST", f"/v1/threads/{thread.id}/messages",
         {"role": "user", "content": [{"type": "text", "text": "hi"}, _image_file(gone.id)]},
         "content[1].image_file.file_id", "file_not_found"),
        ("POST", "/v1/threads", {"messages": [{"role": "user", "content": [_image_file("file-nope")]}]},
         "messages[0].content[0].image_file.file_id", "file_not_found"),
        ("POST", f"/v1/threads/{thread.id}/runs",
         {"additional_messages": [{"role": "user", "content": [_image_file(notes.id)]}]},
         "additional_messages[0].content[0].image_file.file_id", "unsupported_format"),
        ("POST", f"/v1/threads/{thread.id}/messages", {"role": "user", "content": [_image_file(cut.id)]},
         "content[0].image_file.file_id", "unsupported_format"),
        ("POST", "/v1/threads", {"messages": [{"role": "user", "content": [_image_file(huge.id)]}]},
         "messages[0].content[0].image_file.file_id", "too_large"),
        ("POST", "/v1/threads/runs", {"thread": {"messages": [{"role": "user", "content": [_image_file(gone.id)]}]}},
         "thread.messages[0].content[0].image_file.file_id", "file_not_found"),
    ]
    for method, path, body, param, code in cases:
        status, _, err = request(srv, method, path, body)
        assert status == 400 and (err["error"]["param"], err["error"]["code"]) == (param, code), (path, err)
        assert err["error"]["message"].startswith(param + ": "), err
    assert client.beta.threads.messages.list(thread.id).data == []  # nothing was stored
    for upload in (notes, cut, huge):
        client.files.delete(upload.id)


def test_responses_input_image_file_id_is_refused_when_not_an_image(srv):
    """Checked before any model is looked for (this server has none)."""
    client = _client(srv)
    notes = client.files.create(file=("notes.txt", b"not a picture"), purpose="user_data")
    cut = client.files.create(file=("cut.png", png_bytes()[:40]), purpose="vision")
    huge = client.files.create(file=("huge.png", _huge_header_png()), purpose="vision")
    for file_id, code in ((notes.id, "unsupported_format"), ("file-nope", "file_not_found"),
                          (cut.id, "unsupported_format"), (huge.id, "too_large")):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="any", input=[{"role": "user", "content": [
                {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "file_id": file_id}]}])
        assert (info.value.body["param"], info.value.body["code"]) == ("input[0].content[1].file_id", code)
        assert info.value.body["message"].startswith("input[0].content[1].file_id: "), info.value.body
    for upload in (notes, cut, huge):
        client.files.delete(upload.id)


# -- the images reach the model -------------------------------------------------------------------------
QUESTION = "What is in this picture?"
N = 6


@pytest.fixture(scope="module")
def vision(tmp_path_factory, vision_pair):
    with running(tmp_path_factory.mktemp("files-vision") / "data", vision_pair[0]) as server:
        yield server


@pytest.fixture(scope="module")
def picture() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (28, 20), (240, 180, 20)).save(out, "PNG")
    return out.getvalue()


def test_responses_input_image_by_file_id_is_the_same_image(vision, picture):
    client = _client(vision)
    upload = client.files.create(file=("picture.png", picture), purpose="vision")
    answers = []
    for image in ({"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(picture).decode()},
                  {"type": "input_image", "file_id": upload.id}):
        reply = client.responses.create(model="vision-chat", max_output_tokens=N, temperature=0, store=False,
                                        input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION},
                                                                            image]}])
        answers.append((reply.output_text, reply.usage.input_tokens))
    assert answers[0][1] > 64 and answers[1] == answers[0]


def test_a_run_sends_an_uploaded_image_to_the_model(vision, picture):
    client = _client(vision)
    upload = client.files.create(file=("picture.png", picture), purpose="vision")
    runs = []
    for image in ({"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                                             + base64.b64encode(picture).decode()}},
                  _image_file(upload.id)):
        run = client.beta.threads.create_and_run_poll(
            assistant_id="jan", model="vision-chat", max_completion_tokens=N, temperature=0, poll_interval_ms=50,
            thread={"messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}, image]}]})
        assert run.status in ("completed", "incomplete"), run.last_error
        reply = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0].content[0].text.value
        runs.append((reply, run.usage.prompt_tokens))
    assert runs[0][1] > 64 and runs[1] == runs[0]


# -- the store: what a crash leaves -------------------------------------------------------------------
def test_the_store_sweeps_what_a_crash_left(tmp_path):
    store = UploadStore(tmp_path)
    kept = _commit(store, b"kept", "kept.txt")
    # a crash between making the folder and writing file.json: no file, only its bytes
    orphan = store.folder / "file-01ORPHAN0000000000000000"
    orphan.mkdir()
    (orphan / "content").write_bytes(b"half")
    # a deletion cut short: the folder renamed to its hidden trash name, not yet removed
    trash = store.folder / ".trash-file-01GONE-x"
    trash.mkdir()
    assert [f["id"] for f in store.list().data] == [kept["id"]]  # neither is a file
    assert store.sweep() == [orphan]
    assert sorted(p.name for p in store.folder.iterdir()) == [kept["id"]]
    # an upload's temporary file whose writer died goes with the other interrupted writes when the folder opens
    dead = store.folder / ".upload.p999999999.abc.tmp"
    dead.write_bytes(b"partial")
    from jan.store import DataFolder

    DataFolder(tmp_path)
    assert not dead.exists() and store.get(kept["id"]) == kept


def test_a_damaged_file_json_is_set_aside_and_the_rest_still_list(tmp_path):
    store = UploadStore(tmp_path)
    good, bad = _commit(store, b"a", "a.txt"), _commit(store, b"b", "b.txt")
    (store.folder / bad["id"] / "file.json").write_text("{not json")
    assert [f["id"] for f in store.list().data] == [good["id"]]
    assert [p.path for p in store.problems.snapshot()] == [f"files/{bad['id']}/file.json"]
    with pytest.raises(KeyError):
        store.get(bad["id"])
    assert store.sweep() == []  # set aside for the user to repair, never swept away
    # ... or to delete, as a damaged thread or assistant is deleted: bytes, set-aside copy and folder
    assert store.delete(bad["id"])["deleted"] is True
    assert not (store.folder / bad["id"]).exists()
    with pytest.raises(KeyError):
        store.delete(bad["id"])
    assert [f["id"] for f in store.list().data] == [good["id"]]


def test_expired_files_are_gone(tmp_path, monkeypatch):
    from jan.store import uploads

    store = UploadStore(tmp_path)
    lasting = _commit(store, b"stays", "stays.txt")
    brief = _commit(store, b"goes", "goes.txt", expires_after=3600)
    monkeypatch.setattr(uploads, "now_s", lambda: brief["created_at"] + 3600)
    assert [f["id"] for f in store.list().data] == [lasting["id"]]
    with pytest.raises(KeyError):
        store.get(brief["id"])
    assert not (store.folder / brief["id"]).exists()


def _commit(store: UploadStore, content: bytes, name: str, **kw) -> dict:
    writer = store.writer(1 << 20)
    writer.write(content)
    return store.commit(writer, filename=name, purpose="user_data", **kw)


def test_a_writer_past_its_limit_leaves_no_temporary_file(tmp_path):
    from jan.store.uploads import UploadTooLargeError

    store = UploadStore(tmp_path)
    writer = store.writer(4)
    writer.write(b"1234")
    with pytest.raises(UploadTooLargeError):
        writer.write(b"5")
    assert not os.path.exists(writer.temp_path) and list(store.folder.iterdir()) == []
