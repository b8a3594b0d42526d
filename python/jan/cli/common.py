"""What every ``jan`` command shares: errors, the server-or-local choice, output helpers.

Server or local: a command that can use a running jan server does so, and
otherwise works on the data folder directly (and loads models in-process).

* ``--local`` (or ``JAN_LOCAL=1``) never contacts a server;
* ``--url`` given on the command line *requires* that server: if it is down the command fails;
* ``--data-folder`` given on the command line (without ``--url``) means "work on that folder": local;
* otherwise ``$JAN_API_URL`` (default ``http://127.0.0.1:1337``) is probed with a short
  ``/health`` request, and the command goes local when nothing answers.

Which data folder a command works on itself is decided once, by :attr:`Connection.data_folder` and
:attr:`Connection.local_folder`: ``--data-folder``, else ``$JAN_DATA_FOLDER``, else the running server's (on this
machine), else ``~/jan``; ``$JAN_DATA_FOLDER`` naming another folder than the running server's is refused there.
A command that only reads uses ``store(create=False)``/``existing_folder()``, which never make the folder.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import click

DEFAULT_URL = "http://127.0.0.1:1337"
#: Seconds the /health probe of $JAN_API_URL waits (``$JAN_PROBE_TIMEOUT`` for a slow link): see :func:`probe_timeout`.
PROBE_TIMEOUT_S = 0.5
#: The most a load option the engine keeps as an int32 may be (jan.engine.params.INT32_MAX, which this light module
#: does not import): a flag bounded by it is told by its own name, not as a setting of the model it loads.
INT32_MAX = 2**31 - 1


#: Control characters (tab and newline kept) an error or warning line shows escaped: such a line echoes what was
#: typed or found (a model id, a file name, a chat command), which raw would reach the terminal as a NUL or an
#: escape sequence it acts on (``\x1b[2J`` clears the screen).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown_controls(text: str) -> str:
    """``text`` with its control characters, tab and newline kept, written as ``\\xNN`` (what Python's ``repr``
    writes for them): for a line on stderr."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def say_error(message: str) -> None:
    """``jan: error: {message}`` on stderr, control characters escaped (:func:`shown_controls`)."""
    click.echo(shown_controls(f"jan: error: {message}"), err=True)


class CLIError(click.ClickException):
    """A failure the user can act on: one line on stderr and a non-zero exit status."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:  # noqa: D401 - click's hook
        say_error(self.format_message())


def did_you_mean(name: str, known) -> str:
    """``: did you mean 'X'?`` where one of ``known`` is a likely typo of ``name`` (off by case or a character: the one
    rule model ids are guessed by, :func:`jan.services.models.closest_model_id`), else ``""``. For every name a
    command looks up (extensions, MCP servers, tools), so ``jan extensions enable tool`` names ``tools``."""
    from jan.services.models import closest_model_id

    meant = closest_model_id(name, [k for k in known if isinstance(k, str)])
    return f": did you mean {meant!r}?" if meant else ""


def meant_id(given: str, ids: Iterable[str], prefix: str) -> str:
    """``: did you mean 'X'?`` where one of ``ids`` (a thread's ``thread_...``, a file's ``file-...``: long ids a user
    copies, not types) is the one ``given`` likely meant: the only id it begins (an id cut short when copied: 8
    characters after ``prefix`` at least), else jan's near-name rule (a mistyped character); "" where none is."""
    from jan.near_names import closest_model_id

    ids = [i for i in ids if isinstance(i, str)]
    meant = None
    if len(given.removeprefix(prefix)) >= 8:
        begun = [i for i in ids if i.startswith(given) and i != given]
        meant = begun[0] if len(begun) == 1 else None
    meant = meant or closest_model_id(given, ids)
    return f": did you mean '{meant}'?" if meant else ""


def probe_timeout() -> float:
    """:data:`PROBE_TIMEOUT_S`, or ``$JAN_PROBE_TIMEOUT``'s seconds; a value that is no positive number is a
    :class:`CLIError` naming the variable (it was read as the module was imported: a traceback from every command)."""
    import math

    text = os.environ.get("JAN_PROBE_TIMEOUT", "").strip()
    if not text:
        return PROBE_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds < math.inf):
        raise CLIError(f"$JAN_PROBE_TIMEOUT: {text!r} is not a number of seconds above 0 (unset it for "
                       f"{PROBE_TIMEOUT_S})")
    return seconds


def warn(message: str) -> None:
    click.echo(shown_controls(f"jan: {message}"), err=True)


def warn_problems(problems: list[dict[str, Any]]) -> None:
    """Say which damaged files the store found (``problems``: the store's or the API's list), so a conversation or
    model missing from a listing is explained, on stderr (the listing itself stays clean). A file is left where it
    is (its error says so); one an older jan or a write set aside is named with where it went."""
    for problem in problems:
        where = f"; its copy is {problem.get('moved_to')}" if problem.get("moved_to") else ""
        warn(f"damaged file {problem.get('path')} ({problem.get('error')}){where}")


def error_text(exc: BaseException) -> str:
    """What the CLI says of a failure: its message; for an extension's own failure (:class:`~jan.core.ExtensionCallError`,
    which names the extension and the method) the text of its cause too, on the same line: a server keeps that to its
    log (a client must not see what it may hold), but here the user runs the extension, and no log is shown."""
    from jan.core.exceptions import ExtensionCallError

    cause = exc.__cause__
    if isinstance(exc, ExtensionCallError) and cause is not None:
        text = " ".join(str(cause).split())[:300]
        if text:
            return f"{exc}: {text}"
    return str(exc)


def os_error_message(exc: OSError) -> str:
    """An ``OSError`` as one line a user can act on: the path and the system's words (``[Errno 30]`` and a
    traceback say nothing more to them). A hidden temporary file's name (an atomic write's) is told as its
    folder, the place the user knows."""
    from jan.core.fs import temp_writer_pid

    where = exc.filename
    if isinstance(where, str) and temp_writer_pid(os.path.basename(where)) is not None:
        where = os.path.dirname(where)
    text = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename2:
        return f"{where} -> {exc.filename2}: {text}"
    return f"{where}: {text}" if where else text


# --------------------------------------------------------------------------- text typed by the user

_SURROGATES = re.compile("[\ud800-\udfff]")


def replace_undecodable(text: str) -> str:
    """``text`` with U+FFFD for each lone UTF-16 surrogate. Python decodes command-line arguments (and
    stdin, in the C locale) with ``surrogateescape``: a byte that is not UTF-8 becomes a lone surrogate,
    which neither a server (400) nor the native engine (BadRequestError) takes as text; whoever typed or
    piped it expects the usual replacement character, as any text tool shows."""
    return _SURROGATES.sub("\ufffd", text)


def text_param(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback for free text sent to a model (prompts, system prompts, stop strings): the value,
    or each of a tuple of them (``nargs=-1``, ``multiple=True``), through :func:`replace_undecodable`.
    Not for file names, which must keep their bytes to be found."""
    if isinstance(value, str):
        return replace_undecodable(value)
    if isinstance(value, tuple):
        return tuple(replace_undecodable(v) if isinstance(v, str) else v for v in value)
    return value


def nonempty_param(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback for an option whose empty value means nothing (``--id ""``, ``--stop ""``, ``--name ""``):
    a usage error naming the option, as click's own checks are, not the default silently taken in its place
    nor a server's message in the API's words."""
    for item in (value if isinstance(value, tuple) else (value,)):
        if isinstance(item, str) and item == "":  # " " is a stop string, and an id that says why it is not one
            raise click.BadParameter("must not be empty")
    return value


def allow_media_param(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """click callback of ``--allow-media-from``: each entry an ``http(s)://`` URL prefix or a folder that is there, as
    ``jan serve``'s :class:`~jan.server.media_fetch.MediaAllowlist` takes them, checked before anything starts: a
    usage error naming the option for an entry of another kind, exit 1 for a folder that is not there (as every path
    option says it)."""
    if not value:
        return value
    from jan.server.aiohttp_import import defer_client

    defer_client()  # (the module imports aiohttp: its client is loaded by a first fetch, not by this check)
    from jan.server.media_fetch import MediaAllowlist, MediaFolderError

    try:
        MediaAllowlist.parse(value)
    except MediaFolderError as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--allow-media-from "), ctx, param) from None
    return value


def allow_media_option(what: str) -> Callable[[Callable], Callable]:
    """``--allow-media-from URL_PREFIX|FOLDER`` (repeatable), the one definition ``jan serve``, ``jan chat`` and
    ``jan run`` share (:func:`allow_media_param` checks it); ``what`` says what the command fetches with it. The
    command takes it as ``allow_media_from``, a tuple of entries."""
    return click.option("--allow-media-from", "allow_media_from", multiple=True, metavar="URL_PREFIX|FOLDER",
                        callback=allow_media_param,
                        help=f"{what} from http(s) URLs starting with URL_PREFIX ('https://' for any public host) or "
                             "files inside FOLDER (repeatable). Off by default: a link to an image is refused.")


def nonempty_text_param(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """:func:`text_param`, refusing an empty value as :func:`nonempty_param` does."""
    return text_param(ctx, param, nonempty_param(ctx, param, value))


def lenient_stdin() -> None:
    """Decode stdin with U+FFFD for bytes that are not UTF-8, not with UnicodeDecodeError (a UTF-8
    locale's "strict") or lone surrogates (the C locale's "surrogateescape"), whatever reads it."""
    import codecs

    reconfigure = getattr(sys.stdin, "reconfigure", None)  # None: no stdin, or not a text file
    if reconfigure is not None:
        try:
            # an ASCII stdin reads UTF-8, as :func:`lenient_output` writes it (PEP 540: such a locale is a
            # misconfiguration): a piped "héllo" stays itself, not "h\ufffd\ufffdllo"
            if codecs.lookup(getattr(sys.stdin, "encoding", None) or "ascii").name == "ascii":
                reconfigure(encoding="utf-8", errors="replace")
            else:
                reconfigure(errors="replace")
        except (LookupError, AttributeError, ValueError, OSError):  # a stream that cannot change it: used as it is
            pass


def lenient_output() -> None:
    """Let stdout and stderr take any text a model (or a thread, a file name) holds, whatever the locale says.

    An ASCII stream (``PYTHONIOENCODING=ascii``, a C locale without Python's UTF-8 mode) writes UTF-8, as click's
    own echo already did for tables and JSON and as PEP 540 treats such a locale: a misconfiguration, not a wish.
    Another legacy encoding (latin-1) keeps its encoding and writes "?" for what it cannot hold. Before, the first
    answer piece outside the encoding ended ``jan run``/``jan chat`` with a UnicodeEncodeError's traceback."""
    import codecs

    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # None: closed, or not a text file (a test's capture)
        if reconfigure is None:
            continue
        try:
            encoding = codecs.lookup(getattr(stream, "encoding", None) or "ascii").name
            if encoding == "ascii":
                reconfigure(encoding="utf-8", errors="replace")
            elif encoding != "utf-8" and stream.errors == "strict":
                reconfigure(errors="replace")
        except (LookupError, AttributeError, ValueError, OSError):  # a stream that cannot change: used as it is
            pass


# --------------------------------------------------------------------------- server or local


def server_root(url: str) -> str:
    """The root of the jan server ``url`` names, as a user may write it: without a scheme (``127.0.0.1:1337``,
    ``localhost:1337``: ``http://`` added, as curl takes a bare host) and as the OpenAI base URL every SDK is given
    (``http://127.0.0.1:1337/v1``: the CLI adds /v1 itself, and probing ``/v1/health`` found no server where one
    runs). Any other path is kept: a server behind a proxy at ``https://host/jan``."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url[:-len("/v1")].rstrip("/") if url.lower().endswith("/v1") else url


def on_this_machine(url: str) -> bool:
    """Whether ``url`` names a server on this machine (a loopback address or ``localhost``): only such a server's
    data folder is a folder here."""
    from urllib.parse import urlsplit

    from jan.loopback import is_loopback_host

    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    return is_loopback_host(host)


class Connection:
    """Where a command's data lives: a jan server (when one answers) or the data folder."""

    def __init__(self, *, url: str, url_explicit: bool, api_key: str | None, data_folder: Path | None,
                 data_explicit: bool, local: bool):
        self.url = server_root(url)
        self.url_explicit = url_explicit
        self.api_key = api_key
        self.data_folder_arg = data_folder
        self.data_explicit = data_explicit
        self.force_local = local
        self._client: Any = None
        self._probed = False
        self._health: dict | None = None
        self._store = None
        self._runtime = None
        #: Set by a command that saves nothing in the data folder (`jan run`): :meth:`runtime` then makes none.
        self.keeps_nothing = False
        #: ``--allow-media-from`` of the command (``jan chat``): where the local mode may fetch linked images from
        self.allow_media_from: tuple[str, ...] = ()
        self._scratch: Any = None
        # A folder the user named (--data-folder, $JAN_DATA_FOLDER) that is not there when the command starts: a
        # mistyped path, most likely. Noted now, as `jan chat` makes the folder before it looks for the model.
        named = os.fspath(data_folder) if data_folder is not None else os.environ.get("JAN_DATA_FOLDER")
        self._named_absent = (None if not named or os.path.exists(os.path.expanduser(named)) else
                              "--data-folder" if data_folder is not None else "$JAN_DATA_FOLDER")

    def absent_note(self) -> str:
        """Where the data folder the user named (``--data-folder``, ``$JAN_DATA_FOLDER``) was not there when the
        command started: ``"the data folder X (given by --data-folder) does not exist"``, for the messages that
        would otherwise say "no models yet" or "not a model in X" of a mistyped path; else ``""``."""
        if self._named_absent is None:
            return ""
        return f"the data folder {self.data_folder} (given by {self._named_absent}) does not exist"

    # -- server --------------------------------------------------------
    def server(self):
        """The :class:`~jan.cli.client.ApiClient` of a running server, or ``None`` to work locally."""
        if self._probed:
            return self._client
        self._probed = True
        if self.force_local or (self.data_explicit and not self.url_explicit):
            return None
        from jan.cli.client import ApiClient

        try:
            url = self.checked_url()
        except CLIError:
            self._probed = False  # (as above: a malformed URL is said by every call)
            raise
        client = ApiClient(url, self.api_key)
        self._health = client.health(probe_timeout())
        if self._health is None:
            if self.url_explicit:
                # asked again, it says so again (not None, "work locally"): server_folder() may ask first
                self._probed = False
                raise CLIError(f"no jan server answers at {self.url} (start one with `jan serve`, or drop --url)")
            return None
        self._client = client
        return client

    def checked_url(self) -> str:
        """:attr:`url`, once it is known to be an http(s) URL: a malformed one (``http://[::1``, a port that is no
        number, ``ftp://``) is a :class:`CLIError` naming where it came from, not urllib's ValueError traceback nor
        "no jan server answers". Checked when the server is first asked, so ``--local`` never trips on it."""
        from urllib.parse import urlsplit

        where = "--url" if self.url_explicit else "$JAN_API_URL"
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
        except ValueError as exc:
            raise CLIError(f"{where}: {self.url!r} is not a URL ({exc})") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise CLIError(f"{where}: {self.url!r} is not the http:// or https:// URL of a jan server")
        return self.url

    def require_server(self, what: str):
        client = self.server()
        if client is None:
            where = "--local was given" if self.force_local else f"no jan server answers at {self.url}"
            raise CLIError(f"{what} needs a running server, but {where}; start one with `jan serve`")
        return client

    @property
    def health(self) -> dict | None:
        self.server()
        return self._health

    # -- which data folder ---------------------------------------------
    def server_folder(self) -> Path | None:
        """The data folder of the jan server this command uses, when one answers on this machine and says which
        (its ``/health``, to a request with the key); ``None`` otherwise, and under ``--local`` or a
        ``--data-folder`` given without ``--url`` (nothing is asked then)."""
        if self.force_local or (self.data_explicit and not self.url_explicit):
            return None
        try:
            health = self.health
        except CLIError:  # a --url that does not answer, a malformed $JAN_API_URL: said by the commands that ask it
            return None
        folder = (health or {}).get("data_folder")
        if not isinstance(folder, str) or not folder or not on_this_machine(self.url):
            return None
        # (a server in a container, its port published here, names a folder of its own file system: one that is
        # not a folder here is not taken, nor made)
        return Path(os.path.realpath(folder)) if os.path.isdir(folder) else None

    @property
    def data_folder(self) -> Path:
        """The data folder the user means, decided here for every command: ``--data-folder``, else
        ``$JAN_DATA_FOLDER``, else (unless ``--local``) that of the jan server running on this machine, else
        ``~/jan``. Before, a command that works on the folder itself while a server runs (``jan mcp add``,
        ``jan bench MODEL_ID``) took ``~/jan`` when the server had been started on another folder: it edited
        (or made) a folder nobody used."""
        from jan.store import resolve_data_folder
        from jan.store.folder import ENV_VAR

        if self.data_folder_arg is not None or self.force_local or os.environ.get(ENV_VAR):
            return resolve_data_folder(self.data_folder_arg)
        return self.server_folder() or resolve_data_folder(None)

    @property
    def local_folder(self) -> Path:
        """:attr:`data_folder` for a command about to read or write it in this process. One that cannot be a data
        folder (a file in its place) is a :class:`CLIError` saying so, the same words from every command; so is
        ``$JAN_DATA_FOLDER`` naming another folder than the one the jan server answering here works on: what
        the command did there the server would never see, while every command that asks the server acts on
        its folder. ``--data-folder`` (or ``--local``) says which is meant."""
        folder = self.data_folder
        if self.data_folder_arg is None and not self.force_local:
            served = self.server_folder()
            if served is not None and served != folder:
                from jan.store.folder import ENV_VAR

                raise CLIError(f"the jan server at {self.url} works on the data folder {served}, but ${ENV_VAR} "
                               f"names {folder}: give --data-folder {folder} to work on that one anyway (the server "
                               f"will not see it), or unset ${ENV_VAR} to work on the server's")
        problem = data_folder_problem(folder)
        if problem:
            raise CLIError(problem)
        return folder

    def store(self, *, create: bool = True):
        """The :class:`jan.store.DataFolder` (created on first use). ``create=False``: for a command that only
        reads it (or removes something from it): ``None`` when the folder is not there, so reading never
        makes one (``jan models list`` made ``~/jan``; there is nothing in a folder that is not there)."""
        if self._store is None:
            from jan.store import DataFolder, StoreError
            from jan.store.folder import UnmadeDataFolderError

            folder = self.local_folder
            if not create and not folder.is_dir():
                return None
            try:
                self._store = DataFolder(folder)
            except StoreError as exc:
                raise CLIError(f"cannot open the data folder {folder}: {exc}") from None
            except OSError as exc:  # the path and the reason, not "[Errno 13]"
                # (a folder that cannot be made: where to give another, as jan serve says it)
                unmade = isinstance(exc, UnmadeDataFolderError)
                raise CLIError(f"cannot open the data folder {folder}: {os_error_message(exc)}"
                               + ("; give a folder with --data-folder or $JAN_DATA_FOLDER" if unmade else "")) from None
        return self._store

    def existing_folder(self) -> Path | None:
        """:attr:`local_folder` for a command that only reads it (or removes from it), ``None`` when it is not
        there: such a command has nothing to do in it and must not make it."""
        folder = self.local_folder
        return folder if folder.is_dir() else None

    def runtime(self, *, read_only: bool = False):
        """The in-process extension manager and services (:class:`jan.cli.local.LocalRuntime`),
        started on first use and stopped when the command ends; ``read_only`` (a command that only reads, when it
        is the first to ask): its manager records nothing in extensions.json."""
        if self._runtime is None:
            from jan.cli.local import LocalRuntime

            folder = self.local_folder
            if self.keeps_nothing and not folder.is_dir():
                # a command that keeps nothing (`jan run FILE.gguf`) where there is no data folder yet: its
                # extensions run on an empty folder made for this process, not on the user's, which they lay out
                # as they start (`jan run` made ~/jan, its layout and default assistant, to answer one prompt)
                import tempfile

                self._scratch = tempfile.TemporaryDirectory(prefix="jan-scratch-")
                folder = Path(self._scratch.name)
            try:
                self._runtime = LocalRuntime(folder, allow_media_from=self.allow_media_from,
                                             read_only=read_only)
            except OSError as exc:
                raise CLIError(f"cannot open the data folder {self.data_folder}: {os_error_message(exc)}") from None
            except ValueError as exc:  # an --allow-media-from entry that is no URL prefix or folder
                raise CLIError(str(exc)) from None
        return self._runtime

    def close(self) -> None:
        runtime, self._runtime = self._runtime, None
        try:
            if runtime is not None:
                runtime.close()
        finally:
            scratch, self._scratch = self._scratch, None
            if scratch is not None:
                scratch.cleanup()


REMOVE_VERBS = ("rm", "remove", "delete")


class RemoveAliasGroup(click.Group):
    """A command group whose removing command answers to each of ``rm``, ``remove`` and ``delete``: ``jan models
    rm``, ``jan mcp remove`` and ``jan files delete`` were each the only spelling of their group, so the one a user
    typed from another group was "No such command". The help lists the group's own name only."""

    def get_command(self, ctx: click.Context, cmd_name: str):
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in REMOVE_VERBS:
            for verb in REMOVE_VERBS:
                command = super().get_command(ctx, verb)
                if command is not None:
                    break
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command is not None else name), command, rest


def data_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be a data folder (:func:`jan.store.data_folder_problem`, the library's own words)
    with where to give another, or ``None``."""
    from jan.store import data_folder_problem as problem_of

    problem = problem_of(folder)
    return f"{problem}; give a folder with --data-folder or $JAN_DATA_FOLDER" if problem else None


class EnvFlag(click.types.BoolParamType):
    """A yes/no flag also set by an environment variable (``--local``, ``$JAN_LOCAL``): a value of the variable that
    is no yes/no word is a usage error naming the variable and the words it takes. click's own said only "Invalid
    value for '--local'", a flag the user never typed, with no hint that an exported variable held the value."""

    def __init__(self, envvar: str):
        self.envvar = envvar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            if ctx is None or param is None or param.name is None \
                    or ctx.get_parameter_source(param.name) is not click.core.ParameterSource.ENVIRONMENT:
                raise
            self.fail(f"${self.envvar} is {value!r}, which is no yes/no value: set it to 1 (or true, yes, on) to work "
                      f"without a server, to 0 (or false, no, off, empty) or unset it to use one", param, ctx)


class SamplingValue(click.ParamType):
    """A sampling option's value, judged by the engine's own check (:data:`jan.engine.params.RANGES`, the one
    table the Python API and the server use; ``seed``: :func:`jan.engine.params.engine_seed`) when it is parsed.

    So a bad ``--temperature nan``, ``--top-p 2`` or ``-n 99999999999`` is one usage error naming the flag, the
    same with or without a server, before a model loads: click's own ranges left NaN, infinity and the upper
    bounds through, to be refused in-process by the engine in its words, and through a server as "the request
    body is not valid JSON" (NaN is no JSON number) or in pydantic's."""

    def __init__(self, option: str):
        from jan.engine.params import RANGES

        self.option = option
        self.kind = RANGES[option].kind if option in RANGES else int
        self.name = "integer" if self.kind is int else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from jan.engine.params import RANGES, engine_seed

        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return value  # a default, already a number
        try:
            number = self.kind(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a valid {self.name}", param, ctx)
        try:
            if self.option in RANGES:
                return RANGES[self.option].check(self.option, number)
            engine_seed(number, self.option)  # int64, as OpenAI takes it (the engine folds it to 32 bits)
            return number
        except ValueError as exc:
            self.fail(str(exc).partition(": ")[2] or str(exc), param, ctx)

    def describe(self) -> str:
        """The accepted range for a help text (``[>= 0 and <= 2]``)."""
        from jan.engine.params import RANGES

        return f"[{RANGES[self.option].describe()}]" if self.option in RANGES else "[a 64-bit integer]"


class GpuLayers(click.ParamType):
    """``--gpu-layers``/``-ngl`` as llama-server takes it: a layer count (-1: all), ``auto`` (as many as the GPUs'
    free memory holds, none without a GPU: :mod:`jan.engine.offload`) or ``all`` (-1)."""

    name = "N|auto|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        text = str(value).strip().lower()
        if text in ("auto", "all"):
            return "auto" if text == "auto" else -1
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is not a layer count, 'auto' or 'all'", param, ctx)
        if not -1 <= number <= INT32_MAX:
            self.fail(f"{number} is not in the range -1 (all) to {INT32_MAX}", param, ctx)
        return number


class PathParam(click.Path):
    """``click.Path`` that refuses an empty value as a usage error naming the option: ``Path("")`` is the current
    folder, so an unset shell variable (``--data-folder "$DIR"``, ``--image "$PIC"``) would silently name the folder
    the command ran from (a data folder made there, a '.' "image").

    A leading ``~`` is the home folder before click's checks: the shell leaves it alone in ``--opt=~/x``, in quotes
    and in ``$JAN_DATA_FOLDER``, so ``exists=True`` said "File '~/x' does not exist" of a file that does.

    What the file system says of the path (missing with ``exists=True``, a file where a folder is wanted, ...) is
    one :class:`CLIError` (exit 1) naming the parameter and the path, ``jan: error: --mmproj: no such file: /x``,
    as the commands that check their own paths say it; click's usage error (exit 2) is for the command line's
    own mistakes."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value == "":
            self.fail("must not be empty (an empty path would be the current folder)", param, ctx)
        if isinstance(value, (str, os.PathLike)) and str(value).startswith("~"):
            value = os.path.expanduser(value)
        if isinstance(value, (str, os.PathLike)) and not (self.allow_dash and str(value) == "-"):
            problem = self._problem(os.fspath(value))
            if problem:
                raise CLIError(f"{param_label(param)}: {problem}" if param is not None else problem)
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:  # (what the checks above left to click: still the file system's state)
            raise CLIError(f"{param_label(param)}: {exc.message}" if param is not None else exc.message) from None

    def _problem(self, path: str) -> str | None:
        """Why the file system refuses ``path`` for this parameter, or None. A missing input file, a file where a
        folder is wanted, is the state of the disk, not a mistake in the command line: a runtime error (exit 1,
        as every command that checks its own paths says it), not click's usage error (exit 2)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if not self.exists:
                return None
            from jan.local_files import no_such_file

            return no_such_file(path) if self.file_okay else f"no such folder: {path}"
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}" if self.exists else None
        if not self.file_okay and not stat.S_ISDIR(st.st_mode):
            return f"{path} is a file, not a folder"
        if not self.dir_okay and stat.S_ISDIR(st.st_mode):
            return f"{path} is a folder, not a file"
        if self.exists and self.readable and not os.access(path, os.R_OK):
            return f"{path}: permission denied"
        return None


def media_allowed_here(conn: Any, entries: tuple[str, ...]) -> tuple[str, ...]:
    """``entries`` (``--allow-media-from``) for the command's own fetcher, which only works without a server: with a
    server answering, the server fetches the links it is sent by its own ``jan serve --allow-media-from``, so the
    command's would have no effect — a :class:`CLIError` saying so."""
    if entries and conn.server() is not None:
        raise CLIError(f"--allow-media-from applies without a server: the server at {conn.url} fetches the images "
                       "it is sent links to by its own `jan serve --allow-media-from`; drop the option, or add "
                       "--local to fetch them in this process")
    return tuple(entries)


#: A link a media option takes in place of a path (fetched as ``--allow-media-from`` allows).
_MEDIA_LINK = re.compile(r"(?i)(https?|file)://")


def is_media_link(value: str) -> bool:
    """Whether a media option's value is a link (``http(s)://``, ``file://``) rather than a path."""
    return bool(_MEDIA_LINK.match(value))


class MediaSource(PathParam):
    """:class:`PathParam` for a media option that also takes a link (``http(s)://``, ``file://``), kept as it is
    written for the fetcher ``--allow-media-from`` allows (a path it would have made into ``https:/host/x``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and is_media_link(value):
            return value
        return super().convert(value, param, ctx)


def comma_items(value: str, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
    """The items of a comma-separated option value (``-p 8,16``, ``--alias a,b``, ``--lora a.gguf,b.gguf``), each
    stripped. An empty item (``8,,16``, a trailing comma, an empty value) is a usage error naming the option: it was
    dropped without a word, so a typo ran something else than was written (one test fewer, one alias fewer)."""
    if not str(value).strip():
        raise click.BadParameter("must not be empty", ctx, param)
    items = [item.strip() for item in str(value).split(",")]
    for at, item in enumerate(items, 1):
        if not item:
            raise click.BadParameter(f"item {at} of {value!r} is empty (a comma too many?)", ctx, param)
    return items


def int_items(value: str, param: click.Parameter | None, ctx: click.Context | None, *, low: int = 1,
              high: int = INT32_MAX, what: str = "numbers") -> list[int]:
    """The whole numbers of a comma-separated option value (:func:`comma_items`), each ``low`` to ``high``; an item
    that is none (``8,x``, ``1.5``), or out of that range (``-8``, ``0`` where ``low`` is 1), is a usage error naming
    the option and the item. ``what`` names the values in that error (``thread counts``)."""
    numbers = []
    for item in comma_items(value, param, ctx):
        try:
            number = int(item)
        except ValueError:
            raise click.BadParameter(f"{item!r} in {value!r} is not a whole number (expected comma-separated "
                                     f"{what})", ctx, param) from None
        if not low <= number <= high:
            raise click.BadParameter(f"{what} must be {low} to {high}, got {number} in {value!r}", ctx, param)
        numbers.append(number)
    return numbers


def param_label(param: click.Parameter) -> str:
    """How an error names ``param``: its long option (``--model-draft``), or an argument's metavar (``PATH``)."""
    if isinstance(param, click.Option) and param.opts:
        return max(param.opts, key=len)
    return param.human_readable_name


def client_api_key_param(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A client's ``--api-key``/``$JAN_API_KEY``: whitespace at its ends taken off, as HTTP takes it off the header
    (the server compares the rest); a key that still cannot travel in a header (a newline or control character inside,
    non-ASCII) is a usage error naming where it came from. It read as "no jan server answers" (the header refused
    before the request was sent)."""
    return None if value is None else sendable_api_key(ctx, param, value.strip())


def sendable_api_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--api-key``/``$JAN_API_KEY`` as given (``jan serve``'s: its clients send the key as set): a key no client can
    send as it is (:func:`jan.server.config.api_key_problem`) is a usage error naming where it came from, before the
    server starts answering every request 401."""
    if value is None:
        return None
    from jan.server.config import api_key_problem

    why = api_key_problem(value)
    if why is not None:
        source = ctx.get_parameter_source(param.name) if param.name else None
        raise click.BadParameter(why + (" (the key came from $JAN_API_KEY)"
                                        if source is click.core.ParameterSource.ENVIRONMENT else ""))
    return value


def connection_options(func: Callable) -> Callable:
    """Add --url/--api-key/--data-folder/--local and pass a :class:`Connection` as ``conn``."""

    @click.option("--url", "api_url", envvar="JAN_API_URL", default=DEFAULT_URL, show_default=True, metavar="URL",
                  callback=nonempty_param, help="jan server to use when it is running [env JAN_API_URL].")
    @click.option("--api-key", envvar="JAN_API_KEY", default=None, metavar="KEY", callback=client_api_key_param,
                  help="Bearer key for the server [env JAN_API_KEY].")
    @click.option("--data-folder", type=PathParam(file_okay=False, path_type=Path), default=None,
                  help="Data folder to work on without a server [env JAN_DATA_FOLDER; default: that of the jan "
                       "server running on this machine (not with --local), else ~/jan].")
    @click.option("--local", is_flag=True, envvar="JAN_LOCAL", type=EnvFlag("JAN_LOCAL"),
                  help="Never use a server: work on the data folder, load models in this process [env JAN_LOCAL=1].")
    @functools.wraps(func)
    def wrapper(*args, api_url, api_key, data_folder, local, **kwargs):
        ctx = click.get_current_context()
        explicit = click.core.ParameterSource.COMMANDLINE
        kwargs["conn"] = Connection(
            url=api_url, url_explicit=ctx.get_parameter_source("api_url") == explicit, api_key=api_key,
            data_folder=data_folder, data_explicit=ctx.get_parameter_source("data_folder") == explicit,
            local=local)
        try:
            return func(*args, **kwargs)
        finally:
            kwargs["conn"].close()

    return wrapper


#: (Most commands that take it print no table: `show`, `upload`, `import`, `info` print lines of text.) Every command
#: that prints a result takes it (tests/test_cli_output_kinds.py walks the commands): what a server's API answers for
#: the same thing where there is one, the same shape with or without a server; errors still go to stderr as one
#: ``jan: error:`` line with a non-zero status.
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document on stdout instead of text (for scripts).")


def print_result(as_json: bool, data: Any, text: str) -> None:
    """A command's result: ``data`` as one JSON document (``--json``), else ``text`` (a line for people)."""
    if as_json:
        print_json(data)
    else:
        click.echo(text)


def each_result(items: Iterable[str], act: Callable[[str], Any], as_json: bool,
                said: Callable[[str, Any], str]) -> None:
    """``act(item)`` for each of ``items`` (a command given several ids: ``jan models rm a b``), each told as it is
    done (``said(item, result)``), or under ``--json`` one JSON array of the results, in the order given: always an
    array, one item or many, so a script reads one shape. An item that fails ends the command (its error on stderr,
    status 1) after the array of those done before it is printed: what was removed is not left untold."""
    done: list[Any] = []
    try:
        for item in items:
            result = act(item)
            done.append(result)
            if not as_json:
                click.echo(said(item, result))
    finally:
        if as_json:
            print_json(done)


class Words(click.Choice):
    """``click.Choice`` as every jan option with a set of words takes it: any case, surrounding spaces ignored, and
    the common other names of a choice (``--format md`` for markdown, ``--log-level warn``) given as ``aliases``
    (alias -> choice). A word that is none says the choices, with their other names, as a usage error naming the
    option: ``'txt' is not one of markdown (md), json``. The value passed on is the choice itself."""

    def __init__(self, choices: Iterable[str], aliases: dict[str, str] | None = None):
        super().__init__(list(choices), case_sensitive=False)
        self.aliases = {k.lower(): v for k, v in (aliases or {}).items()}

    def word(self, value: Any) -> str | None:
        """The choice ``value`` names (itself, in any case, or an alias of it); None where it names none."""
        text = str(value).strip().lower()
        text = self.aliases.get(text, text)
        return next((c for c in self.choices if str(c).lower() == text), None)

    def said(self) -> str:
        """The choices as the error and the help say them: ``markdown (md), json``."""
        others = {c: [a for a, to in self.aliases.items() if to == c] for c in self.choices}
        return ", ".join(f"{c} ({', '.join(others[c])})" if others[c] else str(c) for c in self.choices)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or value in self.choices:
            return value
        chosen = self.word(value)
        if chosen is None:
            self.fail(f"{str(value)!r} is not one of {self.said()}", param, ctx)
        return chosen


# --------------------------------------------------------------------------- output


def write_output_file(target: Path, write: Callable[[Callable[[bytes], Any]], None], *,
                      data_folder: Path | None = None) -> None:
    """What ``write(put)`` puts, as the file ``target`` a user named (``-o FILE``): written beside it into a hidden
    temporary file, fsynced and renamed over it (:func:`jan.core.fs.atomic_writer`), so ``target`` is either as it
    was or whole: a failure or Ctrl-C midway leaves an existing file untouched and no temporary file behind. A new
    file gets what a file made here gets (0666 less the umask); one replaced keeps its permissions. A ``target``
    inside ``data_folder`` (jan's) is refused before anything is written: written over one of jan's own files (a
    thread's messages.jsonl, a model.json) it would lose what that file held."""
    from jan.core.fs import atomic_writer

    if data_folder is not None:
        try:
            inside = target.resolve().is_relative_to(data_folder.resolve())
        except (OSError, RuntimeError):  # (a symlink loop: the write below says what is wrong with the path)
            inside = False
        if inside:
            raise CLIError(f"--output: {target} is inside jan's data folder {data_folder}, whose files jan keeps "
                           "its threads, models and files in; write it somewhere else")
    try:
        mode = os.stat(target).st_mode
    except (OSError, ValueError):
        mode = None  # nothing there yet (or a path the write below tells the fault of)
    try:
        if mode is not None and not stat.S_ISREG(mode):
            # A device or a pipe (-o /dev/stdout, /dev/null, a FIFO) is written into, as a shell's `>` does: the
            # temporary file renamed over it replaced the node itself with a regular file (as root, /dev/null)
            with open(target, "wb") as out:
                write(out.write)
            return
        # a symbolic link is written through, as `>` does, not replaced by a file of its own name (atomic_writer
        # does so itself; the link's target is named here so that a dangling link makes its target, as `>` does,
        # where a data-folder file's dangling link is an error)
        with atomic_writer(Path(os.path.realpath(target)) if os.path.islink(target) else target,
                           new_mode=_new_file_mode()) as out:
            write(out.write)
    except OSError as exc:
        raise CLIError(f"cannot write {target}: {exc.strerror or exc}") from None


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def plain_output() -> bool:
    """Whether jan's own output must carry no ANSI styling even at a terminal: ``NO_COLOR`` set (no-color.org;
    jan's styles are its only colors) or ``TERM=dumb`` (a terminal that prints escape codes as text: Emacs'
    shell, some CI logs). click drops styles only when stdout is no terminal; rich drops colors only (see
    :func:`rich_console`)."""
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


def reader_gone(stream=None) -> None:
    """``stream`` (stdout by default) goes to /dev/null from now on: its reader went away (`jan ... | head`), and
    what is still buffered, or written later, must not raise BrokenPipeError again (as Python exits, or in a save
    that follows)."""
    stream = sys.stdout if stream is None else stream
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


def rich_console(*, stderr: bool = False):
    """A rich ``Console`` for jan's tables and progress bars, on stdout (or ``stderr``), without any styling where
    :func:`plain_output` says so: rich itself drops only the colors under ``NO_COLOR``, and wrote the tables' bold
    headers and the bars' bold labels as escape codes still. (A bar's cursor moves stay: they are how it redraws.)"""
    from rich.console import Console

    return Console(stderr=stderr, **({"color_system": None} if plain_output() else {}))


def styled(text: str, **style: Any) -> str:
    """``click.style(text, **style)``, or ``text`` as it is where :func:`plain_output` says so."""
    return text if plain_output() else click.style(text, **style)


def echo_styled(text: str, *, err: bool = False, nl: bool = True, **style: Any) -> None:
    """``click.secho`` that honours :func:`plain_output`."""
    click.echo(styled(text, **style), err=err, nl=nl)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def stderr_redraws() -> bool:
    """Whether stderr is a terminal that redraws in place (a progress bar's cursor moves, a counter's ``\r``): a
    terminal, and no dumb one (``TERM=dumb``: Emacs' shell, a CI log), which prints those moves as text. Where it
    does not, progress is a few plain lines, or none."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def echo_decoration(text: str, *, nl: bool = True, **style: Any) -> None:
    """A line for the person at the terminal, not a result (`jan chat`'s banner, its notes, /help, a tool call shown
    for its y/n): on stdout at a terminal, on stderr when stdout is not one (`jan chat | tee log`, `> answers.txt`),
    so that only the answers reach the pipe, as ``ollama run`` and ``llm`` keep them apart. Styled as
    :func:`echo_styled`."""
    echo_styled(text, err=not stdout_is_tty(), nl=nl, **style)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


#: Control characters (a newline in a thread's title): a table cell shows each as one space.
_CELL_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def table_cell(value: Any, max_width: int | None = None) -> str:
    """One cell of a table: on one line (control characters as spaces), at most ``max_width`` characters
    (the rest as "…"). Free text (a title a client wrote) must not break the one-row-per-line output."""
    text = "" if value is None else _CELL_CONTROLS.sub(" ", str(value))
    if max_width is not None and len(text) > max_width:
        text = text[:max_width - 1].rstrip() + "…"
    return text


#: Characters a free-text cell of a table (a description, a command line, a model's name) shows at most: a plain
#: table pads every row to its column's longest cell, and one long text made every row as wide.
FREE_TEXT_WIDTH = 60
#: The fewest characters a free-text column of a table at a terminal narrows to (its long words broken to fit).
FREE_TEXT_LEAST = 10


def print_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None,
                max_widths: dict[str, int] | None = None, notes: Iterable[tuple[str, Any]] = ()) -> None:
    """A rich table for people at a terminal; aligned plain columns for pipes. Every cell is on one line;
    ``max_widths`` clips the free-text columns it names (``--json`` gives the whole values). ``notes``:
    ``(row name, text)`` told whole after the table, on stderr, one a line (an error: kept out of the table, where it
    would widen every row).

    At a terminal a cell wraps at its spaces only: a word (an id, which a user copies) is never broken across lines,
    cut to "…" or dropped, as rich does all three to fit a narrow terminal. A terminal too narrow for each column's
    longest word gets the plain columns, each line whole for the terminal to wrap, as ``ollama list`` does."""
    limits = [(max_widths or {}).get(name) for name in columns]
    rows = [[table_cell(v, limit) for v, limit in zip(row, limits)] for row in rows]
    if stdout_is_tty():
        from rich.table import Table

        console = rich_console()
        widths = _terminal_widths(columns, rows, console.width, free=[limit is not None for limit in limits])
        if widths is not None:
            table = Table(title=title, show_edge=False, header_style="bold")
            for name, width in zip(columns, widths):
                table.add_column(name, overflow="fold", width=width)
            for row in rows:
                table.add_row(*row)
            console.print(table)
            _print_notes(notes)
            return
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    _print_notes(notes)


def _terminal_widths(columns: list[str], rows: list[list[str]], width: int, *, free: list[bool]) -> list[int] | None:
    """Each column's width in a rich table of ``width`` characters (a cell, a space of padding on each side, a
    rule between columns) where every column is at least as wide as its longest word, so that a cell wraps at its
    spaces and no word (an id, a size, a name) is broken; a ``free`` text column (a description) may break a long
    word down to :data:`FREE_TEXT_LEAST`. The widest columns give way first. None where even that does not fit.
    (rich's own fitting breaks words, crops the last column and drops whole columns: ``jan threads list`` at 12
    columns showed no id at all.)"""
    natural = [max(len(cells[i]) for cells in [columns, *rows]) for i in range(len(columns))]
    least = [max(len(word) for cells in [columns, *rows] for word in [*cells[i].split(), ""]) or 1
             for i in range(len(columns))]
    least = [min(n, FREE_TEXT_LEAST) if loose else n for n, loose in zip(least, free)]
    room = width - 3 * len(columns) + 1  # (less the padding and the rules)
    if sum(least) > room:
        return None
    widths = list(natural)
    while sum(widths) > room:
        # the column with the most to give gives a character
        i = max(range(len(widths)), key=lambda k: (widths[k] - least[k], widths[k]))
        widths[i] -= 1
    return widths


def _print_notes(notes: Iterable[tuple[str, Any]]) -> None:
    for name, text in notes:
        warn(f"{table_cell(name)}: {table_cell(text)}")


def human_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool) or n < 0:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_time(ms: Any) -> str:
    """A timestamp in seconds or milliseconds as local ``YYYY-MM-DD HH:MM``."""
    import datetime

    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms <= 0:
        return ""
    seconds = ms / 1000 if ms > 1e11 else ms
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


def typed_flags(command: click.Command | None = None) -> dict[str, str]:
    """Each option of ``command`` (the running command's when None) -> its flag as the user may have typed it, its
    short form then its (first) long one: ``{"cache_type_k": "-ctk/--cache-type-k", "n_ctx": "-c/--ctx-size"}``, so
    that an error names the flag, never the engine's field (``cache_type_k``) nor a guess at the long form. ``lora``
    is ``--lora/--lora-scaled`` where both give adapters (:func:`lora_flags`). Empty outside a command."""
    if command is None:
        ctx = click.get_current_context(silent=True)
        command = ctx.command if ctx is not None else None
    flags: dict[str, str] = {}
    for param in command.params if command is not None else ():
        if isinstance(param, click.Option) and param.name:
            short = [opt for opt in param.opts if not opt.startswith("--")][:1]
            long = [opt for opt in param.opts if opt.startswith("--")][:1]
            flags[param.name] = "/".join(short + long)
    if "lora" in flags and "lora_scaled" in flags:
        flags["lora"] = f"{flags['lora']}/{flags['lora_scaled']}"
    return flags


def check_flag_order(**flags: Any) -> None:
    """A usage error (exit 2, as every mistake of the command line itself) naming the flag when two options given as
    flags (``draft_min=--draft-min``'s
    value, None: not given) contradict each other (:func:`jan.engine.params.check_order`, the rule
    ``jan.Model``, model.json and requests share); a pair is judged when both are given, since a model.json
    may give the other."""
    from jan.engine.model import check_context_total
    from jan.engine.params import check_order
    from jan.errors import BadRequestError

    try:
        check_order(flags)
        # --ctx-size for each of --parallel slots: more context than llama.cpp counts would wrap to another size
        check_context_total(flags.get("n_ctx"), flags.get("n_parallel"))
    except BadRequestError as exc:
        typed = typed_flags()

        def flag(name: str) -> str:
            return typed.get(name) or "--" + name.replace("_", "-")

        reason = str(exc).partition(": ")[2]
        for name in flags:
            reason = reason.replace(f"{name} (", f"{flag(name)} (").replace(f"({name})", f"({flag(name)})")
        raise click.UsageError(f"{flag(exc.param or '')}: {reason}", click.get_current_context(silent=True)) from None


# -- LoRA adapters: the one definition of --lora/--lora-scaled (jan serve, jan run, jan chat) ------------------
def _listed(value: str, file_of) -> list[str]:
    """One ``--lora``/``--lora-scaled`` value as its items: llama-server's comma-separated list, or the value whole
    when it names a file that is there as it is (a file name holding a comma)."""
    return [value] if os.path.isfile(os.path.expanduser(file_of(value))) else value.split(",")


class LoraFiles(PathParam):
    """``--lora FILE``: an adapter file, or several separated by commas (llama-server's ``--lora a.gguf,b.gguf``);
    each item is judged as every path option judges its file (:class:`PathParam`), naming the flag."""

    name = "lora files"

    def convert(self, value, param, ctx) -> list[str]:
        if not isinstance(value, str):
            return value  # (a default, already converted)
        return [str(super(LoraFiles, self).convert(item, param, ctx)) for item in _listed(value, lambda v: v)]


def lora_flags(files, scaled) -> list[tuple[str, float]] | None:
    """``--lora`` files (scale 1) then ``--lora-scaled FILE:SCALE`` ones (llama-server's, commas separating several
    in one flag, as in ``--lora``) as (absolute path, scale) pairs; None when neither was given. A :class:`CLIError`
    naming the flag for a FILE that is not there or no LoRA adapter GGUF (a model's weights given by mistake: every
    model would load without it, said only in the log); a usage error naming it for an item that is no FILE:SCALE
    (an empty one, a SCALE that is no finite number)."""
    from jan.services.companions import lora_problem

    from jan.engine.params import FLOAT32_MAX

    pairs = []  # every item's form first: a usage error is the command line's, before any file is read
    for flag in scaled:
        for item in _listed(flag, lambda v: v.rpartition(":")[0]):
            file, sep, scale = item.rpartition(":")
            try:
                value = float(scale)
            except ValueError:
                value = math.nan
            if not sep or not file or not math.isfinite(value) or abs(value) > FLOAT32_MAX:
                # (the command line's own mistake: a usage error; past a 32-bit float's range, llama.cpp's infinity)
                raise click.UsageError(f"--lora-scaled: expected FILE:SCALE (SCALE a finite number), got {item!r}",
                                       click.get_current_context(silent=True))
            pairs.append((os.path.abspath(os.path.expanduser(file)), value))
    adapters = [(str(f), 1.0) for group in files for f in group]
    for path, _ in adapters:
        why = lora_problem(path)
        if why is not None:
            raise CLIError(f"--lora: {why}")
    for path, value in pairs:
        if not os.path.isfile(path):
            raise CLIError(f"--lora-scaled: no such file: {path}")
        why = lora_problem(path)
        if why is not None:
            raise CLIError(f"--lora-scaled: {why}")
        adapters.append((path, value))
    return adapters or None


def lora_options(applies: str) -> Callable[[Callable], Callable]:
    """``--lora FILE`` and ``--lora-scaled FILE:SCALE`` (llama-server's), the one definition every command that loads
    models with LoRA adapters takes them by; ``applies`` says what loads them there (in the help). Read them with
    :func:`lora_flags`."""
    def decorate(func: Callable) -> Callable:
        func = click.option("--lora-scaled", "lora_scaled", multiple=True, metavar="FILE:SCALE",
                            help="A LoRA adapter GGUF with its default scale (repeatable, or several separated by "
                                 "commas), as llama-server's --lora-scaled.")(func)
        return click.option("--lora", "lora", multiple=True, metavar="FILE",
                            type=LoraFiles(exists=True, dir_okay=False, resolve_path=True),
                            help=f"A LoRA adapter GGUF at scale 1 (repeatable, or several separated by commas, as "
                                 f"llama-server's): {applies}.")(func)
    return decorate


def damaged_model_ids(problems: list[dict[str, Any]]) -> set[str]:
    """The ids of the models whose model.json a listing's ``problems`` name as damaged (``models/<id>/model.json``)."""
    ids = set()
    for problem in problems:
        parts = str(problem.get("path") or "").split("/")
        if len(parts) == 3 and parts[0] == "models" and parts[2] == "model.json" and parts[1]:
            ids.add(parts[1])
    return ids


def no_model_but_damaged(damaged: set[str]) -> str:
    """Why there is no model to use where only damaged ones are (a model.json left in place to mend): their ids and
    what to do, for the places that would otherwise say "no models yet"."""
    if len(damaged) == 1:
        (model_id,) = damaged
        return f"the model.json of {model_id} is damaged: repair or remove models/{model_id}/model.json"
    return (f"the model.json of {', '.join(sorted(damaged))} is damaged: repair or remove each "
            "(`jan models list` shows why)")
