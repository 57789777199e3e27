"""Federation end to end: a partner's own kit, our issuer admitting it, a real gate ledger deciding its codes
within scope, revocation by one signed delta, and our trust list published over HTTP for partners' readers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from citypass.cli import cli
from citypass.credential import sm2
from citypass.credential.delta import load_delta
from citypass.credential.partners import revocation_id
from citypass.credential.reasons import Reason
from citypass.credential.trustlist import TrustList
from citypass.gate.check import decision_fields
from citypass.gate.decision import GateContext, decide
from citypass.gate.ledger import GateLedger
from citypass.issuer import partners
from citypass.issuer.deltas import build_delta
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from citypass.issuer.testing import served_issuer

pytestmark = pytest.mark.skipif(not sm2.available(), reason="tongsuopy has no wheel for this machine")

SITES = ["west-lake", "lingyin:scenic", "museum:museum", "station-a:metro", "station-b:metro"]


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fail(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0, result.output
    return result.output


class City:
    """Our issuer home and a gate ledger loaded from its snapshot, driven by the command line."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "issuer"
        self.tmp = tmp
        run("issuer", "init", "--home", str(self.home), *[a for s in SITES for a in ("--site", s)])
        self.issuer = Issuer.open(IssuerHome(self.home))
        self.ledger = GateLedger.open(tmp / "gate.sqlite3", root=self.issuer.root_key().public)

    def export(self) -> None:
        self.ledger.load_snapshot(self.issuer.export(int(time.time())))

    def catch_up(self) -> list[bytes]:
        """Fetch one signed delta (as the sync service would) and apply it; the ids it revoked."""
        delta = build_delta(self.issuer.store, self.ledger.seq, int(time.time()))
        assert delta is not None
        verified = load_delta(delta.sign(self.issuer.ledger_key()), self.ledger.trust)
        self.ledger.apply_delta(**verified.ledger_arguments())
        return sorted(verified.revoked)

    def at(self, site: str, code: str) -> dict[str, object]:
        settings = self.ledger.site(site)
        assert settings is not None
        decision = decide(code, self.ledger, GateContext("g1", settings), int(time.time()))
        self.ledger.record(decision, GateContext("g1", settings))
        return decision_fields(decision)


def partner_home(tmp: Path, pid: str, zh: str, en: str, alg: str) -> Path:
    home = tmp / pid
    run("partner", "init", "--home", str(home), "--id", pid, "--name-zh", zh, "--name-en", en, "--alg", alg)
    descriptor = tmp / f"{pid}.json"
    descriptor.write_text(run("partner", "descriptor", "--home", str(home)), encoding="utf-8")
    return home


def test_partners_admitted_by_the_command_line_are_accepted_in_scope_only(tmp_path: Path) -> None:
    city = City(tmp_path)
    metro = partner_home(tmp_path, "hz-metro", "杭州地铁", "Hangzhou Metro", "sm2")
    tourism = partner_home(tmp_path, "zj-tourism", "浙里游", "Zhejiang Tourism", "ed25519")
    out = run("issuer", "partner", "add", "--home", str(city.home), "--descriptor", str(tmp_path / "hz-metro.json"),
              "--products", "transit", "--sites", "station-a")
    assert "platform 1" in out
    run("partner", "set-number", "--home", str(metro), "1")
    run("issuer", "partner", "add", "--home", str(city.home), "--descriptor", str(tmp_path / "zj-tourism.json"),
        "--products", "annual", "--sites", "west-lake,lingyin", "--formats", "cp1")
    listing = run("issuer", "partner", "list", "--home", str(city.home))
    assert "hz-metro" in listing and "杭州地铁" in listing and "zj-tourism" in listing and "admitted" in listing
    # an id already admitted, a descriptor that is not one
    assert "already admitted" in fail("issuer", "partner", "add", "--home", str(city.home), "--descriptor",
                                      str(tmp_path / "hz-metro.json"), "--products", "transit")
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    assert "not a partner descriptor" in fail("issuer", "partner", "add", "--home", str(city.home), "--descriptor",
                                              str(tmp_path / "bad.json"), "--products", "transit")
    city.export()

    ride = run("partner", "mint", "--home", str(metro), "--product", "transit", "--account", "13800000000").strip()
    assert ride.startswith("GM1:")
    admitted = city.at("station-a", ride)
    assert admitted["decision"] == "allow", admitted
    assert admitted["format"] == "gm1" and admitted["partner"] == "hz-metro" and admitted["partner_zh"] == "杭州地铁"
    assert city.at("station-b", ride)["reason"] == Reason.WRONG_SITE  # outside the partner's sites
    group = run("partner", "mint", "--home", str(metro), "--product", "group", "--site", "4", "--party", "2").strip()
    assert city.at("station-a", group)["reason"] == Reason.WRONG_PRODUCT

    annual = run("partner", "mint", "--home", str(tourism), "--product", "annual", "--sites", "1,2").strip()
    assert annual.startswith("CP1:")
    seen = city.at("west-lake", annual)
    assert seen["decision"] == "allow" and seen["format"] == "cp1" and seen["partner_en"] == "Zhejiang Tourism"
    assert city.at("museum", annual)["reason"] == Reason.WRONG_SITE
    too_wide = run("partner", "mint", "--home", str(tourism), "--product", "annual", "--sites", "1,3").strip()
    assert city.at("west-lake", too_wide)["reason"] == Reason.KEY_OUT_OF_SCOPE  # names a site it may not
    # a platform that was never admitted
    stranger = partner_home(tmp_path, "stranger", "陌生平台", "Stranger", "sm2")
    run("partner", "set-number", "--home", str(stranger), "77")
    foreign = run("partner", "mint", "--home", str(stranger), "--product", "transit", "--account", "1").strip()
    assert city.at("station-a", foreign)["reason"] == Reason.UNKNOWN_PARTNER

    # revoking a partner is one signed delta: its codes are denied from the moment the gate applies it
    assert "revoked partner hz-metro" in run("issuer", "partner", "revoke", "--home", str(city.home), "hz-metro")
    ride2 = run("partner", "mint", "--home", str(metro), "--product", "transit", "--account", "13900000000").strip()
    assert city.at("station-a", ride2)["decision"] == "allow"  # the gate has not heard yet
    assert city.catch_up() == [revocation_id("hz-metro")]
    assert city.at("station-a", ride2)["reason"] == Reason.PARTNER_REVOKED
    assert city.at("west-lake", run("partner", "mint", "--home", str(tourism), "--product", "annual",
                                    "--sites", "2").strip())["reason"] == Reason.WRONG_SITE  # west-lake is 1
    assert city.at("lingyin", annual)["decision"] == "allow"  # the other partner is untouched
    assert "revoked" in run("issuer", "partner", "list", "--home", str(city.home))


def test_a_partners_ids_cannot_touch_ours(tmp_path: Path) -> None:
    """A partner picks its own credential ids: they are keyed under its number, so it cannot use up or
    revoke one of our passes (nor we one of its) by choosing the same bytes."""
    city = City(tmp_path)
    tourism = partner_home(tmp_path, "zj-tourism", "浙里游", "Zhejiang Tourism", "ed25519")
    run("issuer", "partner", "add", "--home", str(city.home), "--descriptor", str(tmp_path / "zj-tourism.json"),
        "--products", "annual")
    ours = city.issuer.mint_annual(["west-lake"], now=int(time.time()))
    from citypass.credential.codes import issue, parse
    from citypass.credential.keys import SigningKey
    from citypass.partner.kit import PartnerHome

    cred = parse(ours).credential
    city.issuer.revoke(cred.id.hex(), int(time.time()))
    city.export()
    key = PartnerHome(tourism).key()
    assert isinstance(key, SigningKey)
    theirs = issue(cred, key)  # the very same claims and id, signed by the partner
    assert city.at("west-lake", ours)["reason"] == Reason.REVOKED
    fields = city.at("west-lake", theirs)
    assert fields["decision"] == "allow" and fields["credential_id"] == "00000001" + cred.id.hex()


def test_admission_refuses_what_the_trust_list_could_not_hold(tmp_path: Path) -> None:
    issuer = Issuer.init(IssuerHome(tmp_path / "i"), [("west-lake", "scenic")], now=1_800_000_000)
    own = issuer.trust_list(1_800_000_000).find(issuer.store.active_key("issuer").kid)  # type: ignore[union-attr]
    assert own is not None
    clash = {"id": "clash", "name_zh": "冲突", "name_en": "Clash", "keys": [{"alg": "ed25519", "pub": own.key.raw}]}
    with pytest.raises(partners.PartnerError, match="shares its kid"):
        partners.admit(issuer.store, issuer.trust_list(1_800_000_000), clash, products=[1], now=1_800_000_000)
    bad = {"id": "bad", "name_zh": "坏", "name_en": "Bad", "keys": [{"alg": "sm2", "pub": b"\x04" + bytes(64)}]}
    with pytest.raises(partners.PartnerError, match="not a valid public key"):
        partners.admit(issuer.store, issuer.trust_list(1_800_000_000), bad, products=[3], now=1_800_000_000)
    ok = {"id": "ok", "name_zh": "好", "name_en": "OK",
          "keys": [{"alg": "sm2", "pub": sm2.SM2SigningKey.generate().public.raw}]}
    with pytest.raises(partners.PartnerError, match="at least one product"):
        partners.admit(issuer.store, issuer.trust_list(1_800_000_000), ok, products=[], now=1_800_000_000)
    with pytest.raises(partners.PartnerError, match="claims"):
        partners.admit(issuer.store, issuer.trust_list(1_800_000_000), ok, products=[3], now=1_800_000_000,
                       claims=["iss"])
    entry = partners.admit(issuer.store, issuer.trust_list(1_800_000_000), ok, products=[3], now=1_800_000_000,
                           number=4242)
    assert entry.number == 4242 and issuer.trust_list(1_800_000_000).partner(4242) == entry


def test_our_trust_list_is_published_signed_over_http(tmp_path: Path) -> None:
    with served_issuer(tmp_path / "issuer", now=1_800_000_000) as served:
        key = sm2.SM2SigningKey.generate()
        partners.admit(served.issuer.store, served.issuer.trust_list(1_800_000_000),
                       {"id": "hz-metro", "name_zh": "杭州地铁", "name_en": "Hangzhou Metro",
                        "keys": [{"alg": "sm2", "pub": key.public.raw}]}, products=[3], now=1_800_000_000)
        with served.client() as anyone:  # no token: the list is public, like an EU DCC trust list
            response = anyone.get("/v1/trust-list")
        assert response.status_code == 200 and response.headers["content-type"] == "application/cbor"
        root = served.issuer.root_key().public
        assert response.headers["x-root-kid"] == root.kid.hex()
        trust = TrustList.verify(response.content, root)
        assert [p.id for p in trust.partners] == ["hz-metro"]
        assert trust.find(served.issuer.store.active_key("issuer").kid) is not None  # type: ignore[union-attr]
        # a partner's reader verifies our codes with it
        from citypass.credential.revocations import NO_REVOCATIONS
        from citypass.credential.verifier import verify

        code = served.issuer.mint_annual(["west-lake"], now=1_800_000_000)
        site = served.issuer.store.sites()[0]

        assert verify(code, trust, NO_REVOCATIONS, site, 1_800_000_000).allowed
        tampered = bytearray(response.content)
        tampered[-1] ^= 1
        with pytest.raises(ValueError):
            TrustList.verify(bytes(tampered), root)


def test_descriptor_is_public_only(tmp_path: Path) -> None:
    home = partner_home(tmp_path, "hz-bus", "杭州公交", "Hangzhou Bus", "sm2")
    text = (tmp_path / "hz-bus.json").read_text(encoding="utf-8")
    assert "PRIVATE" not in text and json.loads(text)["keys"][0]["alg"] == "sm2"
    assert (home / "keys" / "partner.pem").stat().st_mode & 0o077 == 0
    assert "already a partner home" in fail("partner", "init", "--home", str(home), "--id", "hz-bus", "--name-zh",
                                            "x", "--name-en", "x")
