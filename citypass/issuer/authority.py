"""What the issuer needs of a device certificate authority, as an interface it owns.

When an enrollment is redeemed with a certificate signing request, the issuer hands out a device
certificate (CN = the device id) that the MQTT broker accepts; when a device is retired, its certificate is
revoked. The issuer does not know *how*: the broker tier keeps the CA, the CRL and the ACL
(:class:`citypass.sync.home.BrokerHome`), and the issuer program's wiring point
(:mod:`citypass.wiring.issuer`) plugs an adapter over it into :func:`citypass.issuer.api.create_app`. The
issuer package itself never imports the broker's code, so it can be tested, and run, without one.

An adapter is anything with these members; a test can use a ten-line fake::

    >>> class NoBroker:
    ...     broker = None
    ...     def ca_certificate(self) -> str: return "-----BEGIN CERTIFICATE-----…"
    ...     def has_certificate(self, device_id: str) -> bool: return False
    ...     def certify(self, device_id: str, site: int, csr_pem: bytes) -> str: raise AuthorityError("offline")
    ...     def revoke(self, device_id: str) -> int: return 0
    >>> isinstance(NoBroker(), DeviceAuthority)
    True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from citypass.errors import CityPassError


class AuthorityError(CityPassError):
    """The authority refused or failed: a bad CSR, an unknown device, a broker home that cannot be written."""


@runtime_checkable
class DeviceAuthority(Protocol):
    """Signs and revokes device certificates for the broker (see the module docstring)."""

    @property
    def broker(self) -> str | None:
        """``host:port`` of the broker enrolled devices are told to dial, if the issuer knows it."""
        ...

    def ca_certificate(self) -> str:
        """The CA certificate (PEM) devices must pin for the broker."""
        ...

    def has_certificate(self, device_id: str) -> bool:
        """Whether ``device_id`` holds a live (unrevoked) certificate."""
        ...

    def certify(self, device_id: str, site: int, csr_pem: bytes) -> str:
        """Sign the device's CSR (its CN is ``device_id``) and admit it to ``site``'s topics; the certificate
        as PEM. Raises :class:`AuthorityError` when it cannot."""
        ...

    def revoke(self, device_id: str) -> int:
        """Revoke every certificate of ``device_id`` (the broker refuses it from then on); how many.
        Raises :class:`AuthorityError` when the device never had one."""
        ...
