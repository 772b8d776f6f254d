"""The errors every command reports as one line on stderr: bad input (exit 2), failed work (exit 1)."""


class UsageError(Exception):
    """Bad input from the user: reported as one line with exit code 2."""


class Failed(Exception):
    """Work that started failed (not the user's input): one line on stderr, exit code 1."""
