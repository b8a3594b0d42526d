"""llama-server's ``id_slot``: a request may pick the engine slot it runs in (waiting while that one is busy), and
every answer tells which slot served it, so that a client can save "its" conversation's slot (POST /slots/{id})
with --parallel > 1."""

from __future__ import annotations

import json

import httpx
import pytest

import jan
from jan.errors import BadRequestError
from server_helpers import ok, slot_action, slot_server_fixtures

PROMPT = "Once upon a time there was a little girl"
GREEDY = {"model": "stories260K", "temperature": 0}


folder, server = slot_server_fixtures(n_parallel=2)  # (two slots to pin a request to)


@pytest.fixture(scope="module")
def model(stories_path):
    with jan.Model(stories_path, n_parallel=2, n_ctx=512, n_threads=1, cache_ram_mib=0) as m:
        yield m


@pytest.mark.parametrize("id_slot", [0, 1, 0])
def test_a_pinned_request_runs_in_its_slot_and_says_so(server, id_slot):
    got = ok(server, "/completion", GREEDY | {"prompt": PROMPT, "n_predict": 3, "id_slot": id_slot})
    assert got["id_slot"] == id_slot, got


def test_a_stream_tells_the_slot_on_its_final_object_as_llama_server_does(server):
    with httpx.stream("POST", server.base_url + "/completion", timeout=120,
                      json=GREEDY | {"prompt": PROMPT, "n_predict": 4, "stream": True, "id_slot": 1}) as r:
        assert r.status_code == 200
        objs = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    assert objs and objs[-1]["stop"] is True
    assert objs[-1]["id_slot"] == 1, objs[-1]
    assert {o["id_slot"] for o in objs[:-1]} <= {-1}, objs  # (llama-server fills it in on the final result only)


def test_an_unpinned_answer_tells_a_real_slot(server):
    got = ok(server, "/completion", GREEDY | {"prompt": PROMPT, "n_predict": 2})
    assert got["id_slot"] in (0, 1), got


@pytest.mark.parametrize("id_slot", [2, 99, -2, "0", 1.5, True])
def test_a_bad_id_slot_is_a_400_in_llama_servers_shape(server, id_slot):
    r = httpx.post(server.base_url + "/completion", timeout=120,
                   json=GREEDY | {"prompt": PROMPT, "n_predict": 2, "id_slot": id_slot})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == 400 and "id_slot" in err["message"], err


def test_save_the_reported_slot_erase_restore_and_the_follow_up_reuses_it(server, folder):
    first = ok(server, "/completion", GREEDY | {"prompt": PROMPT, "n_predict": 4, "id_slot": 1})
    slot = first["id_slot"]
    assert slot == 1
    held = first["tokens_evaluated"] + first["tokens_predicted"] - 1
    saved = slot_action(server, slot, "save", {"filename": "mine.bin"}).json()
    assert saved["id_slot"] == slot and saved["n_saved"] == held, saved
    assert slot_action(server, slot, "erase").json() == {"id_slot": slot, "n_erased": held}
    follow = GREEDY | {"prompt": PROMPT + " named", "n_predict": 4, "id_slot": slot}
    cold = ok(server, "/completion", follow)
    assert cold["id_slot"] == slot and cold["timings"]["cache_n"] == 0, cold
    assert slot_action(server, slot, "erase").json()["n_erased"] > 0
    assert slot_action(server, slot, "restore", {"filename": "mine.bin"}).json()["n_restored"] == held
    warm = ok(server, "/completion", follow)
    assert warm["id_slot"] == slot and warm["content"] == cold["content"]
    assert warm["timings"]["prompt_n"] < cold["timings"]["prompt_n"], (warm["timings"], cold["timings"])


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Once"}]}),
    ("/v1/completions", {"prompt": PROMPT}),
])
def test_the_openai_routes_take_id_slot_as_llama_server_does(server, path, body):
    assert ok(server, path, GREEDY | body | {"max_tokens": 2, "id_slot": 1})["choices"]  # (no field tells it back)
    for bad in (2, -2):  # (2: the server has two slots)
        r = httpx.post(server.base_url + path, timeout=120, json=GREEDY | body | {"max_tokens": 2, "id_slot": bad})
        assert r.status_code == 400, r.text
        assert "id_slot" in r.json()["error"]["message"], r.text


# -- the engine (jan.Model) --------------------------------------------------------------------------------------

def test_the_engine_reports_the_slot_on_every_chunk_and_the_completion(model):
    for slot in (1, 0):
        request = model.stream(PROMPT, max_tokens=3, temperature=0, id_slot=slot)
        chunks = list(request)
        assert chunks and {c.id_slot for c in chunks} == {slot}
        done = model.generate(PROMPT, max_tokens=2, temperature=0, id_slot=slot)
        assert done.id_slot == slot


def test_a_request_pinned_to_a_busy_slot_waits_for_it_then_runs_there(model):
    long = model.stream(PROMPT, max_tokens=480, temperature=0, ignore_eos=True, id_slot=0)
    assert next(long).id_slot == 0  # it runs in slot 0
    waiting = model.stream(PROMPT, max_tokens=2, temperature=0, id_slot=0)
    # more decode steps of the long one: each step's scheduling pass met the pinned request and left it queued,
    # slot 1 idle beside it (an unpinned request would have taken slot 1 at once)
    seen = 0
    for chunk in long:
        seen += len(chunk.token_ids)
        if seen >= 8:
            break
    m = model.metrics()
    other = model.generate(PROMPT, max_tokens=2, temperature=0)  # (the one waiting holds up no other request)
    long.cancel()
    for _ in long:
        pass
    if long.final.finish_reason == "cancelled":  # (still running when the counts were read, as it should be)
        assert m["slots_busy"] == 1 and m["queue_depth"] == 1, m
        assert other.id_slot == 1
    done = waiting.result()
    assert done.id_slot == 0 and done.finish_reason == "length"


def test_the_engine_refuses_a_slot_it_does_not_have(model):
    for bad in (2, -2):  # (BadRequestError for a slot out of the model's range; any bad option is a ValueError)
        with pytest.raises(ValueError) as caught:
            model.generate(PROMPT, max_tokens=1, id_slot=bad)
        assert "id_slot" in str(caught.value)
    with pytest.raises(BadRequestError):
        model.generate(PROMPT, max_tokens=1, id_slot=2)
