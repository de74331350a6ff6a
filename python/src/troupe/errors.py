"""Exceptions that carry what the troupe command said: its message, its hint and its exit code.

troupe's exit codes are documented (``troupe --help``); each maps to one exception class, so a
test can catch exactly "nothing runs there" or "the cluster did not come up".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Type

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# miette draws its message behind "×" (or "x" without Unicode) and its help behind "help:";
# troupe's own lines start with "error:" and put hints in "(hint: ...)".
_PREFIX = re.compile(r"^\s*(?:error:|Error:|×|x\s|[│|]\s*)\s*")
_HINT = re.compile(r"\(hint:\s*(.*?)\)\s*$")
_HELP = re.compile(r"^\s*help:\s*(.*)$")
# A miette message ("  × ...") goes on over lines "  │ ..." (one space: deeper indents are
# its sections, such as a log tail).
_MIETTE = re.compile(r"^\s*×\s")
_WRAPPED = re.compile(r"^\s*│ (\S.*)$")


class TroupeError(Exception):
    """The troupe command failed. ``message`` and ``hint`` are troupe's own words; ``output``
    is everything it wrote to stderr."""

    def __init__(
        self,
        message: str,
        *,
        hint: Optional[str] = None,
        code: Optional[int] = None,
        command: Sequence[str] = (),
        output: str = "",
    ) -> None:
        self.message = message
        self.hint = hint
        self.code = code
        self.command: List[str] = list(command)
        self.output = output
        #: For a failed start: the state directory kept with the nodes' logs.
        self.state_dir: Optional[Path] = None
        text = message if hint is None else f"{message}\n(hint: {hint})"
        super().__init__(text)


class TroupeNotFound(TroupeError):
    """No troupe binary: neither ``TROUPE_BIN`` nor ``troupe`` on PATH."""


class InvalidInput(TroupeError):
    """Exit 2: the command line, spec or scenario is invalid; nothing was started."""


class StartFailed(TroupeError):
    """Exit 3: the cluster did not come up; everything started was stopped again."""


class StateDirBusy(TroupeError):
    """Exit 4: the state directory is in use by another run (or is not troupe's)."""


class NotRunning(TroupeError):
    """Exit 5: no troupe is running in the state directory."""


class Undecided(TroupeError):
    """Exit 6: a checker could not decide within its budget."""


class Interrupted(TroupeError):
    """Exit 130: troupe was interrupted."""


_BY_CODE: Dict[int, Type[TroupeError]] = {
    2: InvalidInput,
    3: StartFailed,
    4: StateDirBusy,
    5: NotRunning,
    6: Undecided,
    130: Interrupted,
}


def parse_stderr(stderr: str) -> "tuple[str, Optional[str]]":
    """troupe's message and hint, from what it wrote to stderr.

    The message is the first meaningful line, with the lines miette wrapped it onto joined
    again; the hint is troupe's ``(hint: ...)`` or miette's ``help:``, also joined.
    """
    lines = [_ANSI.sub("", line).rstrip() for line in stderr.splitlines()]
    hint: Optional[str] = None
    message = ""
    in_help = in_message = False
    for line in lines:
        m = _HINT.search(line) or _HELP.match(line)
        if m:
            in_help = hint is None and _HELP.match(line) is not None
            in_message = False
            hint = hint or m.group(1).strip()
            continue
        if in_help and line.startswith(" ") and line.strip():
            hint = f"{hint} {line.strip()}"
            continue
        in_help = False
        wrapped = _WRAPPED.match(line)
        if in_message and wrapped:
            message = _join(message, wrapped.group(1))
            continue
        in_message = False
        text = _PREFIX.sub("", line).strip()
        if text and not message:
            message = text
            in_message = _MIETTE.match(line) is not None
    return message or "troupe failed without a message", hint


def _join(head: str, tail: str) -> str:
    # miette breaks lines at spaces and after hyphens and slashes.
    return head + tail if head.endswith(("-", "/")) else f"{head} {tail}"


def from_output(code: int, stderr: str, command: Sequence[str]) -> TroupeError:
    """The exception for a troupe command that exited with ``code``."""
    message, hint = parse_stderr(stderr)
    cls = _BY_CODE.get(code, TroupeError)
    return cls(message, hint=hint, code=code, command=command, output=stderr)
