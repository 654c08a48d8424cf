"""``python -m hfrisk.cli``: what the local stack runs to start its own commands."""

from hfrisk.cli.app import app

app()
