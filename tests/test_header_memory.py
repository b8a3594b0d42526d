"""Reading what a GGUF says of itself costs one vocab-only load per file version, shared by every reader, and the
memory that load (or an unloaded model) freed goes back to the OS instead of staying resident in malloc's arenas.

Before, each of four readers made its own vocab-only load, and one read of a 262k-token vocabulary left ~97 MiB
resident (a model list, ``/api/show``, every load's checks)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from unittest import mock

import jan
import pytest
from jan.engine import header, preflight
from jan.extensions.models.gguf_info import describe_gguf
from jan.server.dialects import ollama_models
from jan.services.models import gguf_header

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux's")


def test_every_reader_shares_one_header_read_per_file_version(stories_path, tmp_path):
    path = tmp_path / "m.gguf"
    shutil.copy(stories_path, path)
    loads = []
    real = jan.Model.__init__

    def counting(self, *args, **kw):
        loads.append(kw.get("vocab_only", False))
        return real(self, *args, **kw)

    with mock.patch.object(jan.Model, "__init__", counting):
        preflight.check_load(path, {})
        meta = gguf_header(path)
        details = ollama_models.gguf_details(str(path))
        described = describe_gguf(str(path))
        info = header.read_info(path)
    assert loads == [True]  # one vocab-only load for all five
    assert meta == info.metadata and meta is not info.metadata  # (a copy: callers may change theirs)
    assert details.architecture == info.architecture == "llama" and details.n_params == info.n_params
    assert described["metadata"]["architecture"] == "llama"

    # a new version of the file (another size and time) is read again
    with open(path, "ab") as f:
        f.write(b"\0" * 32)
    with mock.patch.object(jan.Model, "__init__", counting):
        header.read_info(path)
    assert loads == [True, True]


def test_a_bad_file_is_a_model_file_error_naming_what_it_was(tmp_path):
    missing = tmp_path / "gone.gguf"
    with pytest.raises(jan.ModelFileError, match="draft_model: .*not found"):
        header.read_info(missing, "draft_model: ")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(jan.ModelFileError, match="draft_model: .*not a GGUF"):
        header.read_info(junk, "draft_model: ")
    assert gguf_header(junk) is None and ollama_models.gguf_details(str(junk)) == ollama_models.GGUFDetails()


SCRIPT = textwrap.dedent("""
    import shutil, sys, tempfile, threading, os
    import jan
    from jan.engine.header import read_info

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    src, weights = sys.argv[1], sys.argv[2]
    folder = tempfile.mkdtemp()
    def on_a_thread(fn, *args):  # as the server does: a worker thread, with an arena of its own
        t = threading.Thread(target=fn, args=args)
        t.start()
        t.join()
    def load_and_unload():
        with jan.Model(weights, n_ctx=256) as m:
            m.generate("Once", max_tokens=2)
    on_a_thread(load_and_unload)  # the first load's one-off costs (imports, thread pools) are not measured
    before = rss_mib()
    for i in range(3):  # three versions of a large vocabulary: three vocab-only loads
        path = os.path.join(folder, f"v{i}.gguf")
        shutil.copy(src, path)
        on_a_thread(read_info, path)
        on_a_thread(lambda: jan.Model(path, vocab_only=True).close())
    print(rss_mib() - before)
""")


def test_memory_a_header_read_freed_is_handed_back(vocab_dir, stories_path):
    # gemma-4's vocabulary (262,144 tokens) left ~97 MiB resident after one read before
    src = vocab_dir / "ggml-vocab-gemma-4.gguf"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(stories_path)], check=False,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    grown = float(out.stdout.strip().splitlines()[-1])
    assert grown < 40, f"resident memory grew {grown:.1f} MiB over six vocab-only loads"
