"""Credential formats a gate reads: one interface, found through the ``citypass.formats`` entry-point group.

A **format** is an object with a ``name`` (``cp1``), the text ``prefix`` its codes start with (``CP1:``), a
one-line ``title`` and a ``verify`` method with the signature of
:func:`citypass.credential.verifier.verify`. It reads its own layout and checks its own signature, then hands
the credential — mapped onto our claims model (:class:`~citypass.credential.claims.Credential`) — to the
shared checks (:func:`~citypass.credential.verifier.check_partner`,
:func:`~citypass.credential.verifier.finish`), so the gate's decision core, its reasons, tap records and
screens are the same for every format. The verdict names the format and the partner.

Formats shipped here: ``cp1`` (ours: COSE/CWT, Ed25519 or P-256; docs/credential-format.md) and ``gm1``
(an SM2/SM3-signed binary code of the kind transport and government code platforms issue;
:mod:`citypass.credential.gm1`). Another package adds a format by declaring, in its own metadata::

    [project.entry-points."citypass.formats"]
    xyz1 = "their_package.xyz:XYZ1"

The built-in ones are always present, even when the package metadata is not installed (a source tree).

    >>> format_for("CP1:6BF...").name, format_for("GM1:...").name, format_for("hello")
    ('cp1', 'gm1', None)
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from typing import TYPE_CHECKING, Protocol

from citypass.credential.policy import VerifyPolicy
from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustList

if TYPE_CHECKING:
    from citypass.credential.verifier import RevocationView, Verdict

GROUP = "citypass.formats"
log = logging.getLogger(__name__)


class CredentialFormat(Protocol):
    """What a credential format provides (see the module docstring)."""

    name: str
    prefix: str
    title: str

    def verify(self, text: str, trust: TrustList, view: RevocationView, site: SiteSettings, now: int,
               policy: VerifyPolicy) -> Verdict:
        """Verify ``text`` (which starts with :attr:`prefix`); never raises."""


class _CP1:
    """Our own format (docs/credential-format.md)."""

    name = "cp1"
    prefix = "CP1:"
    title = "City Pass CP1 (COSE_Sign1/CWT, Ed25519 or P-256)"

    def verify(self, text: str, trust: TrustList, view: RevocationView, site: SiteSettings, now: int,
               policy: VerifyPolicy) -> Verdict:
        from citypass.credential.verifier import verify_cp1

        return verify_cp1(text, trust, view, site, now, policy)


CP1 = _CP1()


@functools.cache
def registry() -> tuple[CredentialFormat, ...]:
    """Every format: the built-in ones, then those other packages declare (longest prefix first)."""
    from citypass.credential.gm1 import GM1

    formats: dict[str, CredentialFormat] = {"cp1": CP1, "gm1": GM1}
    for ep in importlib.metadata.entry_points(group=GROUP):
        if ep.name in formats:
            continue
        try:
            fmt = ep.load()
        except Exception as exc:  # a broken plug-in must not take the gate down: its codes stay unread
            log.warning("credential format %s could not be loaded: %s", ep.name, exc)
            continue
        if all(isinstance(getattr(fmt, a, None), str) for a in ("name", "prefix")) and callable(fmt.verify):
            formats[ep.name] = fmt
    return tuple(sorted(formats.values(), key=lambda f: -len(f.prefix)))


def format_for(text: str) -> CredentialFormat | None:
    """The format whose prefix ``text`` starts with, or None."""
    return next((f for f in registry() if text.startswith(f.prefix)), None)


def names() -> list[str]:
    return [f.name for f in registry()]


__all__ = ["CP1", "GROUP", "CredentialFormat", "format_for", "names", "registry"]
