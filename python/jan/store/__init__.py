"""jan's data folder: models, threads, messages, assistants and settings as plain files.

Layout (the same as the Jan app's)::

    <data>/models/<model_id>/model.json (+ the .gguf)
    <data>/threads/<thread_id>/thread.json + messages.jsonl
    <data>/assistants/<assistant_id>/assistant.json
    <data>/settings/<extension>/settings.json
    <data>/extensions/   <data>/logs/   <data>/.locks/ (lock files, safe to ignore)

Guarantees: every write is atomic (temp file + fsync + rename); each file is
guarded by a lock that excludes other threads and other processes; messages
are appended, so concurrent writers lose nothing; damaged files are moved
aside and reported in :attr:`DataFolder.problems`, never fatal; old files are
upgraded by :mod:`jan.store.migrations`; ids from requests are validated so
no request reaches outside the folder.
"""

from .aio import AsyncStore
from .assistants import DEFAULT_ASSISTANT_ID, AssistantStore
from .errors import (
    AlreadyExistsError,
    CaseClashError,
    CorruptFileError,
    InvalidArgumentError,
    InvalidIdError,
    LockTimeoutError,
    NewerSchemaError,
    NotFoundError,
    StoredModelNotFoundError,
    StoreError,
)
from .folder import (ENV_VAR, DataFolder, Store, UnmadeDataFolderError, data_folder_problem, make_data_folder,
                     resolve_data_folder)
from .ids import (
    is_valid_id,
    new_assistant_id,
    new_id,
    new_message_id,
    new_thread_id,
    new_ulid,
    slugify_id,
    validate_extension_name,
    validate_id,
)
from .messages import MessageStore
from .migrations import DEFAULT_MIGRATIONS, SCHEMA_VERSION_KEY, MigrationRegistry, default_migrations
from .models import IMPORT_MODES, ModelStore
from .pagination import Page
from .problems import Problem
from .settings import SettingsStore
from .threads import ThreadStore

__all__ = [
    "AlreadyExistsError",
    "CaseClashError",
    "AssistantStore",
    "AsyncStore",
    "CorruptFileError",
    "DEFAULT_ASSISTANT_ID",
    "DEFAULT_MIGRATIONS",
    "DataFolder",
    "ENV_VAR",
    "IMPORT_MODES",
    "InvalidArgumentError",
    "InvalidIdError",
    "LockTimeoutError",
    "MessageStore",
    "MigrationRegistry",
    "NewerSchemaError",
    "ModelStore",
    "NotFoundError",
    "Page",
    "Problem",
    "SCHEMA_VERSION_KEY",
    "SettingsStore",
    "Store",
    "StoreError",
    "StoredModelNotFoundError",
    "ThreadStore",
    "default_migrations",
    "is_valid_id",
    "new_assistant_id",
    "new_id",
    "new_message_id",
    "new_thread_id",
    "new_ulid",
    "data_folder_problem",
    "make_data_folder",
    "UnmadeDataFolderError",
    "resolve_data_folder",
    "slugify_id",
    "validate_extension_name",
    "validate_id",
]
