"""Site settings: what a gate needs to know about the place it stands in.

Sites are numbered by the issuer (the number is what credentials carry; annual-pass sites should get the
lowest numbers so their bitmap stays small) and named by a short slug for people and configs. Numbers run
up to :data:`~citypass.credential.claims.MAX_SITE_NUMBER` (2**32-1), one space for every kind of site; a
city with thousands of bus routes and stations gives its popular scenic spots and museums the small ones.
Settings travel inside the signed ledger snapshot, so a gate never takes them from an unsigned source.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from citypass.credential.claims import MAX_SITE_NUMBER, Mode


class SiteKind(StrEnum):
    SCENIC = "scenic"
    MUSEUM = "museum"
    METRO = "metro"
    BUS = "bus"
    WATER_BUS = "water_bus"

    @property
    def transit_mode(self) -> Mode | None:
        """The transport mode a transit credential needs here, or None for a non-transit site."""
        return {SiteKind.METRO: Mode.METRO, SiteKind.BUS: Mode.BUS, SiteKind.WATER_BUS: Mode.WATER_BUS}.get(self)


class SiteSettings(BaseModel):
    """One site's settings, as signed into the ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(ge=0, le=MAX_SITE_NUMBER, description="The number credentials use for this site.")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$", description="Short slug, e.g. 'west-lake'.")
    kind: SiteKind = Field(SiteKind.SCENIC, description="What kind of place this is; decides product rules.")
    title: str = Field("", description="Display name shown on the gate, in Chinese (e.g. '西湖').")
    title_en: str = Field("", description="Display name in English (e.g. 'West Lake'); empty: the slug is used.")
    capacity: int | None = Field(None, ge=1, description="Most people inside at once; None for no limit.")
    opens: str | None = Field(None, pattern=r"^\d\d:\d\d$", description="Local opening time HH:MM; None = 24h.")
    closes: str | None = Field(None, pattern=r"^\d\d:\d\d$", description="Local closing time HH:MM.")
    utc_offset_minutes: int = Field(480, ge=-720, le=840, description="Local time offset (480 = UTC+8).")
    passback_minutes: int = Field(30, ge=0, le=1440, description="Anti-passback window for annual passes.")
    passback_hard: bool = Field(True, description="True: deny inside the window; False: allow and flag.")
    staleness_hours: int = Field(72, ge=1, description="Ledger older than this is stale (see policies).")

    def to_cbor(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True) | {"number": self.number, "name": self.name}
