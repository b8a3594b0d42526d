"""``/tokenize`` with ``with_pieces`` gives each token's piece as llama-server does: its text, or, when the token's
bytes are no whole UTF-8 text (a byte token: part of a character), the bytes as a list of numbers. jan gave such a
piece as U+FFFD, so the pieces of "😀" were four identical replacement characters that neither told the bytes nor
joined back into the emoji. A real server with stories260K (a byte-fallback vocabulary)."""

from __future__ import annotations

import httpx
import pytest

from api_helpers import running

STORIES = "stories260K"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("pieces") / "data", stories_path) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/tokenize", "/v1/tokenize"])
def test_pieces_join_back_into_the_text_bytes_where_a_token_is_part_of_a_character(server, path):
    text = "héllo 😀 wörld"
    answer = httpx.post(server.base_url + path, json={"model": STORIES, "content": text, "with_pieces": True},
                        timeout=120)
    assert answer.status_code == 200, answer.text
    pieces = [t["piece"] for t in answer.json()["tokens"]]
    assert any(isinstance(p, list) for p in pieces)  # the emoji is byte tokens here
    assert all(isinstance(p, str) or all(isinstance(b, int) and 0 <= b < 256 for b in p) for p in pieces)
    joined = b"".join(p.encode() if isinstance(p, str) else bytes(p) for p in pieces).decode()
    assert joined.strip() == text  # (the vocabulary's leading space aside)
    assert "\ufffd" not in joined


@pytest.mark.parametrize("tokens, place", [([1, 600], "tokens[1]"), ([2**31 - 1], "tokens[0]")])
def test_a_token_id_outside_the_vocabulary_is_refused_as_the_other_routes_refuse_it(server, tokens, place):
    # the code and param /v1/embeddings and /v1/completions give such an id (detokenize's code was null)
    answer = httpx.post(server.base_url + "/v1/detokenize", json={"model": STORIES, "tokens": tokens}, timeout=120)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", place), error
    assert "outside the vocabulary (0..511)" in error["message"]
    # llama-server's own /detokenize: its shape, the field named in the message
    answer = httpx.post(server.base_url + "/detokenize", json={"model": STORIES, "tokens": tokens}, timeout=120)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 400, answer.text
    assert answer.json()["error"]["message"].startswith(f"{place}: "), answer.text


def test_content_and_text_are_one_field(server):
    url = server.base_url + "/tokenize"
    both = httpx.post(url, json={"model": STORIES, "content": "Once", "text": "upon"}, timeout=120)
    assert both.status_code == 400 and "give one" in both.json()["error"]["message"], both.text
    by_text = httpx.post(url, json={"model": STORIES, "text": "Once"}, timeout=120).json()
    assert by_text == httpx.post(url, json={"model": STORIES, "content": "Once", "text": "Once"}, timeout=120).json()


@pytest.mark.parametrize("tokens, spelled", [([1, 270], "<s> h"), ([270], " h"), ([1, 2, 270, 485], "<s></s> hé"),
                                             ([233, 154, 168], "日")])
def test_detokenize_spells_special_tokens_and_each_piece_as_llama_server_does(server, tokens, spelled):
    """llama-server's /detokenize joins each token's piece, special tokens as their text (answers taken from
    llama-server 0.3.36 on stories260K); jan dropped the special tokens ([1, 270] came back " h") and the leading
    space of a first piece ([270] came back "h")."""
    for path in ("/detokenize", "/v1/detokenize"):
        answer = httpx.post(server.base_url + path, json={"model": STORIES, "tokens": tokens}, timeout=120)
        assert answer.status_code == 200 and answer.json() == {"content": spelled}, answer.text
