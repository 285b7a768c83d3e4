"""Shared pytest fixtures: one local lakeFS gateway per test session.

Every integration suite (tests/sim, tests/integration) reuses the `lakefs`
fixture below. It starts tests/lakefs_sim/server.py on a free loopback port
in a temporary data directory and stops it (by PID) when the session ends.
Its storage supports presigned URLs (the storage endpoint of
tests/lakefs_sim/storage.py). `other_sim(*flags)` starts, once per session
and flag set, another simulator with extra server flags (`--no-presign`,
`--presign-expiry 2`, ...), for the cases the session one cannot show.

Under CI (CI=true in the environment, as .ci/run sets it) a skipped test is
a failed one: CI's machine is set up to run every test, so a skip there
means something it needs went missing, and a green run must not hide that.
Elsewhere a skip stays a skip, with its reason in the summary (-rs).
"""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import base64
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "lakefs_sim" / "server.py"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# The seed of every simulator's fault draw in this session: printed in the
# header, and LAKEFUSE_SIM_SEED=N replays a run's faults (same requests in
# the same order, same faults).
SIM_SEED = int(os.environ.get("LAKEFUSE_SIM_SEED") or random.SystemRandom().randrange(1, 2 ** 31))

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def pytest_report_header(config):
    return f"lakefs_sim fault seed: {SIM_SEED} (LAKEFUSE_SIM_SEED={SIM_SEED} replays it)"


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"lakefs_sim fault seed {SIM_SEED}: "
                                f"LAKEFUSE_SIM_SEED={SIM_SEED} replays this run's faults")


def under_ci():
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and under_ci() and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"skipped under CI=true, where every test must run: {reason}")


def boto_config(**kw):
    """The seed docs' client settings: path style, and checksums only when
    required (botocore >= 1.36 would otherwise send the trailer mode that
    older lakeFS rejects). Debian's botocore predates the option and never
    sends trailers, so the option is passed only when it is known."""
    from botocore.config import Config
    base = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                signature_version="s3v4")
    base.update(kw)
    try:
        return Config(request_checksum_calculation="when_required",
                      response_checksum_validation="when_required", **base)
    except TypeError:
        return Config(**base)


def _drop_expect_continue(request, **_):
    """Sends PUT/POST bodies without "Expect: 100-continue". botocore < 1.31
    keeps the status line of a final answer that arrived instead of "100
    Continue" (a 0-byte PUT, or an early 404) on the pooled connection and
    misreads the next expect-request's response there: a 60 s stall and a
    retry. Go servers (lakeFS) and the simulator both answer such requests
    without "100 Continue", so the header is simply not sent."""
    request.headers.pop("Expect", None)


class Sim:
    """A running simulator and helpers to talk to it."""

    def __init__(self, data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                 extra_args=()):
        self.data_dir = pathlib.Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.extra_args = list(extra_args)
        self.port = 0
        self.storage_port = 0       # kept across restarts, as a real store's address is
        self.scheme = "http"
        self.proc = None
        self._log = None
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")

    # -- process control -------------------------------------------------
    def start(self, timeout=20):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [PYTHON, str(SERVER), "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir),
                "--access-key-id", self.access_key,
                "--secret-access-key", self.secret_key] + self.extra_args
        if "--seed" not in self.extra_args:
            args += ["--seed", str(SIM_SEED)]
        if self.storage_port and "--storage-port" not in self.extra_args:
            args += ["--storage-port", str(self.storage_port)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self._log)
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"listening on "):
                url = line.decode().split()[-1]
                self.scheme = url.split(":", 1)[0]
                self.port = int(url.rsplit(":", 1)[1])
                try:
                    storage = (self.storage_info() or {}).get("endpoint")
                except OSError:         # TLS with a certificate urllib does not trust
                    storage = None
                if storage:
                    self.storage_port = int(storage.rsplit(":", 1)[1])
                return self
        self.stop()
        raise RuntimeError(f"simulator did not start: {line!r}; see {self.log_path}")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def endpoint(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def restart(self, kill9=False):
        """Stops (SIGKILL if kill9) and starts again on the same port and
        data directory."""
        self.stop(signal.SIGKILL if kill9 else signal.SIGTERM)
        return self.start()

    # -- clients ---------------------------------------------------------
    def s3(self, **config_kw):
        import boto3
        client = boto3.client("s3", endpoint_url=self.endpoint,
                              aws_access_key_id=self.access_key,
                              aws_secret_access_key=self.secret_key,
                              region_name="us-east-1",
                              config=boto_config(**config_kw))
        client.meta.events.register("before-send.s3", _drop_expect_continue)
        return client

    def _http(self, method, path, body=None, headers=None, auth=True):
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if auth:
            tok = base64.b64encode(f"{self.access_key}:{self.secret_key}".encode())
            hdrs["Authorization"] = "Basic " + tok.decode()
        req = urllib.request.Request(self.endpoint + path, data=data,
                                     method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return status, parsed

    def api(self, method, path, body=None, expect=None, auth=True):
        """Calls /api/v1<path>; returns (status, json). With expect, asserts
        the status."""
        status, parsed = self._http(method, "/api/v1" + path, body, auth=auth)
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {parsed}"
        return status, parsed

    def stats(self):
        return self._http("GET", "/_sim/stats", auth=False)[1]

    def reset_stats(self):
        self._http("POST", "/_sim/stats/reset", auth=False)

    def set_faults(self, fail_rate=0.0, latency_ms=0, kinds=None, rules=(), seed=None,
                   latency_jitter_ms=0, clock_skew_s=0, storage=None):
        """Sets every fault knob (tests/lakefs_sim/knobs.py): kinds None is
        the default (before-work) kinds; rules replace those in force; a
        seed restarts the random draw. fail_rate, latency_ms and kinds are
        the gateway's; storage (a dict of the same three) is the storage
        endpoint's, off unless given. set_faults() turns all faults off,
        jitter and clock skew included."""
        sto = {"fail_rate": 0.0, "latency_ms": 0, "kinds": None}
        sto.update(storage or {})
        doc = {"fail_rate": fail_rate, "latency_ms": latency_ms, "kinds": kinds,
               "rules": list(rules), "latency_jitter_ms": latency_jitter_ms,
               "clock_skew_s": clock_skew_s, "storage": sto}
        if seed is not None:
            doc["seed"] = seed
        status, body = self._http("POST", "/_sim/faults", doc, auth=False)
        assert status == 200, body
        return body

    def faults(self):
        """The fault settings in force, spent rules gone."""
        return self._http("GET", "/_sim/faults", auth=False)[1]

    def set_secret(self, access_key, secret_key):
        """Gives access_key a new secret on the running gateway (a new key
        if unknown); secret_key None revokes it (/_sim/credentials)."""
        status, body = self._http("POST", "/_sim/credentials",
                                  {"access_key_id": access_key,
                                   "secret_access_key": secret_key}, auth=False)
        assert status == 200, body
        return body

    def restore_secret(self):
        """The simulator's own key and secret again, as at start."""
        return self.set_secret(self.access_key, self.secret_key)

    def storage_info(self):
        """{"endpoint", "presign", "multipart", "expiry"} of the storage
        endpoint presigned URLs point at."""
        return self._http("GET", "/_sim/storage", auth=False)[1]

    # -- lakeFS conveniences ---------------------------------------------
    def create_repo(self, name, default_branch="main"):
        _, repo = self.api("POST", "/repositories",
                           {"name": name, "default_branch": default_branch,
                            "storage_namespace": f"local://{name}"}, expect=201)
        return repo

    def create_branch(self, repo, name, source="main"):
        self.api("POST", f"/repositories/{repo}/branches",
                 {"name": name, "source": source}, expect=201)

    def commit(self, repo, branch, message="commit"):
        _, c = self.api("POST", f"/repositories/{repo}/branches/{branch}/commits",
                        {"message": message}, expect=201)
        return c["id"]

    def create_tag(self, repo, tag, ref):
        self.api("POST", f"/repositories/{repo}/tags", {"id": tag, "ref": ref},
                 expect=201)


def new_repo_name(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def lakefs(tmp_path_factory):
    sim = Sim(tmp_path_factory.mktemp("lakefs") / "data").start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def other_sim(tmp_path_factory):
    """other_sim(*flags) -> a started Sim with those extra server flags,
    one per distinct flag set for the whole session (stopped at its end).
    Faults are switched off whenever one is handed out."""
    sims = {}

    def get(*flags):
        key = tuple(str(f) for f in flags)
        sim = sims.get(key)
        if sim is None or sim.proc is None or sim.proc.poll() is not None:
            if sim is not None:
                sim.stop()
            sim = Sim(tmp_path_factory.mktemp("lakefs-other") / "data",
                      extra_args=list(key)).start()
            sims[key] = sim
        sim.set_faults()
        return sim

    yield get
    for sim in sims.values():
        sim.stop()


@pytest.fixture
def repo(lakefs):
    """A fresh repository (default branch main) per test; faults (clock
    skew included) are off and the simulator's own secret is in force
    before and after the test, and a gateway an earlier test left stopped
    is started again, so no test depends on the one before it."""
    if lakefs.proc is None or lakefs.proc.poll() is not None:
        lakefs.stop()
        lakefs.start()
    lakefs.set_faults(0.0, 0)
    lakefs.restore_secret()
    name = new_repo_name()
    lakefs.create_repo(name)
    yield name
    if lakefs.proc is not None:
        lakefs.set_faults(0.0, 0)
        lakefs.restore_secret()
