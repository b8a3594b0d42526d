"""Build ``llama-server`` and ``llama-bench`` from the llama.cpp that jan links against.

jan's libllama comes from the pinned ``llama-cpp-python`` wheel, whose sdist
vendors the whole llama.cpp tree at the matching commit. This script fetches
that sdist with pip (``pip download --no-deps --no-binary :all:``), unpacks
``vendor/llama.cpp`` and builds the two tools with CMake, so the comparison
with ``llama-server`` is the same C/C++ math on the same commit.

Everything lives outside the repository, in ``$JAN_BENCH_HOME`` (default
``~/.cache/jan-bench``); a finished build is reused. This is an optional step
for the benchmarks, never part of the test run. It takes minutes (about 8 on
a 2-core machine); it runs under ``nice -n 10``.

    python benchmarks/build_llama_server.py            # prints the bin directory
    python benchmarks/build_llama_server.py --jobs 2 --rebuild
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "0.3.36"  # the llama-cpp-python pin in pyproject.toml
TOOLS = ("llama-server", "llama-bench")


def home() -> Path:
    return Path(os.environ.get("JAN_BENCH_HOME") or Path.home() / ".cache" / "jan-bench")


def bin_dir() -> Path:
    return home() / f"llama.cpp-{VERSION}" / "build" / "bin"


def tool_path(name: str) -> Path | None:
    """The built tool, or None when this script has not been run yet."""
    p = bin_dir() / name
    return p if p.is_file() and os.access(p, os.X_OK) else None


def _sdist() -> Path:
    dest = home() / "sdist"
    found = sorted(dest.glob(f"llama_cpp_python-{VERSION}.tar.gz"))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    # A copy another process already downloaded saves the network round trip.
    shared = Path("/tmp/sdist") / f"llama_cpp_python-{VERSION}.tar.gz"
    if shared.is_file():
        shutil.copy2(shared, dest / shared.name)
        return dest / shared.name
    # Only llama-cpp-python itself as source: with ":all:" pip also builds the sdist's build tools from
    # source to read its metadata (CMake's bootstrap alone takes an hour on two cores).
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
                    f"llama-cpp-python=={VERSION}", "-d", str(dest)], check=True)
    return next(dest.glob(f"llama_cpp_python-{VERSION}.tar.gz"))


def _unpack(sdist: Path, src: Path) -> None:
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    tmp = src.with_name(src.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix) or "/.git/" in m.name:
                continue
            m.name = m.name[len(prefix):]
            if m.name:
                members.append(m)
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(src)  # atomic: a half-unpacked tree is never mistaken for a whole one


def build(jobs: int, rebuild: bool = False) -> Path:
    root = home() / f"llama.cpp-{VERSION}"
    src, build_dir = root / "src", root / "build"
    if rebuild:
        shutil.rmtree(build_dir, ignore_errors=True)
    if all(tool_path(t) for t in TOOLS):
        return bin_dir()
    if not (src / "CMakeLists.txt").is_file():
        shutil.rmtree(src, ignore_errors=True)
        _unpack(_sdist(), src)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    # The same defaults as the wheel's build (native CPU, OpenMP, Release), no network code.
    subprocess.run(nice + ["cmake", "-S", str(src), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                           "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF",
                           "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
                           "-DLLAMA_BUILD_TOOLS=ON"], check=True)
    subprocess.run(nice + ["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(jobs),
                           "--target", *TOOLS], check=True)
    missing = [t for t in TOOLS if not tool_path(t)]
    if missing:
        raise SystemExit(f"build finished but {', '.join(missing)} not found in {bin_dir()}")
    return bin_dir()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel compile jobs")
    ap.add_argument("--rebuild", action="store_true", help="configure and build again from scratch")
    args = ap.parse_args()
    print(build(args.jobs, args.rebuild))


if __name__ == "__main__":
    main()
