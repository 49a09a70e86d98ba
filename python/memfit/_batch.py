"""Batch sizes from the channel's ``batch_factor``.

The monitor computes what to multiply the batch by (docs/channel.md): below
1 shrink, 1 keep, above 1 there is room to grow. These helpers apply it with
a floor, an optional ceiling, and growth only when asked for.
"""

import math
import time

from ._pressure import pressure as _read_pressure


def _check(current, minimum, maximum):
    if int(current) != current or current < 1:
        raise ValueError("current batch size must be a positive integer, got %r" % (current,))
    if minimum < 1 or (maximum is not None and maximum < minimum):
        raise ValueError("need 1 <= minimum <= maximum, got %r and %r" % (minimum, maximum))


def _apply(current, factor, level, minimum, maximum, grow):
    if factor < 1.0:
        size = int(math.floor(current * factor))
    elif factor > 1.0 and grow and level == "ok":
        size = int(math.floor(current * factor))
    else:
        size = current
    size = max(minimum, size)
    if maximum is not None:
        size = min(maximum, size)
    return size


def batch_size(current, minimum=1, maximum=None, grow=False, state=None):
    """The batch size to use next: ``current`` times the channel's ``batch_factor``.

    Shrinks (floor, never below ``minimum``) whenever the factor is below 1;
    grows only when ``grow`` is true, the level is "ok" and the factor is above
    1, never above ``maximum``. Returns ``current`` unchanged when not run under
    ``memfit monitor`` or when the state is stale. ``state`` is a
    :class:`Pressure` already read (default: read it now).

    This is stateless: called again before the monitor's next sample it
    applies the same factor again. A loop that calls it every step should use
    :class:`BatchController`, which applies each sample once.
    """
    _check(current, minimum, maximum)
    p = _read_pressure() if state is None else state
    if p is None or p.stale:
        return current
    return _apply(current, p.batch_factor, p.level, minimum, maximum, grow)


class BatchController:
    """A batch size for a training loop, following the channel.

    ::

        batches = memfit.BatchController(64, minimum=1, maximum=512, grow=True)
        for step in range(steps):
            size = batches.update()      # read the channel, maybe change the size
            train_step(size)

    ``update()`` applies a sample's factor only once (by its ``seq``) and only
    to a sample taken after the last change took effect (its ``time`` is
    later than the change), so one high sample halves the batch once, not
    once per step. ``on_change(old, new, pressure)`` is called on each change.
    ``changes`` lists (old, new, level) of every change.
    """

    def __init__(self, initial, minimum=1, maximum=None, grow=False, on_change=None, path=None):
        _check(initial, minimum, maximum)
        self.size = int(initial)
        self.minimum = minimum
        self.maximum = maximum
        self.grow = grow
        self.on_change = on_change
        self.path = path
        self.changes = []
        self._last_seq = None
        self._changed_at = 0.0

    def update(self, state=None):
        """Reads the channel (or takes ``state``) and returns the batch size to use now."""
        p = _read_pressure(self.path) if state is None else state
        if p is None or p.stale or p.seq == self._last_seq or p.time <= self._changed_at:
            return self.size
        self._last_seq = p.seq
        new = _apply(self.size, p.batch_factor, p.level, self.minimum, self.maximum, self.grow)
        if new != self.size:
            old, self.size = self.size, new
            self._changed_at = time.time()
            self.changes.append((old, new, p.level))
            if self.on_change is not None:
                self.on_change(old, new, p)
        return self.size
