"""Small helpers for the demo's HTTP calls to the issuer: a failed call stops the demo with the
method, path, status and the service's own error text."""

from __future__ import annotations

from typing import Any

import httpx

from citypass.errors import CityPassError


class DemoError(CityPassError, RuntimeError):
    """Something the demo needed did not happen (an API call failed, a gate did not come up)."""


def _check(response: httpx.Response) -> None:
    if response.status_code >= 300:
        raise DemoError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                        f"{response.text[:300]}")


def ok(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful response."""
    _check(response)
    body: dict[str, Any] = response.json()
    return body


def ok_list(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON list of a successful response."""
    _check(response)
    body: list[dict[str, Any]] = response.json()
    return body
