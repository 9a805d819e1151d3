"""The error type for bad user input: the CLI prints its message on one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input (file, key, value) that the message names."""
