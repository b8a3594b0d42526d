"""Anthropic's Files API (``client.beta.files``) on ``/v1/files``, which OpenAI's Files API shares: a request from
Anthropic's SDK (its ``anthropic-version`` header) gets Anthropic's shapes (``FileMetadata``, its list pages,
``file_deleted``) and errors, and the uploaded file is what a ``document`` block's ``file`` source names. OpenAI's
SDK on the same server keeps OpenAI's answers (tests/test_files_api.py)."""

from __future__ import annotations

import datetime
import io

import anthropic
import openai
import pytest
from anthropic.types.beta import BetaDeletedFile, BetaFileMetadata

from server_helpers import start_server

SECRET = b"The lighthouse keeper's cat is called Moss.\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    srv = start_server(tmp_path_factory.mktemp("anthropic-files"), [stories_path])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def _upload(client, name: str, data: bytes, **kwargs) -> BetaFileMetadata:
    return client.beta.files.upload(file=(name, io.BytesIO(data), "text/plain"), **kwargs)


def _error(call) -> tuple[int, dict]:
    with pytest.raises(anthropic.APIStatusError) as err:
        call()
    return err.value.status_code, err.value.body


def test_upload_retrieve_list_download_delete_in_anthropics_shapes(client):
    notes = _upload(client, "notes.txt", SECRET)  # no purpose: Anthropic's upload has none
    # every field of the SDK's own type, validated strictly (the SDK's parsing is lenient)
    assert BetaFileMetadata.model_validate(notes.model_dump(), strict=False) == notes
    assert (notes.type, notes.filename, notes.mime_type, notes.size_bytes) == ("file", "notes.txt", "text/plain",
                                                                             len(SECRET))
    assert notes.id.startswith("file-") and notes.downloadable and notes.expires_at is None
    assert abs(notes.created_at - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(hours=1)
    assert client.beta.files.retrieve_metadata(notes.id) == notes
    assert client.beta.files.download(notes.id).read() == SECRET

    kept = _upload(client, "kept.txt", b"an hour", expires_in_seconds=3600)
    assert kept.expires_at == kept.created_at + datetime.timedelta(seconds=3600)

    # pages newest first, followed by the SDK's auto-paging (``next_page``), one file a page
    page = client.beta.files.list(limit=1)
    assert [f.id for f in page.data] == [kept.id] and page.next_page
    listed = [f.id for f in client.beta.files.list(limit=1)]
    assert listed[:2] == [kept.id, notes.id]
    # the cursors of the SDKs that page by id
    after = client.beta.files.list(limit=1, extra_query={"after_id": kept.id})
    assert [f.id for f in after.data] == [notes.id]
    before = client.beta.files.list(extra_query={"before_id": notes.id})
    assert [f.id for f in before.data] == [kept.id]

    # ``ids``: those files (one that is not there is left out), on one page
    chosen = client.beta.files.list(ids=[notes.id, "file-nothing"])
    assert [f.id for f in chosen.data] == [notes.id] and chosen.next_page is None

    # ``scope_id`` (an Anthropic session's files): no upload here belongs to one
    assert client.beta.files.list(scope_id="sesn_1").data == []

    deleted = client.beta.files.delete(kept.id)
    assert BetaDeletedFile.model_validate(deleted.model_dump()) == deleted
    assert (deleted.id, deleted.type) == (kept.id, "file_deleted")
    status, body = _error(lambda: client.beta.files.retrieve_metadata(kept.id))
    assert status == 404 and body["type"] == "error" and body["error"]["type"] == "not_found_error"


def test_an_uploaded_file_is_read_as_a_document_block(client):
    notes = _upload(client, "cat.txt", SECRET)
    question = {"type": "text", "text": "What is the cat called?"}
    plain = client.messages.count_tokens(model="stories260K", messages=[{"role": "user", "content": [question]}])
    with_file = client.messages.count_tokens(model="stories260K", messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": notes.id}}, question]}])
    assert with_file.input_tokens > plain.input_tokens + 8  # the file's text reached the prompt


def test_an_image_blocks_file_must_be_an_uploaded_image(client):
    """An image block's ``file`` source: a file that is not there, or is no image, is a 400 naming the field,
    wherever the block is (a turn, a tool result, a custom-content document), on both routes."""
    notes = _upload(client, "notes.txt", SECRET)
    image = {"type": "image", "source": {"type": "file", "file_id": notes.id}}
    missing = {"type": "image", "source": {"type": "file", "file_id": "file-nothing"}}
    tools = [{"name": "look", "input_schema": {"type": "object"}}]
    cases = [
        ([{"role": "user", "content": [image]}], "messages.0.content.0.source.file_id", "is not a PNG"),
        ([{"role": "user", "content": [missing]}], "messages.0.content.0.source.file_id", "there is no file"),
        ([{"role": "user", "content": [{"type": "document", "source": {"type": "content", "content": [missing]}}]}],
         "messages.0.content.0.source.content.0.source.file_id", "there is no file"),
        ([{"role": "user", "content": "Look."},
          {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "look", "input": {}}]},
          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [missing]}]}],
         "messages.2.content.0.content.0.source.file_id", "there is no file"),
    ]
    for messages, field, words in cases:
        for call in (lambda: client.messages.create(model="stories260K", max_tokens=2, messages=messages, tools=tools),
                     lambda: client.messages.count_tokens(model="stories260K", messages=messages, tools=tools)):
            status, body = _error(call)
            assert status == 400 and body["error"]["type"] == "invalid_request_error", body
            assert body["error"]["message"].startswith(f"{field}: ") and words in body["error"]["message"], body


@pytest.mark.parametrize("call, param", [
    (lambda c: c.beta.files.list(limit=0), "limit"),
    (lambda c: c.beta.files.list(limit=1001), "limit"),
    (lambda c: c.beta.files.list(extra_query={"after_id": "file-nothing"}), "after_id"),
    (lambda c: c.beta.files.list(extra_query={"before_id": "file-nothing"}), "before_id"),
    (lambda c: c.beta.files.list(page="page_file-nothing"), "page"),
    (lambda c: c.beta.files.list(page="nonsense"), "page"),
    (lambda c: c.beta.files.list(page="page_file-a", extra_query={"after_id": "file-a"}), "page"),
    (lambda c: c.beta.files.list(ids=["file-a"], limit=5), "ids"),
    (lambda c: c.beta.files.list(ids=[f"file-{i}" for i in range(101)]), "ids"),
    (lambda c: _upload(c, "x.txt", b"x", expires_in_seconds=60), "expires_in_seconds"),
    (lambda c: _upload(c, "x.txt", b"x", extra_body={"color": "red"}), "color"),
])
def test_bad_requests_are_anthropics_400_naming_the_field(client, call, param):
    status, body = _error(lambda: call(client))
    assert status == 400 and body["type"] == "error", body
    assert body["error"]["type"] == "invalid_request_error" and param in body["error"]["message"], body


def test_openai_clients_keep_openais_files_api(server, client):
    oai = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    notes = _upload(client, "shared.txt", SECRET)
    assert oai.files.retrieve(notes.id).model_dump(include={"object", "bytes", "purpose"}) == {
        "object": "file", "bytes": len(SECRET), "purpose": "user_data"}
    assert notes.id in [f.id for f in oai.files.list()]
    with pytest.raises(openai.BadRequestError) as err:  # OpenAI's upload needs a purpose, in OpenAI's error shape
        oai.files.create(file=("x.txt", b"x"), purpose=None)  # type: ignore[arg-type]
    assert err.value.body["param"] == "purpose"
    with pytest.raises(openai.NotFoundError) as err:
        oai.files.retrieve("file-nothing")
    assert set(err.value.response.json()) == {"error"}  # OpenAI's shape, not Anthropic's {"type": "error", ...}


def test_the_key_check_answers_anthropics_sdk_in_its_shape(tmp_path):
    """The 401 of a server with a key, before any route runs, is Anthropic's on the shared path too."""
    srv = start_server(tmp_path, [], api_key="sk-right")
    try:
        wrong = anthropic.Anthropic(base_url=srv.base_url, api_key="sk-wrong", max_retries=0, timeout=120)
        for call in (lambda: wrong.beta.files.list(), lambda: _upload(wrong, "x.txt", b"x")):
            status, body = _error(call)
            assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error", body
        right = anthropic.Anthropic(base_url=srv.base_url, api_key="sk-right", max_retries=0, timeout=120)
        assert _upload(right, "x.txt", b"x").size_bytes == 1
    finally:
        srv.stop()
