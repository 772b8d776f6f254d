"""Where and how studies run: storage URLs (``storage``), parallel worker processes (``workers``),
and study folders with their trial artifacts (``artifacts``)."""
