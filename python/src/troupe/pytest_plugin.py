"""pytest plugin: clusters as fixtures, with their logs in the report of a failing test.

Declare a fixture per spec, with any scope, in a test module or a conftest.py::

    from troupe.pytest_plugin import troupe_cluster

    etcd = troupe_cluster("../examples/etcd/cluster.toml", scope="module")

    def test_failover(etcd):
        [old] = etcd.kill("main:leader")
        assert etcd.wait_leader() != old

or bring clusters up inside a test with the ``troupe_up`` fixture: ``troupe_up("spec.toml")``.

The cluster comes up in a fresh state directory before the first test that uses it and goes
down (gracefully) after the last. When a test using it fails, its report gets a section with
the state directory, which is then kept, and one with the end of each node's log; the kept
directories are listed again at the end of the session. ``--troupe-keep`` keeps every state
directory, ``--troupe-log-lines N`` sets how much of each log goes into a report.

Installed (``pip install ./python``), the plugin loads itself through its ``pytest11`` entry
point; otherwise load it with ``-p troupe.pytest_plugin``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Generator, Iterator, List, Mapping, Optional, Union

import pytest

from .cluster import Cluster
from .descriptor import Status
from .errors import TroupeError

SpecPath = Union[str, "os.PathLike[str]"]

_KEPT = pytest.StashKey[List[Path]]()
_LIVE = pytest.StashKey[List[Cluster]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("troupe", "troupe clusters")
    group.addoption(
        "--troupe-keep",
        action="store_true",
        default=False,
        help="keep every troupe state directory (logs, data, certificates), also of passing tests",
    )
    group.addoption(
        "--troupe-log-lines",
        type=int,
        default=50,
        metavar="N",
        help="lines from the end of each node's log in a failing test's report (default 50)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEPT] = []
    config.stash[_LIVE] = []


class ClusterFactory:
    """The ``troupe_up`` fixture: call it with a spec to bring a cluster up for this test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self.clusters: List[Cluster] = []

    def __call__(
        self, spec: SpecPath, *, timeout: Optional[float] = None, overrides: Optional[Mapping[str, Any]] = None
    ) -> Cluster:
        path = Path(spec)
        if not path.is_absolute():
            path = Path(self._request.path).parent / path
        cluster = _up(self._request.config, path, timeout, overrides)
        self.clusters.append(cluster)
        return cluster

    def _close(self) -> None:
        errors = []
        for cluster in reversed(self.clusters):
            try:
                _down(self._request.config, cluster)
            except TroupeError as e:
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def troupe_up(request: pytest.FixtureRequest) -> Iterator[ClusterFactory]:
    """``troupe_up(spec)`` brings a cluster up (relative paths: from the test file); every
    cluster it started goes down when the test ends."""
    factory = ClusterFactory(request)
    yield factory
    factory._close()


def troupe_cluster(
    spec: SpecPath,
    *,
    scope: str = "function",
    name: Optional[str] = None,
    timeout: Optional[float] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> Any:
    """Declares a fixture that brings ``spec`` up for ``scope`` (``function``, ``class``,
    ``module``, ``package``, ``session``) and yields a :class:`~troupe.Cluster`. A relative
    ``spec`` is found from the file that declares the fixture. The fixture takes the name of
    the variable it is assigned to, or ``name``. ``overrides`` sets spec keys for the run
    (``troupe up --set``), e.g. ``{"clusters.main.nodes": 5}``."""
    path = Path(spec)
    if not path.is_absolute():
        caller = sys._getframe(1).f_globals.get("__file__")
        path = (Path(caller).parent if caller else Path.cwd()) / path

    def fixture(request: pytest.FixtureRequest) -> Generator[Cluster, None, None]:
        cluster = _up(request.config, path, timeout, overrides)
        yield cluster
        _down(request.config, cluster)

    fixture.__name__ = name or f"troupe_{path.stem}"
    return pytest.fixture(scope=scope, name=name)(fixture)  # type: ignore[call-overload]


def _up(
    config: pytest.Config, spec: Path, timeout: Optional[float], overrides: Optional[Mapping[str, Any]] = None
) -> Cluster:
    try:
        cluster = Cluster.up(spec, timeout=timeout, overrides=overrides)
    except TroupeError as e:
        kept = f"\nstate directory kept: {e.state_dir}" if e.state_dir else ""
        if e.state_dir is not None:
            config.stash[_KEPT].append(e.state_dir)
        pytest.fail(f"troupe up {spec} failed (exit {e.code}):\n{e.output or e}{kept}", pytrace=False)
    if config.getoption("troupe_keep"):
        cluster.keep = True
    config.stash[_LIVE].append(cluster)
    return cluster


def _down(config: pytest.Config, cluster: Cluster) -> None:
    live = config.stash[_LIVE]
    if cluster in live:
        live.remove(cluster)
    if cluster.keep:
        config.stash[_KEPT].append(cluster.state_dir)
    # close() prints a kept directory to stderr, which pytest captures; the summary shows it.
    cluster.close()


def _clusters_of(item: pytest.Item) -> List[Cluster]:
    """The clusters a test used: fixture values that are clusters or the ``troupe_up`` factory's;
    failing that, every cluster the plugin has up."""
    found: List[Cluster] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Cluster):
            found.append(value)
        elif isinstance(value, ClusterFactory):
            found.extend(value.clusters)
    live: List[Cluster] = item.config.stash[_LIVE]
    return found or list(live)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


def _describe(cluster: Cluster, lines: int) -> List["tuple[str, str]"]:
    sections = [("troupe: state directory kept", str(cluster.state_dir))]
    try:
        status: Status = cluster.descriptor()
    except (OSError, ValueError, KeyError) as e:
        return sections + [("troupe", f"cannot read {cluster.state_dir / 'cluster.json'}: {e}")]
    for node in status.nodes:
        if node.log is None:
            continue
        title = f"troupe logs: {node.name} ({node.state}; last {lines} lines of {node.log})"
        sections.append((title, _tail(node.log, lines)))
    return sections


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    lines = int(item.config.getoption("troupe_log_lines"))
    for cluster in _clusters_of(item):
        cluster.keep = True
        report.sections.extend(_describe(cluster, lines))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, [])
    if not kept:
        return
    terminalreporter.section("troupe")
    for path in dict.fromkeys(kept):
        terminalreporter.write_line(f"state directory kept: {path}")


__all__ = ["ClusterFactory", "troupe_cluster", "troupe_up"]
