"""The common base class of errors caused by what the user gave: a file, a flag, a value."""
from __future__ import annotations


class UserError(Exception):
    """Bad user input (a missing or malformed file, an unusable flag value). The message names the file, flag or
    key; the tools print it as one line on stderr and exit with status 2."""
