"""The KV cache and speculative decoding flags, one definition for every command that loads models with them:
``jan serve`` (for every model it serves) and ``jan run``/``jan chat`` (for a model they load in this process), with
llama-server's and llama-cli's names (``-ctk``, ``-ctv``, ``-md``, ``--draft-max``, ...)."""

from __future__ import annotations

from typing import Callable

import click

from jan.cli.common import PathParam, SamplingValue, Words
from jan.engine.model import CACHE_TYPES
from jan.engine.params import SPECULATIVE

#: The load options these flags give (each the flag's parameter name, the engine's and the model.json's alike).
SPEED_OPTIONS = ("cache_type_k", "cache_type_v", "speculative", "draft_model", "draft_p_min", "draft_max",
                 "draft_min", "ngram")


def speed_options(draft_wins: str) -> Callable[[Callable], Callable]:
    """``-ctk/--cache-type-k``, ``-ctv/--cache-type-v``, ``--speculative``, ``-md/--model-draft``,
    ``--draft-p-min``, ``--draft-max``, ``--draft-min`` and ``--spec-ngram-size``; ``draft_wins`` says, in
    ``--model-draft``'s help, whether a model.json's own ``settings.draft_model`` wins over the flag or the flag
    over it. The command takes them as keyword parameters named as :data:`SPEED_OPTIONS` (None: not given)."""
    options = [
        click.option("--cache-type-k", "-ctk", "cache_type_k", default=None,
                     type=Words(CACHE_TYPES), help="KV cache type for K [default: f16]."),
        click.option("--cache-type-v", "-ctv", "cache_type_v", default=None,
                     type=Words(CACHE_TYPES),
                     help="KV cache type for V [default: f16; a quantized type turns flash attention on]."),
        click.option("--speculative", "--spec-type", "speculative", default=None,
                     type=Words(SPECULATIVE),
                     help="Speculative decoding: 'ngram' drafts from earlier text (prompt lookup), 'draft' with the "
                          "draft model (the default with --model-draft); output is unchanged."),
        click.option("--model-draft", "-md", "draft_model", default=None,
                     type=PathParam(exists=True, dir_okay=False, resolve_path=True),
                     help=f"A GGUF with the same vocabulary that drafts tokens (speculative decoding); {draft_wins}."),
        click.option("--draft-p-min", "draft_p_min", default=None, type=SamplingValue("draft_p_min"),
                     help="Draft model: stop drafting below this top-token probability [default: 0.75]."),
        click.option("--draft-max", "--draft", "draft_max", default=None, type=click.IntRange(0, 256),
                     help="Tokens drafted per step at most [default: 16]."),
        click.option("--draft-min", "draft_min", default=None, type=click.IntRange(0, 256),
                     help="Fewer found: no draft; at most --draft-max [default: 0]."),
        click.option("--spec-ngram-size", "ngram", default=None, type=click.IntRange(1, 64),
                     help="Tokens matched to find an earlier occurrence [default: 3]."),
    ]

    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func
    return decorate
