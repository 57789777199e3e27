"""The issuer's HTTP API (FastAPI). :func:`create_app` is the one entry point; docs/issuer.md the guide."""

from citypass.issuer.api.app import create_app

__all__ = ["create_app"]
