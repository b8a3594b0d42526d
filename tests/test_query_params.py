"""Every route's integer query parameters are read by one parser (``jan.server.validation.query_int``): a value that
is no plain decimal integer in the route's range is the same clear 400 naming the parameter, in the dialect's error
shape, on every route. Before, each list had its own copy: ``int()`` took ``" 5"``, ``"+5"`` and ``"5_0"`` on
threads, messages, runs, steps, assistants and Responses input items, OpenAI's file list took ``"²"`` by
``str.isdigit`` and then failed in ``int()``, and each said it in its own words."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from api_helpers import running

ANTHROPIC = {"anthropic-version": "2023-06-01"}

#: route -> (path, headers, the limit's highest valid value, the dialect whose error shape it answers in)
LIST_ROUTES = {
    "threads": ("/v1/threads", {}, 100, "openai"),
    "messages": ("/v1/threads/{thread}/messages", {}, 100, "openai"),
    "runs": ("/v1/threads/{thread}/runs", {}, 100, "openai"),
    "run steps": ("/v1/threads/{thread}/runs/run_nope/steps", {}, 100, "openai"),
    "assistants": ("/v1/assistants", {}, 100, "openai"),
    "responses input items": ("/v1/responses/resp_nope/input_items", {}, 100, "openai"),
    "openai files": ("/v1/files", {}, 10_000, "openai"),
    "anthropic models": ("/v1/models", ANTHROPIC, 1000, "anthropic"),
    "anthropic files": ("/v1/files", ANTHROPIC, 1000, "anthropic"),
}

#: Values that are no integer at all, whatever the range.
NOT_INTEGERS = [" 5", "5 ", "+5", "5_0", "abc", "1e2", "5.0", "0x10", "\u0665", "\u00b2", "--5", "-"]
HUGE = "9" * 5000  # past what int() parses from a string at all


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with running(tmp_path_factory.mktemp("query") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def thread(srv):
    return _get(srv, "/v1/threads", method="POST", body={})[1]["id"]


def _get(srv, path: str, headers: dict | None = None, *, method: str = "GET", body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _with(path: str, name: str, value: str) -> str:
    return f"{path}?{name}={urllib.parse.quote(value, safe='')}"


def _assert_refused(status: int, body, name: str, dialect: str) -> None:
    assert status == 400, body
    if dialect == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        message = body["error"]["message"]
    else:
        error = body["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == name, body
        assert error["code"] == "invalid_value", body
        message = error["message"]
    assert message.startswith(f"{name}: must be an integer"), message
    assert len(message) < 200, message  # a huge value is not repeated whole


@pytest.mark.parametrize("route", list(LIST_ROUTES))
@pytest.mark.parametrize("bad", [*NOT_INTEGERS, "-1", "0", "HIGH+1", "99999999999999999999", HUGE],
                         ids=lambda v: repr(v[:12]))
def test_a_bad_list_limit_is_one_400_naming_it_on_every_route(srv, thread, route, bad):
    path, headers, high, dialect = LIST_ROUTES[route]
    value = str(high + 1) if bad == "HIGH+1" else bad
    status, body = _get(srv, _with(path.format(thread=thread), "limit", value), headers)
    _assert_refused(status, body, "limit", dialect)


@pytest.mark.parametrize("route", list(LIST_ROUTES))
def test_valid_list_limits_still_work(srv, thread, route):
    path, headers, high, _dialect = LIST_ROUTES[route]
    for value in ("1", str(high), ""):
        status, body = _get(srv, _with(path.format(thread=thread), "limit", value), headers)
        # a run or response that does not exist is its 404: the limit itself was taken
        assert status in ((404,) if "_nope" in path else (200,)), (value, body)


@pytest.mark.parametrize("route", [r for r in LIST_ROUTES if LIST_ROUTES[r][3] == "openai"])
def test_a_bad_order_is_one_400_naming_it(srv, thread, route):
    path = LIST_ROUTES[route][0].format(thread=thread)
    status, body = _get(srv, _with(path, "order", "up"))
    assert status == 400 and body["error"]["param"] == "order", body
    assert body["error"]["message"] == "order: must be 'asc' or 'desc', not 'up'"


#: Integer query parameters that are positions, not list sizes: any integer (below 0: from the start), as before.
POSITIONS = {
    "run events after": ("/v1/threads/{thread}/runs/run_nope/events", "after"),
    "response stream starting_after": ("/v1/responses/resp_nope", "starting_after"),
}


@pytest.mark.parametrize("route", list(POSITIONS))
@pytest.mark.parametrize("bad", [*NOT_INTEGERS, "99999999999999999999", HUGE], ids=lambda v: repr(v[:12]))
def test_a_bad_position_is_one_400_naming_it(srv, thread, route, bad):
    path, name = POSITIONS[route]
    status, body = _get(srv, _with(path.format(thread=thread), name, bad))
    _assert_refused(status, body, name, "openai")


@pytest.mark.parametrize("route", list(POSITIONS))
def test_valid_positions_still_work(srv, thread, route):
    path, name = POSITIONS[route]
    for value in ("-5", "-1", "0", "3", ""):
        status, body = _get(srv, _with(path.format(thread=thread), name, value))
        assert status == 404, (value, body)  # taken; the run or response does not exist
