"""Child processes that end with the humtemp that started them, however it ends.

A SIGKILL, a SIGHUP from a closed terminal or a crash runs no cleanup code, so
``finally`` blocks cannot stop embedded redis-servers or worker processes. Linux's
parent-death signal can: the kernel sends it when the parent goes, whatever the reason.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent ends.

    Call it in the child: after fork (``preexec_fn``) or at the start of a spawned
    process. The signal survives ``exec``. Two caveats: the kernel watches the parent
    *thread* that forked, so start children from a thread that lives as long as the
    process (the main thread); and a parent that died before this call would go
    unnoticed, hence the ``getppid`` check right after it: such a child exits at once
    (``os._exit``: in a ``preexec_fn`` the parent's Python signal handlers still apply).
    """
    if _libc is None:
        return
    _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)
