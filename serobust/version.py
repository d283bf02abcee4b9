"""serobust's version (the same as pyproject.toml's), in a module of its own so internal code need not import
the package face for it."""

__version__ = "0.1.0"
