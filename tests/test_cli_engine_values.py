"""The engine's named values (KV cache types, speculative modes, the thread governor's settings) are taken by every
command's flags as jan.Model, model.json and requests take them: in any case (``-ctk Q8_0``, ``--speculative NGRAM``
were refused by `jan serve` alone), and with the same ranges (``--parallel`` stopped at 64 slots where a model.json's
``n_parallel`` and jan.Model take llama.cpp's 256)."""

from __future__ import annotations

import importlib

import click
import pytest

from jan.cli import COMMANDS
from jan.engine.model import ADAPTIVE_THREADS, CACHE_TYPES, LOAD_RANGES, check_load_option
from jan.engine.params import SPECULATIVE, speculative_mode

ENGINE_VALUES = {frozenset(CACHE_TYPES), frozenset(ADAPTIVE_THREADS), frozenset(SPECULATIVE)}


def _commands():
    for name, target in COMMANDS.items():
        module, _, attr = target.partition(":")
        yield from _walk(name, getattr(importlib.import_module(module), attr))


def _walk(path: str, command: click.Command):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(f"{path} {name}", sub)


def _engine_choices():
    return [(f"{path} {param.opts[0]}", param) for path, command in _commands() for param in command.params
            if isinstance(param.type, click.Choice) and frozenset(param.type.choices) in ENGINE_VALUES]


def test_the_engine_values_are_found_on_the_commands_that_take_them():
    names = {name for name, _ in _engine_choices()}
    assert {"serve --cache-type-k", "serve --cache-type-v", "serve --speculative", "serve --adaptive-threads",
            "bench --adaptive-threads"} <= names, names


def test_bench_cache_type_lists_take_the_engine_values_in_any_case():
    # `jan bench -ctk`/`-ctv` take llama-bench's lists (``-ctk f16,Q8_0``), so they are no click.Choice: checked here
    from jan.cli.bench import bench

    for flag in ("cache_type_k", "cache_type_v"):
        param = next(p for p in bench.params if p.name == flag)
        assert param.callback(None, param, ("F16,Q8_0", "Bf16")) == ["f16", "q8_0", "bf16"]
        with pytest.raises(click.BadParameter, match="'q9' is not one of"):
            param.callback(None, param, ("f16,q9",))


@pytest.mark.parametrize("name,param", _engine_choices(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_flag_takes_the_engine_values_in_any_case(name, param):
    for value in param.type.choices:
        for spelled in (value.upper(), value.capitalize()):
            assert param.type.convert(spelled, param, None) == value, (name, spelled)
    # as the engine takes them
    if frozenset(param.type.choices) == frozenset(CACHE_TYPES):
        assert check_load_option("cache_type_k", "Q8_0") == "q8_0"
    elif frozenset(param.type.choices) == frozenset(SPECULATIVE):
        assert speculative_mode("NGRAM") == "ngram"
    else:
        assert check_load_option("adaptive_threads", "EXACT") == "exact"


def test_serve_parallel_takes_the_slots_the_engine_takes():
    from jan.cli.serve import serve
    from jan.extensions.llamacpp.extension import LlamaCppSettings

    most = int(LOAD_RANGES["n_parallel"].le)
    param = next(p for p in serve.params if p.name == "n_parallel")
    assert param.type.convert(str(most), param, None) == most
    with pytest.raises(click.BadParameter):
        param.type.convert(str(most + 1), param, None)
    assert check_load_option("n_parallel", most) == most
    assert LlamaCppSettings(n_parallel=most).n_parallel == most  # the extension's own setting too


def test_serve_parses_upper_case_engine_values(tmp_path):
    """Through the real parser: the values reach the server's config in the engine's spelling (here the run stops
    at a contradiction checked after parsing, before anything starts)."""
    from click.testing import CliRunner

    from jan.cli.serve import serve

    result = CliRunner().invoke(serve, ["--data-folder", str(tmp_path), "-ctk", "Q8_0", "-ctv", "F16",
                                        "--speculative", "NGRAM", "--adaptive-threads", "Always",
                                        "--draft-min", "5", "--draft-max", "2"])
    assert result.exit_code == 2, result.output  # (flags that contradict each other: a usage error)
    assert "invalid value" not in result.output.lower() and "--draft-min" in result.output, result.output
