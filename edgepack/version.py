"""edgepack's version, in a module of its own so every layer can read it without importing the package
API (edgepack/__init__.py) from below; pyproject.toml reads it from here (setuptools' dynamic version)."""
__version__ = "0.1.0"
