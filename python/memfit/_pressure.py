"""Reading the state file that ``memfit monitor`` rewrites after every sample.

The file (docs/channel.md) is one JSON object, replaced atomically; its path
is in ``MEMFIT_PRESSURE_FILE``. Reading it costs one small open and read, so a
training loop may call :func:`pressure` every step.
"""

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ._worker import Poller

LEVELS = ("ok", "warning", "critical", "danger")
"""The levels from the safest to the worst."""

ENV_FILE = "MEMFIT_PRESSURE_FILE"

# A state older than this many of the monitor's intervals (and at least
# STALE_MIN_S) is flagged stale: the monitor stopped or is stuck.
STALE_INTERVALS = 5
STALE_MIN_S = 1.0

_log = logging.getLogger("memfit")


def _rank(level):
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError("unknown level %r: expected one of %s" % (level, ", ".join(LEVELS)))


def level_at_least(level, threshold):
    """True when ``level`` is ``threshold`` or worse ("critical" >= "warning").

    An unknown ``level`` read from a file counts as "ok"; an unknown
    ``threshold`` is a ValueError.
    """
    rank = LEVELS.index(level) if level in LEVELS else 0
    return rank >= _rank(threshold)


@dataclass(frozen=True)
class GpuPressure:
    """One GPU's figures from the state file's ``gpu`` list."""

    index: int
    used_bytes: int
    total_bytes: int
    percent: float
    level: str


@dataclass(frozen=True)
class Pressure:
    """One state of the channel: the monitor's last sample, as it judged it.

    Fields follow docs/channel.md; a field the file lacks is 0 (or "" or
    None). ``stale`` is True when the sample is older than a few of the
    monitor's intervals or the monitor has exited: the figures may no longer
    hold. ``raw`` is the whole object read, fields this version does not know
    included.
    """

    level: str
    percent: float
    headroom_bytes: int
    batch_factor: float
    step_bytes: int
    in_use_bytes: int
    limit_bytes: int
    available_bytes: int
    scope: str
    seq: int
    time: float
    interval_s: float
    level_since: float
    monitor_pid: int
    pid: int
    gpu: Tuple[GpuPressure, ...]
    stale: bool
    age_s: float
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    def at_least(self, level):
        """True when this state's level is ``level`` or worse."""
        return level_at_least(self.level, level)


def _pid_alive(pid):
    if pid <= 0:
        return True  # unknown: do not judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _num(d, key, kind, default=0):
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return kind(default)
    return kind(v)


def parse_state(text, now=None):
    """A :class:`Pressure` from the state file's text; ValueError when it is not one."""
    d = json.loads(text)
    if not isinstance(d, dict):
        raise ValueError("the state is not a JSON object")
    level = d.get("level")
    if level not in LEVELS:
        raise ValueError("the state has no valid level (got %r)" % (level,))
    gpus = []
    for g in d.get("gpu") or ():
        if isinstance(g, dict):
            gpus.append(
                GpuPressure(
                    index=_num(g, "index", int),
                    used_bytes=_num(g, "used_bytes", int),
                    total_bytes=_num(g, "total_bytes", int),
                    percent=_num(g, "percent", float),
                    level=g.get("level") if g.get("level") in LEVELS else "ok",
                )
            )
    now = time.time() if now is None else now
    sample_time = _num(d, "time", float)
    interval = _num(d, "interval_s", float, 1.0)
    age = max(0.0, now - sample_time)
    monitor_pid = _num(d, "monitor_pid", int)
    stale = age > max(STALE_INTERVALS * interval, STALE_MIN_S) or not _pid_alive(monitor_pid)
    return Pressure(
        level=level,
        percent=_num(d, "percent", float),
        headroom_bytes=_num(d, "headroom_bytes", int),
        batch_factor=_num(d, "batch_factor", float, 1.0),
        step_bytes=_num(d, "step_bytes", int),
        in_use_bytes=_num(d, "in_use_bytes", int),
        limit_bytes=_num(d, "limit_bytes", int),
        available_bytes=_num(d, "available_bytes", int),
        scope=str(d.get("scope", "")),
        seq=_num(d, "seq", int),
        time=sample_time,
        interval_s=interval,
        level_since=_num(d, "level_since", float),
        monitor_pid=monitor_pid,
        pid=_num(d, "pid", int),
        gpu=tuple(gpus),
        stale=stale,
        age_s=age,
        raw=d,
    )


# The last good state read from each path: a garbled read returns it.
_last_good: Dict[str, Pressure] = {}
_last_lock = threading.Lock()


def pressure(path=None):
    """How memory stands now, from the state file of ``memfit monitor``.

    ``path`` defaults to ``$MEMFIT_PRESSURE_FILE``. Returns a :class:`Pressure`,
    or None when the program is not run under ``memfit monitor`` (no such
    variable) or the file is gone (the monitor exited). Never raises on a bad
    file: one that cannot be read or parsed (it should not happen, the
    monitor replaces it atomically) gives the last good state read from the
    same path, with its staleness recomputed, or None if there was none.
    """
    path = path or os.environ.get(ENV_FILE)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20)
    except FileNotFoundError:
        with _last_lock:
            _last_good.pop(path, None)
        return None
    except OSError as e:
        _log.debug("memfit: cannot read %s: %s", path, e)
        text = None
    if text is not None:
        try:
            p = parse_state(text.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            _log.debug("memfit: %s: %s", path, e)
        else:
            with _last_lock:
                _last_good[path] = p
            return p
    with _last_lock:
        last = _last_good.get(path)
    if last is None:
        return None
    return parse_state(json.dumps(dict(last.raw)))


class PressureWatcher(Poller):
    """The thread :func:`on_pressure` started; ``stop()`` ends it (also a context manager)."""

    def __init__(self, callback, level, interval, path):
        _rank(level)
        super().__init__(interval, "memfit-pressure")
        self._callback = callback
        self._level = level
        self._path = path
        self.calls = 0
        self._start()

    def _poll(self):
        p = pressure(self._path)
        if p is not None and not p.stale and p.at_least(self._level):
            self.calls += 1
            try:
                self._callback(p)
            except Exception:
                _log.exception("memfit: the pressure callback raised")


def on_pressure(
    callback: Callable[[Pressure], Any],
    level: str = "warning",
    interval: float = 0.5,
    path: Optional[str] = None,
) -> PressureWatcher:
    """Calls ``callback(pressure)`` from a daemon thread while memory is at ``level`` or worse.

    The state file is read every ``interval`` seconds; each read that finds
    the level at or above ``level`` calls back, so the callback runs again
    and again (at most once per ``interval``) for as long as the level
    persists, and stops once it falls. Stale states (the monitor stopped) do
    not call back. An exception in the callback is logged to the "memfit"
    logger and the watching goes on. Returns a :class:`PressureWatcher`; call
    its ``stop()`` to end it.
    """
    return PressureWatcher(callback, level, interval, path)
