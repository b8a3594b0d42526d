"""The data folder: where it is, its layout, and the resource stores over it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._trash import sweep_temp_files, sweep_trash
from .assistants import AssistantStore
from .context import LOCK_DIR_NAME, StoreContext
from .errors import InvalidArgumentError, StoreError
from .locks import DEFAULT_TIMEOUT
from .messages import MessageStore
from .migrations import DEFAULT_MIGRATIONS, MigrationRegistry
from .models import ModelStore, sweep_empty_model_folders
from .problems import Problem, ProblemLog
from .settings import SettingsStore
from .threads import ThreadStore

logger = logging.getLogger("jan.store")

ENV_VAR = "JAN_DATA_FOLDER"
DEFAULT_FOLDER_NAME = "jan"

# Folders every data folder has; resources live one level below the first four.
COLLECTIONS = ("models", "threads", "assistants", "settings")
LAYOUT = (*COLLECTIONS, "extensions", "logs")


def resolve_data_folder(path: str | os.PathLike[str] | None = None) -> Path:
    """Where the data folder is: ``path`` if given, else ``$JAN_DATA_FOLDER``, else ``~/jan``.

    The result is absolute and symlinks are resolved, so every process
    agrees on lock keys whichever way it named the folder.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(bytes(path))  # a bytes path, as open() takes one
    if path is None:
        path = os.environ.get(ENV_VAR) or os.path.join("~", DEFAULT_FOLDER_NAME)
    elif not isinstance(path, str):
        # (open_services(5) said pathlib's "expected str, bytes or os.PathLike object, not int", naming no argument)
        raise TypeError(f"data_folder: expected a folder path (str or os.PathLike), got {type(path).__name__}")
    elif path == "":
        # Path("") is the current folder: an unset shell variable (`--data-folder "$DIR"`) would make jan's
        # layout in whatever folder the command ran from. (An empty $JAN_DATA_FOLDER is the variable not
        # set, as shells mean it, and gives the default above.)
        raise InvalidArgumentError("the data folder path is empty (it would be the current folder): give a folder",
                                   param="data_folder", code="empty_path")
    return Path(os.path.realpath(os.path.expanduser(path)))


def make_data_folder(path: str | os.PathLike[str] | None = None) -> Path:
    """:func:`resolve_data_folder`, made if it is not there yet: what a program about to run on a data folder (the
    server, :func:`jan.services.open_services`) starts with. :class:`StoreError` saying why when it cannot be one
    (a file in its place or on its way), not mkdir's bare ``[Errno 17] File exists``. One the system will not make
    (no permission, a read-only or virtual file system) stays mkdir's ``OSError`` subclass, its errno kept, saying
    which data folder and what to do, not a bare ``[Errno 1] Operation not permitted: '/srv/jan'``."""
    root = resolve_data_folder(path)
    problem = data_folder_problem(root)
    if problem:
        raise StoreError(problem)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        kind = next((k for k in _UNMADE_KINDS if isinstance(exc, k.__mro__[2])), UnmadeDataFolderError)
        error = kind(exc.errno, exc.strerror, exc.filename)  # (errno, strerror and filename as mkdir's)
        error.data_folder = root
        raise error from None
    problem = layout_problem(root)
    if problem:
        # (every store the data folder's services open would fail on it: the server started without its models
        # and threads, its log holding a traceback per extension, the library opened services that had none)
        raise StoreError(problem)
    return root


def layout_problem(root: Path, name: str | None = None) -> str | None:
    """Why the data folder ``root`` cannot hold its layout, in one line, or ``None``: a file (or FIFO, or dangling
    link) where one of jan's folders (``models``, ``threads``, ...; ``name`` alone when given) must be."""
    for each in ((name,) if name else (*LAYOUT, LOCK_DIR_NAME)):
        path = root / each
        try:
            if not os.path.lexists(path) or path.is_dir():
                continue
        except OSError:  # unreadable: its first use says so, with the system's words
            continue
        return f"{path} is not a folder (jan keeps its {each} there): move that file away, or choose another data folder"
    return None


class UnmadeDataFolderError(OSError):
    """A data folder the system will not make (no permission, a read-only or virtual file system): mkdir's
    ``OSError`` with its errno, strerror and filename (what a program, and the CLI, read), its message naming the
    data folder and what to do. Raised as the subclass of mkdir's own type (``PermissionError``, ...)."""

    data_folder: Path | None = None

    def __str__(self) -> str:
        why = self.strerror or super().__str__()
        where = f" ({self.filename})" if self.filename and os.fspath(self.filename) != str(self.data_folder) else ""
        return (f"[Errno {self.errno}] cannot create the data folder {self.data_folder}: {why}{where}; give a folder "
                f"this user can create and write (open_services' data_folder, jan's --data-folder or ${ENV_VAR})")


class DataFolderPermissionError(UnmadeDataFolderError, PermissionError):
    pass


class DataFolderNotFoundError(UnmadeDataFolderError, FileNotFoundError):
    pass


class DataFolderNotADirectoryError(UnmadeDataFolderError, NotADirectoryError):
    pass


class DataFolderExistsError(UnmadeDataFolderError, FileExistsError):
    pass


#: mkdir's OSError subclasses an unmade data folder keeps (its own subclass of each); others are plain OSError.
_UNMADE_KINDS = (DataFolderPermissionError, DataFolderNotFoundError, DataFolderNotADirectoryError, DataFolderExistsError)


def data_folder_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why ``folder`` cannot be a data folder, in one line, or ``None``: it (or a folder on its way) is a file.

    Said the same way by the library (:class:`DataFolder`'s StoreError) and every command, whichever file would
    have been touched first (``[Errno 17] File exists``, ``/data/files: Not a directory``, a listing that is
    simply empty, ``jan info``'s "not created yet")."""
    path = Path(folder)
    for place in (path, *path.parents):
        try:
            is_dir = place.is_dir()
            exists = is_dir or place.exists()
        except OSError:  # unreadable on the way: the first use says so, with the system's words
            return None
        if not exists:
            continue
        if is_dir:
            return None
        what = "is a file" if place == path else f"cannot be created: {place} is a file"
        return f"the data folder {path} {what}, not a folder"
    return None


class DataFolder:
    """Jan's data folder and everything stored in it.

    ::

        store = DataFolder()                       # ~/jan, or $JAN_DATA_FOLDER
        thread = store.threads.create("Hello", messages=[{"role": "user", "content": "Hi"}])
        store.messages.create(thread["id"], "assistant", "Hello! How can I help?")
        store.messages.list(thread["id"]).data

    Sub-stores: :attr:`models`, :attr:`threads`, :attr:`messages`,
    :attr:`assistants`, :attr:`settings`. Every method is synchronous and safe
    to call from many threads and many processes at once; see
    :class:`jan.store.aio.AsyncStore` for asyncio code.

    ``create=False`` refuses a folder that does not exist instead of making
    it. ``lock_timeout`` (seconds, ``None`` = forever) bounds waits for a
    file another thread or process is writing. ``migrations`` replaces the
    built-in schema upgrade registry. ``ensure_default_assistant`` creates the
    ``jan`` assistant on first start.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True,
                 lock_timeout: float | None = DEFAULT_TIMEOUT, migrations: MigrationRegistry | None = None,
                 ensure_default_assistant: bool = True) -> None:
        self.root = resolve_data_folder(path)
        if not self.root.is_dir():
            if create:
                make_data_folder(self.root)
            elif data_folder_problem(self.root):
                raise StoreError(data_folder_problem(self.root))
            else:
                raise StoreError(f"data folder {self.root} does not exist")
        # Folders are made here when they can be; a read-only data folder (a read-only mount, a backup, another
        # user's folder) must still be readable, so one that cannot be made is left for the first write, which
        # makes its parents itself and fails there with its own clear error. A file in a folder's place is no
        # such case: every store would fail on it with a puzzling errno, so it is refused here, by name.
        self.unwritable: str | None = None  # why the layout could not be made (None: it could)
        for name in (*LAYOUT, LOCK_DIR_NAME):
            path = self.root / name
            try:
                path.mkdir(exist_ok=True)
            except OSError as exc:
                problem = layout_problem(self.root, name)
                if problem:
                    raise StoreError(problem) from None
                self.unwritable = self.unwritable or f"{path}: {exc.strerror or exc}"
        for name in COLLECTIONS:
            sweep_trash(self.root / name)
        # Interrupted writes and killed model imports leave hidden temporary files (GBs for a model).
        self.removed_temp_files = sweep_temp_files(self.root)
        # ... and the model folders such an import or pull made and never wrote a model.json into
        self.removed_model_folders = sweep_empty_model_folders(self.root / "models", self.removed_temp_files)
        self._problems = ProblemLog()
        self._ctx = StoreContext(self.root, migrations=migrations or DEFAULT_MIGRATIONS,
                                 problems=self._problems, lock_timeout=lock_timeout)
        self.messages = MessageStore(self._ctx, on_change=self._touch_thread)
        self.threads = ThreadStore(self._ctx, self.messages)
        self.assistants = AssistantStore(self._ctx)
        self.models = ModelStore(self._ctx)
        self.settings = SettingsStore(self._ctx)
        # lease files of dead processes; the replies they were writing are ended on disk now, not at their next read
        if self.messages.leases.sweep():
            self.messages.end_orphans()
        if ensure_default_assistant:
            try:
                self.assistants.ensure_default()
            except OSError as exc:
                # Read-only: there is no default assistant to read then, but everything else is there to read.
                logger.info("data folder %s: could not create the default assistant: %s", self.root, exc)

    def _touch_thread(self, thread_id: str) -> None:
        self.threads.touch(thread_id)

    @property
    def problems(self) -> list[Problem]:
        """Damaged files found so far (oldest first): path, error, time, where it was moved."""
        return self._problems.snapshot()

    def clear_problems(self) -> None:
        """Forget the recorded problems (the files set aside stay where they are)."""
        self._problems.clear()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def threads_dir(self) -> Path:
        return self.root / "threads"

    @property
    def assistants_dir(self) -> Path:
        return self.root / "assistants"

    @property
    def settings_dir(self) -> Path:
        return self.root / "settings"

    @property
    def extensions_dir(self) -> Path:
        return self.root / "extensions"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def __repr__(self) -> str:
        return f"DataFolder({str(self.root)!r})"


Store = DataFolder
