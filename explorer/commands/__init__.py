"""One module per command-line command (see ``explorer.cli``)."""
