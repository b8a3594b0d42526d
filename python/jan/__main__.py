"""``python -m jan``: the ``jan`` command, for when the console script is not on PATH (a venv not activated)."""

from jan.cli import main

main()
