"""Giving memory back: in-process cleanup, and answering ``memfit cleanup --pid``.

:func:`cleanup` frees what a Python process holds without needing it:
garbage cycles, the C heap's free pages (glibc keeps freed memory in its
arenas until ``malloc_trim``), and PyTorch's CUDA cache. The answering thread
of :func:`answer_cleanup_requests` runs it when another process asks through
the channel directory (docs/channel.md, "Asking a process to clean up").
"""

import atexit
import ctypes
import errno
import gc
import json
import logging
import os
import shutil
import stat
import sys
import time
import uuid

from ._pressure import ENV_FILE
from ._worker import Poller

REQUEST = "cleanup.request"
DONE = "cleanup.done"

_log = logging.getLogger("memfit")


def _rss_bytes():
    """Resident memory of this process (/proc/self/statm); 0 where there is none."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _malloc_trim():
    """Calls glibc's malloc_trim(0); False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl has no such symbol
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def _empty_cuda_cache():
    """torch.cuda.empty_cache() when this program already uses torch with CUDA.

    Returns the bytes of cache released, or None when not done. torch is not
    imported here: a program that never imported it has no CUDA cache, and
    importing it would itself cost hundreds of megabytes.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        before = torch.cuda.memory_reserved()
        torch.cuda.empty_cache()
        return max(0, before - torch.cuda.memory_reserved())
    except Exception as e:  # a broken CUDA set-up must not break cleanup
        _log.debug("memfit: torch.cuda.empty_cache failed: %s", e)
        return None


def cleanup():
    """Frees memory this process holds without needing it, and says how much.

    Runs ``gc.collect()``, glibc's ``malloc_trim(0)`` (skipped where the C
    library is not glibc) and ``torch.cuda.empty_cache()`` (only when torch is
    already imported and has initialised CUDA). Returns a dict:
    ``rss_before_bytes``, ``rss_after_bytes``, ``freed_bytes`` (before - after,
    at least 0), ``actions`` (the steps taken: "gc", "malloc_trim",
    "torch.cuda.empty_cache"), ``gc_collected`` (objects), ``gpu_freed_bytes``
    (CUDA cache released, 0 without it) and ``duration_s``.
    """
    start = time.monotonic()
    before = _rss_bytes()
    actions = ["gc"]
    collected = gc.collect()
    if _malloc_trim():
        actions.append("malloc_trim")
    gpu_freed = _empty_cuda_cache()
    if gpu_freed is not None:
        actions.append("torch.cuda.empty_cache")
    after = _rss_bytes()
    return {
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "freed_bytes": max(0, before - after),
        "actions": actions,
        "gc_collected": collected,
        "gpu_freed_bytes": gpu_freed or 0,
        "duration_s": round(time.monotonic() - start, 6),
    }


def _fallback_dir():
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return os.path.join(base, "memfit-%d" % os.getuid(), "pid-%d" % os.getpid())


def channel_dir():
    """The channel directory ``memfit cleanup --pid`` looks in for this process.

    Under ``memfit monitor``: the directory of $MEMFIT_PRESSURE_FILE. Else
    ``${XDG_RUNTIME_DIR:-/tmp}/memfit-UID/pid-PID`` (which
    :func:`answer_cleanup_requests` creates).
    """
    state = os.environ.get(ENV_FILE)
    return os.path.dirname(state) if state else _fallback_dir()


def _private_dir(path):
    """Creates ``path`` mode 0700, or accepts it if it is already a directory of ours."""
    try:
        os.mkdir(path, 0o700)
        return
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(
            errno.EPERM,
            "%s exists but is not a private directory of uid %d" % (path, os.getuid()),
        )


def _write_atomic(directory, name, obj):
    tmp = os.path.join(directory, ".%s.%d.%s" % (name, os.getpid(), uuid.uuid4().hex[:8]))
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, separators=(",", ":")) + "\n")
    os.replace(tmp, os.path.join(directory, name))


class CleanupAnswerer(Poller):
    """The thread :func:`answer_cleanup_requests` started.

    ``directory`` is the channel directory watched, ``answered`` the number
    of requests answered, ``last`` the last answer written; ``stop()`` ends
    the thread (and removes a directory it created).
    """

    def __init__(self, interval, on_request):
        super().__init__(interval, "memfit-cleanup")
        self.on_request = on_request
        self.directory = channel_dir()
        self.answered = 0
        self.last = None
        self._created = False
        if not os.environ.get(ENV_FILE):
            parent = os.path.dirname(self.directory)
            _private_dir(parent)
            _private_dir(self.directory)
            self._created = True
            atexit.register(self._stopped)
        self._start()

    def _claim(self):
        """The request if there is one for this process, taken out of the directory."""
        path = os.path.join(self.directory, REQUEST)
        try:
            with open(path) as f:
                request = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            _log.warning("memfit: ignoring a malformed %s: %s", path, e)
            try:
                os.unlink(path)
            except OSError:
                pass
            return None
        if not isinstance(request, dict):
            request = {}
        target = request.get("pid")
        if isinstance(target, int) and target != os.getpid():
            return None  # meant for another process sharing the monitor's channel
        claimed = "%s.%d" % (path, os.getpid())
        try:
            os.rename(path, claimed)  # one answerer wins
        except FileNotFoundError:
            return None
        try:
            with open(claimed) as f:
                request = json.loads(f.read())
        except (OSError, ValueError):
            pass
        finally:
            os.unlink(claimed)
        return request if isinstance(request, dict) else {}

    def _poll(self):
        try:
            request = self._claim()
            if request is not None:
                self._answer(request)
        except OSError as e:
            _log.warning("memfit: cannot answer a cleanup request in %s: %s", self.directory, e)

    def _answer(self, request):
        if self.on_request is not None:
            try:
                self.on_request(request)
            except Exception:
                _log.exception("memfit: the on_request callback raised")
        result = cleanup()
        answer = {
            "v": 1,
            "id": str(request.get("id", "")),
            "time": time.time(),
            "pid": os.getpid(),
            "rss_before_bytes": result["rss_before_bytes"],
            "rss_after_bytes": result["rss_after_bytes"],
            "actions": result["actions"],
            "gpu_freed_bytes": result["gpu_freed_bytes"],
        }
        _write_atomic(self.directory, DONE, answer)
        self.answered += 1
        self.last = answer

    def _stopped(self):
        """Removes the fallback directory when this object created it."""
        if self._created:
            self._created = False
            shutil.rmtree(self.directory, ignore_errors=True)
            try:
                os.rmdir(os.path.dirname(self.directory))  # only when no other process uses it
            except OSError:
                pass


def answer_cleanup_requests(interval=0.2, on_request=None):
    """Answers ``memfit cleanup --pid PID`` for this process from a daemon thread.

    Every ``interval`` seconds it looks for ``cleanup.request`` in the
    channel directory (:func:`channel_dir`); for each request (one addressed
    to another process by a ``pid`` field is left alone) it calls
    ``on_request(request)`` if given (drop your own caches there), runs
    :func:`cleanup`, and writes ``cleanup.done`` with the request's id and the
    figures. When not run under ``memfit monitor`` it creates the fallback
    directory ``${XDG_RUNTIME_DIR:-/tmp}/memfit-UID/pid-PID`` (mode 0700) and
    removes it at exit. Returns a :class:`CleanupAnswerer`; PermissionError when
    that directory exists and is not a private one of this user.
    """
    return CleanupAnswerer(interval, on_request)
