"""Build ``llama-server`` and ``llama-bench`` from the llama.cpp that jan links against.

jan's libllama comes from the pinned ``llama-cpp-python`` wheel, whose sdist
vendors the whole llama.cpp tree at the matching commit. This script fetches
that sdist with pip (``pip download --no-deps --no-binary :all:``), unpacks
``vendor/llama.cpp`` and builds the two tools with CMake, so the comparison
with ``llama-server`` is the same C/C++ math on the same commit.

Two builds: ``build/`` links the tools statically (as llama.cpp's release
binaries and most users' builds of the server), and ``build-shared/`` builds
``llama-bench`` alone against shared libraries (llama.cpp's CMake default,
and how llama-cpp-python builds the libllama jan loads), so that
``bench_llama_bench.py`` can also run llama-bench on the very ``.so`` files
jan's engine loads (``shared_bench_command``).

Everything lives outside the repository, in ``$JAN_BENCH_HOME`` (default
``~/.cache/jan-bench``); a finished build is reused. This is an optional step
for the benchmarks, never part of the test run. It takes minutes (about 8 on
a 2-core machine for the static build, 5 more for the shared llama-bench); it
runs under ``nice -n 10``.

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


def shared_bin_dir() -> Path:
    return home() / f"llama.cpp-{VERSION}" / "build-shared" / "bin"


def shared_bench_path() -> Path | None:
    """``llama-bench`` linked against shared libllama/libggml (``build-shared``), or None when not built."""
    p = shared_bin_dir() / "llama-bench"
    return p if p.is_file() and os.access(p, os.X_OK) else None


def engine_lib_dir() -> Path:
    """The folder of the libllama/libggml ``.so`` files jan's engine loads: the llama-cpp-python wheel's
    ``llama_cpp/lib``, which ``jan._engine``'s RPATH (``$ORIGIN/../llama_cpp/lib``) names."""
    import jan._engine

    return Path(jan._engine.__file__).resolve().parent.parent / "llama_cpp" / "lib"


def shared_bench_command() -> tuple[list[str], dict[str, str]] | None:
    """The shared-build ``llama-bench`` and the environment that makes it load jan's own libllama and libggml
    (``LD_LIBRARY_PATH`` is searched before the binary's RUNPATH, so only its ``libllama-common`` and
    ``libllama-bench-impl``, which the wheel lacks, come from ``build-shared``); None when not built."""
    binary = shared_bench_path()
    if binary is None:
        return None
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
        [str(engine_lib_dir()), str(shared_bin_dir()), os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)}
    return [str(binary)], env


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
    if rebuild:
        shutil.rmtree(root / "build-shared", ignore_errors=True)
    if all(tool_path(t) for t in TOOLS) and shared_bench_path():
        return bin_dir()
    if not (src / "CMakeLists.txt").is_file():
        shutil.rmtree(src, ignore_errors=True)
        _unpack(_sdist(), src)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    if not shared_bench_path():
        # llama.cpp's default linking (shared), the other settings as below: llama-bench on the wheel's libraries
        subprocess.run(nice + ["cmake", "-S", str(src), "-B", str(root / "build-shared"), "-DCMAKE_BUILD_TYPE=Release",
                               "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=ON",
                               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                               "-DLLAMA_BUILD_TOOLS=ON"], check=True)
        subprocess.run(nice + ["cmake", "--build", str(root / "build-shared"), "--config", "Release", "-j",
                               str(jobs), "--target", "llama-bench"], check=True)
    if all(tool_path(t) for t in TOOLS):
        return bin_dir()
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
