"""Files the broker home and the CA write: atomically, and shared with the home's group where the home is.

A broker home made by systemd (``StateDirectoryMode=2770``, citypass-broker.service) is shared with the issuer,
which is in the broker's group so that it can act as the device CA: its keys are then 0640 and its new
subdirectories 2770 (:func:`shared_with_group`, :func:`make_dir`). Everything the broker reads — the CRL, the ACL,
its config — is written by :func:`write_atomic`, so a crash never leaves half a file for the broker to read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half CRL for the broker to read."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)  # the umask may have narrowed it
    os.replace(tmp, path)


def shared_with_group(directory: Path) -> bool:
    """Whether ``directory`` is one its group may write: a broker home made by systemd with
    ``StateDirectoryMode=2770`` (citypass-broker.service), shared with the issuer, which is in the broker's group
    so that it can act as the device CA. Its keys are then 0640 and its subdirectories 2770; otherwise 0600 and
    as the umask says."""
    try:
        return bool(directory.stat().st_mode & stat.S_IWGRP)
    except OSError:
        return False


def make_dir(directory: Path) -> None:
    """``mkdir -p``; a new directory inside a group-shared one is group-shared too (2770, the group inherited)."""
    existed = directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    if not existed and shared_with_group(directory.parent):
        os.chmod(directory, 0o2770)
