"""``citypass code …`` and ``citypass qr …``: look inside codes and render them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from citypass.credential import gm1, qr
from citypass.credential.codes import CodeError, parse


@click.group()
def code() -> None:
    """Inspect City Pass code text."""


@code.command()
@click.argument("text")
def inspect(text: str) -> None:
    """Print the decoded, UNVERIFIED contents of code TEXT as JSON (signatures are not checked). CP1 codes and
    partners' GM1 codes."""
    if text.startswith(gm1.PREFIX):
        try:
            fields = gm1.decode(text)
        except gm1.GM1Error as exc:
            raise click.ClickException(f"malformed_code: {exc}") from None
        out = fields.credential().describe() | {
            "verified": False, "format": "gm1", "platform": fields.platform, "kid": fields.kid.hex(), "alg": "SM2",
            "text_length": len(text), "qr_version": qr.version(text),
        }
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    try:
        parsed = parse(text)
    except CodeError as exc:
        raise click.ClickException(f"{exc.reason.value}: {exc.detail}") from None
    out = parsed.credential.describe() | {
        "verified": False,
        "dynamic": parsed.dynamic,
        "generated_at": parsed.generated_at,
        "kid": parsed.sign1.kid.hex(),
        "alg": parsed.sign1.alg,
        "text_length": len(text),
        "qr_version": qr.version(text),
    }
    click.echo(json.dumps(out, ensure_ascii=False))


@click.group("qr")
def qr_group() -> None:
    """Render code text as QR images."""


@qr_group.command()
@click.argument("text")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG file to write.")
@click.option("--scale", type=click.IntRange(1, 64), default=8, show_default=True, help="Pixels per module.")
@click.option("--dark-mode", is_flag=True, help="Light modules on a dark background, as phones in dark mode show.")
def render(text: str, out: Path, scale: int, dark_mode: bool) -> None:
    """Render TEXT as a PNG QR code (alphanumeric mode, ECC M)."""
    dark, light = ("#fff", "#000") if dark_mode else ("#000", "#fff")
    qr.render_png(text, out, scale=scale, dark=dark, light=light)
    click.echo(f"wrote {out} (QR version {qr.version(text)})")
