"""The interfaces: every abstract method documented, types declared, contracts checkable."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import jan.core.interfaces as interfaces
from jan.core.extension import Extension
from jan.core.interfaces import (
    EXTENSION_INTERFACES,
    MODULE_INTERFACES,
    AssistantExtension,
    ConversationalExtension,
    InferenceExtension,
    ModelExtension,
    MonitoringExtension,
)

CORE = Path(interfaces.__file__).resolve().parent.parent


def all_interfaces() -> list[type]:
    """Every abstract class defined in jan.core.interfaces (so a new one cannot be forgotten)."""
    found = []
    for module in (interfaces.assistant, interfaces.conversational, interfaces.inference, interfaces.model,
                   interfaces.monitoring, interfaces.modules, interfaces.base, interfaces.tools, interfaces.mcp):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and getattr(obj, "__abstractmethods__", None):
                found.append(obj)
    return found


def test_the_interface_lists_cover_every_abstract_class():
    assert set(all_interfaces()) == set(EXTENSION_INTERFACES) | set(MODULE_INTERFACES)


@pytest.mark.parametrize("cls", all_interfaces(), ids=lambda c: c.__name__)
def test_every_abstract_method_has_a_docstring(cls):
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no class docstring"
    assert cls.__abstractmethods__
    missing = []
    for name in sorted(cls.__abstractmethods__):
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property):
            member = member.fget
        doc = inspect.getdoc(member) if member is not None else None
        # getdoc would inherit a docstring; require one on the declaration itself
        own = getattr(member, "__doc__", None)
        if not (own or "").strip() or not (doc or "").strip():
            missing.append(name)
    assert not missing, f"{cls.__name__}: abstract methods without a docstring: {missing}"


def test_extension_types_are_declared():
    assert ConversationalExtension.extension_type == "conversational"
    assert AssistantExtension.extension_type == "assistant"
    assert InferenceExtension.extension_type == "inference"
    assert ModelExtension.extension_type == "model"
    assert MonitoringExtension.extension_type == "monitoring"
    assert ConversationalExtension.interface_types() == ("conversational", "assistant")
    for cls in EXTENSION_INTERFACES:
        assert cls.extension_type, cls


def test_storage_methods_are_async_and_streams_are_async_generators_by_contract():
    for cls in (ConversationalExtension, ModelExtension, MonitoringExtension):
        for name in cls.__abstractmethods__:
            assert inspect.iscoroutinefunction(getattr(cls, name)), f"{cls.__name__}.{name}"
    for name in ("load_model", "unload_model", "loaded_models", "model_status", "embed", "tokenize", "detokenize"):
        assert inspect.iscoroutinefunction(getattr(InferenceExtension, name)), name
    # chat/complete are declared as plain methods returning an AsyncIterator:
    # implementations are async generators, closed with aclose() to cancel.
    for name in ("chat", "complete"):
        assert not inspect.iscoroutinefunction(getattr(InferenceExtension, name))
        assert "aclose" in inspect.getdoc(InferenceExtension) and "AsyncIterator" in str(
            inspect.signature(getattr(InferenceExtension, name)).return_annotation
        )


def test_an_incomplete_implementation_cannot_be_instantiated():
    class Partial(InferenceExtension):
        engine_name = "partial"

        async def load_model(self, model):
            pass

    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_an_extension_combines_with_interfaces():
    methods = {n: (lambda self, *a, **k: None) for n in ConversationalExtension.__abstractmethods__}
    Store = type("Store", (Extension, ConversationalExtension), {"name": "store", **methods})
    store = Store()
    assert store.extension_types == ("conversational", "assistant")
    assert store.extension_type == "conversational"
    plain = type("Plain", (Extension,), {"name": "plain"})()
    assert plain.extension_types == () and plain.extension_type is None


def test_core_modules_do_not_import_aiohttp_or_implementations_at_import_time():
    """aiohttp only inside functions; no implementation packages anywhere in core."""
    forbidden_anywhere = ("jan.store", "jan.engine", "jan.server", "jan.extensions", "jan.templates", "jan._engine")
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden_anywhere), f"{path.name} imports {name}"
        for node in tree.body:  # module level only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("aiohttp", "pydantic") for n in names), f"{path.name}: {names}"


def test_package_exports_the_public_api():
    import jan.core

    assert getattr(jan.core, "__file__", None), (
        "jan.core is imported as a namespace package: the editable install predates "
        "python/jan/core/__init__.py; reinstall it (pip install -e .)"
    )
    for name in jan.core.__all__:
        assert hasattr(jan.core, name), name
    for name in ("ExtensionManager", "Extension", "ExtensionContext", "LocalEventBus", "API_VERSION",
                 "ConversationalExtension", "InferenceExtension", "SettingsValidationError"):
        assert name in jan.core.__all__
    assert jan.core.API_VERSION == "1.0"
    from jan.errors import JanError

    assert issubclass(jan.core.SettingsValidationError, JanError)
    assert issubclass(jan.core.SettingsValidationError, ValueError)
