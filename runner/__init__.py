"""Command-line plumbing shared by the one-shot commands, and `process-csv` itself."""
