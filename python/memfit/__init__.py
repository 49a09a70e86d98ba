"""memfit for Python programs: read the pressure channel, shrink batches, give memory back.

Run a program under ``memfit monitor -- python3 prog.py`` and it can ask, at
any moment, how memory stands (:func:`pressure`), be called back when memory
runs short (:func:`on_pressure`), size its batches (:func:`batch_size`,
:class:`BatchController`), free memory in-process (:func:`cleanup`) and answer
``memfit cleanup --pid PID`` (:func:`answer_cleanup_requests`). The channel's
format is docs/channel.md in the memfit repository. Standard library only.
"""

from ._batch import BatchController, batch_size
from ._cleanup import CleanupAnswerer, answer_cleanup_requests, channel_dir, cleanup
from ._pressure import (
    LEVELS,
    GpuPressure,
    Pressure,
    PressureWatcher,
    level_at_least,
    on_pressure,
    pressure,
)
from ._report import MemfitNotFoundError, find_binary, report

__version__ = "0.1.0"

__all__ = [
    "LEVELS",
    "BatchController",
    "CleanupAnswerer",
    "GpuPressure",
    "MemfitNotFoundError",
    "Pressure",
    "PressureWatcher",
    "answer_cleanup_requests",
    "batch_size",
    "channel_dir",
    "cleanup",
    "find_binary",
    "level_at_least",
    "on_pressure",
    "pressure",
    "report",
]
