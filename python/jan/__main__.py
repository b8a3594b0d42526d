"""``python -m jan``: the ``jan`` command, for when the console script is not on PATH (a venv not activated)."""

from jan._entry import main

if __name__ == "__main__":
    main()
