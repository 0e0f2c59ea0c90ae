"""The one clock every service reads: TOTP steps, deadlines and reminders all come from it.

`FileOffsetClock` lets end-to-end tests move time forward across processes (days of enrollment in
seconds): it adds the offset, in seconds, written in a file. It is only used when the setting
MFAPLANE_FAKE_CLOCK_FILE names that file, and the service logs a warning at start-up when it is.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FileOffsetClock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: tuple[int, float] | None = None
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._read_offset()

    def _read_offset(self) -> timedelta:
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            return timedelta()
        if self._seen != (stat.st_mtime_ns, stat.st_size):
            self._seen = (stat.st_mtime_ns, stat.st_size)
            text = self._path.read_text().strip()
            self._offset = timedelta(seconds=float(text or 0))
        return self._offset


def set_offset(path: Path, offset: timedelta) -> None:
    """Moves every FileOffsetClock reading `path` (tests only). Written atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(offset.total_seconds()))
    os.replace(tmp, path)


def from_setting(fake_clock_file: str | None) -> Clock:
    if not fake_clock_file:
        return SystemClock()
    log.warning(
        "FAKE CLOCK ENABLED: time is shifted by the offset in %s. Never enable this in production.",
        fake_clock_file,
    )
    return FileOffsetClock(Path(fake_clock_file))
