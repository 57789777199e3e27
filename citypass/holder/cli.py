"""``citypass holder …``: the phone's side, for tests, demos and holder apps."""

from __future__ import annotations

from pathlib import Path

import click

from citypass.clitools import ISO_TIME
from citypass.credential.codes import present
from citypass.credential.keys import Alg, SigningKey, read_private_key, write_private_key, write_public_key
from citypass.credential.timefmt import utc_now


@click.group()
def holder() -> None:
    """Act as a visitor's phone: holder keys and dynamic presentations."""


@holder.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Private key file to write (0600); the public key goes to FILE.pub.")
@click.option("--alg", type=click.Choice(["ed25519", "es256"]), default="ed25519", show_default=True,
              help="es256 is what phone secure elements usually offer.")
def keygen(out: Path, alg: str) -> None:
    """Create a holder key pair: FILE (private) and FILE.pub (give this to the issuer)."""
    key = SigningKey.generate(Alg.from_name(alg))
    write_private_key(out, key)
    pub = out.with_name(out.name + ".pub")
    write_public_key(pub, key.public)
    click.echo(f"wrote {out} and {pub}")


@holder.command("present")
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The holder's private key file.")
@click.option("--credential", required=True, help="The holder-bound credential code (static CP1: text).")
@click.option("--at", type=ISO_TIME, help="Generation time (default: now).")
def present_cmd(key_path: Path, credential: str, at: int | None) -> None:
    """Print one dynamic presentation of CREDENTIAL, signed now (or --at) by the holder key."""
    click.echo(present(credential, read_private_key(key_path), utc_now() if at is None else at))
