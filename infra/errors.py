"""The one exception type the command lines turn into a one-line ``error: ...`` message and exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (path, config, checkpoint) described in one line."""
