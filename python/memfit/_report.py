"""``memfit report --json`` from Python."""

import json
import os
import shutil
import subprocess


class MemfitNotFoundError(FileNotFoundError):
    """The ``memfit`` program is neither in $MEMFIT_BIN nor on PATH."""


def find_binary():
    """The path of the ``memfit`` program: $MEMFIT_BIN, else ``memfit`` on PATH.

    Raises :class:`MemfitNotFoundError` saying where it looked.
    """
    env = os.environ.get("MEMFIT_BIN")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env
        raise MemfitNotFoundError("MEMFIT_BIN=%s is not an executable file" % env)
    found = shutil.which("memfit")
    if not found:
        raise MemfitNotFoundError(
            "memfit not found: set MEMFIT_BIN to its path or put it on PATH"
        )
    return found


def report(pid=None, gpu=True, timeout=30.0):
    """Runs ``memfit report --json`` and returns its object (docs/report-json.md).

    ``pid`` reports that process tree (default: memfit's own cgroup and
    machine only); ``gpu=False`` skips the GPUs. Raises
    :class:`MemfitNotFoundError` when the program is missing, and
    RuntimeError with memfit's message when it fails.
    """
    args = [find_binary(), "report", "--json"]
    if pid is not None:
        args += ["--pid", str(int(pid))]
    if not gpu:
        args.append("--no-gpu")
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if r.returncode != 0:
        message = r.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError("memfit report failed (exit %d): %s" % (r.returncode, message))
    return json.loads(r.stdout.decode("utf-8"))
