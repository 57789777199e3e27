"""What the device's OS calls at boot, shutdown, power failure and around an update.

Each hook is a short list of :class:`Step` results, printed as a table by ``citypass hooks …`` and
judged as a whole: a hook exits 0 only if every step is ``ok``. The steps themselves are small and
reusable:

* :func:`stop_daemon` — stop accepting codes: SIGTERM to the running gate daemon (found by a pid file,
  or by asking systemd for the unit's main pid), wait for it to finish its own clean shutdown (barrier
  safe, ledger closed), SIGKILL only if it does not within the timeout;
* :func:`flush_ledger` — the tap outbox cannot be uploaded without a network, so make it *durable*
  instead: ``wal_checkpoint(TRUNCATE)`` folds the WAL into the database file and empties it;
* :func:`park_barrier` — claim the pins from the gate config and drive the configured safe state
  (``fail_secure``: closed; ``fail_safe``: free). With ``pins = "mock"`` gpiozero's ``MockFactory`` is
  used, so the hooks run on a development machine too;
* :func:`backup_ledger`, :func:`migrate_ledger` and :func:`restore_ledger` — around an update: a
  migrated ledger cannot be opened by the older software a rollback returns to (the schema refuses
  files from the future), so pre-install keeps a copy and rollback puts it back only when needed.

Order matters: the daemon is stopped first (it owns the pins and writes the ledger), then the ledger is
flushed, then the barrier is parked — a barrier parked while the daemon still runs could be re-opened
by the next decision.

Example, on mock pins::

    >>> from gpiozero.pins.mock import MockFactory
    >>> from citypass.gate.barrier.config import BarrierConfig
    >>> factory = MockFactory()
    >>> park_barrier(BarrierConfig(fail_mode="fail_safe"), pin_factory=factory)
    Step(name='barrier', ok=True, detail='relay in the safe state (fail_safe: barrier free)')
    >>> factory.pin(17).state   # fail-safe: the relay stays energised, the barrier free
    True
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citypass.gate.barrier.config import BarrierConfig
from citypass.gate.barrier.logic import BarrierMode

if TYPE_CHECKING:
    from citypass.gate.config import GateConfig

GATE_UNIT = "citypass-gate.service"


@dataclass(frozen=True)
class Step:
    """One line of a hook's report."""

    name: str
    ok: bool
    detail: str


def render(steps: Sequence[Step]) -> str:
    """A plain table a technician can read on a serial console (and a log can keep)."""
    width = max((len(s.name) for s in steps), default=4)
    lines = [f"{'check'.ljust(width)}  result  detail"]
    lines += [f"{s.name.ljust(width)}  {'ok' if s.ok else 'FAIL':6}  {s.detail}" for s in steps]
    return "\n".join(lines)


# -- stopping the daemon ---------------------------------------------------------------------------------
def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child not yet reaped) no longer runs
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return not process_alive(pid)


def unit_main_pid(unit: str, run: Callable[..., Any] = subprocess.run) -> int | None:
    """The main pid systemd knows for ``unit`` (None if it is not running or systemctl is missing)."""
    if shutil.which("systemctl") is None:
        return None
    result = run(["systemctl", "show", "--property=MainPID", "--value", unit],
                 capture_output=True, text=True, timeout=10, check=False)
    text = str(result.stdout).strip()
    return int(text) if result.returncode == 0 and text.isdigit() and int(text) > 0 else None


def stop_daemon(*, pid_file: Path | None = None, unit: str | None = None, timeout: float = 10.0) -> Step:
    """Stop the running gate daemon so that it decides no more codes.

    The daemon's own SIGTERM handler does the careful part (barrier to safe state, ledger closed); this
    only delivers the signal and waits. ``pid_file`` wins over ``unit``; with neither, the caller has
    arranged the order otherwise (systemd stops the daemon before the shutdown hook runs).
    """
    pid: int | None = None
    source = "no pid file or unit given: assuming the daemon is already stopped"
    if pid_file is not None:
        try:
            pid = int(pid_file.read_text(encoding="ascii").strip())
            source = f"pid {pid} from {pid_file}"
        except (OSError, ValueError):
            return Step("stop_daemon", True, f"no readable pid in {pid_file}: the daemon is not running")
    elif unit is not None:
        pid = unit_main_pid(unit)
        if pid is None:
            return Step("stop_daemon", True, f"{unit} is not running")
        source = f"pid {pid} of {unit}"
    if pid is None:
        return Step("stop_daemon", True, source)
    if not process_alive(pid):
        return Step("stop_daemon", True, f"{source} is not running")
    os.kill(pid, signal.SIGTERM)
    started = time.monotonic()
    if _wait_gone(pid, timeout):
        return Step("stop_daemon", True, f"{source} stopped after SIGTERM in {time.monotonic() - started:.1f} s")
    os.kill(pid, signal.SIGKILL)  # committed taps survive a kill; a daemon that cannot stop must not decide
    gone = _wait_gone(pid, 2.0)
    return Step("stop_daemon", gone, f"{source} ignored SIGTERM for {timeout:.0f} s; "
                                     f"{'killed' if gone else 'still running after SIGKILL'}")


# -- ledger --------------------------------------------------------------------------------------------
# The ledger's modules (sqlite-utils) are imported by the steps that open it, not by this module: the hooks
# that only park the barrier (boot, safe-state) start without them.
def flush_ledger(path: Path) -> Step:
    """Make every committed tap durable in the main database file and empty the WAL."""
    if not path.exists():
        return Step("ledger_flush", True, f"{path} does not exist yet (nothing recorded)")
    from citypass.gate.ledger import GateLedger, LedgerError

    try:
        with GateLedger.open(path) as ledger:
            backlog = ledger.backlog()
            result = ledger.checkpoint()
    except LedgerError as exc:
        return Step("ledger_flush", False, f"{path}: {exc}")
    if result.busy:
        return Step("ledger_flush", False, f"checkpoint blocked by another reader ({result.wal_pages} WAL pages left)")
    return Step("ledger_flush", True, f"WAL checkpointed and truncated ({result.checkpointed_pages} pages); "
                                      f"{backlog} events wait for upload")


def backup_ledger(path: Path, target: Path) -> Step:
    """Copy the ledger with SQLite's online backup (consistent even if a reader is open)."""
    if not path.exists():
        return Step("ledger_backup", True, f"{path} does not exist yet: nothing to back up")
    tmp = target.with_name(target.name + ".partial")
    try:
        src = sqlite3.connect(path)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        tmp.replace(target)
    except (sqlite3.Error, OSError) as exc:
        tmp.unlink(missing_ok=True)
        return Step("ledger_backup", False, f"cannot back up {path}: {exc}")
    return Step("ledger_backup", True, f"copied to {target} (restore it if the update is rolled back)")


def migrate_ledger(path: Path) -> list[Step]:
    """Open the ledger with this software (which runs missing migrations), then integrity-check it."""
    from citypass.gate.ledger import SCHEMA_VERSION, GateLedger, LedgerError

    try:
        before = _user_version(path) if path.exists() else None
        with GateLedger.open(path) as ledger:
            integrity = ledger.integrity_check()
    except (LedgerError, sqlite3.Error) as exc:
        return [Step("ledger_migrate", False, f"{path}: {exc}")]
    was = "new file" if before is None else f"schema {before}"
    steps = [Step("ledger_migrate", True, f"{was} -> schema {SCHEMA_VERSION}")]
    steps.append(Step("ledger_integrity", integrity.ok, "ok" if integrity.ok else "; ".join(integrity.problems[:5])))
    return steps


def restore_ledger(path: Path, backup: Path) -> Step:
    """After a rollback: keep the ledger if this (older) software can open it; otherwise put the
    pre-update backup back. The newer file is moved aside, never deleted: taps recorded while the new
    software ran are still in it, for a technician to upload."""
    from citypass.gate.ledger import SCHEMA_VERSION

    if not path.exists():
        return Step("ledger_restore", True, f"{path} does not exist: nothing to restore")
    try:
        version = _user_version(path)
    except sqlite3.Error as exc:
        version, why = SCHEMA_VERSION + 1, f"unreadable ({exc})"
    else:
        why = f"schema {version} is newer than this software's {SCHEMA_VERSION}"
    if version <= SCHEMA_VERSION:
        return Step("ledger_restore", True, f"schema {version} opens with this software: kept as it is")
    if not backup.exists():
        return Step("ledger_restore", False, f"{why} and there is no backup at {backup}")
    aside = path.with_name(f"{path.name}.rolled-back-{int(time.time())}")
    try:  # fold the WAL in, so the file moved aside is complete on its own (plain SQLite: no schema check)
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error:
        pass  # an unreadable file is moved aside as it is, with its WAL beside it
    for suffix in ("", "-wal", "-shm"):
        current = Path(f"{path}{suffix}")
        if current.exists():
            current.replace(Path(f"{aside}{suffix}"))
    shutil.copyfile(backup, path)
    return Step("ledger_restore", True, f"{why}: restored {backup.name}; the newer file is kept as {aside.name}")


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


# -- barrier ---------------------------------------------------------------------------------------------
def park_barrier(config: BarrierConfig, *, pins: str = "native", pin_factory: object | None = None) -> Step:
    """Claim the barrier's pins, drive the configured safe state, and release them.

    :class:`~citypass.gate.barrier.gpio.Barrier` is constructed straight into the safe state and its ``close()``
    drives it again before releasing the pins; an active fire alarm keeps the barrier free.
    """
    from citypass.gate.barrier.gpio import Barrier  # gpiozero is imported only by the hooks that touch pins

    if pin_factory is None and pins == "mock":
        from citypass.gate.barrier.mockpins import resting_mock_pins

        pin_factory = resting_mock_pins(config)
    what = "fail_safe: barrier free" if config.fail_mode == "fail_safe" else "fail_secure: barrier closed"
    try:
        barrier = Barrier(config, pin_factory=pin_factory)
    except Exception as exc:  # gpiozero raises many types (pin in use, no such chip, permission)
        return Step("barrier", False, f"cannot claim the pins: {type(exc).__name__}: {exc}")
    try:
        status = barrier.state
    finally:
        barrier.close()
    if status.mode is BarrierMode.FIRE_ALARM:
        return Step("barrier", True, "fire alarm active: barrier held free")
    return Step("barrier", True, f"relay in the safe state ({what})")


# -- the hooks -------------------------------------------------------------------------------------------
def boot(barrier: BarrierConfig, *, pins: str = "native", pin_factory: object | None = None) -> list[Step]:
    """At boot, before the daemon starts: park the barrier (``pins`` and ``barrier`` from the gate config)."""
    return [park_barrier(barrier, pins=pins, pin_factory=pin_factory)]


def shutdown(cfg: GateConfig, *, pid_file: Path | None = None, unit: str | None = None, timeout: float = 10.0,
             pin_factory: object | None = None) -> list[Step]:
    """Shutdown and power-fail: stop deciding, make the outbox durable, park the barrier.

    The barrier is parked even when an earlier step failed: it is the one step that protects people.
    """
    steps = [stop_daemon(pid_file=pid_file, unit=unit, timeout=timeout)]
    steps.append(flush_ledger(cfg.ledger.path))
    steps.append(park_barrier(cfg.barrier, pins=cfg.pins, pin_factory=pin_factory))
    return steps


def pre_install(cfg: GateConfig, *, pid_file: Path | None = None, unit: str | None = GATE_UNIT,
                timeout: float = 10.0, pin_factory: object | None = None) -> list[Step]:
    """Quiesce the gate before the new software is written: shutdown, then a backup of the ledger."""
    steps = shutdown(cfg, pid_file=pid_file, unit=unit, timeout=timeout, pin_factory=pin_factory)
    path = cfg.ledger.path
    steps.insert(2, backup_ledger(path, path.with_name(path.name + ".pre-update")))
    return steps


def post_install(cfg: GateConfig) -> list[Step]:
    """With the new software: migrate the ledger and prove it is intact before the daemon starts."""
    return migrate_ledger(cfg.ledger.path)


def rollback(cfg: GateConfig, *, pid_file: Path | None = None, unit: str | None = GATE_UNIT,
             timeout: float = 10.0, pin_factory: object | None = None) -> list[Step]:
    """Back on the old software after a failed update: stop the daemon, restore a ledger it cannot
    read, and prove the result opens and is intact."""
    path = cfg.ledger.path
    steps = [stop_daemon(pid_file=pid_file, unit=unit, timeout=timeout)]
    steps.append(restore_ledger(path, path.with_name(path.name + ".pre-update")))
    steps += migrate_ledger(path)
    steps.append(park_barrier(cfg.barrier, pins=cfg.pins, pin_factory=pin_factory))
    return steps
