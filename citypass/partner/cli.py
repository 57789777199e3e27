"""``citypass partner …``: the partner platform's kit (see :mod:`citypass.partner.kit` and docs/partners.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from citypass.clitools import ISO_TIME
from citypass.credential.claims import Annual, Credential, Group, Mode, Reservation, Terms, Transit
from citypass.credential.timefmt import utc_now
from citypass.partner.kit import PartnerHome

HOME_OPTION = click.option("--home", "home", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="The partner's home directory (its key and settings).")


@click.group()
def partner() -> None:
    """A partner code platform's kit: make a key, send the city a descriptor, mint codes our gates accept."""


@partner.command()
@HOME_OPTION
@click.option("--id", "partner_id", required=True, help="Slug, e.g. hz-metro.")
@click.option("--name-zh", required=True)
@click.option("--name-en", required=True)
@click.option("--alg", type=click.Choice(["sm2", "ed25519", "es256"]), default="sm2", show_default=True,
              help="sm2: GM1 codes; ed25519/es256: CP1 codes.")
def init(home: Path, partner_id: str, name_zh: str, name_en: str, alg: str) -> None:
    """Create a partner home with a new signing key."""
    h = PartnerHome.init(home, partner_id, name_zh, name_en, alg)
    click.echo(f"partner home {h.path} ({alg}); send the city: citypass partner descriptor --home {home}")


@partner.command()
@HOME_OPTION
def descriptor(home: Path) -> None:
    """Print the public descriptor the city admits (`citypass issuer partner add --descriptor`)."""
    click.echo(json.dumps(PartnerHome(home).descriptor(), ensure_ascii=False, indent=2))


@partner.command("set-number")
@HOME_OPTION
@click.argument("number", type=int)
def set_number(home: Path, number: int) -> None:
    """Record the platform NUMBER the city assigned when it admitted us."""
    PartnerHome(home).set_number(number)
    click.echo(f"platform number {number}")


@partner.command()
@HOME_OPTION
@click.option("--product", type=click.Choice(["annual", "reservation", "transit", "group"]), required=True)
@click.option("--sites", help="annual: site numbers, comma-separated.")
@click.option("--site", type=int, help="reservation/group: the site number.")
@click.option("--party", type=int, default=1, show_default=True)
@click.option("--account", help="transit: the rider's account.")
@click.option("--modes", default="metro", show_default=True, help="transit: metro,bus,water_bus.")
@click.option("--valid-from", type=ISO_TIME, help="Default: now.")
@click.option("--valid-to", type=ISO_TIME, help="Default: +1 hour (a ride code is short-lived).")
def mint(home: Path, product: str, sites: str | None, site: int | None, party: int, account: str | None,
         modes: str, valid_from: int | None, valid_to: int | None) -> None:
    """Print a code of this partner (GM1 with an SM2 key, CP1 otherwise)."""
    now = utc_now()
    terms: Terms
    if product == "annual":
        terms = Annual(frozenset(int(s) for s in (sites or "").split(",") if s.strip()))
    elif product == "transit":
        terms = Transit(account or "", Mode.parse(modes))
    elif site is None:
        raise click.UsageError(f"--product {product} needs --site")
    else:
        terms = Reservation(site, party, 15) if product == "reservation" else Group(site, party)
    start = valid_from if valid_from is not None else now
    cred = Credential(os.urandom(8), terms, start, valid_to if valid_to is not None else start + 3600)
    click.echo(PartnerHome(home).mint(cred))
