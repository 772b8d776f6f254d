"""Where and how studies run: storage URLs (``storage``), parallel worker processes (``workers``),
the trials of dead workers failed and queued again (``dead_workers``), and study folders with
their trial artifacts (``artifacts``)."""
