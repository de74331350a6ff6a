"""The typed client against a real 3-member etcd cluster with mTLS: endpoints, certificates,
node operations, logs, errors that carry troupe's words, and `run` of a scenario."""

import json
import shutil
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import DATA, EXAMPLES
from troupe import Cluster, InvalidInput, NotRunning, TroupeError, run
from troupe.pytest_plugin import troupe_cluster

etcd = troupe_cluster(EXAMPLES / "etcd" / "cluster.toml", scope="module")


def health(node, context):
    with urllib.request.urlopen(node.url("client") + "/health", context=context, timeout=10) as r:
        return json.loads(r.read())


def healthy(node, context, within=10.0):
    """/health through `context` until it says true: an etcd with 100 ms elections on a busy
    machine may answer 503 for a moment while it elects a leader (an answer at all proves the
    TLS handshake worked)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return health(node, context)["health"] == "true"
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)  # a poll interval under a deadline


def processes_of(state_dir):
    """Pids of live processes whose command line names the state directory."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(state_dir).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass  # gone meanwhile
    return pids


def test_nodes_endpoints_certificates_and_ca(etcd):
    status = etcd.status()
    assert [n.name for n in status.nodes] == ["main-1", "main-2", "main-3"]
    assert all(n.state == "ready" for n in status.nodes)
    node = etcd.node("main-1")
    assert node.url("client") == f"https://127.0.0.1:{node.port('client')}"
    assert node.addr("peer") == f"127.0.0.1:{node.port('peer')}"
    assert etcd.ca is not None and etcd.ca.exists() and node.ca == etcd.ca
    assert node.tls is not None and node.tls.client_cert.exists()
    assert healthy(node, node.ssl_context())
    # Refused in the handshake, not answered: an HTTP error would mean the server let it in.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as refused:
        health(node, node.ssl_context(client_cert=False))
    assert not isinstance(refused.value, urllib.error.HTTPError), refused.value
    with pytest.raises(KeyError, match="no port `nope`; ports: client, peer"):
        node.url("nope")


def test_env_names_every_endpoint(etcd):
    env = etcd.env()
    assert env["TROUPE_MAIN_2_CLIENT_URL"] == etcd.node("main-2").url("client")
    assert env["TROUPE_CA"] == str(etcd.ca)
    assert env["TROUPE_STATE_DIR"] == str(etcd.state_dir)


def test_node_operations_return_the_nodes_they_acted_on(etcd):
    assert etcd.pause("main-3") == ["main-3"]
    assert etcd.node("main-3").state == "paused"
    assert etcd.resume("main-3") == ["main-3"]
    assert etcd.stop("main-3") == ["main-3"]
    assert etcd.node("main-3").state == "stopped"
    assert etcd.start("main-3") == ["main-3"]
    assert len(etcd.restart("main:followers")) == 2
    etcd.wait_ready(timeout=30)
    assert all(n.state == "ready" for n in etcd.status().nodes)
    leader = etcd.wait_leader("main", timeout=10)
    assert etcd.status().cluster("main").leader == leader


def test_logs_are_the_node_output(etcd):
    assert '"msg"' in etcd.logs("main-1", lines=20)
    assert len(etcd.logs("main-1", lines=3).splitlines()) == 3


def test_errors_carry_troupes_message(etcd):
    with pytest.raises(TroupeError) as e:
        etcd.kill("main-9")
    assert "main-9" in e.value.message, e.value.output
    assert e.value.code is not None and e.value.code != 0
    with pytest.raises(TroupeError, match="no node named `main-9`"):
        etcd.logs("main-9")


def test_an_invalid_spec_is_refused_with_a_hint():
    with pytest.raises(InvalidInput) as e:
        Cluster.up(DATA / "broken.toml")
    assert e.value.code == 2
    assert "binray" in e.value.output
    assert e.value.message and e.value.hint, e.value.output


def test_a_context_manager_takes_the_cluster_down_and_removes_its_state_dir():
    with Cluster.up(DATA / "one-etcd.toml", overrides={"name": "renamed", "clusters.main.nodes": 1}) as c:
        assert c.status().name == "renamed"
        assert c.wait_leader() == "main-1"
        state_dir = c.state_dir
        assert (state_dir / "cluster.json").exists()
        c.down()
        with pytest.raises(NotRunning) as e:
            c.status()
        assert e.value.code == 5 and "no troupe is running" in str(e.value), e.value.output
    assert not state_dir.exists()


def test_run_returns_the_json_report(tmp_path):
    report = run(DATA / "scenario.toml", run_dir=tmp_path / "run")
    assert report["verdict"] == "passed", report
    assert [s["name"] for s in report["steps"]][:2] == ["bring up one etcd member", "it elects itself"]


def test_a_partition_moves_the_leadership_to_the_majority():
    # Nodes in network namespaces: under root, root's path; otherwise troupe enters a user namespace.
    with Cluster.up(EXAMPLES / "etcd-partition" / "cluster.toml") as c:
        old = c.wait_leader()
        c.partition("main:leader", "main:followers")
        assert [f.active for f in c.status().faults] == [True]
        new = c.wait_leader()
        assert new != old
        c.heal()
        assert [f.active for f in c.status().faults] == [False]
        c.wait_ready()


def test_a_start_past_its_deadline_is_interrupted_and_leaves_nothing_running():
    with pytest.raises(TroupeError) as e:
        Cluster.up(DATA / "never-ready.toml", timeout=0.5)  # its probe would give up after 2 s
    assert "did not finish within 0.5s" in e.value.message
    assert "interrupted" in e.value.output, e.value.output
    state_dir = e.value.state_dir
    assert state_dir is not None
    try:
        with pytest.raises(NotRunning):
            Cluster(state_dir).status()
        # The supervisor may take a moment to exit after reporting: wait, with a deadline.
        deadline = time.monotonic() + 10
        while processes_of(state_dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processes_of(state_dir) == [], f"processes of {state_dir} still run"
    finally:
        shutil.rmtree(state_dir)
