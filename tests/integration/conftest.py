"""Fixtures for the lakefuse integration tests (real FUSE mounts against the
local lakeFS gateway simulator of tests/conftest.py).

  mount(uri=None, *extra_args, foreground=True, mountpoint=None, cache=None, ...)
      -> Mount
      Starts `build/lakefuse mount --foreground --endpoint <sim> --cache-dir
      <tmp> --log-file <tmp>/lakefuse.log --log-level debug [--presign off]
      [extra] [uri] <tmp mountpoint>` with the credentials in the environment
      (never on argv; --presign off unless extra names a mode, or
      LAKEFUSE_TEST_PRESIGN=auto|on runs the suite over presigned URLs), waits (bounded) until the mount is live and returns a Mount
      (.path, .proc, .pid, .log_path, .stderr_path, .log()).
      With foreground=False it is mount_bg(..., check=True).mount. A
      mountpoint or cache directory may be given (a second mount where a
      killed daemon left a stale one: live means a daemon answers there).
  mount_bg(uri=None, *extra_args, ...) -> BgResult
      Runs `lakefuse mount` WITHOUT --foreground and records whether the
      mount was live the moment the command returned (.returncode, .stdout,
      .stderr, .elapsed, .live_on_return, .mount). log_file=False leaves out
      --log-file (the daemon then logs to syslog); log_level= sets the level.

Teardown always unmounts (fusermount3 -u, then -u -z if busy, repeated for
stacked mounts), waits (bounded) for the daemon to exit, kills it by PID if
it does not, and fails the test if a foreground daemon exited non-zero or
any daemon left an AddressSanitizer/UndefinedBehaviorSanitizer report in its
stderr, its --log-file or its sanitizer log files. A watchdog per mount
lazily unmounts and SIGKILLs the daemon after `watchdog` seconds, so a hung
daemon fails the test instead of blocking the run forever.

Every test is skipped, with the reason, when this machine has no usable FUSE
(/dev/fuse, or $LAKEFUSE_FUSE_DEV, missing or not read-writable; fusermount3
missing); under CI=true those skips are failures (tests/conftest.py). A
binary that is missing or cannot run (`lakefuse mount --help` fails) fails
every test everywhere: a daemon broken at start must never look like a
machine without FUSE.
Run with Debian's python: /usr/bin/python3 -m pytest tests/integration
"""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from lf_helpers import BINARY, PipeLimit, find_daemon_pids, is_mounted, mounts_at, pid_alive
MOUNT_TIMEOUT = 20          # s until a foreground mount must be live
PRESIGN_DEFAULT = os.environ.get("LAKEFUSE_TEST_PRESIGN", "off")
EXIT_TIMEOUT = 20           # s for the daemon to exit after unmount
DEFAULT_WATCHDOG = 300      # s a single mount may live

SANITIZER_RE = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"SUMMARY: UndefinedBehaviorSanitizer|WARNING: ThreadSanitizer|"
    r"SUMMARY: AddressSanitizer")

_CRED_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
              "LAKECTL_SERVER_ENDPOINT_URL")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes tens of seconds; still part of the default run")


# The FUSE device the machine offers; tests of this check point it elsewhere.
FUSE_DEV = os.environ.get("LAKEFUSE_FUSE_DEV", "/dev/fuse")
_checked = {}


def unavailable_reason():
    """Why this machine cannot mount FUSE filesystems, or None."""
    if "fuse" not in _checked:
        reason = None
        if not os.path.exists(FUSE_DEV):
            reason = f"{FUSE_DEV} is missing (no FUSE in this environment)"
        elif not os.access(FUSE_DEV, os.R_OK | os.W_OK):
            reason = f"{FUSE_DEV} is not readable and writable by this user"
        elif not shutil.which("fusermount3"):
            reason = "fusermount3 is not installed (apt-get install fuse3)"
        _checked["fuse"] = reason
    return _checked["fuse"]


def broken_binary_reason():
    """Why the lakefuse binary under test cannot run, or None."""
    if "binary" not in _checked:
        reason = None
        if not os.path.exists(BINARY):
            reason = f"{BINARY} is not built (scripts/build.sh)"
        else:
            try:
                r = subprocess.run([str(BINARY), "mount", "--help"], capture_output=True,
                                   timeout=60)
                if r.returncode != 0:
                    reason = (f"`{BINARY} mount --help` exited {r.returncode}: "
                              f"{r.stderr.decode(errors='replace')[-2000:]}")
            except (OSError, subprocess.TimeoutExpired) as e:
                reason = f"{BINARY} cannot be run: {e}"
        _checked["binary"] = reason
    return _checked["binary"]


@pytest.fixture(scope="session", autouse=True)
def _pipes_for_splice():
    """lakefuse splices big sequential reads through 4 MiB pipes; where
    root may not make them (no CAP_SYS_RESOURCE), the session raises
    fs.pipe-max-size so the tests exercise that path, and restores it."""
    limit = PipeLimit().raise_()
    yield
    limit.restore()


@pytest.fixture(autouse=True)
def _require_fuse():
    broken = broken_binary_reason()
    if broken:
        pytest.fail(f"the lakefuse binary cannot run: {broken}", pytrace=False)
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


def answers(path):
    """Whether a daemon answers statfs at path. Only for a mount point that
    had a mount before ours started (a killed daemon's, which the new one
    clears): mountinfo cannot tell that one from ours, since device numbers
    and mount IDs are reused. Checked before is_mounted, so the moment
    between the old mount's removal and the new one's arrival is not taken
    for a live mount. The watchdog covers a daemon that hangs the call."""
    try:
        os.statvfs(path)
        return True
    except OSError:
        return False


def lakefuse_env(access_key, secret_key, extra=None, san_dir=None):
    """The daemon's environment: ours minus any inherited credentials, plus
    the given ones (AWS_* names), plus sanitizer log paths."""
    env = {k: v for k, v in os.environ.items() if k not in _CRED_VARS}
    if access_key is not None:
        env["AWS_ACCESS_KEY_ID"] = access_key
    if secret_key is not None:
        env["AWS_SECRET_ACCESS_KEY"] = secret_key
    if san_dir is not None:
        # Sanitizer reports go to files too: a background daemon's stderr is
        # /dev/null. log_path gets ".<pid>" appended by the runtime.
        env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                      f"log_path={san_dir}/asan"]))
        env["UBSAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("UBSAN_OPTIONS"),
                                                       "print_stacktrace=1",
                                                       f"log_path={san_dir}/ubsan"]))
        env["TSAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("TSAN_OPTIONS"),
                                                      f"log_path={san_dir}/tsan"]))
    env.update(extra or {})
    return env


class Mount:
    """One lakefuse mount started by the fixture."""

    def __init__(self, path, cmd, log_path, stderr_path, san_dir, foreground):
        self.path = pathlib.Path(path)
        self.cmd = cmd
        self.log_path = pathlib.Path(log_path)
        self.stderr_path = pathlib.Path(stderr_path)
        self.san_dir = pathlib.Path(san_dir)
        self.foreground = foreground
        self.proc = None            # foreground: the Popen
        self.pid = None
        self.expect_nonzero_exit = False
        self.watchdog_fired = False
        self._timer = None

    def __fspath__(self):
        return str(self.path)

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n=40):
        """The last n lines of the daemon's log and stderr, for messages."""
        lines = self.log().splitlines()[-n:]
        err = self.stderr().splitlines()[-n:]
        return ("--- lakefuse log tail:\n" + "\n".join(lines) +
                "\n--- lakefuse stderr tail:\n" + "\n".join(err))

    def sanitizer_reports(self):
        found = []
        texts = [("log", self.log()), ("stderr", self.stderr())]
        if self.san_dir.is_dir():
            for p in sorted(self.san_dir.iterdir()):
                texts.append((p.name, p.read_text(errors="replace")))
        for name, text in texts:
            m = SANITIZER_RE.search(text)
            if m:
                start = max(0, m.start() - 200)
                found.append(f"{name}: {text[start:start + 3000]}")
        return found

    # -- watchdog -------------------------------------------------------
    def arm_watchdog(self, seconds):
        if seconds:
            self._timer = threading.Timer(seconds, self._abort)
            self._timer.daemon = True
            self._timer.start()

    def _abort(self):
        self.watchdog_fired = True
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True,
                       timeout=30)
        if self.pid and self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- teardown -------------------------------------------------------
    def unmount(self):
        """Unmounts (also stacked mounts), waits for the daemon, kills it by
        PID if needed. Returns a list of problems (strings)."""
        problems = []
        if self._timer:
            self._timer.cancel()
        if self.watchdog_fired:
            problems.append(f"{self.path}: watchdog fired: the mount was force-unmounted "
                            f"and the daemon killed (a test step hung)")
        for _ in range(8):
            if not is_mounted(self.path):
                break
            r = subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True,
                               text=True, timeout=30)
            if r.returncode != 0 and is_mounted(self.path):
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)],
                               capture_output=True, timeout=30)
        if is_mounted(self.path):
            problems.append(f"{self.path}: still mounted after fusermount3 -u/-u -z: "
                            f"{mounts_at(self.path)}")
        deadline = time.monotonic() + EXIT_TIMEOUT
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            problems.append(f"{self.path}: daemon pid {self.pid} did not exit within "
                            f"{EXIT_TIMEOUT}s of the unmount; killed")
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.proc is not None:
                self.proc.wait(timeout=10)
        if self.proc is not None:
            rc = self.proc.wait(timeout=10)
            if rc != 0 and not self.expect_nonzero_exit and not self.watchdog_fired:
                problems.append(f"{self.path}: daemon exited with status {rc}")
        problems += [f"{self.path}: sanitizer report: {r}" for r in self.sanitizer_reports()]
        return problems


class BgResult:
    """The outcome of `lakefuse mount` in background mode."""

    def __init__(self, path, returncode, stdout, stderr, elapsed, live_on_return, mount,
                 log_path=None):
        self.path = path
        self.log_path = log_path
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed
        self.live_on_return = live_on_return
        self.mount = mount

    def log(self):
        try:
            return pathlib.Path(self.log_path).read_text(errors="replace")
        except (TypeError, FileNotFoundError):
            return ""

    def __repr__(self):
        return (f"BgResult(rc={self.returncode}, elapsed={self.elapsed:.2f}s, "
                f"live_on_return={self.live_on_return}, stderr={self.stderr!r})")


class MountFactory:
    def __init__(self, lakefs, tmp_path):
        self.lakefs = lakefs
        self.tmp = tmp_path
        self.mounts = []
        self.n = 0

    def _paths(self):
        i = self.n
        self.n += 1
        sfx = "" if i == 0 else f"-{i}"
        mnt = self.tmp / f"mnt{sfx}"
        cache = self.tmp / f"cache{sfx}"
        log = self.tmp / f"lakefuse{sfx}.log"
        err = self.tmp / f"lakefuse{sfx}.stderr"
        san = self.tmp / f"sanitizer{sfx}"
        san.mkdir(parents=True, exist_ok=True)
        mnt.mkdir(parents=True, exist_ok=True)
        return mnt, cache, log, err, san

    def _cmd(self, uri, extra_args, foreground, endpoint, mountpoint, cache, log,
             log_level="debug"):
        cmd = [str(BINARY), "mount"]
        if foreground:
            cmd.append("--foreground")
        if endpoint is not False:   # False: leave it to LAKECTL_SERVER_ENDPOINT_URL
            cmd += ["--endpoint", endpoint or self.lakefs.endpoint]
        cmd += ["--cache-dir", str(cache)]
        if log is not None:         # None: the default log (syslog once in the background)
            cmd += ["--log-file", str(log)]
        cmd += ["--log-level", log_level]
        extra = [str(a) for a in extra_args]
        if not any(a.startswith("--presign") or "presign=" in a for a in extra):
            # The session gateway's storage presigns, and a mount would take
            # that path by itself (--presign auto): tests written for the
            # gateway's data path keep it unless LAKEFUSE_TEST_PRESIGN says
            # otherwise (auto or on: the same tests over presigned URLs).
            cmd += ["--presign", PRESIGN_DEFAULT]
        cmd += extra
        if uri:
            cmd.append(uri)
        cmd.append(str(mountpoint))
        return cmd

    def _env(self, access_key, secret_key, env, san):
        """None: the simulator's key; False: the variable is not set."""
        ak = self.lakefs.access_key if access_key is None else (access_key or None)
        sk = self.lakefs.secret_key if secret_key is None else (secret_key or None)
        return lakefuse_env(ak, sk, env, san)

    def __call__(self, uri=None, *extra_args, foreground=True, endpoint=None,
                 access_key=None, secret_key=None, env=None, mountpoint=None, cache=None,
                 timeout=MOUNT_TIMEOUT, watchdog=DEFAULT_WATCHDOG):
        if not foreground:
            return self.background(uri, *extra_args, endpoint=endpoint, access_key=access_key,
                                   secret_key=secret_key, env=env, mountpoint=mountpoint,
                                   cache=cache, watchdog=watchdog, check=True).mount
        mnt, cache_dir, log, err, san = self._paths()
        if mountpoint is not None:
            mnt = pathlib.Path(mountpoint)
        if cache is not None:
            cache_dir = pathlib.Path(cache)
        stale = is_mounted(mnt)
        cmd = self._cmd(uri, extra_args, True, endpoint, mnt, cache_dir, log)
        m = Mount(mnt, cmd, log, err, san, foreground=True)
        with open(err, "wb") as errf:
            m.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                      env=self._env(access_key, secret_key, env, san))
        m.pid = m.proc.pid
        self.mounts.append(m)
        m.arm_watchdog(watchdog)        # also covers a daemon that hangs the first stat
        deadline = time.monotonic() + timeout
        while True:
            if (not stale or answers(mnt)) and is_mounted(mnt) and os.path.ismount(mnt):
                break
            if m.proc.poll() is not None:
                m.expect_nonzero_exit = True
                pytest.fail(f"lakefuse exited with status {m.proc.returncode} before the "
                            f"mount became live: {' '.join(cmd)}\n{m.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"mount not live within {timeout}s: {' '.join(cmd)}\n{m.tail()}")
            time.sleep(0.05)
        return m

    def background(self, uri=None, *extra_args, endpoint=None, access_key=None,
                   secret_key=None, env=None, mountpoint=None, cache=None, timeout=60,
                   watchdog=DEFAULT_WATCHDOG, check=False, log_file=True,
                   log_level="debug"):
        """Runs `lakefuse mount` without --foreground. With check, asserts it
        succeeded and that the mount was live when the command returned.
        log_file=False leaves out --log-file (the daemon logs to syslog)."""
        mnt, cache_dir, log, err, san = self._paths()
        if mountpoint is not None:
            mnt = pathlib.Path(mountpoint)
        cache = pathlib.Path(cache) if cache is not None else cache_dir
        cmd = self._cmd(uri, extra_args, False, endpoint, mnt, cache,
                        log if log_file else None, log_level)
        t0 = time.monotonic()
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout,
                               env=self._env(access_key, secret_key, env, san))
            rc, out, errtext = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            rc, out = None, e.stdout or ""
            errtext = (e.stderr or b"").decode(errors="replace") if isinstance(
                e.stderr, bytes) else (e.stderr or "")
        elapsed = time.monotonic() - t0
        live = is_mounted(mnt)
        m = None
        if live or rc == 0:
            m = Mount(mnt, cmd, log, err, san, foreground=False)
            pids = [p for p in find_daemon_pids(BINARY, mnt) if pid_alive(p)]
            m.pid = pids[0] if pids else None
            self.mounts.append(m)
            m.arm_watchdog(watchdog)
        res = BgResult(mnt, rc, out, errtext, elapsed, live, m, log)
        if check:
            assert rc == 0, f"background mount failed: {res}"
            assert live, f"`lakefuse mount` returned before the mount was live: {res}"
            assert m.pid is not None, f"no daemon process found for {mnt}"
        return res

    def cleanup(self):
        problems = []
        for m in reversed(self.mounts):
            try:
                mine = m.unmount()
            except Exception as e:  # noqa: BLE001 - keep cleaning the others
                mine = [f"{m.path}: cleanup error {e!r}"]
            if mine:
                mine.append(m.tail(20))
            problems += mine
        self.mounts.clear()
        return problems


@pytest.fixture
def _mount_factory(lakefs, tmp_path):
    f = MountFactory(lakefs, tmp_path)
    yield f
    problems = f.cleanup()
    if problems:
        pytest.fail("lakefuse teardown problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def mount(_mount_factory):
    """mount(uri=None, *extra_args, foreground=True, **kw) -> Mount."""
    return _mount_factory


@pytest.fixture
def mount_bg(_mount_factory):
    """mount_bg(uri=None, *extra_args, check=False, **kw) -> BgResult."""
    return _mount_factory.background


@pytest.fixture
def s3(lakefs):
    return lakefs.s3(max_pool_connections=32)
