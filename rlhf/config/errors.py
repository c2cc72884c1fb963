"""The one exception type of the config system.

A :class:`ConfigError` is a mistake the user must fix in a recipe file or a ``key.sub=value``
override, never a bug in the program: the CLI prints ``error: <message>`` and exits with
status 2, without a traceback. So the message alone must say what is wrong and where, naming
the full key (``actor.lr: expected a float, got 'fast'``).
"""


class ConfigError(Exception):
    """A recipe, file or override that cannot be used; ``str()`` is the user-facing message."""
