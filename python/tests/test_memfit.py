"""Unit tests of the memfit package (stdlib unittest; run with /usr/bin/python3 -m unittest).

The state files are written by hand, following docs/channel.md, so these
run without a monitor.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import memfit  # noqa: E402
from memfit import _cleanup  # noqa: E402


def state(**fields):
    d = {
        "v": 1, "seq": 1, "time": time.time(), "interval_s": 0.1,
        "monitor_pid": os.getpid(), "pid": os.getpid(), "scope": "cgroup",
        "level": "ok", "level_since": time.time(), "percent": 40.0,
        "in_use_bytes": 100, "limit_bytes": 250, "available_bytes": 150,
        "headroom_bytes": 100, "step_bytes": 0, "batch_factor": 1.0,
    }
    d.update(fields)
    return d


class ChannelCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="memfit-py-test.")
        self.path = os.path.join(self.dir, "state.json")
        self.env = dict(os.environ)
        os.environ["MEMFIT_PRESSURE_FILE"] = self.path
        memfit._pressure._last_good.clear()

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self.env)
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, obj_or_text):
        text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text) + "\n"
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)


class PressureTest(ChannelCase):
    def test_not_under_monitor(self):
        del os.environ["MEMFIT_PRESSURE_FILE"]
        self.assertIsNone(memfit.pressure())

    def test_missing_file(self):
        self.assertIsNone(memfit.pressure())

    def test_fields(self):
        self.write(state(seq=42, level="warning", percent=83.4, headroom_bytes=-9041920,
                         step_bytes=20971520, batch_factor=0.5, future_field=[1, 2],
                         gpu=[{"index": 0, "used_bytes": 1, "total_bytes": 2,
                               "percent": 50.0, "level": "ok"}]))
        p = memfit.pressure()
        self.assertEqual((p.level, p.seq, p.percent, p.headroom_bytes, p.step_bytes),
                         ("warning", 42, 83.4, -9041920, 20971520))
        self.assertEqual(p.batch_factor, 0.5)
        self.assertEqual(p.scope, "cgroup")
        self.assertEqual(p.gpu[0].total_bytes, 2)
        self.assertEqual(p.raw["future_field"], [1, 2])
        self.assertFalse(p.stale)
        self.assertTrue(p.at_least("warning"))
        self.assertFalse(p.at_least("critical"))
        with self.assertRaises(Exception):
            p.level = "ok"  # immutable

    def test_garbled_gives_last_good(self):
        for bad in ["", "{\"level\": ", "[1,2]", "{\"level\": \"panic\"}", "\xff\xfe"]:
            self.write(bad)
            self.assertIsNone(memfit.pressure(), repr(bad))
        self.write(state(seq=7, level="critical"))
        self.assertEqual(memfit.pressure().seq, 7)
        self.write("{not json")
        p = memfit.pressure()
        self.assertEqual((p.seq, p.level), (7, "critical"))
        os.unlink(self.path)
        self.assertIsNone(memfit.pressure(), "a removed file means the monitor is gone")

    def test_stale(self):
        self.write(state(time=time.time() - 10, interval_s=0.5))
        p = memfit.pressure()
        self.assertTrue(p.stale)
        self.assertGreater(p.age_s, 9)
        # a dead monitor makes a fresh-looking state stale too
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        self.write(state(monitor_pid=dead.pid))
        self.assertTrue(memfit.pressure().stale)

    def test_levels(self):
        self.assertTrue(memfit.level_at_least("danger", "warning"))
        self.assertFalse(memfit.level_at_least("ok", "warning"))
        with self.assertRaises(ValueError):
            memfit.level_at_least("ok", "bad")


class OnPressureTest(ChannelCase):
    def test_calls_back_while_level_persists(self):
        self.write(state(level="ok"))
        seen = []
        event = threading.Event()

        def callback(p):
            seen.append(p.level)
            if len(seen) >= 3:
                event.set()

        with memfit.on_pressure(callback, level="warning", interval=0.02) as w:
            time.sleep(0.15)
            self.assertEqual(seen, [], "no call back at ok")
            self.write(state(level="critical", seq=2))
            self.assertTrue(event.wait(2), "repeated call backs while critical")
            self.write(state(level="ok", seq=3))
            time.sleep(0.1)
            n = len(seen)
            time.sleep(0.15)
            self.assertEqual(len(seen), n, "no more call backs once back to ok")
        self.assertFalse(w.running)
        self.assertTrue(all(level == "critical" for level in seen))

    def test_callback_exception_does_not_stop(self):
        self.write(state(level="danger"))
        calls = []

        def callback(p):
            calls.append(1)
            raise RuntimeError("boom")

        with self.assertLogs("memfit", level="ERROR"):
            w = memfit.on_pressure(callback, level="danger", interval=0.02)
            time.sleep(0.2)
            w.stop()
        self.assertGreater(len(calls), 1)

    def test_bad_arguments(self):
        with self.assertRaises(ValueError):
            memfit.on_pressure(print, level="orange")
        with self.assertRaises(ValueError):
            memfit.on_pressure(print, interval=0)


class BatchTest(ChannelCase):
    def test_batch_size(self):
        self.assertEqual(memfit.batch_size(64), 64, "no state: unchanged")
        self.write(state(level="warning", batch_factor=0.5))
        self.assertEqual(memfit.batch_size(64), 32)
        self.assertEqual(memfit.batch_size(3, minimum=2), 2)
        self.write(state(level="danger", batch_factor=0.125))
        self.assertEqual(memfit.batch_size(64), 8)
        self.write(state(level="ok", batch_factor=2.0))
        self.assertEqual(memfit.batch_size(64), 64, "no growth unless asked")
        self.assertEqual(memfit.batch_size(64, grow=True), 128)
        self.assertEqual(memfit.batch_size(64, grow=True, maximum=100), 100)
        self.write(state(level="warning", batch_factor=0.5, time=time.time() - 60))
        self.assertEqual(memfit.batch_size(64), 64, "stale: unchanged")
        with self.assertRaises(ValueError):
            memfit.batch_size(0)
        with self.assertRaises(ValueError):
            memfit.batch_size(8, minimum=4, maximum=2)

    def test_controller_applies_each_sample_once(self):
        changes = []
        c = memfit.BatchController(64, on_change=lambda o, n, p: changes.append((o, n)))
        self.assertEqual(c.update(), 64)
        self.write(state(seq=1, level="warning", batch_factor=0.5))
        self.assertEqual(c.update(), 32)
        self.assertEqual(c.update(), 32, "same sample: applied once")
        self.write(state(seq=2, level="warning", batch_factor=0.5, time=time.time() - 0.5))
        self.assertEqual(c.update(), 32, "a sample from before the change is not applied")
        time.sleep(0.01)
        self.write(state(seq=3, level="warning", batch_factor=0.5))
        self.assertEqual(c.update(), 16)
        self.assertEqual(changes, [(64, 32), (32, 16)])
        self.assertEqual([x[2] for x in c.changes], ["warning", "warning"])


class ReportTest(unittest.TestCase):
    def test_missing_binary(self):
        env = dict(os.environ)
        try:
            os.environ["MEMFIT_BIN"] = "/nonexistent/memfit"
            with self.assertRaises(memfit.MemfitNotFoundError) as e:
                memfit.report()
            self.assertIn("MEMFIT_BIN", str(e.exception))
            del os.environ["MEMFIT_BIN"]
            os.environ["PATH"] = "/nonexistent"
            with self.assertRaisesRegex(memfit.MemfitNotFoundError, "PATH"):
                memfit.report()
        finally:
            os.environ.clear()
            os.environ.update(env)

    @unittest.skipUnless(os.environ.get("MEMFIT_BIN"), "MEMFIT_BIN not set")
    def test_report(self):
        r = memfit.report(pid=os.getpid(), gpu=False)
        self.assertIn("summary", r)
        self.assertGreater(r["summary"]["in_use_bytes"], 0)


class CleanupTest(unittest.TestCase):
    def test_cleanup_frees_trimmed_heap(self):
        # Many small objects (malloc'd, not mmap'd): freed memory stays in the
        # heap until malloc_trim gives it back.
        junk = [bytearray(512) for _ in range(200000)]
        del junk
        r = memfit.cleanup()
        self.assertIn("gc", r["actions"])
        self.assertIn("malloc_trim", r["actions"], "glibc expected on Debian")
        self.assertGreater(r["rss_before_bytes"], 0)
        self.assertGreater(r["rss_after_bytes"], 0)
        self.assertEqual(r["freed_bytes"], max(0, r["rss_before_bytes"] - r["rss_after_bytes"]))
        self.assertGreater(r["freed_bytes"], 20 << 20, r)
        self.assertNotIn("torch.cuda.empty_cache", r["actions"])
        self.assertEqual(r["gpu_freed_bytes"], 0)


class AnswerTest(unittest.TestCase):
    def setUp(self):
        self.env = dict(os.environ)
        self.runtime = tempfile.mkdtemp(prefix="memfit-py-xdg.")
        os.environ.pop("MEMFIT_PRESSURE_FILE", None)
        os.environ["XDG_RUNTIME_DIR"] = self.runtime

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self.env)
        shutil.rmtree(self.runtime, ignore_errors=True)

    def wait_for(self, path, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(path):
                return True
            time.sleep(0.02)
        return False

    def test_fallback_directory_and_answer(self):
        expect = os.path.join(self.runtime, "memfit-%d" % os.getuid(), "pid-%d" % os.getpid())
        self.assertEqual(memfit.channel_dir(), expect)
        requests = []
        a = memfit.answer_cleanup_requests(interval=0.02, on_request=requests.append)
        try:
            self.assertEqual(os.stat(expect).st_mode & 0o777, 0o700)
            self.assertEqual(os.stat(os.path.dirname(expect)).st_mode & 0o777, 0o700)
            _cleanup._write_atomic(expect, "cleanup.request", {"v": 1, "id": "abc", "time": 1})
            self.assertTrue(self.wait_for(os.path.join(expect, "cleanup.done")))
            done = json.load(open(os.path.join(expect, "cleanup.done")))
            self.assertEqual(done["id"], "abc")
            self.assertEqual(done["v"], 1)
            self.assertIn("malloc_trim", done["actions"])
            self.assertGreater(done["rss_before_bytes"], 0)
            self.assertFalse(os.path.exists(os.path.join(expect, "cleanup.request")))
            self.assertEqual(requests[0]["id"], "abc")
            # addressed to another process: left alone
            _cleanup._write_atomic(expect, "cleanup.request", {"v": 1, "id": "x", "pid": 1})
            time.sleep(0.2)
            self.assertTrue(os.path.exists(os.path.join(expect, "cleanup.request")))
            self.assertEqual(a.answered, 1)
        finally:
            a.stop()
        self.assertFalse(os.path.exists(expect), "the directory it made is removed")

    def test_under_monitor_uses_state_dir(self):
        d = tempfile.mkdtemp(dir=self.runtime)
        os.environ["MEMFIT_PRESSURE_FILE"] = os.path.join(d, "state.json")
        self.assertEqual(memfit.channel_dir(), d)
        a = memfit.answer_cleanup_requests(interval=0.02)
        try:
            _cleanup._write_atomic(d, "cleanup.request", {"v": 1, "id": "m1"})
            self.assertTrue(self.wait_for(os.path.join(d, "cleanup.done")))
        finally:
            a.stop()
        self.assertTrue(os.path.isdir(d), "the monitor's directory is not removed")

    def test_refuses_foreign_directory(self):
        parent = os.path.join(self.runtime, "memfit-%d" % os.getuid())
        os.mkdir(parent, 0o777)
        os.chmod(parent, 0o777)
        with self.assertRaises(PermissionError):
            memfit.answer_cleanup_requests()


if __name__ == "__main__":
    unittest.main()
