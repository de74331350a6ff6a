"""A typed client for the ``troupe`` command: bring a spec up detached in a state directory of its
own, drive it (kill, stop, start, partition, heal, wait for a leader), read its status, and
take it down.

Every method runs one ``troupe`` command with ``--state-dir`` and parses its JSON or its plain
output, so the client needs nothing but the standard library and works with any troupe that
speaks the same command line. Failures raise :class:`~troupe.errors.TroupeError` subclasses
with troupe's own message and hint.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Type, Union

from .descriptor import Node, Status
from .errors import TroupeError, TroupeNotFound, from_output

PathLike = Union[str, "os.PathLike[str]"]
#: A partition group: "main-1 main-2", "main:leader", or a list of targets.
Group = Union[str, Iterable[str]]


def find_troupe() -> str:
    """The troupe binary: ``$TROUPE_BIN`` if set, else ``troupe`` on PATH."""
    configured = os.environ.get("TROUPE_BIN")
    if configured:
        if not os.access(configured, os.X_OK):
            raise TroupeNotFound(
                f"TROUPE_BIN={configured} is not an executable file",
                hint="point TROUPE_BIN at the troupe binary, e.g. target/debug/troupe",
            )
        return configured
    found = shutil.which("troupe")
    if found is None:
        raise TroupeNotFound(
            "no troupe binary: TROUPE_BIN is not set and `troupe` is not on PATH",
            hint="cargo install --path crates/troupe-cli, or set TROUPE_BIN=/path/to/troupe",
        )
    return found


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _invoke(troupe: str, args: Sequence[str], timeout: Optional[float] = None) -> str:
    """Runs ``troupe ARGS``; returns its stdout, or raises with its message and hint.

    Past ``timeout`` troupe gets SIGTERM, as from Ctrl-C: a ``troupe up --detach`` still
    waiting then tells its supervisor to stop everything it started, and reports so.
    """
    command = [troupe, *args]
    env = dict(os.environ, NO_COLOR="1")
    # The state directory is always passed explicitly; an inherited one must not override it.
    env.pop("TROUPE_STATE_DIR", None)
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    except OSError as e:
        raise TroupeNotFound(f"cannot run {troupe}: {e}", command=command) from e
    with proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                stdout, stderr = proc.communicate(timeout=_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            raise TroupeError(
                f"`{' '.join(command)}` did not finish within {timeout}s and was interrupted",
                command=command,
                output=stderr,
            ) from None
    if proc.returncode != 0:
        raise from_output(proc.returncode, stderr, command)
    return stdout


#: How long troupe may take to clean up after SIGTERM before it is killed.
_GRACE = 120.0


def _toml(value: Any) -> str:
    """A ``--set`` value: strings as they are, numbers, booleans and lists as TOML (whose
    spelling of them JSON shares)."""
    return value if isinstance(value, str) else json.dumps(value)


def _targets(targets: Sequence[str]) -> List[str]:
    if not targets:
        raise ValueError("name at least one target: a node (main-1), a cluster (main) or main:leader")
    return [str(t) for t in targets]


def _group(g: Group) -> str:
    return g.strip() if isinstance(g, str) else " ".join(g)


class Cluster:
    """A detached troupe run, addressed by its state directory.

    ``Cluster.up("spec.toml")`` starts one in a fresh temporary state directory and returns once
    every node is ready. As a context manager it is taken down on exit; its state directory is
    removed after a clean exit and kept (and its path printed) after an exception.
    ``Cluster(state_dir)`` attaches to a run started elsewhere.
    """

    def __init__(self, state_dir: PathLike, *, troupe: Optional[str] = None, remove_state_dir: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self.troupe = troupe or find_troupe()
        #: Remove the state directory in :meth:`close` (set by :meth:`up` for a directory it made).
        self.remove_state_dir = remove_state_dir
        #: Keep the state directory whatever happens (logs and data for a post-mortem).
        self.keep = False
        self._down = False

    @classmethod
    def up(
        cls,
        spec: PathLike,
        *,
        state_dir: Optional[PathLike] = None,
        troupe: Optional[str] = None,
        timeout: Optional[float] = None,
        overrides: Optional[Mapping[str, Any]] = None,
    ) -> "Cluster":
        """``troupe up SPEC --detach``: returns once every node is ready, or raises
        :class:`~troupe.errors.StartFailed` (with troupe's account, e.g. the end of the failing
        node's log) having stopped everything. Without ``state_dir`` a new temporary directory
        is used; it stays for a post-mortem when the start fails. ``overrides`` sets spec keys
        for this run (``troupe up --set``): ``{"clusters.main.nodes": 5}``."""
        troupe = troupe or find_troupe()
        sets = [arg for key, value in (overrides or {}).items() for arg in ("--set", f"{key}={_toml(value)}")]
        made = state_dir is None
        # Short, in /tmp: the control socket's path must fit in 108 bytes.
        directory = Path(tempfile.mkdtemp(prefix="troupe-")) if state_dir is None else Path(state_dir)
        try:
            _invoke(troupe, ["up", os.fspath(spec), "--detach", "--state-dir", str(directory), *sets], timeout)
        except TroupeError as e:
            if made and not any(directory.iterdir()):
                directory.rmdir()  # nothing was started (an invalid spec): nothing to keep
            else:
                e.state_dir = directory
                print(f"troupe: {spec} did not come up; state directory kept: {directory}", file=sys.stderr)
            raise
        cluster = cls(directory, troupe=troupe, remove_state_dir=made)
        _started.add(cluster)
        return cluster

    def _run(self, *args: str, timeout: Optional[float] = None) -> str:
        return _invoke(self.troupe, [*args, "--state-dir", str(self.state_dir)], timeout)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is not None:
            self.keep = True
        self.close()

    def __repr__(self) -> str:
        return f"Cluster({str(self.state_dir)!r})"

    # Reading the run.

    def status(self) -> Status:
        """The live descriptor: every node's state, pid, role and endpoints; leaders, failovers
        and faults."""
        return Status.from_json(json.loads(self._run("status", "--json", timeout=30)))

    def descriptor(self) -> Status:
        """``<state-dir>/cluster.json`` as last written (readable after the run has ended)."""
        return Status.from_json(json.loads((self.state_dir / "cluster.json").read_text()))

    def node(self, name: str) -> Node:
        """A snapshot of one node: ``.url("client")``, ``.addr(..)``, ``.port(..)``, ``.tls``,
        ``.ca``, ``.ssl_context()``, ``.pid``, ``.state``, ``.role``."""
        return self.status().node(name)

    @property
    def nodes(self) -> List[Node]:
        return self.status().nodes

    @property
    def ca(self) -> Optional[Path]:
        """The run's CA certificate; None when the spec has no ``[tls]``."""
        return self.descriptor().ca

    def env(self) -> Dict[str, str]:
        """What ``eval "$(troupe env)"`` exports: TROUPE_CA, TROUPE_MAIN_1_CLIENT_URL, ..."""
        return dict(json.loads(self._run("env", "--json", timeout=30)))

    def logs(self, node: str, lines: int = 50) -> str:
        """The last ``lines`` lines of a node's stdout and stderr (also after the run)."""
        return self._run("logs", node, "-n", str(lines), timeout=30)

    # Acting on nodes. Targets: a node (main-1), a cluster (main), or CLUSTER:SELECTOR with
    # SELECTOR one of leader, followers, random, one, minority, majority, all. Each returns the
    # nodes it acted on, e.g. kill("main:leader") -> ["main-2"].

    def _op(self, op: str, done: str, targets: Sequence[str]) -> List[str]:
        out = self._run(op, *_targets(targets))
        prefix = done + " "
        return [line[len(prefix) :].strip() for line in out.splitlines() if line.startswith(prefix)]

    def kill(self, *targets: str) -> List[str]:
        """SIGKILL the targets' process groups (no grace)."""
        return self._op("kill", "killed", targets)

    def stop(self, *targets: str) -> List[str]:
        """Stop gracefully: the stop signal, the grace period, then SIGKILL."""
        return self._op("stop", "stopped", targets)

    def start(self, *targets: str) -> List[str]:
        """Start stopped or killed targets again (same ports, data, certificates); waits until ready."""
        return self._op("start", "started", targets)

    def restart(self, *targets: str) -> List[str]:
        return self._op("restart", "restarted", targets)

    def pause(self, *targets: str) -> List[str]:
        """SIGSTOP the targets' process groups."""
        return self._op("pause", "paused", targets)

    def resume(self, *targets: str) -> List[str]:
        """SIGCONT the targets' process groups."""
        return self._op("resume", "resumed", targets)

    def wait_leader(self, cluster: Optional[str] = None, timeout: float = 30.0) -> str:
        """Waits until the cluster has a leader and returns its name. ``cluster`` is needed
        when several clusters have a role probe."""
        args = ["wait", "leader", "--timeout", _duration(timeout)]
        if cluster is not None:
            args += ["--cluster", cluster]
        return self._run(*args, timeout=timeout + 30).strip()

    def wait_ready(self, cluster: Optional[str] = None, timeout: float = 30.0) -> None:
        """Waits until every node (of ``cluster``, or all) is ready."""
        args = ["wait", "ready", "--timeout", _duration(timeout)]
        if cluster is not None:
            args += ["--cluster", cluster]
        self._run(*args, timeout=timeout + 30)

    # Network faults (clusters with network = "namespaces" or "proxies").

    def partition(self, *groups: Group, bridge: Optional[str] = None) -> str:
        """Groups that cannot reach each other: ``partition("main:leader", "main:followers")``
        or ``partition(["main-1"], ["main-2", "main-3"])``. Returns troupe's description."""
        if len(groups) < 2:
            raise ValueError("a partition needs at least two groups")
        args = ["partition", " | ".join(_group(g) for g in groups)]
        if bridge is not None:
            args += ["--bridge", bridge]
        return self._run(*args).strip()

    def isolate(self, *targets: str, host: bool = False) -> str:
        """Cut each target off from every other node (and with ``host`` from the host)."""
        return self._run("isolate", *_targets(targets), *(["--host"] if host else [])).strip()

    def heal(self, fault_id: Optional[int] = None) -> str:
        """Undo every network fault, or one by its id (``status().faults``)."""
        return self._run("heal", *([str(fault_id)] if fault_id is not None else [])).strip()

    # Ending the run.

    def down(self, kill: bool = False) -> None:
        """Stops every node gracefully (``kill``: SIGKILL at once), then the supervisor.
        Safe to call twice."""
        if self._down:
            return
        self._run("down", *(["--kill"] if kill else []))
        self._down = True
        _started.discard(self)

    def close(self) -> None:
        """:meth:`down`, then remove the state directory if :meth:`up` made it and nothing
        asked to keep it; a kept one's path is printed to stderr. If ``down`` fails, the
        directory is kept: ``troupe down --force --state-dir DIR`` needs it."""
        try:
            self.down()
        except BaseException:
            self.keep = True
            raise
        finally:
            if self.remove_state_dir and not self.keep:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            elif self.keep:
                print(f"troupe: state directory kept: {self.state_dir}", file=sys.stderr)


#: Clusters :meth:`Cluster.up` started and nobody took down yet. Their supervisors run detached,
#: so an interpreter that exits (an uncaught exception, Ctrl-C) kills them on the way out.
_started: Set[Cluster] = set()


@atexit.register
def _kill_leftovers() -> None:
    for cluster in list(_started):
        try:
            cluster.down(kill=True)
            print(f"troupe: killed {cluster.state_dir} at exit (nobody took it down)", file=sys.stderr)
        except TroupeError:
            pass


def run(
    scenario: PathLike,
    *,
    junit: Optional[PathLike] = None,
    html: Optional[PathLike] = None,
    keep: bool = False,
    run_dir: Optional[PathLike] = None,
    troupe: Optional[str] = None,
    timeout: Optional[float] = None,
) -> Dict[str, Any]:
    """``troupe run SCENARIO``: returns the parsed JSON report (``report["verdict"]`` is
    ``"passed"`` or ``"failed"``; ``report["steps"]`` the step tree). A scenario that fails a
    step returns its report; one that is invalid raises :class:`~troupe.errors.InvalidInput`."""
    troupe = troupe or find_troupe()
    with tempfile.TemporaryDirectory(prefix="troupe-report-") as tmp:
        report = Path(tmp) / "report.json"
        args = ["run", os.fspath(scenario), "--json", str(report)]
        if junit is not None:
            args += ["--junit", os.fspath(junit)]
        if html is not None:
            args += ["--html", os.fspath(html)]
        if keep:
            args.append("--keep")
        if run_dir is not None:
            args += ["--run-dir", os.fspath(run_dir)]
        try:
            _invoke(troupe, args, timeout)
        except TroupeError as e:
            # Exit 1 with a report: the scenario ran and a step failed; that is its verdict.
            if e.code != 1 or not report.exists():
                raise
        result: Dict[str, Any] = json.loads(report.read_text())
        return result
