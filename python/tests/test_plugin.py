"""The pytest plugin seen from outside, through pytester (a pytest run inside the test):
--troupe-keep, the troupe_up factory, and a cluster that never comes up."""

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import DATA

import pytest

import troupe


@pytest.fixture(autouse=True)
def inner_pytest_finds_troupe(monkeypatch):
    """The inner pytest runs elsewhere: it imports this very copy of the package."""
    src = str(Path(troupe.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))


def kept_dirs(output):
    return sorted({Path(p) for p in re.findall(r"^state directory kept: (\S+)$", output, re.M)})


def is_down(state_dir):
    status = subprocess.run(
        [troupe.find_troupe(), "status", "--state-dir", str(state_dir)], capture_output=True
    )
    return status.returncode == 5


def test_troupe_keep_keeps_the_state_dir_of_a_passing_test(pytester):
    pytester.makepyfile(
        f"""
        from troupe.pytest_plugin import troupe_cluster

        one = troupe_cluster({str(DATA / "one-etcd.toml")!r})

        def test_passes(one):
            assert one.wait_leader() == "main-1"
        """
    )
    result = pytester.runpytest_subprocess("-p", "troupe.pytest_plugin", "--troupe-keep")
    result.assert_outcomes(passed=1)
    [kept] = kept_dirs(result.stdout.str())
    try:
        assert (kept / "nodes" / "main-1" / "node.log").exists()
        assert is_down(kept)
    finally:
        shutil.rmtree(kept)


def test_the_factory_fixture_brings_clusters_up_and_down_within_a_test(pytester):
    pytester.makepyfile(
        f"""
        import json
        from pathlib import Path

        def test_two_clusters(troupe_up):
            a = troupe_up({str(DATA / "one-etcd.toml")!r})
            b = troupe_up({str(DATA / "one-etcd.toml")!r})
            assert a.state_dir != b.state_dir
            assert a.node("main-1").url("client") != b.node("main-1").url("client")
            Path("dirs.json").write_text(json.dumps([str(a.state_dir), str(b.state_dir)]))
        """
    )
    result = pytester.runpytest_subprocess("-p", "troupe.pytest_plugin")
    result.assert_outcomes(passed=1)
    assert kept_dirs(result.stdout.str()) == []
    for d in (pytester.path / "dirs.json").read_text().strip("[]").split(", "):
        assert not Path(d.strip('"')).exists(), "a passing test's state dir is removed"


def test_a_cluster_that_never_comes_up_fails_the_test_with_troupes_account(pytester):
    pytester.makepyfile(
        f"""
        from troupe.pytest_plugin import troupe_cluster

        broken = troupe_cluster({str(DATA / "never-ready.toml")!r})

        def test_never_runs(broken):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "troupe.pytest_plugin")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "never-ready.toml failed (exit 3)" in out, out
    assert "node `main-1` was not ready after" in out, out  # troupe's account, with the log
    [kept] = kept_dirs(out)
    try:
        assert (kept / "nodes" / "main-1" / "node.log").exists()
    finally:
        shutil.rmtree(kept)


def test_a_failing_test_gets_the_last_lines_of_each_log(pytester):
    pytester.makepyfile(
        f"""
        from troupe.pytest_plugin import troupe_cluster

        one = troupe_cluster({str(DATA / "one-etcd.toml")!r}, scope="module")

        def test_passes(one):
            one.wait_leader()

        def test_fails(one):
            assert one.kill("main:leader") == ["nobody"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "troupe.pytest_plugin", "--troupe-log-lines", "3")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    [kept] = kept_dirs(out)
    try:
        title = f"troupe logs: main-1 (killed; last 3 lines of {kept / 'nodes' / 'main-1' / 'node.log'})"
        lines = out.splitlines()
        at = next(i for i, line in enumerate(lines) if title in line)
        section = lines[at + 1 : at + 4]
        assert all(line.startswith("{") for line in section), section  # etcd's JSON log lines
        assert is_down(kept)
    finally:
        shutil.rmtree(kept)
