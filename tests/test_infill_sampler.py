"""llama.cpp's infill sampler in jan's chain (``jan.Model`` option ``infill``; llama-server's ``samplers`` naming
``infill``, as llama.vscode and llama.vim send it): after the temperature, in sampled requests. Behaviour, on the
real stories260K model: it changes what is sampled, replays from a seed, and leaves greedy output alone."""

from __future__ import annotations

import pytest

import jan
from jan import _engine

PROMPT = "Once upon a time, there was a little"


@pytest.fixture(scope="module")
def model(stories_path):
    # one slot of its own: a seeded sample replays only with the same batch-mates (none here)
    m = jan.Model(stories_path, n_ctx=256, n_parallel=1, n_threads=1)
    yield m
    m.close()


def test_it_is_off_unless_asked():
    assert _engine.SamplingParams().infill is False


def test_greedy_output_is_unchanged(model):
    plain = model.generate(PROMPT, max_tokens=40, temperature=0)
    assert model.generate(PROMPT, max_tokens=40, temperature=0, infill=True).text == plain.text


def test_it_changes_what_is_sampled_and_replays_from_a_seed(model):
    def sample(seed: int, infill: bool) -> str:
        return model.generate(PROMPT, max_tokens=48, temperature=1.0, top_k=40, top_p=0.99, seed=seed,
                              infill=infill).text

    seeds = range(1, 9)
    with_infill = [sample(s, True) for s in seeds]
    assert with_infill == [sample(s, True) for s in seeds]  # (a seed replays)
    # merging the candidates that spell the start of another one (stories260K's small vocabulary has many:
    # "h", "he", "hel"...) moves the probabilities: some of the same seeds' samples part from the plain chain's
    assert any(a != b for a, b in zip(with_infill, (sample(s, False) for s in seeds)))


@pytest.mark.parametrize("value", ["yes", 1, 0.5])
def test_it_is_a_flag(model, value):
    with pytest.raises(ValueError, match=r"^infill: expected true or false"):
        model.generate(PROMPT, max_tokens=1, infill=value)
