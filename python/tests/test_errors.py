"""troupe's messages and hints, as the exceptions carry them, from what troupe really prints
(samples copied from its output; no binary needed)."""

from troupe.errors import InvalidInput, NotRunning, StartFailed, TroupeError, from_output, parse_stderr

UNKNOWN_NODE = """error: no node or cluster named `main-9`
  (hint: did you mean `main-1`? targets are a node (main-1), a cluster (main), or CLUSTER:SELECTOR)
"""

INVALID_SPEC = """error: broken.toml has 1 problem
  × key `clusters.main.binray`: unknown key `binray`
   ╭─[broken.toml:4:1]
 3 │ nodes = 1
 4 │ binray = "etcd"
   · ───┬──
   ·    ╰── not a key troupe knows here
   ╰────
  help: did you mean `binary`? Valid keys here: nodes, binary, args, env,
        files, ports, schemes

"""

NOT_RUNNING = """  × no troupe is running in /tmp/x2
  help: start one with `troupe up SPEC --detach`; if a run crashed, `troupe
        down --force` cleans up what it left
"""

NEVER_READY = """  × node `main-1` was not ready after 1.01s: GET http://127.0.0.1:31660/health
  │ (expecting 200) never passed; last seen: HTTP 200, body does not match /
  │ never-there/: {"health":"true"}
  │   last lines of /tmp/nr/st/nodes/main-1/node.log:
  │     | {"level":"info","msg":"serving client traffic insecurely"}
"""


def test_a_plain_error_and_its_hint():
    e = from_output(2, UNKNOWN_NODE, ["troupe", "kill", "main-9"])
    assert type(e) is InvalidInput and e.code == 2
    assert e.message == "no node or cluster named `main-9`"
    assert e.hint is not None and e.hint.startswith("did you mean `main-1`?")
    assert str(e) == f"{e.message}\n(hint: {e.hint})"
    assert e.command == ["troupe", "kill", "main-9"] and e.output == UNKNOWN_NODE


def test_a_spec_problem_keeps_the_help_whole():
    message, hint = parse_stderr(INVALID_SPEC)
    assert message == "broken.toml has 1 problem"
    assert hint == "did you mean `binary`? Valid keys here: nodes, binary, args, env, files, ports, schemes"


def test_miettes_wrapped_lines_are_joined():
    e = from_output(5, NOT_RUNNING, [])
    assert isinstance(e, NotRunning) and e.message == "no troupe is running in /tmp/x2"
    assert e.hint == (
        "start one with `troupe up SPEC --detach`; if a run crashed, `troupe down --force` cleans up what it left"
    )
    e = from_output(3, NEVER_READY, [])
    assert isinstance(e, StartFailed)
    assert e.message == (
        "node `main-1` was not ready after 1.01s: GET http://127.0.0.1:31660/health (expecting 200) never passed; "
        'last seen: HTTP 200, body does not match /never-there/: {"health":"true"}'
    )


def test_unknown_codes_and_silence():
    e = from_output(1, "", [])
    assert type(e) is TroupeError and e.message == "troupe failed without a message" and e.hint is None
