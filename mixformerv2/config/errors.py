"""The one exception of the config package."""


class ConfigError(ValueError):
    """A configuration problem; the message names the file (or ``--set`` override) and the dotted key."""
