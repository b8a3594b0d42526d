"""Built-in extensions and the example are documented: classes, methods, settings, endpoints, docs page."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import sys
from pathlib import Path

import pytest

from jan.core import API_VERSION, EXTENSION_INTERFACES, Extension, check_api
from jan.extensions.monitoring import MonitoringExtensionImpl
from jan.extensions.remote import RemoteInferenceExtension

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "extensions.md"
EXAMPLE_SRC = REPO / "examples" / "extension-hello" / "src"


def built_in_entry_points() -> list[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group="jan.extensions")
    return sorted((ep for ep in eps if ep.value.startswith("jan.extensions.")), key=lambda ep: ep.name)


def test_the_built_ins_are_registered_through_entry_points():
    assert {ep.name for ep in built_in_entry_points()} >= {"llamacpp", "models", "conversational", "monitoring",
                                                           "remote"}


@pytest.mark.parametrize("ep", built_in_entry_points(), ids=lambda ep: ep.name)
def test_every_built_in_is_described_and_compatible(ep):
    cls = ep.load()
    assert isinstance(cls, type) and issubclass(cls, Extension)
    assert cls.name == ep.name, "the entry point name must equal the extension's name"
    assert (cls.__doc__ or "").strip() or cls.description
    assert cls.description.strip()
    assert check_api(cls.requires_api, API_VERSION) is None
    # every interface it implements is complete (nothing abstract left)
    assert not getattr(cls, "__abstractmethods__", None)


def interface_doc(cls: type, name: str) -> str | None:
    for klass in cls.__mro__[1:]:
        member = klass.__dict__.get(name)
        if member is not None and (getattr(member, "__doc__", None) or "").strip():
            return member.__doc__
    return None


def undocumented(cls: type) -> list[str]:
    """Public methods defined on ``cls`` with neither their own docstring nor a documented declaration above."""
    missing = []
    for name, member in vars(cls).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        if not (member.__doc__ or "").strip() and not interface_doc(cls, name):
            missing.append(name)
    return missing


@pytest.mark.parametrize("cls", [RemoteInferenceExtension, MonitoringExtensionImpl], ids=lambda c: c.name)
def test_every_public_method_of_these_built_ins_is_documented(cls):
    assert not undocumented(cls), f"{cls.__name__}: methods without a docstring: {undocumented(cls)}"
    # and every interface method it implements says what it does in its own words
    for interface in EXTENSION_INTERFACES:
        if issubclass(cls, interface):
            for name in interface.__abstractmethods__:
                assert (getattr(cls, name).__doc__ or "").strip(), f"{cls.__name__}.{name}"


def test_settings_schemas_describe_every_field():
    for cls in (RemoteInferenceExtension, MonitoringExtensionImpl):
        for field, info in cls.settings_schema.model_fields.items():
            assert info.description, f"{cls.name}: setting {field} has no description"
            assert not info.is_required(), f"{cls.name}: setting {field} has no default"


def test_the_example_extension_is_documented():
    sys.path.insert(0, str(EXAMPLE_SRC))
    try:
        import jan_hello

        cls = jan_hello.HelloExtension
        assert (jan_hello.__doc__ or "").strip() and (cls.__doc__ or "").strip()
        assert not undocumented(cls), undocumented(cls)
        assert cls.requires_api == ">=1,<2" and check_api(cls.requires_api, API_VERSION) is None
        for field, info in cls.settings_schema.model_fields.items():
            assert info.description, field
    finally:
        sys.path.remove(str(EXAMPLE_SRC))
        sys.modules.pop("jan_hello", None)
    pyproject = (EXAMPLE_SRC.parent / "pyproject.toml").read_text()
    assert '[project.entry-points."jan.extensions"]' in pyproject and 'hello = "jan_hello:HelloExtension"' in pyproject
    assert (EXAMPLE_SRC.parent / "README.md").exists()


def test_the_docs_page_covers_the_endpoints_and_remote_fields():
    from jan.server.routes import extensions

    text = DOC.read_text()
    for route in extensions.routes:
        assert f"{route.method} {route.path}" in text, f"{route.method} {route.path}"
    for endpoint in ("GET /v1/system", "/v1/system/models/{model_id}"):
        assert endpoint in text
    for field in ("settings.base_url", "settings.model", "settings.api_key_env", "settings.headers", "parameters"):
        assert f"`{field}" in text, field
    assert "examples/extension-hello" in text and "python/jan/core/README.md" in text
    for link in re.findall(r"\]\((\.\./[^)]+)\)", text):
        assert (DOC.parent / link).resolve().exists(), link


@pytest.mark.parametrize("ep", built_in_entry_points(), ids=lambda ep: ep.name)
def test_the_built_ins_table_names_every_built_in_and_each_of_its_settings(ep):
    """The table had no `tools` nor `mcp` row (so a user could not learn that read_file and fetch_url are turned on
    in the tools extension's settings) and missed llamacpp's `adaptive_threads`."""
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `([\w@/-]+)` \|.*$", DOC.read_text(), re.M)}
    assert ep.name in rows, f"no row for the built-in extension {ep.name!r} in {DOC.name}"
    schema = ep.load().settings_schema
    for field in getattr(schema, "model_fields", {}):
        assert f"`{field}`" in rows[ep.name], f"{ep.name}: setting {field!r} missing from its row"


def test_create_app_takes_the_data_folder_as_text(tmp_path, monkeypatch):
    """The docs' `create_app(config, extensions=[HelloExtension])` with `ServerConfig(data_folder="...")`, as
    `open_services("~/jan")` takes a folder, failed with "'str' object has no attribute 'mkdir'"."""
    import asyncio

    from jan.server.app import create_app
    from jan.server.config import ServerConfig
    from jan.server.keys import MANAGER

    monkeypatch.setenv("HOME", str(tmp_path))
    assert ServerConfig(data_folder="~/jan").data_folder == tmp_path / "jan"

    async def main():
        app = await create_app(ServerConfig(data_folder=str(tmp_path / "data"), enable_extensions=False))
        await app[MANAGER].stop()

    asyncio.run(main())
    assert (tmp_path / "data" / "models").is_dir()


def _python_blocks(doc: Path, heading: str) -> str:
    """The first ```python block after ``heading`` in ``doc``, dedented."""
    import textwrap

    text = doc.read_text()
    return textwrap.dedent(re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1))


async def test_the_docs_examples_work_as_written_installed_through_entry_points(tmp_path):
    """docs/extensions.md's HelloExtension and docs/tools.md's dice provider, copied verbatim into a distribution
    registered the documented way."""
    import json
    import random

    from aiohttp.test_utils import TestClient, TestServer
    from extension_helpers import on_sys_path, write_distribution
    from jan.core import ToolRegistry
    from jan.server.app import create_app
    from jan.server.config import ServerConfig
    from jan.server.keys import MANAGER

    site = tmp_path / "site"
    write_distribution(site, "jan-docs-examples", "0.1.0",
                       {"hello": "jan_hello:HelloExtension", "dice": "jan_dice:DiceExtension"},
                       {"jan_hello.py": _python_blocks(DOC, "2. **Subclass"),
                        "jan_dice.py": _python_blocks(REPO / "docs" / "tools.md", "## Writing a tool provider")})
    with on_sys_path(site, "jan_hello", "jan_dice"):
        app = await create_app(ServerConfig(data_folder=tmp_path / "data", models=[], n_threads=1))
        async with TestClient(TestServer(app)) as client:
            answer = await client.get("/v1/hello")
            assert answer.status == 200 and await answer.json() == {"message": "Hello", "models": []}
            answer = await client.patch("/v1/extensions/hello/settings", json={"greeting": ""})
            assert answer.status == 400 and (await answer.json())["error"]["param"] == "greeting"
            assert (await client.patch("/v1/extensions/hello/settings", json={"greeting": "Hi"})).status == 200
            assert (await (await client.get("/v1/hello")).json())["message"] == "Hi"
            tools = await (await client.get("/v1/tools")).json()
            assert "roll_dice" in [t["function"]["name"] for t in tools["data"]]
            registry = ToolRegistry(app[MANAGER])
            random.seed(1)
            rolled = await registry.call("roll_dice", json.dumps({"sides": 6}))
            assert not rolled.result.is_error and 1 <= int(rolled.result.as_text()) <= 6
            refused = await registry.call("roll_dice", {"sides": 1})
            assert refused.result.is_error and "sides" in refused.result.as_text()
