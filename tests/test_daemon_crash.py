"""Crash safety of the whole daemon: SIGKILL at random moments, 200 times, on one ledger file.

The brief: "the process killed at any instant loses no committed tap and corrupts no ledger". The issue
makes it testable: *a test kills the daemon (SIGKILL) at random moments during a stream of
presentations, at least 200 times; afterwards the ledger opens cleanly and every tap whose barrier
opened is in it, once.*

How (details in :mod:`tests.daemon_crash_worker`): each run is a real :class:`citypass.gate.daemon.GateDaemon`
forked from a pre-loaded fork server, on the same ledger file as every run before it, watching a seeded
stream of single-use reservations (party 1) and annual passes. A run reports ``relay TAP CREDENTIAL``
after each grant the barrier accepted, which the daemon only asks for after the tap committed. The
kill moments are drawn from a seeded ``random.Random``: during start-up (opening the ledger, WAL
recovery), a few milliseconds after a new code comes into view (decoding, deciding, committing,
granting), or at an arbitrary instant of the loop.

What must hold afterwards, and why each check could fail:

* the ledger opens and ``PRAGMA integrity_check`` says ``ok`` (a torn write would not);
* every reported relay is a tap in the ledger, exactly once, allowed, for the credential reported
  (a relay before the commit, or a commit lost by the kill, would leave it missing);
* no reservation was admitted twice: its allowed taps that were not annulled add up to at most one
  person, even though the stream shows it again and again across restarts (usage lost by a kill would
  let it in again), and at least one reservation was in fact refused ``already_used`` in a later run
  than the one that admitted it (so the check above was really exercised);
* each credential's stored usage equals its allowed persons minus annulled ones, and the site's
  occupancy the same sum (a tap committed without its usage, or an annulment half-applied, would not);
* every tap has exactly one ``tap`` event in the outbox, every annulment one ``annul`` event.
"""

from __future__ import annotations

import bisect
import json
import random
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from citypass.credential.reasons import Reason
from citypass.gate.ledger import GateLedger
from tests.daemon_crash_worker import DaemonKillRun, kill_daemon_repeatedly, prepare

KILLS = 200
SEED = 20_240_611


class TapRow(NamedTuple):
    allowed: int
    credential_id: bytes | None
    persons: int
    annulled: int
    reason: str | None
    stages: str  # JSON: wall-clock stage times


@pytest.mark.slow
def test_daemon_killed_200_times_loses_no_opened_tap(tmp_path: Path) -> None:
    setup = prepare(tmp_path, seed=SEED)
    run = kill_daemon_repeatedly(setup, kills=KILLS, rng=random.Random(SEED))
    log = setup.spec.log_path
    assert run.exits == [], f"runs ended without being killed: {run.exits} (see {log})"
    assert run.kills == KILLS
    # The kill moments really were spread: every phase was hit repeatedly (planned ~40 / 80 / 80; which phase a
    # kill lands in depends on the machine's speed, so the bounds leave room for a loaded CI machine).
    assert run.phases["startup"] >= 5 and run.phases["decision"] >= 25 and run.phases["idle"] >= 25, run.phases
    assert len(run.relays) >= 80, f"too few presentations reached the relay to prove much: {run.summary()}"

    with GateLedger.open(setup.ledger_path) as ledger:
        integrity = ledger.integrity_check()
        assert integrity.ok, integrity.problems
        conn = ledger.db.conn
        taps = {
            row[0]: TapRow(*row[1:])
            for row in conn.execute(
                "SELECT tap_id, allowed, credential_id, persons, annulled, reason, stages FROM taps"
            )
        }
        stored = [r[0] for r in conn.execute("SELECT tap_id FROM taps")]
        assert len(stored) == len(set(stored)), "a tap id was recorded twice"

        # Every relay the barrier energised is a committed, allowed tap of that credential, once.
        printed = Counter(tap_id for tap_id, _, _ in run.relays)
        assert max(printed.values()) == 1, "the barrier was granted the same tap twice"
        for tap_id, cred_hex, n in run.relays:
            assert tap_id in taps, f"run {n} opened the barrier for tap {tap_id}, which the ledger lost"
            tap = taps[tap_id]
            assert tap.allowed and tap.persons >= 1, (tap_id, tap)
            assert tap.credential_id is not None and tap.credential_id.hex() == cred_hex, (tap_id, tap, cred_hex)

        # Single use stays single use across 200 restarts.
        site = setup.site_number
        per_cred: dict[bytes, tuple[int, int]] = {}
        for cred_id, persons, annulled in conn.execute(
            "SELECT credential_id, sum(persons), sum(annulled) FROM taps WHERE allowed GROUP BY credential_id"
        ):
            per_cred[cred_id] = (persons, annulled)
            if setup.kinds[cred_id.hex()] == "reservation":
                assert persons - annulled <= 1, f"reservation {cred_id.hex()} admitted {persons - annulled} times"
            assert ledger.usage(cred_id, site).persons_used == persons - annulled, cred_id.hex()
        assert sum(p - a for p, a in per_cred.values()) == ledger.occupancy(site)
        for cred_hex in setup.kinds:  # credentials never allowed have no usage either
            if bytes.fromhex(cred_hex) not in per_cred:
                assert ledger.usage(bytes.fromhex(cred_hex), site).persons_used == 0

        refused_after_restart = _refused_in_a_later_run(run, taps)
        assert refused_after_restart >= 1, "no reservation was ever re-presented after the restart that followed"

        events = {
            kind: (n, distinct)
            for kind, n, distinct in conn.execute(
                "SELECT kind, count(*), count(DISTINCT tap_id) FROM outbox GROUP BY kind"
            )
        }
        annulments = sum(1 for t in taps.values() if t.annulled)
        assert annulments > 0, "no grant expired or was rejected: the annulment path was not exercised"
        assert events["tap"] == (len(taps), len(taps)), events
        assert events["annul"] == (annulments, annulments), (events, annulments)

    print(f"\ndaemon crash test: {run.summary()}; {len(taps)} taps in the ledger, {annulments} annulled, "
          f"{refused_after_restart} reservations refused already_used after the restart that followed their entry")


def _refused_in_a_later_run(run: DaemonKillRun, taps: dict[str, TapRow]) -> int:
    """Refusals (already_used) of reservations in a later run than the one whose relay admitted them.
    Taps are placed in runs by their commit time (wall clock): runs never overlap."""
    admitted: dict[bytes, int] = {}
    for tap_id, _, n in run.relays:
        tap = taps[tap_id]
        if not tap.annulled and tap.credential_id is not None:
            admitted.setdefault(tap.credential_id, n)
    count = 0
    for tap in taps.values():
        if tap.allowed or tap.reason != Reason.ALREADY_USED.value or tap.credential_id not in admitted:
            continue
        run_of_tap = bisect.bisect_right(run.run_started_at, json.loads(tap.stages)["committed"]) - 1
        count += run_of_tap > admitted[tap.credential_id]
    return count
