"""What can go wrong when the driver calls user code in a :class:`~rlhf.usercode.process.UserCodeProcess`.

Both sides import this module (the child sends :class:`UserCodeFailed` back pickled), so it
imports nothing but the standard library.
"""

from __future__ import annotations


class UserCodeError(RuntimeError):
    """Base of the errors below; `str()` is a one-line description."""


class UserCodeFailed(UserCodeError):
    """An exception escaped the hosted object in the child (or its result could not be sent
    back). The child lives on. `details` holds the formatted traceback."""

    def __init__(self, summary: str, details: str = ""):
        super().__init__(summary)
        self.details = details

    def __reduce__(self):
        return (type(self), (str(self), self.details))


class DeadlineExceeded(UserCodeError):
    """A call (or the start-up) ran past its limit; the child process was killed."""


class ProcessDied(UserCodeError):
    """The child process exited or was killed by a signal while it owed an answer."""
