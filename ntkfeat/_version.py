"""The package version, in one place: pyproject.toml reads it (`[tool.setuptools.dynamic]`),
`ntkfeat.__version__` and CITATION.cff repeat it (tests/test_compat.py checks CITATION.cff)."""

__version__ = "0.1.0"
