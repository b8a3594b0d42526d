"""``jan help [COMMAND]...``: a command's help, as ``jan COMMAND --help`` prints it (``ollama help``, ``git help``)."""

from __future__ import annotations

import click

from jan.cli.common import nonempty_param


@click.command("help")
@click.argument("names", nargs=-1, metavar="[COMMAND]...", callback=nonempty_param)
@click.pass_context
def help_command(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show the help of jan, or of a COMMAND (`jan help models import`)."""
    at = ctx.find_root()
    for name in names:
        command = at.command
        if not isinstance(command, click.Group):
            raise click.UsageError(f"`{at.command_path}` has no commands of its own (not {name!r})", ctx)
        found = command.get_command(at, name)
        if found is None:
            import difflib

            close = difflib.get_close_matches(name, command.list_commands(at), n=1)
            raise click.UsageError(f"No such command {name!r} in `{at.command_path}`."
                                   + (f" Did you mean {close[0]!r}?" if close else ""), ctx)
        at = click.Context(found, info_name=found.name, parent=at)
    click.echo(at.get_help())
