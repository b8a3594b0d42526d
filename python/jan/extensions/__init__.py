"""jan's built-in extensions. Each is registered through the ``jan.extensions``
entry-point group in pyproject.toml, exactly as a third-party one would be."""
