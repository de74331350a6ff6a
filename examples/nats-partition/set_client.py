#!/usr/bin/env python3
"""troupe's stdio client for a set workload on NATS JetStream: one per workload process.

    set_client.py NATS_URL [STREAM]

Reads one JSON request per line on stdin, answers one per line on stdout (see the README's
"Workloads"): `add` publishes the value to the stream (Nats-Msg-Id = the value, so a retry is
stored once) and is ok once acknowledged; `read` returns every value in the stream as this
node's copy holds it (direct gets, which the local replica answers).

A direct get that finds no message at a sequence inside the stream's range fails the whole read
(troupe retries it): nats-server before 2.9.17 lets a replica that is still catching up answer
direct gets (nats-server#4171), so such a gap is a stale replica, not a verdict. A value that is
really gone never succeeds and the check fails anyway: "no successful final read".
"""
import asyncio, json, sys

import nats
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError


class Gap(Exception):
    """A sequence inside the stream's range that this copy does not serve."""


async def get(js, stream, seq):
    try:
        return int((await js.get_msg(stream, seq, direct=True)).data)
    except NotFoundError:
        raise Gap(seq) from None


async def main(url, stream):
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    js = nc.jetstream(timeout=1.5)
    lines = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    while line := await lines.readline():
        req = json.loads(line)
        try:
            if req["f"] == "add":
                value = str(req["value"])
                await js.publish(stream.lower(), value.encode(), stream=stream, headers={"Nats-Msg-Id": value})
                out = {"type": "ok"}
            else:
                state = (await js.stream_info(stream)).state
                if state.num_deleted:
                    raise RuntimeError(f"{state.num_deleted} messages deleted: this client reads every sequence")
                # An empty stream reports first_seq 0 (and last_seq 0): there is nothing to get.
                seqs = range(max(state.first_seq, 1), state.last_seq + 1)
                try:
                    got = await asyncio.gather(*(get(js, stream, s) for s in seqs))
                except Gap as gap:
                    raise RuntimeError(
                        f"sequence {gap} of {state.first_seq}..{state.last_seq} not served by this copy (yet)"
                    ) from None
                out = {"type": "ok", "value": got}
        except NoRespondersError:
            out = {"type": "fail", "error": "no responders: nothing stored it"}
        except Exception as e:  # a timeout or a lost connection: the add may have landed
            out = {"type": "info" if req["f"] == "add" else "fail", "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "SET"))
