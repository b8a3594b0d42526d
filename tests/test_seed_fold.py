"""Seeds wider than llama.cpp's 32 bits: one fold (:func:`jan.engine.params.engine_seed`) for the Python API, the
services (every dialect) and the CLI. Seeds below 2**32 are kept exactly; larger and negative int64 seeds fold to
distinct 32-bit ones instead of wrapping onto the small ones; ``-1`` is "no seed" (a fresh one is drawn); a seed
outside int64 is a 400 naming the field in each dialect."""

from __future__ import annotations

import pytest
from api_helpers import running
from cut_off_helpers import post

from jan.engine.params import engine_seed
from jan.errors import BadRequestError
from jan.services.local import client_seed, seeds

PROMPT = "Once upon a time"
SAMPLED = {"max_tokens": 60, "temperature": 1.0}


@pytest.fixture(scope="module")
def stories(stories_path):
    """stories260K with one slot, this module's own: a seed replays exactly only when the request is decoded with the
    same batch-mates, and the session's shared model may still be finishing another module's request (a sample at
    temperature 1 then parted in 4 of 100 seeds with another request running beside it: a CI run failed so)."""
    import jan

    model = jan.Model(stories_path, n_parallel=1, n_ctx=256, n_threads=1)
    yield model
    model.close()


# -- the fold itself -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 7, 1234, 2**31, 2**32 - 2, 2**32 - 1])
def test_seeds_below_2_32_are_kept_exactly(seed):
    assert engine_seed(seed) == seed


def test_wider_seeds_fold_apart_from_the_low_word():
    assert engine_seed(2**32 + 1) != 1
    assert engine_seed(-2) != 2**32 - 2  # what plain truncation made of -2
    wide = [2**32 + 1, 2**33 + 1, 2**40 + 1, 2**63 - 1, -2, -(2**32) + 1, -(2**63), 5 * 2**32, 5 * 2**32 + 1]
    folded = [engine_seed(s) for s in wide]
    assert len(set(folded)) == len(wide), folded
    assert all(0 <= f < 2**32 - 1 for f in folded), folded  # never llama.cpp's "random" seed
    assert engine_seed(2**32 + 1) == engine_seed(2**32 + 1)  # a fold, not a draw


def test_minus_one_means_no_seed():
    assert engine_seed(-1) is None and engine_seed(None) is None
    options = {"seed": -1, "temperature": 1.0}
    assert client_seed(options) is None and options == {"temperature": 1.0, "reproducible": False}
    options = {"seed": 2**32 + 1}
    assert client_seed(options) == engine_seed(2**32 + 1) and options["reproducible"] is True


@pytest.mark.parametrize("seed", [2**63, 2**64, 2**64 - 1, -(2**63) - 1, 1.5, "7", True])
def test_a_seed_outside_int64_is_refused_naming_the_field(seed):
    with pytest.raises(BadRequestError) as caught:
        engine_seed(seed)
    assert caught.value.param == "seed" and "seed" in str(caught.value)


def test_each_choice_gets_a_consecutive_seed_from_the_folded_one():
    assert seeds(5, 3) == [5, 6, 7]
    base = engine_seed(2**32 + 1)
    assert seeds(2**32 + 1, 2) == [base, base + 1] != seeds(1, 2)
    drawn = seeds(None, 4)
    assert len(set(drawn)) == 4 and all(0 <= s < 2**32 for s in drawn)


# -- the engine ----------------------------------------------------------------------------------------------------
def test_seed_1_and_2_32_plus_1_sample_differently(stories):
    one = stories.generate(PROMPT, **SAMPLED, seed=1)
    assert one.seed == 1  # kept as it was
    assert stories.generate(PROMPT, **SAMPLED, seed=1).text == one.text
    wide = stories.generate(PROMPT, **SAMPLED, seed=2**32 + 1)
    assert wide.seed == engine_seed(2**32 + 1)
    assert wide.text != one.text
    assert stories.generate(PROMPT, **SAMPLED, seed=2**32 + 1).text == wide.text  # and reproducible


def test_negative_seeds_other_than_minus_one_are_seeds(stories):
    a = stories.generate(PROMPT, **SAMPLED, seed=-2)
    assert a.seed == engine_seed(-2) and stories.generate(PROMPT, **SAMPLED, seed=-2).text == a.text
    assert a.text != stories.generate(PROMPT, **SAMPLED, seed=2**32 - 2).text


def test_minus_one_draws_a_seed_that_replays(stories):
    drawn = stories.generate(PROMPT, **SAMPLED, seed=-1)
    assert 0 <= drawn.seed < 2**32 - 1
    assert stories.generate(PROMPT, **SAMPLED, seed=drawn.seed).text == drawn.text


def test_the_python_api_refuses_a_seed_outside_int64(stories):
    with pytest.raises(BadRequestError, match="seed"):
        stories.generate(PROMPT, max_tokens=2, seed=2**64)


# -- every dialect, through the server -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory, stories_path):
    with running(tmp_path_factory.mktemp("seeds") / "data", stories_path) as server:
        yield server


def _completion(srv, seed):
    status, body = post(srv, "/v1/completions", {"model": "stories260K", "prompt": PROMPT, "seed": seed, **SAMPLED})
    assert status == 200, body
    return body["choices"][0]["text"]


def _ollama(srv, seed):
    status, body = post(srv, "/api/generate", {"model": "stories260K", "prompt": PROMPT, "stream": False, "raw": True,
                                               "options": {"seed": seed, "num_predict": 60, "temperature": 1.0}})
    assert status == 200, body
    return body["response"]


def test_the_dialects_fold_wide_seeds(srv, stories):
    # the same text as the Python API gives for the same seed: one fold, wherever the seed came from
    assert _completion(srv, 1) == stories.generate(PROMPT, **SAMPLED, seed=1).text
    assert _completion(srv, 2**32 + 1) == stories.generate(PROMPT, **SAMPLED, seed=2**32 + 1).text
    assert _completion(srv, 2**32 + 1) != _completion(srv, 1)
    assert _ollama(srv, 2**32 + 1) != _ollama(srv, 1)
    assert _ollama(srv, 2**32 + 1) == _ollama(srv, 2**32 + 1)
    # a negative seed other than -1 is a seed in Ollama's options too, the same one as OpenAI's
    for seed in (-3, -(2**63)):
        assert _ollama(srv, seed) == _ollama(srv, seed)
        assert _ollama(srv, seed) == stories.generate(PROMPT, temperature=1.0, max_tokens=60, seed=seed).text


@pytest.mark.parametrize("seed", [2**64, 2**63, -(2**63) - 1])
def test_a_seed_outside_int64_is_400_in_every_dialect(srv, seed):
    status, err = post(srv, "/v1/completions", {"model": "stories260K", "prompt": PROMPT, "seed": seed})
    assert status == 400 and err["error"]["param"] == "seed", err
    status, err = post(srv, "/v1/chat/completions", {"model": "stories260K", "seed": seed,
                                                     "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400 and err["error"]["param"] == "seed", err
    status, err = post(srv, "/api/generate", {"model": "stories260K", "prompt": PROMPT, "options": {"seed": seed}})
    assert status == 400 and "seed" in err["error"], err
    status, thread = post(srv, "/v1/threads", {})
    status, err = post(srv, f"/v1/threads/{thread['id']}/runs", {"assistant_id": "jan", "seed": seed})
    assert status == 400 and err["error"]["param"] == "seed", err
