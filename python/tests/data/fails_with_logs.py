"""Fails on purpose: crates/troupe-cli/tests/python.rs runs it and checks that pytest's report
shows the node's log and the kept state directory. Not collected by the suite (no test_ prefix)."""

from troupe.pytest_plugin import troupe_cluster

etcd = troupe_cluster("one-etcd.toml")


def test_fails_and_shows_the_logs(etcd):
    assert etcd.wait_leader() == "main-1"
    assert False, "failing on purpose"
