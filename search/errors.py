"""The error every command reports as one line on stderr with exit code 2."""


class UsageError(Exception):
    """Bad input from the user: reported as one line with exit code 2."""
