"""symdiff's version, below every layer: the package, the command line and to_source's header read it."""

__version__ = "0.1.0"
