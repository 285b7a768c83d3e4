"""Test knobs: injected faults, added latency and request statistics.

Faults and latency apply to S3 gateway requests only, never to /_sim/ or
/api/. Each S3 request draws once from a seeded generator, in arrival order,
whether it faults and how, so a run with the same --seed and the same
request sequence injects the same faults. The fault is decided before any
work is done, so a faulted request never mutates state. Kinds:
  error500   500 InternalError document
  slowdown   503 SlowDown document
  reset      the connection is closed with SO_LINGER 0 (RST), no response
  truncate   GetObject only: full headers and Content-Length, part of the
             body, then the connection is closed
"""
import random
import threading

FAULT_KINDS = ("error500", "slowdown", "reset")
GET_FAULT_KINDS = FAULT_KINDS + ("truncate",)


class Knobs:
    def __init__(self, fail_rate=0.0, latency_ms=0, seed=None):
        self._lock = threading.Lock()
        self.fail_rate = float(fail_rate)
        self.latency_ms = int(latency_ms)
        self._rng = random.Random(seed)
        self.reset_stats()

    # -- faults and latency ----------------------------------------------
    def settings(self):
        with self._lock:
            return {"fail_rate": self.fail_rate, "latency_ms": self.latency_ms}

    def configure(self, fail_rate=None, latency_ms=None):
        with self._lock:
            if fail_rate is not None:
                rate = float(fail_rate)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError("fail_rate must be within [0, 1]")
                self.fail_rate = rate
            if latency_ms is not None:
                ms = int(latency_ms)
                if ms < 0:
                    raise ValueError("latency_ms must not be negative")
                self.latency_ms = ms
        return self.settings()

    def draw_fault(self, operation):
        """None, or the fault kind to inject into this S3 request."""
        with self._lock:
            if self.fail_rate <= 0.0:
                return None
            if self._rng.random() >= self.fail_rate:
                return None
            kinds = GET_FAULT_KINDS if operation == "GetObject" else FAULT_KINDS
            kind = self._rng.choice(kinds)
            self._faults += 1
            return kind

    # -- statistics --------------------------------------------------------
    def reset_stats(self):
        with self._lock:
            self._requests = {}
            self._bytes_in = 0
            self._bytes_out = 0
            self._faults = 0

    def count_request(self, operation):
        with self._lock:
            self._requests[operation] = self._requests.get(operation, 0) + 1

    def add_bytes(self, bytes_in=0, bytes_out=0):
        with self._lock:
            self._bytes_in += bytes_in
            self._bytes_out += bytes_out

    def stats(self):
        with self._lock:
            return {"requests": dict(self._requests), "bytes_in": self._bytes_in,
                    "bytes_out": self._bytes_out, "faults": self._faults}
