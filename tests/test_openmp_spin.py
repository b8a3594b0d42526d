"""jan shortens how long llama.cpp's OpenMP threads spin before sleeping (jan.engine.openmp), only while
libgomp loads: the user's own choice wins, and nothing jan starts inherits the setting."""

from __future__ import annotations

import os
import subprocess
import sys

from jan.engine.openmp import SPIN_COUNT, spin_count_for_load


def test_the_spin_count_is_set_only_while_the_engine_loads():
    environ: dict[str, str] = {"PATH": "/bin"}
    with spin_count_for_load(environ):
        assert environ["GOMP_SPINCOUNT"] == str(SPIN_COUNT)
    assert environ == {"PATH": "/bin"}


def test_the_users_own_choice_wins():
    for choice in ({"GOMP_SPINCOUNT": "300000"}, {"OMP_WAIT_POLICY": "passive"}):
        environ = dict(choice)
        with spin_count_for_load(environ):
            assert environ == choice
        assert environ == choice


def test_the_setting_leaves_the_environment_when_the_load_fails():
    environ: dict[str, str] = {}
    try:
        with spin_count_for_load(environ):
            raise ImportError("no native module")
    except ImportError:
        pass
    assert environ == {}


def test_importing_jan_leaves_the_environment_of_what_it_starts_alone():
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = ("import os, subprocess, sys, jan\n"
            "print(os.environ.get('GOMP_SPINCOUNT'))\n"
            "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"GOMP_SPINCOUNT\"))'],"
            " capture_output=True, text=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]
