"""The ``hfrisk`` command line (``hfrisk COMMAND --help``)."""

from hfrisk.cli.app import app, main

__all__ = ["app", "main"]
