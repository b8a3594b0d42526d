"""The ``jan`` command line: one click group, one module per command family.

Commands that can use a running jan server do (``--url``, ``$JAN_API_URL``);
otherwise they work on the data folder and load models in this process.
See :mod:`jan.cli.common` for how that choice is made.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import sys

import click

import jan
from jan._entry import exit_interrupted

# Command modules are imported lazily by name so `jan --help` stays fast and
# one broken command cannot take the others down.
COMMANDS = {
    "serve": "jan.cli.serve:serve",
    "run": "jan.cli.run:run",
    "chat": "jan.cli.chat:chat",
    "models": "jan.cli.models:models",
    "threads": "jan.cli.threads:threads",
    "files": "jan.cli.files:files",
    "extensions": "jan.cli.extensions:extensions",
    "mcp": "jan.cli.mcp:mcp",
    "info": "jan.cli.info:info",
    "bench": "jan.cli.bench:bench",
    "help": "jan.cli.help:help_command",
}

# One-line summaries for `jan --help` without importing every command module.
SUMMARIES = {
    "serve": "Run the OpenAI-compatible API server and the web chat page.",
    "run": "Answer one prompt with a model and exit.",
    "chat": "Chat with a model in the terminal.",
    "models": "List, show, import, pull, remove, start and stop models.",
    "threads": "List, show, export and delete saved conversations.",
    "files": "List, show, upload, download and delete files (OpenAI's Files API).",
    "extensions": "List, enable and disable extensions.",
    "mcp": "List, add and remove MCP servers (tools for assistants).",
    "info": "Show versions, the llama.cpp build, devices and where data lives.",
    "bench": "Measure prompt processing and generation speed (like llama-bench).",
    "help": "Show the help of jan or of a command (`jan help models import`).",
}


class _Context(click.Context):
    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        except KeyboardInterrupt:  # in a close callback, after the command: as anywhere else in it
            exit_interrupted()


def _misplaced(group: click.Group, ctx, args: list[str], option: str) -> tuple[str, str] | None:
    """Where ``option``, given to ``group`` before its command, belongs: (the command's path, the command line
    with the option after it), when the command the arguments name (a group's subcommand too) takes it; else
    None."""
    at = next((i for i, a in enumerate(args) if a == option or a.startswith(option + "=")), None)
    if at is None:
        return None
    for valued in (True, False):  # (whether the option takes the next argument is the command's to say)
        taken = args[at:at + 2] if valued and "=" not in args[at] else args[at:at + 1]
        rest = args[:at] + args[at + len(taken):]
        path: list[str] = []
        command: click.Command = group
        for token in rest:
            if token.startswith("-") or not isinstance(command, click.Group):
                break
            sub = command.get_command(ctx, token)
            if sub is None:
                break
            path.append(token)
            command = sub
        param = next((p for p in command.params if isinstance(p, click.Option)
                      and option in (*p.opts, *p.secondary_opts)), None) if path else None
        if param is None or (len(taken) == 2 or "=" in args[at]) != (not param.is_flag and not param.count):
            continue
        line = " ".join(shlex.quote(t) for t in ["jan", *path, *taken, *rest[len(path):]])
        return " ".join(path), f"`{line}`"
    return None


_RUN_TOGETHER = re.compile(r"-[A-Za-z][A-Za-z_]*[A-Za-z]")


def refuse_unknown_words(ctx: click.Context, name: str, command: click.Command | None, args: list[str]) -> None:
    """Refuse a llama.cpp-style option word (``-nkvo``, ``-mmp``, ``-fa``) that ``command`` does not have, when the
    command takes such words itself (``-ngl``, ``-ctk``: serve, run, chat, bench).

    click reads an unknown ``-word`` as short options run together: ``-nkvo`` was ``-n kvo`` ("'kvo' is not a whole
    number"), ``-embd`` "No such option '-e'", and ``-mmp 0``/``-mg 0`` were ``-m mp``/``-m g``, a model to load,
    though llama-bench's and llama-server's users give them as options, which jan's docs list as not taken. Raises
    :class:`click.NoSuchOption` naming the word as typed, with the command's options near it."""
    if command is None or isinstance(command, click.Group):
        return
    options = [p for p in command.params if isinstance(p, click.Option)]
    names = {n: p for p in options for n in (*p.opts, *p.secondary_opts)}
    if not any(_RUN_TOGETHER.fullmatch(n) for n in names):
        return  # a command of click's own style, where `-ab` may be two flags
    names.update((n, None) for n in ctx.help_option_names)
    skip = False
    for at, token in enumerate(args):
        if skip:
            skip = False
            continue
        if token == "--":
            break
        _refuse_negative_optional_value(ctx, name, command, names, token, args[at + 1:at + 2])
        option = names.get(token, False)
        if option is not False:
            skip = option is not None and not option.is_flag and not option.count
        elif _RUN_TOGETHER.fullmatch(token):
            import difflib

            close = difflib.get_close_matches(token, [n for n in names if not n.startswith("--")], n=3, cutoff=0.5)
            sub = click.Context(command, info_name=name, parent=ctx)
            raise click.NoSuchOption(token, possibilities=close, ctx=sub)


_NEGATIVE_NUMBER = re.compile(r"-\d[\d.eE+-]*")


def _refuse_negative_optional_value(ctx: click.Context, name: str, command: click.Command,
                                    names: dict[str, click.Option | None], token: str, following: list[str]) -> None:
    """A negative number given to an option whose value may be left out (``--ollama-port -1``, ``--ollama-port=-1``):
    click reads the number as an option of its own, "No such option '-1'", which named neither the option nor its
    range. Converted here by the option's own type, so the error is the one ``--port -1`` gets."""
    option_name, eq, value = token.partition("=")
    option = names.get(option_name)
    if option is None or not getattr(option, "_flag_needs_value", False):
        return
    value = value if eq else (following[0] if following else "")
    if _NEGATIVE_NUMBER.fullmatch(value):
        option.type_cast_value(click.Context(command, info_name=name, parent=ctx), value)


class LazyGroup(click.Group):
    context_class = _Context

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            command = getattr(importlib.import_module(module), attr)
        return command

    def resolve_command(self, ctx, args):
        # click guesses a mistyped command from the commands registered, and jan's are imported on first use (none
        # is registered): `jan serv` said "No such command" alone where `jan models lst` says "Did you mean 'list'?"
        name = args[0] if args else ""
        if (not ctx.resilient_parsing and isinstance(name, str) and name and not name.startswith("-")
                and self.get_command(ctx, name) is None):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            ctx.fail(f"No such command {name!r}." + (f" Did you mean {close[0]!r}?" if close else ""))
        name, command, rest = super().resolve_command(ctx, args)
        if not ctx.resilient_parsing:
            refuse_unknown_words(ctx, name, command, rest)
        return name, command, rest

    def parse_args(self, ctx, args):
        given = list(args)  # (click's parser takes the arguments off the list it is given)
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            # `jan --data-folder X models list`: the option is the command's (every connection option is), and
            # given before it, click said "No such option" alone, as if jan had none such
            where = _misplaced(self, ctx, given, exc.option_name)
            if where is None:
                raise
            raise click.UsageError(f"No such option {exc.option_name!r} before the command: it is an option of "
                                   f"`jan {where[0]}`, given after it: {where[1]}", ctx) from None

    def format_commands(self, ctx, formatter):
        rows = [(name, SUMMARIES.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, *args, **kwargs):
        # A Ctrl-C wherever click would take it (parsing the arguments, closing the context, or one that came while
        # a command's own interrupt was being reported) ends the command as a Ctrl-C in the command does: quietly,
        # with status 130. click's own answer is "Aborted!" and status 1.
        try:
            return super().main(*args, **kwargs)
        except KeyboardInterrupt:
            exit_interrupted()

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:  # (click's main would say "Aborted!")
            exit_interrupted()
        except BrokenPipeError:
            # `jan --help | head -0`, `jan --version | ...`: printed as the arguments are parsed, before invoke(),
            # where click's main made a closed pipe status 1
            _reader_gone()

    def invoke(self, ctx):
        try:
            from jan.cli.common import lenient_output, lenient_stdin

            lenient_stdin()  # whatever a command reads from stdin: bytes that are not UTF-8 become U+FFFD
            _closed_standard_streams(ctx)
            lenient_output()  # whatever it writes: an ASCII or latin-1 locale is no UnicodeEncodeError
            return super().invoke(ctx)
        except KeyboardInterrupt:
            exit_interrupted()
        except BrokenPipeError:
            _reader_gone()
        except jan.JanError as exc:
            from jan.cli.common import CLIError, error_text

            raise CLIError(error_text(exc)) from None
        except UnicodeEncodeError as exc:
            # An argument's bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape); written into
            # a JSON file (mcp.json's args, a file.json) they cannot be encoded. Said as the argument's fault, not a
            # traceback; text sent to a model has them replaced already (text_param).
            bad = exc.object[exc.start:exc.end] if isinstance(exc.object, str) else ""
            if not bad or not all("\udc80" <= ch <= "\udcff" for ch in bad):
                raise
            from jan.cli.common import CLIError

            raw = bad.encode("utf-8", "surrogateescape")
            raise CLIError(f"an argument holds bytes that are not UTF-8 ({raw!r}), which jan's files (UTF-8 JSON) "
                           "cannot keep: give it in UTF-8") from None
        except OSError as exc:
            # A file jan could not read or write (a read-only data folder, a full disk, a file where a folder
            # should be): the path and the reason on one line, never a traceback. Commands that know better
            # say more first (CLIError).
            from jan.cli.common import CLIError, os_error_message

            raise CLIError(os_error_message(exc)) from None


def _reader_gone() -> None:
    """The reader of stdout went away (`jan threads list | head`): not an error, status 0, and nothing more written
    (what is still buffered goes to /dev/null, not into a second BrokenPipeError as Python exits)."""
    from jan.cli.common import reader_gone

    reader_gone()
    sys.exit(0)


def _closed_standard_streams(ctx: click.Context) -> None:
    """A standard stream the command was started without (``<&-``, ``>&-``: Python sets it to None) as a shell
    user means it, not an AttributeError's traceback from the first ``isatty()`` or ``write()``.

    A closed stdin reads as empty (a prompt "read from stdin is empty", a chat that ends at once). A closed stdout
    is a CLIError before the command starts (what it prints could reach nobody; GNU tools fail likewise, at their
    first write), except for `jan serve`, whose stdout only logs and which serves without it."""
    from jan.cli.common import CLIError

    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8", errors="replace")
    if sys.stdout is None:
        command = (getattr(ctx, "_protected_args", None) or [None])[0]
        if command != "serve":
            raise CLIError("standard output is closed (>&-): what this command prints could not be read; "
                           "send it to a file or to /dev/null")
        sys.stdout = open(os.devnull, "w", encoding="utf-8")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(jan.__version__, prog_name="jan")
def main() -> None:
    """jan: a ChatGPT alternative that runs entirely on your computer.

    Commands use a running `jan serve` when one answers at $JAN_API_URL
    (default http://127.0.0.1:1337); otherwise they work on the data folder
    ($JAN_DATA_FOLDER, default ~/jan) and load models in this process.
    """


if __name__ == "__main__":
    main()
