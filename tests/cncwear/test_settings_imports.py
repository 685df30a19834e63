"""The settings sit at the bottom of the layers: importing them loads neither the job queue nor
Celery (which takes a second), yet a bad retrain schedule is still refused when they are built."""

from __future__ import annotations

import subprocess
import sys


def test_the_settings_import_neither_the_job_queue_nor_celery() -> None:
    script = (
        "import sys\n"
        "from cncwear.core.settings import Settings\n"
        "Settings()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cncwear.jobs', 'celery'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_bad_schedule_is_refused_when_the_settings_are_built() -> None:
    script = (
        "from pydantic import ValidationError\n"
        "from cncwear.core.settings import Settings\n"
        "try:\n"
        "    Settings(retrain_schedule='0 3 * *')\n"
        "except ValidationError as error:\n"
        "    print(error.errors()[0]['msg'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == (
        "Value error, '0 3 * *' has 4 field(s); a schedule is five cron fields: minute hour "
        "day-of-month month day-of-week, e.g. '0 3 * * 0' (Sundays at 03:00)"
    )
