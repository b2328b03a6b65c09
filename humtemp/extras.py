"""What the repository's tools (``loadtest``, ``bench``) need beyond the service.

Checked when a tool starts, so a missing piece ends it with one line naming the piece
and the command that installs it, instead of a traceback, or (for Locust, which the
tools run as a subprocess) a failure buried in a log file. The service itself never
imports this module.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys


def pip_extra(extra: str) -> str:
    """The tools run from a clone (they are not packaged): install the extra from there."""
    return f"pip install '.[{extra}]'"


def _importable(module: str, isolated: bool) -> bool:
    if not isolated:
        try:
            importlib.import_module(module)
        except ImportError:
            return False
        return True
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                           stdin=subprocess.DEVNULL, check=False)
    return probe.returncode == 0


def require_modules(tool: str, extra: str, *modules: str, isolated: bool = False) -> None:
    """Exit with one line (status 1) unless every module imports.

    ``isolated`` tries the import in a fresh interpreter, as the tool's own subprocess
    will run it, and leaves this process alone (importing locust patches it with gevent).
    """
    for module in modules:
        if not _importable(module, isolated):
            raise SystemExit(f"{tool}: the Python package {module!r} is not installed; "
                             f"install it with: {pip_extra(extra)}")


def require_program(tool: str, program: str, install: str) -> None:
    """Exit with one line (status 1) unless ``program`` is on the PATH."""
    if shutil.which(program) is None:
        raise SystemExit(f"{tool}: the program {program!r} is not installed; "
                         f"install it with: {install}")
