"""``jan info``: versions, the llama.cpp build, devices, memory, the data folder, the server."""

from __future__ import annotations

import platform
import sys
from typing import Any

import click

import jan
from jan.cli.common import connection_options, human_bytes, json_option, print_json


def memory_and_cpus() -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        import psutil
    except ImportError:  # a declared dependency, but keep `jan info` working without it
        import os

        memory: dict[str, Any] = {"total": None, "available": None}
        try:
            pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
            memory = {"total": pages * size, "available": os.sysconf("SC_AVPHYS_PAGES") * size}
        except (AttributeError, ValueError, OSError):
            pass
        return memory, {"logical": os.cpu_count(), "physical": None}
    vm = psutil.virtual_memory()
    return ({"total": vm.total, "available": vm.available},
            {"logical": psutil.cpu_count(), "physical": psutil.cpu_count(logical=False)})


def gather(conn) -> dict[str, Any]:
    system = jan.system_info()
    memory, cpus = memory_and_cpus()
    from jan.cli.common import data_folder_problem
    from jan.store import resolve_data_folder

    root = resolve_data_folder(conn.data_folder_arg)  # not conn.data_folder: a bad one is reported, not fatal
    folder: dict[str, Any] = {"path": str(root), "exists": root.is_dir()}
    problem = data_folder_problem(root)
    if problem:
        folder["problem"] = problem
    if root.is_dir():
        for name in ("models", "threads", "assistants"):
            sub = root / name
            folder[name] = sum(1 for p in sub.iterdir() if p.is_dir() and not p.name.startswith(".")) \
                if sub.is_dir() else 0
    health = None if conn.force_local else _health(conn)
    return {
        "jan_version": jan.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "llama_cpp": {
            "version": system.get("llama_cpp_version"),
            "commit": system.get("llama_cpp_commit"),
            "llama_cpp_python": system.get("llama_cpp_python_version"),
            "gpu_offload": system.get("supports_gpu_offload"),
            "mmap": system.get("supports_mmap"),
            "cpu_features": (system.get("cpu_features") or "").strip(),
        },
        "backends": system.get("backends", []),
        "devices": system.get("devices", []),
        "memory": memory,
        "cpu": cpus,
        "data_folder": folder,
        "server": server_block(conn.url, health, checked=not conn.force_local),
    }


def server_block(url: str, health: dict | None, *, checked: bool = True) -> dict[str, Any]:
    """``jan info --json``'s ``server``: one shape whether a server answers or not (a script reads the same keys):
    ``url``; ``checked`` (False with ``--local``: not asked); ``up``; ``status`` (``ok``, ``degraded``; None when
    down); ``models_loaded`` (ids; None when down, or when the server keeps them from a request without its API
    key); ``uptime_seconds`` (None when down); ``data_folder`` (where the server keeps its data, told to a request
    with the key; None otherwise); ``failed_extensions`` (``[{name, error}]``, ``[]`` when none or down)."""
    up, health = health is not None, health or {}
    return {"url": url, "checked": checked, "up": up, "status": health.get("status"),
            "models_loaded": health.get("models"), "uptime_seconds": health.get("uptime_seconds"),
            "data_folder": health.get("data_folder") or None,
            "failed_extensions": list(health.get("failed_extensions") or [])}


def _health(conn) -> dict | None:
    from jan.cli.client import ApiClient
    from jan.cli.common import probe_timeout

    return ApiClient(conn.checked_url(), conn.api_key).health(probe_timeout())


@click.command()
@json_option
@connection_options
def info(as_json: bool, conn) -> None:
    """Show jan's version, the llama.cpp build and backends, devices, memory, the data folder
    and whether a server is running."""
    data = gather(conn)
    if as_json:
        print_json(data)
        return
    llama = data["llama_cpp"]
    rows: list[tuple[str, str]] = [
        ("jan", f"{data['jan_version']} (Python {data['python']}, {data['platform']})"),
        ("llama.cpp", f"{llama['version']} (commit {llama['commit']}), llama-cpp-python {llama['llama_cpp_python']}"),
        ("backends", ", ".join(data["backends"]) or "none"),
    ]
    for dev in data["devices"]:
        memory = ""
        if dev.get("memory_total"):
            memory = f": {human_bytes(dev.get('memory_free'))} free of {human_bytes(dev['memory_total'])}"
        rows.append(("device", f"{dev.get('name')} ({dev.get('type')}, {dev.get('description')}){memory}"))
    rows.append(("gpu offload", "yes" if llama["gpu_offload"] else "no"))
    cpu = data["cpu"]
    rows.append(("cpu", (f"{cpu['physical']} cores, " if cpu["physical"] else "") + f"{cpu['logical']} threads"))
    if llama["cpu_features"]:
        features = [f.split("=")[0].strip() for f in llama["cpu_features"].replace("CPU :", "").split("|")
                    if f.strip().endswith("= 1")]
        rows.append(("cpu features", " ".join(features)))
    memory = data["memory"]
    rows.append(("memory", f"{human_bytes(memory['available'])} available of {human_bytes(memory['total'])}"))
    folder = data["data_folder"]
    # `jan info` describes this computer: the data folder here, whatever a server uses
    if folder["exists"]:
        models, threads = folder["models"], folder["threads"]
        rows.append(("data folder", f"{folder['path']} on this computer ({models} model{'' if models == 1 else 's'}, "
                                    f"{threads} thread{'' if threads == 1 else 's'})"))
    elif folder.get("problem"):
        rows.append(("data folder", f"{folder['path']} on this computer (unusable: {folder['problem']})"))
    else:
        rows.append(("data folder", f"{folder['path']} on this computer (not created yet)"))
    server = data["server"]
    if server["up"]:
        if server["models_loaded"] is None:  # not "none": the server would not say without its API key
            loaded = "not shown: the server needs its API key (401; set JAN_API_KEY or pass --api-key)"
        else:
            loaded = ", ".join(server["models_loaded"]) or "none"
        rows.append(("server", f"running at {server['url']} (models loaded: {loaded}; its models: "
                               "`jan models list`, this folder's: `jan models list --local`)"))
        if server.get("data_folder"):
            rows.append(("server data", f"{server['data_folder']} (commands that work on a data folder themselves "
                                        "use this one unless --data-folder, $JAN_DATA_FOLDER or --local says "
                                        "otherwise)"))
        if server.get("status") == "degraded":
            failed = "; ".join(f"{e.get('name')}: {e.get('error')}" for e in server.get("failed_extensions") or [])
            rows.append(("server problem", "extensions failed to load" + (f" ({failed})" if failed else "")))
    else:
        checked = " (not checked: --local)" if conn.force_local else ""
        rows.append(("server", f"not running at {server['url']}{checked}"))
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        click.echo(f"{key + ':':<{width}} {value}")
