"""A snapshot installed by a child process, so that the process deciding at the gate never waits for it.

A running gate fetches a full ledger snapshot when deltas cannot close a gap (a gate that was offline
longer than the issuer keeps deltas, or a lost sequence). The install itself is paced — staged beside the
live tables in short transactions and swapped in by one (:func:`citypass.gate.ledger.snapshots.install_paced`)
— so the decision loop's *SQLite* writes never wait long. But verifying and parsing millions of revoked
ids is pure-Python work: done on the sync thread of the gate's own process, it holds the interpreter lock
for hundreds of milliseconds at a time, and the decision thread beside it stalls just the same (measured
in ``citypass bench ledger``: "longest decision stall … installer on a thread of the deciding process").

:func:`install_in_child` therefore runs the whole install — signature checks, parsing, staging, swap — in
a fresh interpreter (``python -m citypass.gate.ledger.installer``) with its own connection to the same
ledger file, and only waits for it; waiting releases the interpreter lock. The deciding process notices
the new trust list and sites by SQLite's ``data_version`` on its next read, like any other writer's
change. The snapshot's bytes go to the child as a file beside the ledger (deleted afterwards), never
through a pipe that could fill.

The child answers with one JSON line (``seq``, ``issued_at``, ``revocations``) and exit status 0; a
refused snapshot (bad signature, malformed, older than the ledger's) is exit status 3 with the reason on
standard error, raised here as :class:`~citypass.gate.ledger.SnapshotRefused`; anything else is a
:class:`~citypass.gate.ledger.LedgerError` that quotes the child's last words. Nothing is changed by a
refused or failed install (the swap is one transaction).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from citypass.credential.keys import Alg, VerifyKey
from citypass.gate.ledger.config import LedgerConfig
from citypass.gate.ledger.connection import LedgerError, SnapshotRefused

REFUSED = 3
"""The child's exit status for a snapshot it refused (as opposed to one it failed to install)."""


@dataclass(frozen=True)
class InstalledSnapshot:
    """What the child installed."""

    seq: int
    issued_at: int
    revocations: int


def install_in_child(config: LedgerConfig, chunks: Iterable[bytes], root: VerifyKey | None, *,
                     force: bool = False, timeout_s: float = 3600.0) -> InstalledSnapshot:
    """Write the snapshot's bytes (``chunks``, e.g. an HTTP body as it streams in) to a private file beside
    the ledger, install it from a child process against the pinned ``root``, and return what it installed.

    Raises :class:`SnapshotRefused` for a snapshot the child refused and :class:`LedgerError` when the child
    could not run or failed; the ledger is unchanged in both cases."""
    directory = config.path.parent
    fd, name = tempfile.mkstemp(prefix=".snapshot-", suffix=".cbor", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        return _run_child(config, Path(name), root, force=force, timeout_s=timeout_s)
    finally:
        Path(name).unlink(missing_ok=True)


def _run_child(config: LedgerConfig, snapshot_file: Path, root: VerifyKey | None, *, force: bool,
               timeout_s: float) -> InstalledSnapshot:
    command = [sys.executable, "-m", "citypass.gate.ledger.installer", "--ledger", str(config.path),
               "--snapshot", str(snapshot_file), "--config", config.model_dump_json()]
    if root is not None:
        command.append(f"--root={int(root.alg)}:{root.raw.hex()}")  # "=": a COSE alg number may be negative
    if force:
        command.append("--force")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LedgerError(f"the snapshot installer did not finish: {exc}") from exc
    said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    if done.returncode == REFUSED:
        raise SnapshotRefused(said)
    if done.returncode != 0:
        raise LedgerError(f"the snapshot installer failed: {said}")
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return InstalledSnapshot(int(answer["seq"]), int(answer["issued_at"]), int(answer["revocations"]))
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise LedgerError(f"the snapshot installer answered {done.stdout[-200:]!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """The child: open the ledger, install the snapshot file, print what was installed."""
    parser = argparse.ArgumentParser(prog="python -m citypass.gate.ledger.installer", description=main.__doc__)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--config", required=True, help="the gate's LedgerConfig as JSON")
    parser.add_argument("--root", help="the pinned root key as ALG:HEX (COSE algorithm number, raw public key)")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    from citypass.gate.ledger.store import GateLedger  # the child's only heavy import

    root = None
    if args.root:
        alg, _, raw = args.root.partition(":")
        root = VerifyKey.from_raw(Alg(int(alg)), bytes.fromhex(raw))
    config = LedgerConfig.model_validate_json(args.config)
    try:
        with GateLedger.open(args.ledger, root=root, config=config) as ledger:
            snap = ledger.load_snapshot(args.snapshot.read_bytes(), force=args.force)
    except SnapshotRefused as exc:
        print(exc, file=sys.stderr)
        return REFUSED
    except (LedgerError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps({"seq": snap.seq, "issued_at": snap.issued_at,
                      "revocations": len(snap.revoked) + len(snap.revoked_holders)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
