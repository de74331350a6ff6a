"""The run descriptor as typed dataclasses: what `troupe status --json` prints and
`<state-dir>/cluster.json` holds (the Rust types are in the `troupe-spec` crate).

Parsing is lenient on purpose: keys this version does not know are ignored and missing optional
keys take their defaults, so a newer troupe binary does not break an older client.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional


def _path(v: Any) -> Optional[Path]:
    return None if v is None else Path(v)


@dataclass(frozen=True)
class NodeTls:
    """A node's certificate paths (keys are mode 0600)."""

    #: Server certificate (server and client auth).
    cert: Path
    key: Path
    #: Client certificate (client auth only), CN = node name.
    client_cert: Path
    client_key: Path

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NodeTls:
        return cls(
            cert=Path(d["cert"]),
            key=Path(d["key"]),
            client_cert=Path(d["client_cert"]),
            client_key=Path(d["client_key"]),
        )


@dataclass(frozen=True)
class Node:
    """One node as the descriptor saw it when it was read: a snapshot, not a live handle."""

    #: ``<cluster>-<index>``, e.g. ``main-1``.
    name: str
    cluster: str
    index: int
    #: ``starting``, ``ready``, ``stopped``, ``killed``, ``paused`` or ``exited``.
    state: str
    host: str
    pid: Optional[int] = None
    ports: Dict[str, int] = field(default_factory=dict)
    urls: Dict[str, str] = field(default_factory=dict)
    data_dir: Optional[Path] = None
    log: Optional[Path] = None
    tls: Optional[NodeTls] = None
    #: The CA that issued this node's certificates (the run's default CA unless the spec
    #: names another with ``ca = "..."``); None without TLS.
    ca: Optional[Path] = None
    time_to_ready_ms: Optional[float] = None
    #: How the last process exited (``exit code 1``, ``killed by SIGKILL``).
    exit: Optional[str] = None
    #: ``leader`` or ``follower`` when the cluster has a role probe.
    role: Optional[str] = None
    #: With ``network = "proxies"``: peer -> port name -> this node's link proxy address.
    links: Dict[str, Dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], ca: Optional[Path] = None) -> Node:
        return cls(
            name=d["name"],
            cluster=d["cluster"],
            index=int(d["index"]),
            state=d["state"],
            host=d["host"],
            pid=d.get("pid"),
            ports={k: int(v) for k, v in (d.get("ports") or {}).items()},
            urls=dict(d.get("urls") or {}),
            data_dir=_path(d.get("data_dir")),
            log=_path(d.get("log")),
            tls=NodeTls.from_json(d["tls"]) if d.get("tls") else None,
            ca=_path((d.get("tls") or {}).get("ca")) or ca,
            time_to_ready_ms=d.get("time_to_ready_ms"),
            exit=d.get("exit"),
            role=d.get("role"),
            links={k: dict(v) for k, v in (d.get("links") or {}).items()},
        )

    def url(self, port: str) -> str:
        """The URL of a named port, e.g. ``https://127.0.0.1:21379``."""
        try:
            return self.urls[port]
        except KeyError:
            raise KeyError(f"node {self.name} has no port `{port}`; ports: {', '.join(self.urls)}") from None

    def port(self, name: str) -> int:
        """The number of a named port."""
        try:
            return self.ports[name]
        except KeyError:
            raise KeyError(f"node {self.name} has no port `{name}`; ports: {', '.join(self.ports)}") from None

    def addr(self, port: str) -> str:
        """``host:port`` of a named port (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port(port)}"

    def ssl_context(self, client_cert: bool = True) -> ssl.SSLContext:
        """A client TLS context that trusts only the run's CA and, unless told otherwise,
        presents this node's client certificate (for servers with client cert auth)."""
        if self.ca is None or self.tls is None:
            raise ValueError(f"node {self.name} has no TLS (the spec has no [tls] table)")
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if client_cert:
            ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return ctx


@dataclass(frozen=True)
class Failover:
    """The leader was stopped, killed or paused, and (once ``to`` is set) another took over."""

    #: The leader troupe acted on.
    from_: str
    #: ``kill``, ``stop``, ``pause`` or ``restart``.
    cause: str
    at_ms: int
    to: Optional[str] = None
    #: From acting on the old leader to seeing the new one.
    ms: Optional[float] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Failover:
        return cls(from_=d["from"], cause=d["cause"], at_ms=int(d["at_ms"]), to=d.get("to"), ms=d.get("ms"))


@dataclass(frozen=True)
class LeaderChange:
    at_ms: int
    #: None: no node claimed leadership.
    leader: Optional[str]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LeaderChange:
        return cls(at_ms=int(d["at_ms"]), leader=d.get("leader"))


@dataclass(frozen=True)
class ClusterStatus:
    """A cluster's leader and timings."""

    name: str
    has_role_probe: bool = False
    leader: Optional[str] = None
    #: From the first node's spawn to the last node's readiness.
    formation_ms: Optional[float] = None
    leader_changes: List[LeaderChange] = field(default_factory=list)
    failovers: List[Failover] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ClusterStatus:
        return cls(
            name=d["name"],
            has_role_probe=bool(d.get("has_role_probe", False)),
            leader=d.get("leader"),
            formation_ms=d.get("formation_ms"),
            leader_changes=[LeaderChange.from_json(c) for c in d.get("leader_changes") or []],
            failovers=[Failover.from_json(f) for f in d.get("failovers") or []],
        )


@dataclass(frozen=True)
class FaultRecord:
    """A network fault and when it was in force."""

    id: int
    #: E.g. ``partition main-1 | main-2 main-3``.
    description: str
    started_at_ms: int
    healed_at_ms: Optional[int] = None
    seed: Optional[int] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FaultRecord:
        return cls(
            id=int(d["id"]),
            description=d["description"],
            started_at_ms=int(d["started_at_ms"]),
            healed_at_ms=d.get("healed_at_ms"),
            seed=d.get("seed"),
        )

    @property
    def active(self) -> bool:
        return self.healed_at_ms is None


@dataclass(frozen=True)
class Status:
    """The whole run: the descriptor with live states, roles, timings and faults."""

    name: str
    state_dir: Path
    supervisor_pid: int
    ca: Optional[Path] = None
    nodes: List[Node] = field(default_factory=list)
    clusters: List[ClusterStatus] = field(default_factory=list)
    faults: List[FaultRecord] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Status:
        ca = _path(d.get("ca"))
        return cls(
            name=d["name"],
            state_dir=Path(d["state_dir"]),
            supervisor_pid=int(d["supervisor_pid"]),
            ca=ca,
            nodes=[Node.from_json(n, ca) for n in d.get("nodes") or []],
            clusters=[ClusterStatus.from_json(c) for c in d.get("clusters") or []],
            faults=[FaultRecord.from_json(f) for f in d.get("faults") or []],
        )

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named `{name}`; nodes: {', '.join(n.name for n in self.nodes)}")

    def cluster(self, name: str) -> ClusterStatus:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(f"no cluster named `{name}`; clusters: {', '.join(c.name for c in self.clusters)}")


#: The descriptor and the live status are one shape.
Descriptor = Status
