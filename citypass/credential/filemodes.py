"""Files and directories only their owner may read, whatever the umask: homes 0700, files 0600.

A gate's ledger holds every tap (who entered where, when) and its outbox; an issuer's store holds every
credential, device and token hash; a gate config names its keys. A home made by hand as root, under the
common umask 022, would otherwise be world-readable (0755 directories, 0644 files — SQLite creates its
files 0644 less the umask). These helpers create with the private mode from the first byte and tighten
what exists; SQLite then gives a database's ``-wal`` and ``-shm`` files the mode of the database itself.

    >>> import os, tempfile
    >>> old = os.umask(0o022)
    >>> home = private_dir(Path(tempfile.mkdtemp()) / "home")
    >>> db = private_file(home / "ledger.sqlite3")
    >>> oct(home.stat().st_mode & 0o777), oct(db.stat().st_mode & 0o777)
    ('0o700', '0o600')
    >>> _ = os.umask(old)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents, which keep the umask's mode) as 0700, or tighten it; ``path``."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 if it does not exist (never briefly readable by others), or tighten an
    existing one; ``path``. A file this user may not chmod (someone else's) is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        os.close(fd)
        os.chmod(path, FILE_MODE)  # the umask may have narrowed it further; make it exact
    return path


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(PermissionError):  # not ours: opening it will say what matters
        if path.stat().st_mode & 0o777 & ~mode:
            os.chmod(path, path.stat().st_mode & 0o777 & mode)
