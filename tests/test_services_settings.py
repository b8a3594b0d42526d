"""Issue 11: load options layer as model.json > ``jan serve`` flags > extension settings > defaults,
and a flag the user did not give never overrides a setting."""

from __future__ import annotations

import json

from jan.server.config import ServerConfig
from jan.server.keys import MANAGER
from jan.testing.server import ServerThread


def _loaded_options(data, stories_path, **flags) -> tuple[dict, int]:
    cfg = ServerConfig(data_folder=data, models=[str(stories_path)], n_ctx=256, n_threads=1, **flags)
    with ServerThread(cfg) as srv:
        local = srv.app[MANAGER].get_inference("llama.cpp")
        status = local.engine.status()["stories260K"]
        return status["options"], status["slots_total"]


def test_extension_settings_take_effect_under_serve_and_a_given_flag_wins(tmp_path, stories_path):
    data = tmp_path / "data"
    settings = data / "settings" / "llamacpp" / "settings.json"
    settings.parent.mkdir(parents=True)
    # n_gpu_layers on a CPU-only build is accepted and ignored by llama.cpp; what matters is what jan asked for
    settings.write_text(json.dumps({"n_parallel": 2, "max_queue": 3, "n_gpu_layers": 1}))

    options, slots = _loaded_options(data, stories_path)  # no flags: the settings decide
    assert (options["n_parallel"], options["max_queue"], options["n_gpu_layers"]) == (2, 3, 1)
    assert slots == 2

    options, slots = _loaded_options(data, stories_path, n_parallel=3, max_queue=5, n_gpu_layers=0)
    assert (options["n_parallel"], options["max_queue"], options["n_gpu_layers"]) == (3, 5, 0)
    assert slots == 3


def test_serve_flags_default_to_not_given():
    from click.testing import CliRunner

    from jan.cli.serve import serve

    cfg = ServerConfig()
    assert cfg.n_parallel is None and cfg.max_queue is None and cfg.n_gpu_layers is None
    assert cfg.engine_defaults() == {}
    for option in serve.params:
        if option.name in ("n_parallel", "max_queue", "n_gpu_layers"):
            assert option.default is None, option.name
    assert CliRunner().invoke(serve, ["--help"]).exit_code == 0
