"""An id or name holding a lone UTF-16 surrogate ("\\ud800") is refused where it comes in, naming the argument,
never taken and failed later where it becomes UTF-8 (a log line, a file name, an answer): ``jan.ModelPool`` and
``jan.Model`` took ``model_id="\\ud800"`` (and a not-found error naming it could not even be printed), and an
upload's file name of bytes that are not UTF-8 (aiohttp reads them as lone surrogates) was a 400 in the codec's words
without a code. JSON bodies were already refused by the parser (tests/test_hostile_input.py); a path's percent-escapes
of a surrogate's bytes stay escapes: every route that takes an id or name answers them below 500, in its dialect."""

from __future__ import annotations

import re

import aiohttp
import pytest
from yarl import URL

import jan
from jan.errors import BadRequestError

LONE = "a\ud800"


def test_the_model_pool_refuses_a_model_id_with_a_lone_surrogate_naming_it(stories_path):
    pool = jan.ModelPool()
    model = jan.Model(str(stories_path), n_ctx=64)  # (release_claim's: a model of its own, never the pool's)
    try:
        calls = {"load": lambda: pool.load(LONE, str(stories_path)), "get": lambda: pool.get(LONE),
                 "unload": lambda: pool.unload(LONE), "unload_when_idle": lambda: pool.unload_when_idle(LONE),
                 "is_loaded": lambda: pool.is_loaded(LONE), "set_keep_alive": lambda: pool.set_keep_alive(LONE, 1),
                 "turn": lambda: pool.turn(LONE).__enter__(), "peek": lambda: pool.peek(LONE),
                 "release_claim": lambda: pool.release_claim(LONE, model),
                 "using": lambda: pool.using(LONE, str(stories_path)).__enter__()}
        for name, call in calls.items():
            with pytest.raises(BadRequestError, match="^model_id: the text holds a lone UTF-16 surrogate") as info:
                call()
            str(info.value).encode("utf-8", "backslashreplace")  # (printable)
            assert info.value.param == "model_id", name
        # every method that takes an id, a wrong type alike (peek answered None, release_claim did nothing)
        wrong = {"load": lambda: pool.load(None, str(stories_path)), "get": lambda: pool.get(None),
                 "unload": lambda: pool.unload(5), "unload_when_idle": lambda: pool.unload_when_idle(b"a"),
                 "is_loaded": lambda: pool.is_loaded(3), "set_keep_alive": lambda: pool.set_keep_alive(1.5, 1),
                 "turn": lambda: pool.turn(None).__enter__(), "peek": lambda: pool.peek(5),
                 "release_claim": lambda: pool.release_claim(5, model),
                 "using": lambda: pool.using(None, str(stories_path)).__enter__()}
        assert set(wrong) == set(calls)
        for name, call in wrong.items():
            with pytest.raises(TypeError, match="^model_id: expected a string"):
                call()
        with pytest.raises(TypeError, match="^model: expected the jan.Model"):
            pool.release_claim("a", "a")
        assert pool.loaded() == []
    finally:
        pool.close()
        model.close()


def test_a_model_refuses_a_model_id_with_a_lone_surrogate(stories_path):
    with pytest.raises(BadRequestError, match="^model_id: the text holds a lone UTF-16 surrogate"):
        jan.Model(str(stories_path), model_id=LONE)
    with pytest.raises(TypeError, match="^model_id: expected a string"):
        jan.Model(str(stories_path), model_id=5)


def _routes_with_ids():
    from jan.server.route_index import LAZY_ROUTES

    routes = [(method, path) for _, method, path in LAZY_ROUTES if "{" in path and method != "OPTIONS"]
    return routes + [("GET", "/v1/models/{model_id}")]


#: The UTF-8 bytes of U+D800 (no character: CESU-8), percent-escaped: what a client sends for "\ud800" in a path.
ESCAPED = "a%ED%A0%80"


def _shape_ok(path: str, body) -> bool:
    if path.startswith("/api/"):
        return isinstance(body, dict) and isinstance(body.get("error"), str)
    if path.startswith("/v1/messages"):
        return isinstance(body, dict) and body.get("type") == "error"
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


@pytest.mark.timeout(300)
async def test_every_route_taking_an_id_answers_an_escaped_surrogate_below_500_in_its_dialect(server):
    """(Each {id} of every route, and a listing's cursor.)"""
    bad = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for method, path in _routes_with_ids():
            filled = re.sub(r"\{[^}]+\}", ESCAPED, path)
            url = URL(server.base_url + filled + f"?after={ESCAPED}&name={ESCAPED}", encoded=True)
            kwargs = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
            async with s.request(method, url, **kwargs) as resp:
                text = await resp.text()
                if resp.status >= 500:
                    bad.append((method, path, resp.status, text[:200]))
                elif resp.status >= 400 and method != "HEAD" and not _shape_ok(path, await resp.json()):
                    bad.append((method, path, resp.status, text[:200]))
    assert not bad, bad


@pytest.mark.parametrize("route", ["/v1/files", "/v1/audio/transcriptions"])
async def test_an_uploaded_file_name_that_is_not_utf8_is_a_400_naming_the_field(server, route):
    boundary = "XyZ"
    purpose = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
               if route == "/v1/files" else
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n").encode()
    body = (purpose + f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; ".encode()
            + b'filename="a\xff.txt"\r\nContent-Type: text/plain\r\n\r\nhello\r\n' + f"--{boundary}--\r\n".encode())
    async with aiohttp.ClientSession() as s, s.post(
            server.base_url + route, data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}) as resp:
        status, answer = resp.status, await resp.json()
    assert status == 400, answer
    assert answer["error"]["param"] == "file" and answer["error"]["code"] == "invalid_unicode"
    assert answer["error"]["message"] == "file: the file name is not UTF-8 text"
