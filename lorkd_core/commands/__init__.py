"""One module per ``lorkd`` subcommand (see lorkd_core/cli.py)."""
