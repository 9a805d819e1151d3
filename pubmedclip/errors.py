"""The one exception type the command line turns into a one-line ``error: ...`` message."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (path, config, checkpoint) described in one line."""
