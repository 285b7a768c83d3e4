"""Fixtures for the simulator conformance suite (tests/sim).

The session simulator and the per-test repository come from tests/conftest.py
(`lakefs`, `repo`). This file adds a boto3 client, a factory for extra
simulators (own data dir, own secret, kill -9) that are always stopped, and
a marker registration; shared helpers live in sim_helpers.py.
"""
import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes several seconds; still cheap enough to run by default")


@pytest.fixture
def s3(lakefs):
    return lakefs.s3()


@pytest.fixture
def sim_factory(lakefs, tmp_path):
    """sim_factory(**Sim kwargs) -> a started extra simulator in this
    test's tmp dir; stopped (by its own PID) at teardown. The Sim class is
    taken from the session fixture, so tests/conftest.py's interface is the
    only one used."""
    started = []
    sim_cls = type(lakefs)

    def make(name="extra", **kw):
        sim = sim_cls(tmp_path / name / "data", **kw)
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        started.append(sim)
        return sim.start()

    yield make
    for sim in started:
        sim.stop()
