"""Command-line command groups, one module each (see terminal/cli.py)."""
