"""Subcommands of the `ml-assets` command line."""
