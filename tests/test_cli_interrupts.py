"""A Ctrl-C anywhere in the `jan` command ends it quietly with status 130: while its modules are imported, while
click parses the arguments, while a command imports the engine, and while the interpreter shuts down afterwards.

A Ctrl-C lands wherever the process happens to be, so each test puts the KeyboardInterrupt at one chosen place
(an import that raises it, a parser that raises it, an atexit handler that sends SIGINT) instead of timing a signal.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from test_cli_helpers import cli_env, sigint_as_at_a_terminal

# Runs the `jan` command as `python -m jan` does, with a KeyboardInterrupt raised by the import of $INTERRUPT_AT
# (where a Ctrl-C during that import raises it), or by the argument parser when $INTERRUPT_AT is "parse".
PROGRAM = r"""
import importlib.abc, os, runpy, sys

where = os.environ["INTERRUPT_AT"]

class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == where:
            raise KeyboardInterrupt
        return None

if where == "parse":
    import click.core
    def parse_args(self, ctx, args):
        raise KeyboardInterrupt
    click.core.Group.parse_args = parse_args
elif where == "exit":
    import atexit, signal, time
    # after the command, while the interpreter shuts down (atexit handlers, joining worker threads)
    atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(30)))
else:
    sys.meta_path.insert(0, Interrupt())
sys.argv = ["jan", *sys.argv[1:]]
runpy.run_module("jan", run_name="__main__", alter_sys=True)
"""


def _interrupted(tmp_path, where: str, *args: str) -> subprocess.CompletedProcess:
    env = cli_env(tmp_path / "data", INTERRUPT_AT=where)
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, preexec_fn=sigint_as_at_a_terminal)


@pytest.mark.parametrize("where, args", [
    ("click", ["models", "list"]),             # importing the command group (`from jan.cli import main`)
    ("jan.cli.common", ["models", "list"]),    # the group's first own import, before any command
    ("jan.cli.models", ["models", "list"]),    # a command's module, imported on first use
    ("parse", ["models", "list"]),             # click parsing the arguments
    ("parse", ["--help"]),
    ("jan.engine", ["run", "no-such-model.gguf", "--raw", "hi"]),  # a command importing the engine
])
def test_ctrl_c_anywhere_exits_quietly_with_130(tmp_path, where, args):
    result = _interrupted(tmp_path, where, *args)
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_ctrl_c_while_the_interpreter_shuts_down_exits_at_once_with_130(tmp_path):
    """The command is over (it printed its answer); a Ctrl-C in what follows — atexit handlers, worker threads being
    joined — ends the process at once, with no "Exception ignored ... KeyboardInterrupt" traceback and no wait."""
    result = _interrupted(tmp_path, "exit", "models", "list")
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert "no models" in result.stderr, result  # the command ran to its end first
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


def test_the_entry_point_leaves_an_in_process_callers_ctrl_c_alone():
    """The group's own handling (click's test runner calls it in-process) never installs a signal handler: only the
    process's entry (`jan`, `python -m jan`) does, for its own shutdown."""
    import signal

    from click.testing import CliRunner

    from jan.cli import main

    before = signal.getsignal(signal.SIGINT)
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert signal.getsignal(signal.SIGINT) is before


def test_import_jan_does_not_load_the_engine():
    """`import jan` is light (the engine, numpy's users and the templates load on first use of jan.Model and the
    like): what lets every `jan` command handle Ctrl-C from its start, and start faster."""
    code = ("import sys, jan; assert 'jan.engine' not in sys.modules and 'jan._engine' not in sys.modules; "
            "from jan import Model, ModelPool; import jan.engine.registry as r; "
            "assert jan.Model is Model and jan.engine.registry is r and jan.ModelPool is r.ModelPool; "
            "assert isinstance(jan.system_info()['jan_version'], str); "
            "from jan import _engine; assert _engine is sys.modules['jan._engine']; "
            "assert 'Model' in dir(jan) and 'Model' in jan.__all__; "
            "import pytest; pytest.raises(AttributeError, lambda: jan.no_such_name)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_dir_jan_shows_no_module_internals():
    """``dir(jan)`` lists jan's own names (its ``__all__``, its version, its subpackages) and not what its ``__init__``
    used to work: ``annotations`` (the ``__future__`` feature), ``importlib`` and ``logging`` read as jan's API, and
    ``jan.logging`` was the standard library's module."""
    code = ("import json, jan, types; "
            "print(json.dumps([n for n in dir(jan) if not n.startswith('_') and n not in jan.__all__ "
            "and not (isinstance(getattr(jan, n), types.ModuleType) and getattr(jan, n).__name__ == 'jan.' + n)]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    code = "import jan, pytest; [pytest.raises(AttributeError, getattr, jan, n) for n in ('importlib', 'logging')]"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
