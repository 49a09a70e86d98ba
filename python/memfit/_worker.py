"""The polling daemon thread behind the package's watchers."""

import threading


class Poller:
    """Calls ``self._poll()`` every ``interval`` seconds from a daemon thread until ``stop()``.

    Also a context manager (``stop()`` on exit); ``running`` says whether the
    thread is alive.
    """

    def __init__(self, interval, name):
        if interval <= 0:
            raise ValueError("interval must be positive, got %r" % (interval,))
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _start(self):
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def _poll(self):
        raise NotImplementedError

    def _stopped(self):
        """Runs once the thread is stopped (or asked to stop, from inside it)."""

    def stop(self, timeout=None):
        """Stops the thread and waits for it (except when called from inside it)."""
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)
        self._stopped()

    @property
    def running(self):
        return self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
