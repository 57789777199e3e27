"""Typed configuration of the lane's result screen (``[screen]`` in the gate's config).

    >>> ScreenConfig().languages, ScreenConfig().arrow
    (['zh', 'en'], 'down')
    >>> ScreenConfig(languages=["zh", "tlh"])
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ScreenConfig
    ...
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from citypass.credential.catalog import SHIPPED
from citypass.errors import InvalidInput


class ScreenConfig(BaseModel):
    """The lane's result screen: a page at /screen on the health address, for a kiosk browser (docs/screen.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Serve /screen and its event stream (needs [health] enabled).")
    languages: list[str] = Field(
        default_factory=lambda: ["zh", "en"],
        description="One to four languages shown, one block each, in this order; each needs a catalog "
                    "(docs/screen.md).")
    title: dict[str, str] = Field(
        default_factory=dict,
        description="The site's name per language for the idle screen, e.g. {zh = \"西湖\", en = \"West Lake\"}; "
                    "default: the ledger's site title, else its name.")
    arrow: Literal["down", "up", "left", "right"] = Field(
        "down", description="Where the scanner is, seen from the screen: the idle screen points there.")
    exit_arrow: Literal["down", "up", "left", "right"] = Field(
        "up", description="The way out through the lane, seen from the screen: shown during a fire alarm.")
    hold_s: float = Field(4.0, ge=0.5, le=30, description="How long a decision stays on the screen.")

    @field_validator("languages")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        if not 1 <= len(value) <= 4:
            raise InvalidInput("screen.languages: give one to four languages")
        return list(SHIPPED.require(value))
