"""The error type for bad user input: the CLI prints its message on one line and exits non-zero.

One type for the whole toolkit: the VQA side raises and catches the CLIP side's ``UserError``, so an
error from a shared helper (config files, atomic writes) reaches either command line the same way.
"""
from pubmedclip.errors import UserError

__all__ = ["UserError"]
