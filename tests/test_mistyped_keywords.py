"""A mistyped keyword of jan's Python API (jan.Model, jan.ModelPool and its loads, open_services) is the TypeError
Python raises, naming the keyword it likely meant, as every other mistyped name in jan is told; nothing is loaded
or opened first."""

from __future__ import annotations

import pytest

import jan
from jan.services import open_services


def test_a_mistyped_model_keyword_names_the_one_it_likely_meant(stories_path):
    with pytest.raises(TypeError, match=r"'n_ctxx' \(did you mean 'n_ctx'\?\)"):
        jan.Model(stories_path, n_ctxx=256)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'zzz'$"):  # no near one: none named
        jan.Model(stories_path, zzz=1)


def test_a_mistyped_pool_keyword_names_the_pools_or_the_load_option_it_likely_meant(stories_path):
    with pytest.raises(TypeError, match=r"max_loadd \(did you mean 'max_loaded'\?\)"):
        jan.ModelPool(max_loadd=2)
    with pytest.raises(TypeError, match=r"n_ctxx \(did you mean 'n_ctx'\?\)"):
        jan.ModelPool(n_ctxx=256)
    with jan.ModelPool() as pool:
        with pytest.raises(TypeError, match=r"n_gpu_layer \(did you mean 'n_gpu_layers'\?\)"):
            pool.load("stories", str(stories_path), n_gpu_layer=0)
        assert pool.loaded() == []


def test_a_mistyped_open_services_keyword_names_the_one_it_likely_meant(tmp_path):
    with pytest.raises(TypeError, match=r"'discover_extension' \(did you mean 'discover_extensions'\?\)"):
        open_services(tmp_path / "data", discover_extension=False)
    assert not (tmp_path / "data").exists()  # refused before the folder is made
