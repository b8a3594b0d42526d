"""The ``jan`` command line: one click group, one module per command family."""

from __future__ import annotations

import importlib

import click

import jan

# Command modules are imported lazily by name so `jan --help` stays fast and
# one broken command cannot take the others down.
COMMANDS = {
    "serve": "jan.cli.serve:serve",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(jan.__version__, prog_name="jan")
def main() -> None:
    """jan: a ChatGPT alternative that runs entirely on your computer."""


if __name__ == "__main__":
    main()
