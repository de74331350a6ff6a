"""Drive troupe clusters from Python.

    from troupe import Cluster

    with Cluster.up("examples/etcd/cluster.toml") as c:
        old = c.wait_leader()
        c.kill("main:leader")
        assert c.wait_leader() != old
        print(c.node("main-1").url("client"), c.ca)

The client runs the ``troupe`` binary (``$TROUPE_BIN``, else ``troupe`` on PATH) and needs
nothing but the standard library. The pytest plugin (``troupe.pytest_plugin``, loaded
automatically once the package is installed) adds the ``troupe_cluster`` fixture factory.
"""

from .cluster import Cluster, find_troupe, run
from .descriptor import ClusterStatus, Descriptor, Failover, FaultRecord, LeaderChange, Node, NodeTls, Status
from .errors import (
    InvalidInput,
    Interrupted,
    NotRunning,
    StartFailed,
    StateDirBusy,
    TroupeError,
    TroupeNotFound,
    Undecided,
)

__all__ = [
    "Cluster",
    "ClusterStatus",
    "Descriptor",
    "Failover",
    "FaultRecord",
    "InvalidInput",
    "Interrupted",
    "LeaderChange",
    "Node",
    "NodeTls",
    "NotRunning",
    "StartFailed",
    "StateDirBusy",
    "Status",
    "TroupeError",
    "TroupeNotFound",
    "Undecided",
    "find_troupe",
    "run",
]
