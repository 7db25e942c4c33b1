"""The package version: one place, read by hatch at build time and by ``omnicell.__version__``."""

__version__ = "0.1.0"
