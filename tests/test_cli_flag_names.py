"""A load option a command's flag gave is named by that flag, as the user typed it: `jan serve -ctk q8_0` on a model
whose heads q8_0 cannot hold said "cannot load with the server's cache_type_k ('q8_0', given for every model when
the server started)", the engine's field, where `jan bench -ctk q8_0` said "-ctk/--cache-type-k"; `jan run -c N`
said "--ctx-size" (and its advice "-c/--ctx-size"). The flags' names come from the commands' own declarations
(typed_flags), so each flag that maps to a model setting is covered, not a hand-kept list of some."""

from __future__ import annotations

import pytest

from test_cli_helpers import cli_env, fails
from test_cli_helpers import jan as jan_cli

from jan.cli.bench import bench
from jan.cli.common import typed_flags
from jan.cli.inference import LOAD_FLAGS
from jan.cli.run import run
from jan.cli.serve import serve
from jan.errors import ModelSettingError, ServerDefault
from jan.server.config import ServerConfig


def test_every_flag_that_gives_a_load_option_has_its_typed_name():
    served = typed_flags(serve)
    # every load option `jan serve` hands the engine for every model (ServerConfig.engine_defaults) is a flag of it
    options = ServerConfig(n_parallel=1, max_queue=1, n_gpu_layers=1, n_ctx=64, n_threads=1, adaptive_threads="off",
                           cache_type_k="f16", cache_type_v="f16", cache_ram_mib=0, speculative="ngram", draft_max=2,
                           draft_min=1, ngram=2, draft_p_min=0.5, draft_model="d.gguf", lora=[("a.gguf", 1.0)],
                           lora_init_without_apply=True, image_min_tokens=1, image_max_tokens=2).engine_defaults()
    assert set(options) <= set(served), set(options) - set(served)
    assert served["cache_type_k"] == "-ctk/--cache-type-k" and served["n_ctx"] == "-c/--ctx-size"
    assert served["draft_model"] == "-md/--model-draft" and served["n_parallel"] == "-np/--parallel"
    assert served["lora"] == "--lora/--lora-scaled" and served["ngram"] == "--spec-ngram-size"
    ran = typed_flags(run)
    assert set(LOAD_FLAGS) <= set(ran) and ran["n_ctx"] == "-c/--ctx-size" and ran["n_gpu_layers"] == "-ngl/--gpu-layers"
    benched = typed_flags(bench)
    assert benched["n_batch"] == "-b/--batch-size" and benched["cache_type_k"] == "-ctk/--cache-type-k"
    assert typed_flags() == {}  # (outside a command: nothing to name)


def test_a_server_default_is_the_servers_to_a_client_and_the_flag_to_the_command():
    cause = ModelSettingError("cache_type_k: q8_0 stores blocks of 32 values", param="cache_type_k")
    given = ServerDefault("m", "cache_type_k", "q8_0", cause)
    error = ModelSettingError(given.said())
    error.given_by_server = given
    # an HTTP client never sent it: the server's, as before
    assert str(error) == ("model 'm' cannot load with the server's cache_type_k ('q8_0', given for every model when "
                          "the server started): q8_0 stores blocks of 32 values")
    assert error.message({"cache_type_k": "-ctk/--cache-type-k"}) == (
        "model 'm' cannot load with -ctk/--cache-type-k q8_0: q8_0 stores blocks of 32 values")


def test_jan_serve_names_the_flag_a_model_cannot_load_with(tmp_path, stories_path):
    env = cli_env(tmp_path / "data")
    result = jan_cli("serve", "--port", "0", "--model", stories_path, "-ctk", "q8_0", env=env)
    fails(result, "model 'stories260K' cannot load with -ctk/--cache-type-k q8_0: q8_0 stores blocks")
    assert "cache_type_k" not in result.stderr.strip().splitlines()[-1], result.stderr
    result = jan_cli("serve", "--port", "0", "--model", stories_path, "-np", "1", "-c", "2147483647", env=env)
    last = fails(result, "cannot load with -c/--ctx-size 2147483647: a context of", "use a smaller -c/--ctx-size")
    assert "n_ctx" not in last and "ctx_len" not in last, last
    # a setting the refusal advises giving is named as the command takes it: --speculative draft without a draft model
    # said "'draft' needs a draft_model", a name jan serve's command line does not take
    result = jan_cli("serve", "--port", "0", "--model", stories_path, "--speculative", "draft", env=env)
    last = fails(result, "cannot load with --speculative draft: 'draft' needs a draft model; give one as "
                         "-md/--model-draft")
    assert "draft_model" not in last, last


def _optional_value_options() -> list[tuple[str, str]]:
    """(command, option) for every option of jan's commands whose value may be left out (``--ollama-port``)."""
    import importlib

    import click

    from jan.cli import COMMANDS

    found = []
    for name, where in COMMANDS.items():
        module, attr = where.split(":")
        command = getattr(importlib.import_module(module), attr)
        for sub_name, sub in ([(name, command)] if not isinstance(command, click.Group) else
                              [(f"{name} {n}", c) for n, c in command.commands.items()]):
            found += [(sub_name, p.opts[-1]) for p in sub.params if isinstance(p, click.Option)
                      and getattr(p, "_flag_needs_value", False) and isinstance(p.type, click.types._NumberParamTypeBase)]
    return found


@pytest.mark.parametrize("command, option", _optional_value_options())
@pytest.mark.parametrize("spelled", ["apart", "joined"])
def test_a_negative_number_for_an_option_whose_value_may_be_left_out_is_refused_by_name(command, option, spelled,
                                                                                          tmp_path):
    """`jan serve --ollama-port -1` (or `=-1`) was "No such option '-1'": click read the number as an option. It is
    the option's own range error, as `--port -1` gets."""
    given = [option, "-1"] if spelled == "apart" else [f"{option}=-1"]
    result = jan_cli(*command.split(), *given, env=cli_env(tmp_path / "jan"), timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"Invalid value for '{option}'" in result.stderr and "No such option" not in result.stderr, result.stderr
