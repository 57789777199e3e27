"""The lanes of one site act as one gate, over real Mosquitto brokers with the project's TLS and ACL config.

:class:`~citypass.bench.siteworld.SiteWorld`: a central broker and issuer, a site broker bridged to the central
one through a link the test can cut, lanes with their own SQLite ledgers and sync threads. A lane's decisions
are made here, on the test's thread, against its own ledger (as its decision loop would), and its sync thread is
poked after each commit (as the daemon does). Times are generous bounds for a loaded machine; the propagation
figures themselves are measured by ``citypass bench site``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from citypass.bench.siteworld import SITE_NAME, SiteWorld
from citypass.bench.syncworld import backlog, wait_for
from citypass.credential import parse
from citypass.credential.keys import SigningKey
from citypass.credential.reasons import Reason
from citypass.gate.decision import Decision, decide
from citypass.gate.ledger import GateLedger, LedgerBusy
from citypass.issuer.incidents import find_incidents
from citypass.sync import topics
from citypass.sync.ca import CertificateAuthority, make_device_key
from citypass.sync.endpoint import stop
from citypass.sync.gate_sync import GateSync
from citypass.sync.lanes import LaneBatch, LaneSigner, LaneTap

ROOT = Path(__file__).resolve().parent.parent
SLOW = 20.0  # seconds: a bound that holds on a loaded machine (the bench measures the real figure)


@contextmanager
def site_world(path: Path, lanes: int, capacity: int | None = None,
               others: tuple[str, ...] = ()) -> Iterator[SiteWorld]:
    world = SiteWorld(path, lanes, capacity=capacity, others=others)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[SiteWorld]:
    with site_world(tmp_path, 2) as world:
        yield world


def double_uses(world: SiteWorld) -> list[tuple[str, ...]]:
    """The issuer's double-use incidents (the gate ids of each), as its report finds them."""
    def party_of(credential_id: str) -> int | None:
        party = (world.issuer.store.credential_details(bytes.fromhex(credential_id)) or {}).get("party")
        return party if isinstance(party, int) else None

    return [i.gate_ids for i in find_incidents(world.issuer.store.taps(), party_of) if i.kind == "double_use"]


def admit(ledger: GateLedger, sync: GateSync | None, code: str) -> Decision:
    """What a lane's decision loop does with one presentation: decide, commit, tell sync."""
    ctx = ledger.context()
    decision = decide(code, ledger, ctx, int(time.time()))
    ledger.record(decision, ctx, {"decided": time.time()})
    if sync is not None:
        sync.poke()
    return decision


def used(ledger: GateLedger, code: str) -> int:
    return ledger.usage(parse(code).credential.id, ledger.context().site.number).persons_used


def reservation(world: SiteWorld, party: int = 1) -> str:
    now = int(time.time())
    return world.issuer.mint_reservation(SITE_NAME, now - 600, now + 3600, party, now - 700)


def issuer_taps(world: SiteWorld) -> list[str]:
    return sorted(t.tap_id for t in world.issuer.store.taps())


def own_taps(ledger: GateLedger) -> list[str]:
    return [r[0] for r in ledger.db.conn.execute("SELECT tap_id FROM taps")]


def sibling_taps(ledger: GateLedger) -> list[str]:
    return sorted(r[0] for r in ledger.db.conn.execute("SELECT tap_id FROM sibling_taps"))


def test_a_screenshot_admitted_at_lane_1_is_refused_at_lane_2(two: SiteWorld) -> None:
    world = two
    with world.issuer_sync(), world.decider("lane-1") as one, world.decider("lane-2") as other:
        syncs = [world.lane(g) for g in world.gates]
        assert wait_for(lambda: all(s.state.connected for s in syncs), SLOW)
        code = reservation(world)
        assert admit(one, syncs[0], code).allowed
        assert wait_for(lambda: used(other, code) == 1, SLOW, 0.005)  # (how fast: `citypass bench site`)
        denied = admit(other, syncs[1], code)
        assert denied.reason is Reason.ALREADY_USED
        # the issuer holds each lane's own taps, once: lane 2's copy of lane 1's tap is not uploaded
        assert wait_for(lambda: backlog(world.ledger_path("lane-1")) == backlog(world.ledger_path("lane-2")) == 0,
                        SLOW)
        assert issuer_taps(world) == sorted(own_taps(one) + own_taps(other))
        assert syncs[1].state.counters["lane_applied"] == 1 and syncs[0].state.counters["lane_sent"] == 1
        assert syncs[1].state.central is True  # the site broker's bridge to the central broker is up


@pytest.mark.slow
def test_four_lanes_split_a_party_keep_passback_and_count_capacity(tmp_path: Path) -> None:
    with site_world(tmp_path, 4, capacity=4) as world:
        ledgers = [world.decider(g) for g in world.gates]
        try:
            syncs = [world.lane(g) for g in world.gates]
            assert wait_for(lambda: all(s.state.connected for s in syncs), SLOW)
            party = reservation(world, 3)
            first = admit(ledgers[0], syncs[0], party)
            assert first.persons == 3
            ledgers[0].annul(ledgers[0].pending(5)[-1].tap_id, 1)  # two walked through, the third turned back
            syncs[0].poke()
            assert wait_for(lambda: all(used(x, party) == 2 for x in ledgers[1:]), SLOW)
            assert admit(ledgers[2], syncs[2], party).persons == 1  # one more at lane 3 …
            assert wait_for(lambda: used(ledgers[3], party) == 3, SLOW)
            assert admit(ledgers[3], syncs[3], party).reason is Reason.ALREADY_USED  # … and no more at 4
            annual = world.issuer.mint_annual([SITE_NAME], now=world.now)
            assert admit(ledgers[1], syncs[1], annual).allowed
            assert wait_for(lambda: ledgers[3].usage(parse(annual).credential.id, world.site).last_entry_at
                            is not None, SLOW)
            assert admit(ledgers[3], syncs[3], annual).reason is Reason.PASSBACK
            # 2 + 1 + 1 inside: the hall's capacity of 4 is reached, whichever lane counted them
            assert wait_for(lambda: ledgers[2].occupancy(world.site) == 4, SLOW)
            assert admit(ledgers[2], syncs[2], reservation(world)).reason is Reason.SITE_FULL
            assert all(s.state.counters["lane_races"] == 0 for s in syncs)
        finally:
            for ledger in ledgers:
                ledger.close()


def test_lanes_share_while_the_city_link_is_down(two: SiteWorld) -> None:
    world = two
    with world.issuer_sync(), world.decider("lane-1") as one, world.decider("lane-2") as other:
        syncs = [world.lane(g) for g in world.gates]
        assert wait_for(lambda: all(s.state.central for s in syncs), SLOW)
        world.city_link.cut()  # the site's uplink dies; its own network is up
        assert wait_for(lambda: all(s.state.central is False for s in syncs), SLOW)
        code = reservation(world, 2)
        assert admit(one, syncs[0], code).persons == 2
        assert wait_for(lambda: used(other, code) == 2, SLOW)
        assert admit(other, syncs[1], code).reason is Reason.ALREADY_USED
        assert world.issuer.store.tap_count() == 0  # nothing reached the city meanwhile
        world.city_link.restore()
        assert wait_for(lambda: len(issuer_taps(world)) == 2, 60), issuer_taps(world)
        assert issuer_taps(world) == sorted(own_taps(one) + own_taps(other))
        assert wait_for(lambda: backlog(world.ledger_path("lane-1")) == backlog(world.ledger_path("lane-2")) == 0,
                        SLOW)
        assert double_uses(world) == []


@pytest.mark.slow
def test_an_isolated_lane_decides_alone_and_the_race_is_found_at_both_lanes(two: SiteWorld) -> None:
    world = two
    with world.issuer_sync() as isync, world.decider("lane-1") as one, world.decider("lane-2") as other:
        syncs = [world.lane("lane-1", isolatable=True), world.lane("lane-2")]
        assert wait_for(lambda: all(s.state.connected for s in syncs), SLOW)
        # statuses cross the bridge retained, and so does the Last Will the site broker publishes for a lane
        assert isync.publisher.wait_status("lane-1", lambda s: s.online, SLOW)
        world.links["lane-1"].cut()  # lane 1 is cut off from its siblings too
        assert wait_for(lambda: not syncs[0].state.connected, SLOW)
        assert isync.publisher.wait_status("lane-1", lambda s: not s.online, 60)
        code = reservation(world, 2)
        assert admit(one, syncs[0], code).persons == 2
        assert admit(other, syncs[1], code).persons == 2  # lane 2 cannot know: the double use happens
        world.links["lane-1"].restore()
        assert wait_for(lambda: all(s.state.counters.get("lane_races") == 1 for s in syncs), 60), \
            [s.state.counters for s in syncs]
        assert wait_for(lambda: len(issuer_taps(world)) == 2, 60)
        assert double_uses(world) == [("lane-1", "lane-2")]

        def reported(gate: str) -> bool:  # each lane's race count reaches the issuer's device health
            health = world.issuer.store.health(gate)
            return health is not None and health.details.get("lane_races") == 1

        assert wait_for(lambda: reported("lane-1") and reported("lane-2"), SLOW)


def _raw_client(world: SiteWorld, cn: str) -> mqtt.Client:
    client = world.endpoint(cn).client(cn)
    broker = world.broker_for_lanes()
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def test_forged_and_foreign_sibling_taps_are_refused_and_counted(tmp_path: Path) -> None:
    with site_world(tmp_path, 2, others=("gate-far",)) as world, world.decider("lane-2") as other:
        lane2 = world.lane("lane-2")
        assert wait_for(lambda: lane2.state.connected, SLOW)
        code = reservation(world)
        cred = parse(code).credential.id
        tap = LaneTap("tap", "t-forged", cred, "entry", 1, int(time.time()), int(time.time() * 1000), party=1,
                      product=2)

        def batch(device: str = "lane-1", site: int = world.site) -> LaneBatch:
            return LaneBatch(device, site, int(time.time() * 1000), (tap,))

        lane1 = LaneSigner.from_files(world.files["lane-1"].key, world.files["lane-1"].cert)
        far = LaneSigner.from_files(world.files["gate-far"].key, world.files["gate-far"].cert)
        stranger_ca = CertificateAuthority.create(tmp_path / "stranger-ca")
        key_path, csr = make_device_key(tmp_path / "stranger", "lane-1")
        stranger_cert = stranger_ca.sign_csr(csr.read_bytes(), kind="device").public_bytes(Encoding.DER)
        stranger = LaneSigner(SigningKey.from_pem(key_path.read_bytes()), stranger_cert)
        good = lane1.sign(batch())
        tampered = good[:-3] + bytes(b ^ 0xFF for b in good[-3:])
        forged = {
            "wrong_device": far.sign(batch("gate-far")),       # a real gate's signature, on lane 1's topic
            "wrong_site": lane1.sign(batch(site=1)),           # lane 1 speaking for another site
            "bad_signature": tampered,
            "bad_certificate": stranger.sign(batch()),         # a certificate from another CA
            "malformed": b"\xa1\x01\x02",
        }
        # The foreign gate (enrolled at West Lake) reaches the site broker, but the ACL lets it publish on no
        # lanes topic here: its message is never delivered.
        foreign = _raw_client(world, "gate-far")
        refusals: list[int] = []
        foreign.on_publish = lambda c, u, mid, rc, p: refusals.append(rc.value)
        for topic in (topics.site_lanes(world.site, "gate-far"), topics.site_lanes(world.site, "lane-1")):
            foreign.publish(topic, far.sign(batch("gate-far")), qos=1).wait_for_publish(5)
        # lane 1's own identity (its sync is not running) publishes what a compromised path might carry
        raw = _raw_client(world, "lane-1")
        for payload in forged.values():
            raw.publish(topics.site_lanes(world.site, "lane-1"), payload, qos=1).wait_for_publish(5)
        assert wait_for(lambda: lane2.state.counters["lane_refused"] == len(forged), SLOW), lane2.state.counters
        assert used(other, code) == 0 and lane2.state.counters["lane_applied"] == 0
        raw.publish(topics.site_lanes(world.site, "lane-1"), good, qos=1).wait_for_publish(5)
        assert wait_for(lambda: used(other, code) == 1, SLOW)  # the genuine message is applied
        assert lane2.state.counters["lane_refused"] == len(forged)  # and the foreign ones never arrived:
        assert refusals == [0x87, 0x87]  # the site broker refused them: "Not authorized"
        stop(foreign)
        stop(raw)


@pytest.mark.slow
def test_a_flooding_sibling_cannot_stall_the_decision_loop(tmp_path: Path) -> None:
    with site_world(tmp_path, 3) as world, world.decider("lane-1") as one, world.decider("lane-2") as two_:
        syncs = [world.lane("lane-1"), world.lane("lane-2")]
        assert wait_for(lambda: all(s.state.connected for s in syncs), SLOW)
        # lane 3's identity replays one genuine signed message, and garbage, as fast as it can
        signer = LaneSigner.from_files(world.files["lane-3"].key, world.files["lane-3"].cert)
        replayed = signer.sign(LaneBatch("lane-3", world.site, 0, tuple(
            LaneTap("tap", f"t-{i}", os.urandom(8), "entry", 1, world.now, 0, 1, 2) for i in range(50))))
        flooder = _raw_client(world, "lane-3")
        topic = topics.site_lanes(world.site, "lane-3")
        ctx = one.context()
        slowest, decided = 0.0, 0
        code = reservation(world)
        for i in range(4000):
            flooder.publish(topic, replayed if i % 2 else b"\x00" * 64, qos=0)
            if i % 20 == 0:  # meanwhile lane 1's decision loop keeps deciding and committing
                started = time.perf_counter()
                try:
                    one.record(decide("WIFI:S:x;;", one, ctx, int(time.time())), ctx, {})
                except LedgerBusy as exc:  # the decision loop's 50 ms write budget was taken
                    pytest.fail(f"lane 1's decision loop was stalled: {exc}")
                slowest = max(slowest, time.perf_counter() - started)
                decided += 1
            if i == 1000:
                assert admit(two_, syncs[1], code).allowed  # a genuine sibling tap in the flood
        assert wait_for(lambda: used(one, code) == 1, SLOW), syncs[0].state.counters
        counters = syncs[0].state.counters
        assert counters["lane_dropped"] > 0 and counters["lane_refused"] > 0
        assert decided == 200 and slowest < 2.0, slowest  # a generous bound on a loaded machine
        stop(flooder)


def _spawn_lane(world: SiteWorld, gate: str, codes: Path | None) -> subprocess.Popen[str]:
    files, broker = world.files[gate], world.broker_for_lanes()
    args = [sys.executable, "-m", "tests.site_lane_worker", str(world.ledger_path(gate)), gate, str(world.site),
            broker.host, str(broker.port), str(files.ca), str(files.cert), str(files.key)]
    proc = subprocess.Popen(args + ([str(codes)] if codes else []), cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.slow
def test_a_lane_killed_mid_propagation_loses_and_doubles_nothing(two: SiteWorld, tmp_path: Path) -> None:
    world = two
    codes = [reservation(world) for _ in range(60)]
    path = tmp_path / "codes.txt"
    path.write_text("\n".join(codes))
    with world.issuer_sync(), world.decider("lane-2") as other:
        lane2 = world.lane("lane-2")
        proc = _spawn_lane(world, "lane-1", path)
        try:
            assert proc.stdout is not None
            while proc.stdout.readline().strip() != "decided 30":
                pass
            proc.send_signal(signal.SIGKILL)  # mid-stream: taps committed, some not yet shared or uploaded
            proc.wait(10)
            proc.stdout.close()
            assert len(sibling_taps(other)) < 60  # (it was killed before it could share all 60)
            with GateLedger.open(world.ledger_path("lane-1")) as one:
                decided = own_taps(one)
            assert len(decided) >= 30
            proc = _spawn_lane(world, "lane-1", None)  # back up: it shares and uploads the rest
            assert wait_for(lambda: len(sibling_taps(other)) == len(decided), 60), lane2.state
            assert wait_for(lambda: len(issuer_taps(world)) == len(decided), 60), len(issuer_taps(world))
        finally:
            proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        assert sibling_taps(other) == sorted(decided)  # every one of lane 1's taps reached lane 2, once
        assert issuer_taps(world) == sorted(decided)  # and the issuer, once each; lane 2 uploaded none of them
        assert all(used(other, c) == 1 for c in codes[: len(decided)])


def test_signed_ticks_raise_a_lanes_clock_floor(two: SiteWorld) -> None:
    world = two
    old = world.now  # the issuer's keys are valid from then: a lane whose last signed time is that old
    path = world.path / "lane-1.sqlite3"
    with GateLedger.open(path, root=world.root) as ledger:
        ledger.load_snapshot(world.issuer.export(old))
        ledger.set_identity("lane-1", world.site)
        assert ledger.clock_floor == old
    with world.issuer_sync(), GateLedger.open(path, root=world.root) as view:
        world.lane("lane-1")
        assert wait_for(lambda: view.clock_floor >= int(time.time()) - 12, SLOW), (view.clock_floor, old)
        assert view.clock_floor <= int(time.time()) - 9  # the tick's time less the alarm's 10 s tolerance
