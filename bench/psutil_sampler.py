#!/usr/bin/python3
"""The baseline the monitor is compared with: a typical psutil-based memory
sampler, doing what `memfit monitor --pid PID -i INTERVAL -l FILE` does (the
machine, the cgroup files, the process tree, PSI; one JSON line per sample).
Usage: psutil_sampler.py PID INTERVAL_S DURATION_S LOGFILE"""
import json
import os
import sys
import time

import psutil


def read_cgroup():
    out = {}
    for name in ("memory.current", "memory.max", "memory/memory.usage_in_bytes",
                 "memory/memory.limit_in_bytes"):
        path = "/sys/fs/cgroup/" + name
        try:
            with open(path) as f:
                out[name] = f.read().strip()
        except OSError:
            pass
    return out


def main():
    pid, interval, duration, path = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    root = psutil.Process(pid)
    t0 = time.monotonic()
    with open(path, "a") as log:
        while time.monotonic() - t0 < duration:
            vm = psutil.virtual_memory()
            procs = [root] + root.children(recursive=True)
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_full_info().rss
                except psutil.Error:
                    pass
            try:
                with open("/proc/pressure/memory") as f:
                    psi = f.read()
            except OSError:
                psi = ""
            log.write(json.dumps({"t": time.monotonic() - t0, "total": vm.total,
                                  "available": vm.available, "rss": rss,
                                  "cgroup": read_cgroup(), "psi": psi}) + "\n")
            log.flush()
            time.sleep(interval)


main()
