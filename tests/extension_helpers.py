"""Helpers of the extension tests: JSON calls, and packages put on ``sys.path`` for entry-point discovery.

Extensions are installed into a folder of their own (``pip install --target``)
that the test puts on ``sys.path``: ``importlib.metadata`` discovers their
entry points there exactly as in site-packages, and nothing is left behind in
the shared virtual environment (other test runs using it never see them).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "extension-hello"


def call(srv, method: str, path: str, body: Any = None, *, timeout: float = 60,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """``(status, parsed JSON body)`` of one request to a test server (the text when it is not JSON); ``headers``
    added to its own. ``timeout``: a guard against a hung test, never a measure."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(srv.base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def loaded_model_ids(srv, *, timeout: float = 300) -> set[str]:
    """The ids of the models loaded in a test server now (Ollama's ``/api/ps``, its ``:latest`` tag dropped)."""
    status, ps = call(srv, "GET", "/api/ps", timeout=timeout)
    assert status == 200, ps
    return {m["name"].split(":")[0] for m in ps["models"]}


@contextlib.contextmanager
def kept_unloaded(srv, *model_ids: str, timeout: float = 300) -> Iterator[None]:
    """The models stopped before the block, and still not loaded after it: what a request refused before its model
    loads must leave (the refusal tests' fixture)."""
    for model in model_ids:
        status, answer = call(srv, "POST", f"/v1/models/{model}/stop", timeout=timeout)
        assert status == 200, answer
    assert not loaded_model_ids(srv, timeout=timeout) & set(model_ids)
    yield
    assert not loaded_model_ids(srv, timeout=timeout) & set(model_ids), "the refused request loaded the model"


def records(srv) -> dict[str, dict]:
    status, body = call(srv, "GET", "/v1/extensions")
    assert status == 200, body
    return {r["name"]: r for r in body["data"]}


def _setuptools_builds_offline() -> bool:
    """Whether setuptools can build a wheel here without downloading anything (``--no-build-isolation``)."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if version < (61, 0):  # pyproject.toml [project] tables
        return False
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None  # bdist_wheel


def pip_install_target(source: Path, target: Path, workdir: Path) -> None:
    """``pip install --no-deps --target target`` a copy of ``source`` (so no build files land in the repository)."""
    copy = workdir / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    args = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), "--no-compile",
            "--disable-pip-version-check"]
    if _setuptools_builds_offline():
        args += ["--no-build-isolation", "--no-index"]  # works offline
    proc = subprocess.run([*args, str(copy)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"pip could not install {source.name} (needs setuptools>=61 and, before setuptools 70.1, wheel; "
        f"or an index to fetch them from):\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def on_sys_path(folder: Path, *modules: str) -> Iterator[None]:
    """Put ``folder`` first on ``sys.path`` (entry points there become visible); undo it afterwards."""
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        for name in list(sys.modules):
            if any(name == m or name.startswith(m + ".") for m in modules):
                del sys.modules[name]
        importlib.invalidate_caches()


def write_distribution(site: Path, name: str, version: str, entry_points: dict[str, str],
                       files: dict[str, str]) -> None:
    """Write an installed distribution by hand (what pip would leave): modules plus a ``.dist-info``."""
    for rel, text in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[jan.extensions]", *(f"{k} = {v}" for k, v in entry_points.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    (dist / "RECORD").write_text("")
