"""The city's day as a script: who shows what at which gate, in which phase, and what the gate must say.

Pure: no I/O, no clock. :func:`crowd` decides the crowd's make-up from ``--visitors`` and a seed;
:func:`build_script` turns the minted :class:`Cast` into four :class:`Phase` s of :class:`Visit` s,
each visit carrying the decision the gate is expected to make — so the demo can prove, not just show,
that every gate said the right thing.

The phases, and what happens between them (the director in :mod:`citypass.city.run` carries out the
actions):

1. **opening** — every gate online; annual holders, a party of three, metro riders tapping in with live
   codes, a bus rider; a passback attempt, a forged code, a code for the wrong site, a static screenshot
   of a holder-bound pass, a live code screenshotted two minutes ago; a reservation admitted at museum lane 1
   whose screenshot a friend shows at lane 2 a moment later: refused, because the lanes share admissions.
2. **link down** — museum lane 1 loses its link to the museum's broker, and so to its sibling lane and the
   city (:class:`Cut`); it keeps deciding offline and admits a single-use reservation.
3. **still down** — an operator revokes a pass (:class:`Revoke`; the delta reaches the online gates);
   lane 2 (online, unaware) admits a screenshot of the reservation lane 1 admitted: the double use.
4. **link back** — lane 1's link returns (:class:`Restore`); its buffered taps go up and the issuer
   reports the double use; riders tap out at Fengqi.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from citypass.credential import SigningKey, present
from citypass.gate.camera.base import Image

Shown = Literal["static", "live"]
MemberKind = Literal["annual", "museum", "metro", "bus"]

SCENIC, LANE1, LANE2 = "west-lake-east-1", "museum-entrance-1", "museum-entrance-2"
#: The museum's two lanes share admissions through the museum's own (site) broker, bridged to the city's.
MUSEUM_LANES = (LANE1, LANE2)
LENT = "reservation for 1, lane 1"
METRO_IN, METRO_OUT, BUS = "metro-longxiangqiao-in", "metro-fengqi-out", "bus-k7-reader"
PHASES = ("opening", "link down", "still down", "link back")


@dataclass(frozen=True)
class GateSpec:
    gate_id: str
    site: str
    direction: Literal["entry", "exit"]
    label: str


GATES = (
    GateSpec(SCENIC, "west-lake", "entry", "West Lake, east entrance"),
    GateSpec(LANE1, "zhejiang-museum", "entry", "Zhejiang Museum, lane 1"),
    GateSpec(LANE2, "zhejiang-museum", "entry", "Zhejiang Museum, lane 2"),
    GateSpec(METRO_IN, "longxiangqiao", "entry", "Metro Longxiangqiao, in"),
    GateSpec(METRO_OUT, "fengqi", "exit", "Metro Fengqi, out"),
    GateSpec(BUS, "bus-k7", "entry", "Bus K7 reader"),
)


@dataclass(frozen=True)
class Card:
    """A credential on a visitor's phone. Holder-bound cards (``phone`` set) show live codes; a card whose phone
    is a real browser (``picture`` set: the wallet page, :mod:`citypass.city.walletphone`) shows what that
    browser draws at the moment it is held up."""

    code: str
    credential_id: str
    party: int = 1
    phone: SigningKey | None = None
    picture: Callable[[], Image] | None = None


@dataclass(frozen=True)
class Expect:
    """The decision a gate must make: allowed with ``persons``, or denied with ``reason``."""

    allowed: bool
    persons: int = 0
    reason: str | None = None

    def describe(self) -> str:
        return f"allow ×{self.persons}" if self.allowed else f"deny {self.reason}"


def allow(persons: int = 1) -> Expect:
    return Expect(True, persons)


def deny(reason: str) -> Expect:
    return Expect(False, 0, reason)


@dataclass(frozen=True)
class Visit:
    """One presentation at one gate. ``age_s`` > 0 shows a live code generated that long ago (a
    screenshot); ``walkers`` is how many of the admitted persons walk through (the rest turn back)."""

    label: str
    gate: str
    card: Card
    expect: Expect
    condition: str = "clean"
    shown: Shown = "static"
    age_s: int = 0
    walkers: int = 1
    at: float = 0.0  # seconds after the phase starts
    after: str = ""  # comes only once the visit with this label (at another gate) has been decided

    def text(self, now: int) -> str:
        """What the phone's screen shows at ``now``."""
        if self.shown == "static" or self.card.phone is None:
            return self.card.code
        return present(self.card.code, self.card.phone, now - self.age_s)


@dataclass(frozen=True)
class Cut:
    gate: str


@dataclass(frozen=True)
class Restore:
    gate: str


@dataclass(frozen=True)
class Revoke:
    card: Card
    reason: str
    gates: tuple[str, ...]  # the online gates that must have the delta before the phase starts


Action = Cut | Restore | Revoke


@dataclass(frozen=True)
class Phase:
    name: str
    visits: tuple[Visit, ...]
    before: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Member:
    """One visitor of the crowd: what they hold and when they come."""

    kind: MemberKind
    phase: int
    party: int = 1
    walkers: int = 1
    lane: str = LANE1


@dataclass(frozen=True)
class Cast:
    """Everyone's cards, minted by the issuer (:mod:`citypass.city.cast`)."""

    annual: Card            # an annual holder who also tries passback and the museum
    revocable: Card         # admitted in the morning, reported lost at noon
    family: Card            # museum reservation, party of 3
    couple: Card            # party of 2; one turns back
    shared: Card            # single-use reservation admitted at both museum lanes
    lent: Card              # a reservation whose screenshot is lent to a friend at the next lane
    wrong_site: Card        # a museum reservation shown at the scenic spot
    forged: Card            # the issuer's key id, someone else's signature
    riders: tuple[Card, Card]  # metro riders, holder-bound, tap in and out
    screenshot: Card        # a rider whose live code is a two-minute-old screenshot
    jumper: Card            # taps out without tapping in
    bus_rider: Card
    static_transit: Card    # holder-bound, shown as its static code
    crowd: tuple[tuple[Member, Card], ...] = field(default_factory=tuple)


CONDITIONS = ("perspective", "glare", "dark_mode", "clean", "blur", "small")


def crowd(visitors: int, seed: int) -> list[Member]:
    """The crowd's make-up: roughly 30 % annual holders, 25 % museum parties (some with one who turns
    back), 30 % metro riders, 15 % bus riders, spread over the four phases."""
    rng = random.Random(seed)
    members: list[Member] = []
    for _ in range(visitors):
        kind: MemberKind = rng.choices(("annual", "museum", "metro", "bus"), (30, 25, 30, 15))[0]
        phase = rng.randrange(len(PHASES))
        if kind == "museum":
            party = rng.choice((1, 2, 2, 3, 4))
            walkers = party - 1 if party > 1 and rng.random() < 0.25 else party
            # while lane 1 is offline (phase 1) it takes parties too; in phase 2 lane 2 does
            lane = {1: LANE1, 2: LANE2}.get(phase) or rng.choice((LANE1, LANE2))
            members.append(Member(kind, phase, party, walkers, lane))
        else:
            members.append(Member(kind, phase))
    return members


def _core(cast: Cast) -> list[list[Visit]]:
    a, fam, cpl = cast.annual, cast.family, cast.couple
    r1, r2 = cast.riders
    return [
        [  # opening
            Visit("annual holder", SCENIC, a, allow(), "perspective"),
            Visit("annual holder again (passback)", SCENIC, a, deny("passback"), "clean", walkers=0),
            Visit("annual holder, pass later reported lost", SCENIC, cast.revocable, allow(), "dark_mode"),
            Visit("forged code", SCENIC, cast.forged, deny("bad_signature"), "glare", walkers=0),
            Visit("museum reservation at the scenic spot", SCENIC, cast.wrong_site, deny("wrong_site"), "small",
                  walkers=0),
            Visit("family of 3", LANE1, fam, allow(3), "perspective", walkers=3),
            Visit("couple; one turns back", LANE1, cpl, allow(2), "dark_mode", walkers=1),
            Visit("the couple's partner comes back", LANE1, cpl, allow(1), "glare"),
            Visit(LENT, LANE1, cast.lent, allow(1), "clean"),
            Visit("a friend shows its screenshot at lane 2", LANE2, cast.lent, deny("already_used"), "glare",
                  walkers=0, after=LENT),
            Visit("metro rider 1, live code", METRO_IN, r1, allow(), "perspective", "live"),
            Visit("metro rider 2, live code", METRO_IN, r2, allow(), "dark_mode", "live"),
            Visit("screenshot of a live code, 2 min old", METRO_IN, cast.screenshot, deny("presentation_expired"),
                  "glare", "live", age_s=120, walkers=0),
            Visit("bus rider, live code", BUS, cast.bus_rider, allow(), "small", "live"),
            Visit("holder-bound pass shown as a static code", BUS, cast.static_transit, deny("dynamic_required"),
                  "clean", walkers=0),
        ],
        [  # link down
            Visit("the family's code again", LANE1, fam, deny("already_used"), "blur", walkers=0),
            Visit("reservation for 2 (lane offline)", LANE1, cast.shared, allow(2), "perspective", walkers=2),
            Visit("rider who jumped the entry gate", METRO_OUT, cast.jumper, allow(), "clean", "live"),
        ],
        [  # still down
            Visit("screenshot of that reservation", LANE2, cast.shared, allow(2), "glare", walkers=2),
            Visit("annual scenic pass at the museum", LANE2, a, deny("wrong_site"), "dark_mode", walkers=0),
            Visit("the pass reported lost", SCENIC, cast.revocable, deny("revoked"), "clean", walkers=0),
        ],
        [  # link back
            Visit("metro rider 1 taps out", METRO_OUT, r1, allow(), "glare", "live"),
            Visit("metro rider 2 taps out", METRO_OUT, r2, allow(), "perspective", "live"),
        ],
    ]


def _crowd_visits(members: tuple[tuple[Member, Card], ...]) -> list[list[Visit]]:
    phases: list[list[Visit]] = [[] for _ in PHASES]
    for i, (m, card) in enumerate(members, 1):
        look = CONDITIONS[i % len(CONDITIONS)]
        if m.kind == "annual":
            phases[m.phase].append(Visit(f"visitor {i}: annual pass", SCENIC, card, allow(), look))
        elif m.kind == "museum":
            label = f"visitor {i}: party of {m.party}" + ("; one turns back" if m.walkers < m.party else "")
            phases[m.phase].append(Visit(label, m.lane, card, allow(m.party), look, walkers=m.walkers))
        elif m.kind == "bus":
            phases[m.phase].append(Visit(f"visitor {i}: bus ride", BUS, card, allow(), look, "live"))
        else:
            phases[m.phase].append(Visit(f"visitor {i}: metro in", METRO_IN, card, allow(), look, "live"))
            if m.phase + 1 < len(PHASES):  # the last phase's riders are still riding at the end
                phases[m.phase + 1].append(Visit(f"visitor {i}: metro out", METRO_OUT, card, allow(), look, "live"))
    return phases


def build_script(cast: Cast, duration_s: float, more: list[list[Visit]] | None = None) -> list[Phase]:
    """The day in four phases. Each gate's visits in a phase arrive evenly over ``duration_s / 4``;
    a gate that is slower than that simply falls behind (its queue never drops anyone). ``more``: further visits
    per phase (the tour groups, :mod:`citypass.city.tours`)."""
    core, extra = _core(cast), _crowd_visits(cast.crowd)
    for n, visits in enumerate(more or []):
        extra[n] = extra[n] + visits
    span = duration_s / len(PHASES)
    before: list[tuple[Action, ...]] = [
        (),
        (Cut(LANE1),),
        (Revoke(cast.revocable, "reported lost", (SCENIC,)),),
        (Restore(LANE1),),
    ]
    phases = []
    for n, name in enumerate(PHASES):
        visits = core[n] + extra[n]
        paced: list[Visit] = []
        for gate in GATES:
            mine = [v for v in visits if v.gate == gate.gate_id]
            paced += [replace(v, at=round(span * k / len(mine), 3)) for k, v in enumerate(mine)]
        phases.append(Phase(name, tuple(paced), before[n]))
    return phases

