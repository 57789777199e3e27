"""``citypass bench broker`` at a test's size: the same code as the 10,000-gate run, on 100 simulated gates.

A real Mosquitto from a broker home with the generated TLS + ACL + persistence config, 100 enrolled device
identities held by one asyncio worker process, the issuer's ledger publisher: every session connects, every gate
receives the operator's revocation as a signed delta that verifies, and every session comes back after the
broker is restarted — with the session the broker kept on disk. Beside them, 3 real gates (GateSync with their
own SQLite ledgers) apply each revocation, before and after the restart, and their ledgers say it is revoked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from citypass.bench import mqtt_packets as mp
from citypass.bench.broker import run_size
from citypass.bench.broker_figures import markdown
from citypass.bench.cli import bench
from citypass.bench.fleet_session import GateSession
from citypass.bench.real_gates import first_applied
from citypass.sync import topics

GATES = 100
REAL = 3


@pytest.mark.slow
def test_a_hundred_gates_get_the_revocation_real_gates_apply_it_and_all_come_back_after_a_restart(
        tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_size(GATES, processes=1, rounds=1, work=tmp_path, log=lines.append, real_gates=REAL)

    assert result.connected == GATES, (result.notes, lines)
    assert result.refusals == 0
    assert result.rss_held_kb > result.rss_idle_kb > 0

    assert [f.label for f in result.fanouts] == ["revocation 1", "after the restart"]
    for fan_out in result.fanouts:
        assert len(fan_out.latencies) == GATES and fan_out.missing == 0, fan_out.label
        assert sum(r.bad for r in fan_out.receipts) == 0
        # every 10th gate's copy verified for real, the others byte-identical to a verified one
        assert sum(r.verified for r in fan_out.receipts) >= GATES // 10
        assert sum(r.verified + r.identical for r in fan_out.receipts) == GATES
        assert fan_out.publish_s is not None  # the issuer's publisher sent it (not a test's shortcut)
        # every real gate applied it in its own ledger — after the issuer published it — and a lookup there
        # finds this round's credential revoked
        assert [a.device_id for a in fan_out.applied] == [f"gate-real-{i:02d}" for i in range(REAL)]
        assert len(fan_out.applied_latencies) == REAL, (fan_out.label, fan_out.applied, lines)
        assert all(a.revoked for a in fan_out.applied), fan_out.applied
        assert min(fan_out.applied_latencies) > fan_out.publish_s
        # received from the broker after the issuer published it, applied after it was received
        assert all(a.receipt is not None and fan_out.publish_s < a.receipt <= a.latency  # type: ignore[operator]
                   for a in fan_out.applied), fan_out.applied
    assert result.real_connected == REAL and result.real_reconnected == REAL
    # one ledger sequence per revocation: the round after the restart is a later one
    seqs = [f.applied[0].ledger_seq for f in result.fanouts]
    assert seqs[0] is not None and seqs[1] == seqs[0] + 1

    assert len(result.reconnect) == GATES, lines
    assert result.sessions_present == GATES  # the broker restored every session from its persistence
    # the gates' jittered backoff: the first retry comes 1 to 1.5 s after the loss (plus this loop's lag)
    waited = result.reconnect_phases["waited"]
    assert len(waited) == GATES and min(waited) >= 1.0 and max(waited) - min(waited) > 0.1

    table = markdown([result])
    assert f"| sessions held | {GATES} of {GATES} |" in table
    assert table.count("revoke → applied in a real gate's ledger") == 2
    assert table.count(f"({REAL} of {REAL}; {REAL} revoked); receipt → applied ") == 2


def test_a_real_gate_has_applied_a_revocation_once_its_ledger_reached_that_sequence_after_the_call() -> None:
    applied = [(10.0, 7), (20.0, 8), (30.0, 9)]
    assert first_applied(applied, since=15.0, seq=8) == 20.0
    assert first_applied(applied, since=15.0, seq=9) == 30.0
    assert first_applied(applied, since=5.0, seq=10) is None   # not yet
    assert first_applied(applied, since=25.0, seq=8) == 30.0   # a later delta includes it


def test_a_simulated_gate_subscribes_to_what_a_real_gate_subscribes_to() -> None:
    import ssl

    session = GateSession("gate-00007", 8, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "127.0.0.1", 1)
    assert dict(session.subscriptions) == {
        "citypass/v1/gate/gate-00007/acks": 1, "citypass/v1/gate/gate-00007/ledger": 1, topics.ALL_LEDGER: 1,
        topics.ISSUER_TIME: 0, "citypass/v1/site/8/#": 1}
    assert 1.0 <= session.first_delay <= 1.5 and 30 <= session.max_delay <= 45
    assert session.max_delay / session.first_delay == pytest.approx(30)  # one jitter factor for both


def test_the_packet_reader_refuses_an_oversized_packet() -> None:
    reader = mp.PacketReader(max_packet=16)
    with pytest.raises(mp.ProtocolError):
        list(reader.feed(mp.publish("citypass/v1/all/ledger", b"x" * 64)))


def test_the_command_is_registered_with_its_help() -> None:
    result = CliRunner().invoke(bench, ["broker", "--help"])
    assert result.exit_code == 0 and "--gates" in result.output and "--processes" in result.output
