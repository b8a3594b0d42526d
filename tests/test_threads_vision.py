"""Threads with images: saved as files beside the messages, referenced by ``image_file`` parts,
surviving a server restart, and re-sent to the model when the thread is run again."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import pytest

from jan.store import DataFolder, InvalidArgumentError
from run_helpers import wait_for_run_sync
from server_helpers import start_server


def _png(color=(20, 160, 90), size=(20, 16)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _call(base_url: str, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


def _ok(base_url: str, method: str, path: str, body=None):
    status, _, raw = _call(base_url, method, path, body)
    assert status == 200, f"{method} {path}: {status} {raw[:300]!r}"
    return json.loads(raw)


def _run(base_url: str, path: str, body: dict) -> dict:
    """A run not streamed (answered at once) once it ended, with its message."""
    return wait_for_run_sync(lambda get: _ok(base_url, "GET", get), _ok(base_url, "POST", path, body))


# -- the store -------------------------------------------------------------------------------
def test_store_keeps_images_as_files_not_base64(tmp_path):
    folder = DataFolder(tmp_path)
    png = _png()
    thread = folder.threads.create(messages=[
        {"role": "user", "content": [{"type": "text", "text": "first"},
                                     {"type": "image_url", "image_url": {"url": _data_url(png)}}]}])
    message = folder.messages.create(thread["id"], "user", [
        {"type": "image_url", "image_url": {"url": _data_url(png)}}, {"type": "text", "text": "again"}])
    ref = message["content"][0]
    assert ref["type"] == "image_file" and ref["image_file"]["mime_type"] == "image/png"
    file_id = ref["image_file"]["file_id"]
    assert folder.messages.list(thread["id"]).data[0]["content"][1]["image_file"]["file_id"] == file_id  # one file
    assert folder.messages.read_file(thread["id"], file_id) == (png, "image/png")
    raw = (tmp_path / "threads" / thread["id"] / "messages.jsonl").read_text()
    assert "base64" not in raw and file_id in raw
    assert [p.name for p in (tmp_path / "threads" / thread["id"] / "files").iterdir()] == [file_id]


def _huge_header_png() -> bytes:
    """A PNG whose header says 20000x20000 pixels (over the engine's 40-megapixel limit)."""
    import struct
    import zlib

    png = bytearray(_png(size=(1, 1)))
    png[16:24] = struct.pack(">II", 20000, 20000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


@pytest.mark.parametrize("url, words, code", [
    ("data:image/png;base64,!!!", "not valid base64", "unsupported_format"),
    (_data_url(b"plain text, no picture", "image/png"), "unsupported image format", "unsupported_format"),
    # PNG magic bytes, but cut off or too big to decode: stored, every later run of the thread would fail on it
    (_data_url(_png()[:60]), "cannot decode the image", "unsupported_format"),
    (_data_url(_huge_header_png()), "pixels", "too_large"),
])
def test_store_refuses_bad_image_data(tmp_path, url, words, code):
    folder = DataFolder(tmp_path)
    thread = folder.threads.create()
    with pytest.raises(InvalidArgumentError, match=words) as info:
        folder.messages.create(thread["id"], "user", [{"type": "image_url", "image_url": {"url": url}}])
    assert info.value.code == code
    with pytest.raises(InvalidArgumentError, match=words):  # a thread made with its messages, likewise
        folder.threads.create(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])


def test_store_file_ids_cannot_name_other_paths(tmp_path):
    folder = DataFolder(tmp_path)
    thread = folder.threads.create()
    for bad in ("../thread.json", "messages.jsonl", "img-" + "0" * 32 + ".png/..", "img-x.png"):
        with pytest.raises(InvalidArgumentError):
            folder.messages.read_file(thread["id"], bad)


# -- the server: restart and re-run ----------------------------------------------------------
def test_thread_with_an_image_survives_a_restart_and_its_run_resends_it(tmp_path, vision_pair):
    model_path, _mmproj = vision_pair
    png = _png()
    srv = start_server(tmp_path, [model_path])
    try:
        thread = _ok(srv.base_url, "POST", "/v1/threads", {})
        tid = thread["id"]
        message = _ok(srv.base_url, "POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": _data_url(png)}}]})
        file_id = message["content"][1]["image_file"]["file_id"]
        first = _run(srv.base_url, f"/v1/threads/{tid}/runs",
                     {"model": "vision-chat", "max_tokens": 4, "temperature": 0})
        assert first["status"] in ("completed", "incomplete"), first  # incomplete: max_tokens
    finally:
        srv.stop()

    raw = (tmp_path / "data" / "threads" / tid / "messages.jsonl").read_text()
    assert "base64" not in raw and len(raw) < 8000

    srv = start_server(tmp_path, [model_path])  # the same data folder, a new process state
    try:
        messages = _ok(srv.base_url, "GET", f"/v1/threads/{tid}/messages?order=asc")["data"]
        assert messages[0]["content"][1] == {"type": "image_file",
                                             "image_file": {"file_id": file_id, "mime_type": "image/png"}}
        status, content_type, body = _call(srv.base_url, "GET", f"/v1/threads/{tid}/files/{file_id}")
        assert (status, content_type, body) == (200, "image/png", png)
        assert _call(srv.base_url, "GET", f"/v1/threads/{tid}/files/img-{'0' * 32}.png")[0] == 404
        assert _call(srv.base_url, "GET", f"/v1/threads/{tid}/files/..%2Fthread.json")[0] in (400, 404)

        # re-running the thread after the restart sends the image again: the prompt is as long as the
        # first run's (64 image tokens in it), and the answer, greedy, is the same
        _ok(srv.base_url, "DELETE", f"/v1/threads/{tid}/messages/{messages[1]['id']}")
        again = _run(srv.base_url, f"/v1/threads/{tid}/runs",
                     {"model": "vision-chat", "max_tokens": 4, "temperature": 0})
        assert again["status"] in ("completed", "incomplete"), again
        assert again["usage"]["prompt_tokens"] == first["usage"]["prompt_tokens"] > 64
        replies = [m for m in _ok(srv.base_url, "GET", f"/v1/threads/{tid}/messages?order=asc")["data"]
                   if m["role"] == "assistant"]
        assert len(replies) == 1
        text_only = _ok(srv.base_url, "POST", "/v1/threads", {"messages": [
            {"role": "user", "content": "What is in this picture?"}]})
        plain = _run(srv.base_url, f"/v1/threads/{text_only['id']}/runs",
                     {"model": "vision-chat", "max_tokens": 4, "temperature": 0})
        assert plain["usage"]["prompt_tokens"] <= first["usage"]["prompt_tokens"] - 64
    finally:
        srv.stop()


def test_bad_image_in_a_thread_message_is_a_400(tmp_path, vision_pair):
    srv = start_server(tmp_path, [vision_pair[0]])
    try:
        tid = _ok(srv.base_url, "POST", "/v1/threads", {})["id"]
        status, _, body = _call(srv.base_url, "POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": _data_url(b"not an image")}}]})
        assert status == 400 and b"unsupported image format" in body
        # a cut-off PNG (right magic bytes) is refused when written, so the thread's runs keep working
        status, _, body = _call(srv.base_url, "POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": _data_url(_png()[:60])}}]})
        assert status == 400 and json.loads(body)["error"]["code"] == "unsupported_format", body
        _ok(srv.base_url, "POST", f"/v1/threads/{tid}/messages", {"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": _data_url(_png())}}]})
        run = _run(srv.base_url, f"/v1/threads/{tid}/runs", {"assistant_id": "jan", "model": "vision-chat",
                                                             "max_completion_tokens": 2})
        assert run["status"] in ("completed", "incomplete"), run
    finally:
        srv.stop()
