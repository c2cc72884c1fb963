"""Importing a user's Python file under a fresh module name (reward functions, environment
classes): in the worker process that hosts the user's code, never in the driver."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType

_numbers = itertools.count()


def exec_user_file(path: Path, prefix: str) -> ModuleType:
    """The module of the Python file at `path`, executed under a fresh name `<prefix>_<n>_<stem>`
    and registered in `sys.modules` (pickle and dataclasses look a module up by its name).
    Whatever the file raises while it runs (SystemExit included) is raised again, with the
    half-built module unregistered; callers turn it into their own message."""
    module_name = f"{prefix}_{next(_numbers)}_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(module_name, path, loader=loader))
    sys.modules[module_name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
