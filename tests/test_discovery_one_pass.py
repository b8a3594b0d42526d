"""Extension discovery reads each installed distribution's files once: its ``entry_points.txt`` and, for those with
jan extensions, its METADATA (it read every ``entry_points.txt`` twice -- once for ``importlib.metadata.entry_points``,
once more to find a package installed twice -- and parsed jan's own METADATA, README included, twice for each of its
seven built-in extensions: ~16 of the ~19 ms discovery took at each start, issue 16). What it finds is what
``importlib.metadata.entry_points`` finds (the seam tests patch), and a package installed twice is still told."""

from __future__ import annotations

import collections
import importlib.metadata

import pytest

from extension_helpers import on_sys_path, write_distribution
from jan.core import discovery

MODULE = "from jan.core import Extension\n\nclass Ext(Extension):\n    name = 'ext'\n"


def test_discovery_reads_each_distributions_files_once(monkeypatch):
    reads: collections.Counter = collections.Counter()
    real = importlib.metadata.PathDistribution.read_text

    def counted(self, filename):
        reads[(str(self._path), filename)] += 1
        return real(self, filename)

    monkeypatch.setattr(importlib.metadata.PathDistribution, "read_text", counted)
    found = discovery.entry_point_candidates("jan.extensions")
    assert {c.name for c in found} >= {"llamacpp", "models", "conversational"}  # (jan's own: installed, editable)
    assert all(c.source.endswith(f"(jan {c.dist_version})") for c in found if c.name == "llamacpp")
    twice = {key: n for key, n in reads.items() if n > 1}
    assert twice == {}, twice


@pytest.mark.parametrize("layout", ["once", "twice", "a folder twice", "shadowed by a copy without the group"])
def test_what_discovery_finds_is_what_importlib_metadata_finds(tmp_path, layout):
    new, old = tmp_path / "new", tmp_path / "old"
    write_distribution(new, "jan-ext", "2.0", {} if layout.startswith("shadowed") else {"ext": "jan_ext:Ext"},
                       {"jan_ext.py": MODULE})
    write_distribution(old, "jan-ext", "1.0", {"ext": "jan_ext:Ext", "more": "jan_ext:Ext"}, {"jan_ext.py": MODULE})
    folders = {"once": [new], "twice": [old, new], "a folder twice": [new, new],
               "shadowed by a copy without the group": [old, new]}[layout]
    with on_sys_path(folders[0], "jan_ext"), on_sys_path(folders[-1], "jan_ext"):
        expected = sorted((e.name, e.value) for e in importlib.metadata.entry_points(group="jan.extensions"))
        candidates = discovery.entry_point_candidates("jan.extensions")
        sources = {c.name: c.source for c in candidates}
    assert sorted((c.name, c.source.split(" = ")[1].split(" ")[0]) for c in candidates) == expected
    if layout == "shadowed by a copy without the group":
        assert "ext" not in sources and "more" not in sources  # (the copy imported declares none)
    else:
        assert sources["ext"].startswith("entry point ext = jan_ext:Ext (jan-ext 2.0)")
        assert ("also installed, never imported: 1.0 at" in sources["ext"]) == (layout == "twice")


def test_a_copy_installed_twice_is_told_without_the_private_normalized_name(tmp_path, monkeypatch):
    """Discovery tells copies of a distribution apart by public API alone: ``Distribution._normalized_name`` (private,
    which a Python upgrade could drop or change silently) is never read -- here it is gone, and the copy still told."""
    new, old = tmp_path / "new", tmp_path / "old"
    write_distribution(new, "jan-ext", "2.0", {"ext": "jan_ext:Ext"}, {"jan_ext.py": MODULE})
    write_distribution(old, "jan-ext", "1.0", {"ext": "jan_ext:Ext"}, {"jan_ext.py": MODULE})
    with on_sys_path(old, "jan_ext"), on_sys_path(new, "jan_ext"):
        # (the standard library's own entry_points() reads the attribute: asked before it goes)
        eps = importlib.metadata.entry_points(group="jan.extensions")
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
        read = []

        def gone(self):
            read.append(self)
            raise AttributeError("_normalized_name")

        for cls in (importlib.metadata.Distribution, importlib.metadata.PathDistribution):
            monkeypatch.setattr(cls, "_normalized_name", property(gone), raising=False)
        candidates = discovery.entry_point_candidates("jan.extensions")
    assert read == []
    sources = {c.name: c.source for c in candidates}
    assert sources["ext"].startswith("entry point ext = jan_ext:Ext (jan-ext 2.0)")
    assert "also installed, never imported: 1.0 at" in sources["ext"], sources["ext"]
