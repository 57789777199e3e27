"""Times on the command line: ISO 8601 in, Unix seconds inside.

City Pass runs in one city, so a time written without an offset is read in the city's zone
(UTC+08:00, Asia/Shanghai has no daylight saving). ``2026-12-01`` means midnight local time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from citypass.errors import InvalidInput

CITY_TZ = timezone(timedelta(hours=8), "UTC+08:00")


def parse_time(text: str) -> int:
    """``"2026-12-01T09:30"`` → Unix seconds. Raises ValueError with a readable message."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"not an ISO 8601 time: {text!r} (e.g. 2026-12-01T09:30 or 2026-12-01T01:30Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=CITY_TZ)
    return int(value.timestamp())


def format_time(ts: int | None) -> str | None:
    """Unix seconds → ISO 8601 in the city's zone (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, CITY_TZ).isoformat()


def utc_now() -> int:
    return int(datetime.now(UTC).timestamp())
