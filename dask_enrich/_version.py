"""The package version (its own module: importing it loads nothing else of the package)."""
__version__ = "0.1.0"
