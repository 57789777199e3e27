"""``citypass issuer …``: initialise an issuer, mint credentials, revoke, rotate keys, export snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import click

from citypass.clitools import ISO_TIME, LazyGroup
from citypass.credential.claims import Mode, Product
from citypass.credential.keys import Alg, read_public_key
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.credential.timefmt import format_time, utc_now
from citypass.issuer.backends import schema_versions
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import ROLES, Conflict
from citypass.issuer.service import Issuer
from citypass.issuer.tokens import TOKEN_PREFIX, create_token, parse_secret

HOME_OPTION = click.option(
    "--home", "home", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Issuer home directory (keys and store).",
)
PASSPHRASE_ENV = "CITYPASS_KEY_PASSPHRASE"
DATABASE_OPTION = click.option(
    "--database", default=None, metavar="URL",
    help="PostgreSQL database for the store (postgresql://USER@HOST:PORT/NAME; psycopg's URL form, libpq "
         "environment variables apply). Default: the one HOME records, else the SQLite file HOME/issuer.db.",
)


def open_home(path: Path) -> IssuerHome:
    # The passphrase is read here, at the wiring point, never at import time.
    secret = os.environ.get(PASSPHRASE_ENV)
    return IssuerHome(path, secret.encode() if secret else None)


def open_issuer(home: Path, database: str | None = None) -> Issuer:
    """The issuer of HOME for one command, closed when the command ends (a PostgreSQL store holds a pool of
    connections and its threads; they are released then, not left to the garbage collector)."""
    iss = Issuer.open(open_home(home), database=database)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(iss.close)
    return iss


@click.group(cls=LazyGroup)
def issuer() -> None:
    """Run the central issuer: keys, credentials, revocations, ledger snapshots.

    Private keys can be encrypted: set CITYPASS_KEY_PASSPHRASE before `init` and for every later call.
    """


@issuer.command()
@HOME_OPTION
@click.option("--site", "sites", multiple=True, metavar="NAME[:KIND]",
              help="A site to create (repeatable). KIND: scenic (default), museum, metro, bus, water_bus.")
@click.option("--alg", type=click.Choice(["ed25519", "es256"]), default="ed25519", show_default=True,
              help="Signature algorithm for the new keys.")
@DATABASE_OPTION
def init(home: Path, sites: tuple[str, ...], alg: str, database: str | None) -> None:
    """Create the root, issuer-signing and ledger-signing keys and the store in HOME.

    Sites are numbered 1, 2, … in the order given: list annual-pass sites first, so that annual passes
    stay small. Prints the root key id; pin HOME/root.pub on every gate. With --database, the store is that
    (empty) PostgreSQL database instead of HOME/issuer.db; HOME records it for every later command.
    """
    pairs = []
    for spec in sites:
        name, _, kind = spec.partition(":")
        if kind and kind not in {k.value for k in SiteKind}:
            raise click.BadParameter(f"unknown site kind {kind!r}", param_hint="--site")
        pairs.append((name, kind or "scenic"))
    result = Issuer.init(open_home(home), pairs, utc_now(), Alg.from_name(alg), database=database)
    click.get_current_context().call_on_close(result.close)
    click.echo(f"issuer home {home} ready; root key id {result.root_key().kid.hex()}; "
               f"{len(pairs)} site(s); pin {result.home.root_pub_path} on gates")


@issuer.command()
@HOME_OPTION
@DATABASE_OPTION
def migrate(home: Path, database: str | None) -> None:
    """Bring the store's schema up to this software's version (SQLite file or PostgreSQL database).

    Every command migrates when it opens the store; this does only that, for an upgrade run before the
    nodes are restarted. Safe with other nodes running: one migrates, the others wait and find it done.
    """
    before, after = schema_versions(open_issuer(home, database).store)
    click.echo(f"schema version {after}" + (f" (migrated from {before})" if before != after else " (up to date)"))


@issuer.command("add-site")
@HOME_OPTION
@click.argument("name")
@click.option("--kind", type=click.Choice([k.value for k in SiteKind]), default="scenic", show_default=True)
@click.option("--title", default="", help="Display name in Chinese.")
@click.option("--title-en", default="", help="Display name in English.")
@click.option("--capacity", type=click.IntRange(min=1), default=None, help="Most people inside at once.")
@click.option("--hours", default=None, metavar="HH:MM-HH:MM", help="Opening hours, local time.")
@click.option("--passback", "passback", type=click.IntRange(0, 1440), default=30, show_default=True,
              help="Anti-passback minutes for annual passes.")
@click.option("--soft-passback", is_flag=True, help="Allow and flag instead of denying inside the window.")
def add_site(home: Path, name: str, kind: str, title: str, title_en: str, capacity: int | None, hours: str | None,
             passback: int, soft_passback: bool) -> None:
    """Add a site NAME (its number is the next free one)."""
    iss = open_issuer(home)
    opens = closes = None
    if hours:
        opens, sep, closes = hours.partition("-")
        if not sep:
            raise click.BadParameter("use HH:MM-HH:MM", param_hint="--hours")
    settings = SiteSettings(number=iss.store.next_site_number(), name=name, kind=SiteKind(kind), title=title,
                            title_en=title_en, capacity=capacity, opens=opens, closes=closes, passback_minutes=passback,
                            passback_hard=not soft_passback)
    iss.add_site(settings, utc_now())
    click.echo(f"site {name} is number {settings.number}")


@issuer.command()
@HOME_OPTION
@click.option("--product", required=True, type=click.Choice([p.name.lower() for p in Product]))
@click.option("--sites", help="annual: comma-separated site names or numbers.")
@click.option("--venue", help="reservation: the venue (site name or number).")
@click.option("--site", help="group: the site (name or number).")
@click.option("--slot-start", type=ISO_TIME, help="reservation: slot start.")
@click.option("--slot-end", type=ISO_TIME, help="reservation: slot end.")
@click.option("--grace", type=click.IntRange(0, 1440), default=15, show_default=True,
              help="reservation: minutes of entry grace before the slot starts and after it ends.")
@click.option("--party", type=click.IntRange(1, 99), default=1, show_default=True,
              help="reservation/group: persons admitted on this code.")
@click.option("--account", help="transit: the account the taps are charged to.")
@click.option("--modes", default="metro,bus,water_bus", show_default=True,
              help="transit: comma-separated modes (metro, bus, water_bus).")
@click.option("--passback", type=click.IntRange(0, 1440), default=None,
              help="annual: anti-passback minutes (default: each site's own setting).")
@click.option("--valid-from", type=ISO_TIME, help="Start of validity (default: now).")
@click.option("--valid-to", type=ISO_TIME,
              help="End of validity (default: annual +365 d, group +1 d, transit +1 d authorisation).")
@click.option("--holder-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Bind to a holder's public key (FILE.pub from `citypass holder keygen`).")
@click.option("--wallet", is_flag=True,
              help="For a phone wallet: sign nothing now, print a one-time claim link instead (docs/wallet.md).")
@click.option("--wallet-url", default="http://127.0.0.1:8080/wallet/", show_default=True, metavar="URL",
              help="With --wallet: the wallet page's public address (the issuer serves it at /wallet/).")
@click.option("--claim-ttl", type=click.IntRange(60, 90 * 86_400), default=7 * 86_400, show_default=True,
              help="With --wallet: seconds the claim link can be used.")
def mint(home: Path, product: str, sites: str | None, venue: str | None, site: str | None,
         slot_start: int | None, slot_end: int | None, grace: int, party: int, account: str | None, modes: str,
         passback: int | None, valid_from: int | None, valid_to: int | None, holder_key: Path | None,
         wallet: bool, wallet_url: str, claim_ttl: int) -> None:
    """Sign a credential and print exactly one line: its code text.

    With --wallet, print the one-time claim link for the visitor's phone instead: the wallet page opened from
    it makes the holder key in the browser, and the issuer signs the credential bound to it then.
    """
    if wallet and holder_key:
        raise click.UsageError("--wallet and --holder-key exclude each other (the wallet makes its own key)")
    iss = open_issuer(home)
    holder = read_public_key(holder_key) if holder_key else None
    now = utc_now()
    kind = Product.from_name(product)
    if kind is Product.ANNUAL:
        if not sites:
            raise click.UsageError("--product annual needs --sites")
        order = iss.annual_order([s.strip() for s in sites.split(",") if s.strip()], now, valid_from, valid_to,
                                 passback)
    elif kind is Product.RESERVATION:
        if not venue or slot_start is None or slot_end is None:
            raise click.UsageError("--product reservation needs --venue, --slot-start and --slot-end")
        if slot_end <= slot_start:
            raise click.UsageError("--slot-end must be after --slot-start")
        order = iss.reservation_order(venue, slot_start, slot_end, party, grace)
    elif kind is Product.TRANSIT:
        if not account:
            raise click.UsageError("--product transit needs --account")
        order = iss.transit_order(account, Mode.parse(modes), now, valid_to)
    else:
        if not site:
            raise click.UsageError("--product group needs --site")
        order = iss.group_order(site, party, now, valid_from, valid_to)
    if wallet:
        from citypass.issuer.wallet.claims import offer

        click.echo(offer(iss, order, now, claim_ttl).url(wallet_url))
    else:
        click.echo(iss.mint_order(order, now, holder))


@issuer.command()
@HOME_OPTION
@click.argument("credential_id")
@click.option("--reason", default="", help="Why (kept in the store).")
def revoke(home: Path, credential_id: str, reason: str) -> None:
    """Revoke CREDENTIAL_ID (hex, from `citypass code inspect`; a whole code text also works)."""
    cred_id = open_issuer(home).revoke(credential_id, utc_now(), reason)
    click.echo(f"revoked {cred_id.hex()}")


@issuer.command("revoke-holder")
@HOME_OPTION
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", default="lost phone", show_default=True)
def revoke_holder(home: Path, public_key: Path, reason: str) -> None:
    """Revoke every credential bound to a holder PUBLIC_KEY (a lost phone)."""
    holder_id = open_issuer(home).revoke_holder(read_public_key(public_key), utc_now(), reason)
    click.echo(f"revoked holder {holder_id.hex()}")


@issuer.command()
@HOME_OPTION
@click.option("--retire-old-at", type=ISO_TIME, help="When the current issuer key stops verifying (default +30 d).")
def rotate(home: Path, retire_old_at: int | None) -> None:
    """Add a new issuer signing key; the old one verifies until --retire-old-at."""
    iss = open_issuer(home)
    old = iss.store.active_key("issuer")
    new = iss.rotate(utc_now(), retire_old_at)
    note = ""
    if old is not None:
        retired = next(k.entry for k in iss.store.keys() if k.entry.role == "issuer" and k.entry.kid == old.kid)
        note = f"; old key {old.kid.hex()} verifies until {format_time(retired.valid_to)}"
    click.echo(f"new issuer key {new.kid.hex()}{note}")


@issuer.command("require-dynamic")
@HOME_OPTION
@click.argument("products", default="")
def require_dynamic(home: Path, products: str) -> None:
    """Require holder-bound dynamic codes for PRODUCTS (comma-separated; empty to clear)."""
    kinds = [Product.from_name(p.strip()) for p in products.split(",") if p.strip()]
    open_issuer(home).set_require_dynamic(kinds, utc_now())
    click.echo("dynamic codes required for: " + (", ".join(p.name.lower() for p in kinds) or "nothing"))


@issuer.command()
@HOME_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON array (for scripts).")
def keys(home: Path, as_json: bool) -> None:
    """List the keys in the trust list."""
    listed = open_issuer(home).store.keys()
    if as_json:
        import json

        click.echo(json.dumps([{"role": k.entry.role, "kid": k.entry.kid.hex(), "alg": k.entry.key.alg.label,
                                "valid_from": k.entry.valid_from, "valid_to": k.entry.valid_to, "active": k.active}
                               for k in listed], indent=1, default=str))
        return
    for k in listed:
        click.echo(f"{k.entry.role:8} {k.entry.kid.hex()} {k.entry.key.alg.label:7} "
                   f"from {format_time(k.entry.valid_from)} to {format_time(k.entry.valid_to) or '-'}"
                   f"{'  (active)' if k.active else ''}")


@issuer.command("incidents-rebuild")
@HOME_OPTION
def incidents_rebuild(home: Path) -> None:
    """Recompute the stored incidents from every stored tap (a store from before the control room)."""
    from citypass.issuer.watch import rebuild_incidents

    issuer_ = Issuer.open(open_home(home))
    try:
        read = rebuild_incidents(issuer_.store, utc_now())
        click.echo(f"{read} taps read; {issuer_.store.open_incident_count()} open incidents")
    finally:
        issuer_.close()


@issuer.command()
@HOME_OPTION
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Snapshot file to write.")
def export(home: Path, out: Path) -> None:
    """Write a signed ledger snapshot (trust list, revocations, site settings) for gates."""
    data = open_issuer(home).export(utc_now())
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)  # a gate never sees half a snapshot
    click.echo(f"wrote {out} ({len(data)} bytes)")


@issuer.command("enrollment-qr")
@HOME_OPTION
@click.option("--device", "device_id", required=True, help="The registered device to enroll.")
@click.option("--url", required=True, metavar="URL", help="The issuer URL the device should call.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG file to write.")
@click.option("--ttl", type=click.IntRange(60, 7 * 86_400), default=3600, show_default=True,
              help="Seconds the enrollment may be redeemed.")
@click.option("--token", "existing", metavar="TOKEN", help="Render an enrollment token made already (via the API).")
def enrollment_qr(home: Path, device_id: str, url: str, out: Path, ttl: int, existing: str | None) -> None:
    """Create a one-time enrollment for DEVICE and render it as a setup QR code (PNG).

    The technician shows it to the gate's camera: `citypass provision enroll --from-camera`. The code
    carries the issuer URL, the device id, the root key id to pin and the token: treat it as a secret
    until it is used or expires. Prints the setup code text too (for `--token` when typing).
    """
    from citypass.credential.setupcode import SetupCode, SetupCodeError
    from citypass.issuer.records import Enrollment
    from citypass.issuer.tokens import ENROLLMENT_PREFIX, new_secret

    iss = open_issuer(home)
    device = iss.store.device(device_id)
    if device.status == "retired":
        raise Conflict(f"device {device_id!r} is retired")
    if existing is None:
        now = utc_now()
        existing, ident, digest = new_secret(ENROLLMENT_PREFIX)
        iss.store.add_enrollment(Enrollment(ident, device.id, now, now + ttl), digest)
    try:
        code = SetupCode.parse(SetupCode(url, device.id, iss.root_key().kid.hex(), existing).text())
    except SetupCodeError as exc:
        raise click.BadParameter(str(exc)) from None
    code.render(out)
    click.echo(code.text())


@issuer.group()
def device() -> None:
    """The device registry: gates and readers that may be enrolled (no curl needed)."""


@device.command("add")
@HOME_OPTION
@click.argument("device_id")
@click.option("--site", required=True, help="The site it stands at: name (slug) or number.")
@click.option("--direction", type=click.Choice(["entry", "exit"]), default="entry", show_default=True)
@click.option("--description", default="", help="Where it stands (e.g. 'north gate, lane 1').")
def device_add(home: Path, device_id: str, site: str, direction: str, description: str) -> None:
    """Register DEVICE_ID at SITE, ready for an enrollment (`citypass issuer enrollment-qr --device ID`).

    DEVICE_ID follows the one rule for gate ids (1-64 of a-z 0-9 . _ -): it also names the device's
    certificate, its MQTT user and its topics.
    """
    from citypass.credential.devices import check_device_id
    from citypass.errors import InvalidInput
    from citypass.issuer.records import Device

    try:
        check_device_id(device_id)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), param_hint="DEVICE_ID") from None
    iss = open_issuer(home)
    sites = iss.store.sites()
    found = next((s for s in sites if site in (s.name, str(s.number))), None)
    if found is None:
        raise click.BadParameter(f"no site {site!r}: known sites are "
                                 + ", ".join(f"{s.name} (#{s.number})" for s in sites), param_hint="--site")
    iss.store.add_device(Device(device_id, found.number, direction, description, "registered", utc_now()))
    click.echo(f"registered {device_id} at {found.name} (#{found.number}, {direction}); next: citypass issuer "
               f"enrollment-qr --home {home} --device {device_id} --url URL --out setup.png")


@device.command("list")
@HOME_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON array (for scripts).")
def device_list(home: Path, as_json: bool) -> None:
    """List registered devices: id, site, direction, status."""
    import json
    from dataclasses import asdict

    devices = open_issuer(home).store.devices(limit=100_000)
    if as_json:
        click.echo(json.dumps([asdict(d) for d in devices], indent=1))
        return
    for d in devices:
        click.echo(f"{d.id:24} site {d.site:<4} {d.direction:5} {d.status:10} {d.description}")


@issuer.group()
def token() -> None:
    """API tokens for `citypass issuer serve` (shown once, stored hashed)."""


@token.command("create")
@HOME_OPTION
@click.option("--role", required=True, type=click.Choice(list(ROLES)), help="What the token may do (docs/issuer.md).")
@click.option("--label", default="", help="Who or what holds it (kept in the store).")
def token_create(home: Path, role: str, label: str) -> None:
    """Create an API token and print it (the only time it is shown)."""
    iss = open_issuer(home)
    issued = create_token(iss.store, role, utc_now(), label=label)
    click.echo(issued.text)


@token.command("list")
@HOME_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON array (for scripts).")
def token_list(home: Path, as_json: bool) -> None:
    """List tokens: id, role, device, label, created, revoked (never the secrets)."""
    tokens = open_issuer(home).store.tokens()
    if as_json:
        import json

        click.echo(json.dumps([{"id": t.id, "role": t.role, "device_id": t.device_id, "label": t.label,
                                "created_at": t.created_at, "revoked_at": t.revoked_at} for t in tokens], indent=1))
        return
    for t in tokens:
        click.echo(f"{t.id} {t.role:10} {t.device_id or '-':20} {format_time(t.created_at)} "
                   f"{'revoked ' + (format_time(t.revoked_at) or '') if t.revoked_at else 'live'}  {t.label}")


@token.command("revoke")
@HOME_OPTION
@click.argument("token_id")
def token_revoke(home: Path, token_id: str) -> None:
    """Revoke the token whose id is TOKEN_ID (the 12 hex digits after `cpt_`; a whole token works too)."""
    ident = parse_secret(token_id, TOKEN_PREFIX) or token_id
    if not open_issuer(home).store.revoke_token(ident, utc_now()):
        raise click.ClickException(f"no live token {ident}")
    click.echo(f"revoked token {ident}")


@issuer.group(cls=LazyGroup)
def partner() -> None:
    """Partner code platforms (互联互通): admit one within a scope, list them, revoke one (docs/partners.md)."""


@partner.command("add")
@HOME_OPTION
@click.option("--descriptor", "descriptor_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The partner's descriptor (JSON from `citypass partner descriptor`).")
@click.option("--products", required=True, help="Products it may issue, comma-separated (e.g. transit,annual).")
@click.option("--sites", help="Site names or numbers its codes may open, comma-separated (default: every site).")
@click.option("--valid-from", type=ISO_TIME, help="Admitted from (default: now).")
@click.option("--valid-to", type=ISO_TIME, help="Admitted until (default: until revoked).")
@click.option("--claims", help="Claims it may assert, comma-separated (default: all but cnf and passback).")
@click.option("--formats", help="Formats it may use: cp1, gm1 (default: both).")
@click.option("--number", type=int, help="Its platform number (default: the next free one).")
def partner_add(home: Path, descriptor_path: Path, products: str, sites: str | None, valid_from: int | None,
                valid_to: int | None, claims: str | None, formats: str | None, number: int | None) -> None:
    """Admit a partner platform: its entry reaches gates with the next snapshot."""
    from citypass.issuer import partners

    iss = open_issuer(home)
    now = utc_now()

    def split(text: str | None) -> list[str] | None:
        return None if text is None else [p.strip() for p in text.split(",") if p.strip()]

    entry = partners.admit(
        iss.store, iss.trust_list(now), partners.parse_descriptor(descriptor_path.read_text(encoding="utf-8")),
        products=[Product.from_name(p) for p in split(products) or []], now=now,
        sites=None if sites is None else [iss.site_number(s) for s in split(sites) or []],
        valid_from=valid_from, valid_to=valid_to, claims=split(claims), formats=split(formats), number=number,
    )
    click.echo(f"admitted partner {entry.id} as platform {entry.number} ({entry.name_zh} / {entry.name_en}); "
               f"tell it: citypass partner set-number {entry.number}")


@partner.command("list")
@HOME_OPTION
def partner_list(home: Path) -> None:
    """List admitted partners and their scope."""
    from citypass.issuer import partners

    for a in partners.admitted(open_issuer(home).store):
        p = a.partner
        products = ",".join(Product(x).name.lower() for x in sorted(p.products))
        scope = "all sites" if p.sites is None else f"sites {','.join(str(s) for s in sorted(p.sites))}"
        state = f"revoked {format_time(a.revoked_at)}" if a.revoked_at is not None else "admitted"
        click.echo(f"{p.number:>4} {p.id:16} {p.name_zh} / {p.name_en}  {products}; {scope}; "
                   f"keys {','.join(k.alg + ':' + k.kid.hex() for k in p.keys)}; "
                   f"from {format_time(p.valid_from)} to {format_time(p.valid_to) or '-'}; {state}")


@partner.command("revoke")
@HOME_OPTION
@click.argument("partner_id")
@click.option("--reason", default="", help="Why (kept in the store).")
def partner_revoke(home: Path, partner_id: str, reason: str) -> None:
    """Revoke a partner: the next signed delta carries it to every gate."""
    from citypass.issuer import partners

    rid = partners.revoke(open_issuer(home).store, partner_id, utc_now(), reason)
    click.echo(f"revoked partner {partner_id} (revocation id {rid.hex()})")


@issuer.group(cls=LazyGroup)
def benefit() -> None:
    """The benefit card (惠民卡): mint one, see the uses left by the central count."""


@benefit.command("mint")
@HOME_OPTION
@click.option("--sites", required=True, help="Site names or numbers, comma-separated.")
@click.option("--quota", type=click.IntRange(1, 255), required=True, help="Uses per period.")
@click.option("--holder-key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The holder's public key (PEM): a benefit card is always holder-bound.")
@click.option("--period", type=click.Choice(["month", "week", "year"]), default="month", show_default=True)
@click.option("--category", type=click.Choice(["resident", "senior", "student"]), default="resident",
              show_default=True)
@click.option("--valid-to", type=ISO_TIME, help="End of validity (default +365 d).")
def benefit_mint(home: Path, sites: str, quota: int, holder_key: Path, period: str, category: str,
                 valid_to: int | None) -> None:
    """Print a benefit card's code (show it with `citypass holder present`)."""
    from citypass.credential.claims import Category, Period
    from citypass.issuer import benefits

    iss = open_issuer(home)
    click.echo(benefits.mint(iss, [s.strip() for s in sites.split(",") if s.strip()], quota,
                             read_public_key(holder_key), utc_now(), period=Period[period.upper()],
                             category=Category.from_name(category), valid_to=valid_to))


@benefit.command("status")
@HOME_OPTION
@click.argument("credential_id")
def benefit_status(home: Path, credential_id: str) -> None:
    """The uses left this period on CREDENTIAL_ID (hex, or the card's code), by the central count."""
    from citypass.issuer import benefits

    iss = open_issuer(home)
    text = benefits.status_text(iss.store, iss.credential_ref(credential_id).hex(), utc_now())
    if text is None:
        raise click.ClickException("not a benefit card issued here")
    click.echo(f"{text[0]} / {text[1]}")
