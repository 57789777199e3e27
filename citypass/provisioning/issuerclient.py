"""The few issuer calls a device makes while being provisioned, with errors a technician can act on.

Every failure becomes a :class:`ProvisionError` whose message says what happened and what to do: an
unreachable issuer, a used or expired enrollment token (HTTP 410), an unknown one (401), a clock that
disagrees with the issuer's. ``transport`` is injectable (httpx's own ``MockTransport`` or a real one), so
tests talk to a served issuer over real HTTP and nothing is patched.
"""

from __future__ import annotations

import email.utils
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from citypass.credential.enrollment import EnrollmentCheck, EnrollmentGrant, EnrollmentPreview, EnrollmentRedeem
from citypass.errors import CityPassError

#: Refuse to enroll (and fail the self-test) when the local clock is further than this from the issuer's.
MAX_CLOCK_OFFSET_S = 300.0


class ProvisionError(CityPassError):
    """A provisioning step failed; the message says why and what to do. The CLI exits 1 with it."""

    step: str | None = None  # which step failed, when known
    #: What to do next, when it is not "nothing was written: fix the cause and run the same command again"
    #: (a failure after the token was redeemed says whether the issuer took the enrollment back).
    recovery: str | None = None


@dataclass(frozen=True)
class ClockReading:
    issuer_time: float  # Unix seconds, by the issuer
    offset_s: float  # local minus issuer, corrected for half the round trip


def describe_offset(offset: float) -> str:
    ahead = "ahead of" if offset > 0 else "behind"
    return f"{abs(offset):.0f} s {ahead} the issuer"


def check_issuer_url(url: str) -> str:
    """``url`` without a trailing slash if it is an absolute http(s) URL, else a :class:`ProvisionError` saying
    what is wrong with it (rather than "cannot reach the issuer" for a URL that was never a URL).

    >>> check_issuer_url("https://issuer.example/")
    'https://issuer.example'
    >>> try:
    ...     check_issuer_url("issuer.example:8080")
    ... except ProvisionError as exc:
    ...     print(str(exc).partition(": ")[2])
    give it whole, e.g. https://issuer.example:8080
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        bare = url.split("://", 1)[-1]
        raise ProvisionError(f"the issuer URL {url!r} has no http:// or https:// in front: give it whole, e.g. "
                             f"https://{bare}")
    if parts.query or parts.fragment:
        raise ProvisionError(f"the issuer URL {url!r} carries a query or fragment: give only scheme, host and path")
    return url.rstrip("/")


def tls_verify(issuer_ca: Path | None) -> ssl.SSLContext | bool:
    """What httpx verifies the issuer's certificate with: the system's CAs, or only ``issuer_ca`` (an issuer
    behind a private CA)."""
    if issuer_ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(issuer_ca))
    except (OSError, ssl.SSLError) as exc:
        raise ProvisionError(f"--issuer-ca {issuer_ca}: cannot load it as PEM CA certificates ({exc})") from None


class IssuerClient:
    def __init__(self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.time, issuer_ca: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.clock = clock
        self.http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                 verify=tls_verify(issuer_ca))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> IssuerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ProvisionError(f"the issuer at {self.url} did not answer in time: check the network "
                                 "(cable, VPN, firewall) and try again") from None
        except httpx.ConnectError as exc:
            if isinstance(exc.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ProvisionError(f"the issuer at {self.url} has a TLS certificate this device does not trust "
                                     f"({exc}): behind a private CA, give its certificate with --issuer-ca FILE"
                                     ) from None
            raise ProvisionError(f"cannot reach the issuer at {self.url} ({type(exc).__name__}: {exc}): "
                                 "check the URL, the network and that the issuer is running") from None
        except httpx.TransportError as exc:
            raise ProvisionError(f"cannot reach the issuer at {self.url} ({type(exc).__name__}: {exc}): "
                                 "check the URL, the network and that the issuer is running") from None

    @staticmethod
    def _detail(resp: httpx.Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            return resp.text[:200]
        return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]

    def clock_reading(self) -> ClockReading:
        """The issuer's clock (``/healthz`` time, else the Date header) and how far the local clock is off."""
        sent = self.clock()
        resp = self._call("GET", "/healthz")
        received = self.clock()
        issuer_time: float | None = None
        if resp.status_code == 200:
            try:
                issuer_time = float(resp.json()["time"])
            except (ValueError, KeyError, TypeError):
                issuer_time = None
        if issuer_time is None and "date" in resp.headers:
            issuer_time = email.utils.parsedate_to_datetime(resp.headers["date"]).timestamp()
        if issuer_time is None:
            raise ProvisionError(f"{self.url} does not look like a City Pass issuer "
                                 f"(GET /healthz: HTTP {resp.status_code})")
        return ClockReading(issuer_time, (sent + received) / 2 - issuer_time)

    def check_clock(self, max_offset_s: float = MAX_CLOCK_OFFSET_S) -> ClockReading:
        reading = self.clock_reading()
        if abs(reading.offset_s) > max_offset_s:
            raise ProvisionError(
                f"this device's clock is {describe_offset(reading.offset_s)} (more than {max_offset_s:.0f} s): "
                "set the time (timedatectl set-ntp true, or date -s) and enroll again; certificates and "
                "dynamic codes depend on it")
        return reading

    def _token_refused(self, resp: httpx.Response) -> None:
        detail = self._detail(resp)
        if resp.status_code == 410:
            raise ProvisionError(f"the enrollment token cannot be used: {detail}. Ask the operator for a new "
                                 "enrollment (citypass issuer enrollment-qr, or POST /v1/enrollments)")
        if resp.status_code == 401:
            raise ProvisionError(f"the issuer does not know this enrollment token ({detail}): check it was "
                                 "copied whole, and that this is the issuer that created it")

    def check(self, token: str) -> EnrollmentPreview:
        """What redeeming ``token`` would give, without spending it (``POST /v1/enrollments/check``)."""
        resp = self._call("POST", "/v1/enrollments/check", json=EnrollmentCheck(token=token).model_dump())
        self._token_refused(resp)
        if resp.status_code == 404:
            raise ProvisionError(f"{self.url} cannot check an enrollment before redeeming it (no "
                                 "/v1/enrollments/check): update the issuer first")
        if resp.status_code != 200:
            raise ProvisionError(f"the issuer refused to check the token (HTTP {resp.status_code}): "
                                 f"{self._detail(resp)}")
        try:
            return EnrollmentPreview.model_validate_json(resp.content)
        except ValidationError as exc:
            raise ProvisionError(f"the issuer's answer to a token check does not parse: {exc.errors()[0]['msg']}"
                                 ) from None

    def release(self, token: str, api_token: str) -> str | None:
        """Give a just-redeemed enrollment back (``POST /v1/enrollments/release``, as the device): None when the
        issuer took it back, else why not."""
        try:
            resp = self._call("POST", "/v1/enrollments/release", json=EnrollmentCheck(token=token).model_dump(),
                              headers={"Authorization": f"Bearer {api_token}"})
        except ProvisionError as exc:
            return str(exc)
        return None if resp.status_code == 200 else f"HTTP {resp.status_code}: {self._detail(resp)}"

    def redeem(self, token: str, csr_pem: bytes) -> EnrollmentGrant:
        request = EnrollmentRedeem(token=token, csr=csr_pem.decode())
        resp = self._call("POST", "/v1/enrollments/redeem", json=request.model_dump())
        detail = self._detail(resp)
        self._token_refused(resp)
        if resp.status_code == 503:
            raise ProvisionError(f"the issuer cannot enroll devices now: {detail}")
        if resp.status_code != 201:
            raise ProvisionError(f"the issuer refused the enrollment (HTTP {resp.status_code}): {detail}")
        try:
            return EnrollmentGrant.model_validate_json(resp.content)
        except ValidationError as exc:
            raise ProvisionError(f"the issuer's answer is not an enrollment grant: {exc.errors()[0]['msg']} "
                                 f"at {'.'.join(map(str, exc.errors()[0]['loc']))} (is {self.url} a City Pass "
                                 "issuer of this version?)") from None

    def retire(self, device_id: str, token: str) -> dict[str, Any]:
        resp = self._call("DELETE", f"/v1/devices/{device_id}", headers={"Authorization": f"Bearer {token}"})
        if resp.status_code in (401, 403):
            raise ProvisionError(f"the issuer refused to retire {device_id} (HTTP {resp.status_code}: "
                                 f"{self._detail(resp)}): use a technician or admin token")
        if resp.status_code == 404:
            raise ProvisionError(f"the issuer has no device {device_id!r}")
        if resp.status_code != 200:
            raise ProvisionError(f"retiring {device_id} failed (HTTP {resp.status_code}): {self._detail(resp)}")
        body: dict[str, Any] = resp.json()
        return body
