"""The retrain schedule (``CNCWEAR_RETRAIN_SCHEDULE``): five cron fields, read as Celery beat reads
them. Here, below the settings, so that the settings can refuse a bad schedule when they are built;
Celery is imported only when there is a schedule to read (it takes a second to import)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery.schedules import crontab


def parse_schedule(text: str) -> crontab | None:
    """The schedule of ``CNCWEAR_RETRAIN_SCHEDULE``: None when empty (off). Raises ValueError
    saying what a valid one looks like."""
    if not text.strip():
        return None
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"{text!r} has {len(fields)} field(s); a schedule is five cron fields: minute hour "
            "day-of-month month day-of-week, e.g. '0 3 * * 0' (Sundays at 03:00)"
        )
    from celery.schedules import crontab  # noqa: PLC0415 (a second to import: only when set)

    try:
        return crontab.from_string(" ".join(fields))
    except ValueError as error:
        raise ValueError(f"{text!r} is not a valid cron schedule: {error}") from None
