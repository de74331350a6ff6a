#!/usr/bin/env python3
"""A small JetStream client for the nats-partition suite, on the `nats-py` library.

Adapted from examples/nats-lifecycle/js.py: the same messages and checks, plus `--via NODE` to
talk to one node only, `try-publish` to count acks where none should come, `move-leader` to put
the stream leader on a chosen node, `create-stream --on NODE` to place a stream on one node,
`consume-all --replica-of NODE` to read one node's own copy, and `local-state` for what one
node's copy holds.

Server URLs come from the environment that `troupe env` (and `troupe run`) exports:
TROUPE_<CLUSTER>_CLIENT_URLS, the cluster's client URLs (nats://, as cluster.toml sets
`schemes = { client = "nats" }`). The cluster is NATS unless JS_CLUSTER says otherwise; NATS_URLS (a comma
separated list) overrides it. `--via nats-2` connects to that node alone
(TROUPE_NATS_2_CLIENT_URL) and never reconnects, neither to it nor to the other servers it
learns of: every request and publish goes in through that node.

    js.py [--via NODE] create-stream NAME [--replicas 3] [--on NODE] [--subjects 'orders.>'] [--allow-direct]
    js.py [--via NODE] publish N [--size 512] [--prefix p1] [--rate PER_S]
    js.py [--via NODE] try-publish N [--prefix lost] [--ack-wait 2]
                                        publish N at once, print how many were acked; exit 0
    js.py [--via NODE] consume-all [--expect N] [--replica-of NODE] [--digest]
                                        read every message back through a fresh consumer
                                        (on NODE: from NODE's copy of the stream); --digest
                                        prints only the counts and a hash of (seq, id)s
    js.py [--via NODE] stream-info      leader, replicas and state as JSON
    js.py [--via NODE] stream-leader [--healthy]
    js.py [--via NODE] move-leader NODE step the stream leader down until NODE leads it
    js.py local-state HTTP_URL          this node's replica: messages=N first=F last=L (/jsz)
    js.py meta-leader HTTP_URL          the meta leader as this node sees it (/jsz)

Every message carries a Nats-Msg-Id header (<prefix>-<i>), so a publish retried across a leader
change is stored once: the stream deduplicates it. Every payload is <prefix>-<i> padded with dots
to --size bytes, so consume-all can check each one.

Exit status: 0 ok, 1 the check failed (the reason on stderr), 2 usage.
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import urllib.request

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Placement, StorageType


class Fail(Exception):
    """A check failed; the message says why."""


def env_key(s):
    return s.upper().replace("-", "_")


def servers(via):
    if via:
        key = f"TROUPE_{env_key(via)}_CLIENT_URL"
        if key not in os.environ:
            sys.exit(f"js.py: {key} is not set: no node {via!r}, or not run under troupe")
        urls = [os.environ[key]]
    elif os.environ.get("NATS_URLS"):
        urls = os.environ["NATS_URLS"].split(",")
    else:
        cluster = os.environ.get("JS_CLUSTER", "NATS").upper()
        key = f"TROUPE_{cluster}_CLIENT_URLS"
        if key not in os.environ:
            sys.exit(f"js.py: {key} is not set: run under `troupe run` or eval \"$(troupe env)\"")
        urls = os.environ[key].split(",")
    return [u.strip() for u in urls if u.strip()]


async def quiet(e):
    # nats-py prints a traceback for every refused connection by default; one line is enough.
    if os.environ.get("JS_VERBOSE"):
        print(f"js.py: nats: {type(e).__name__}: {e}", file=sys.stderr)


async def connect(a):
    return await nats.connect(
        servers=servers(a.via),
        error_cb=quiet,
        dont_randomize=True,
        connect_timeout=1,
        # --via: one node and only that one, also after a disconnect.
        allow_reconnect=not a.via,
        max_reconnect_attempts=3,
        reconnect_time_wait=0.05,
    )


async def retrying(what, fn, deadline):
    """Runs fn() until it succeeds or the deadline passes (leader elections answer 503 or time out)."""
    delay = 0.05
    t0 = time.monotonic()
    tries = 0
    while True:
        tries += 1
        try:
            return await fn()
        except Exception as e:  # noqa: BLE001 - any JetStream error is worth a retry until the deadline
            if time.monotonic() + delay > deadline:
                raise RuntimeError(
                    f"{what}: no success in {time.monotonic() - t0:.1f}s ({tries} tries); "
                    f"last error {type(e).__name__}: {e}"
                ) from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


def payload_of(mid, size):
    return mid.encode().ljust(size, b".")


async def create_stream(a):
    nc = await connect(a)
    js = nc.jetstream(timeout=2)
    deadline = time.monotonic() + a.timeout
    # --on NODE: placed by the server tag "node:NODE" (cluster.toml gives each node its own).
    placement = Placement(tags=[f"node:{a.on}"]) if a.on else None
    si = await retrying(
        "create stream",
        lambda: js.add_stream(
            name=a.stream,
            subjects=[a.subjects],
            num_replicas=a.replicas,
            storage=StorageType.FILE,
            placement=placement,
            allow_direct=a.allow_direct,
        ),
        deadline,
    )
    print(f"stream {si.config.name} replicas={si.config.num_replicas} leader={si.cluster.leader}")
    await nc.close()


async def publish(a):
    nc = await connect(a)
    js = nc.jetstream(timeout=2)
    deadline = time.monotonic() + a.timeout
    stored = 0
    dups = 0
    sem = asyncio.Semaphore(a.window)
    t0 = time.monotonic()

    async def one(i):
        nonlocal stored, dups
        mid = f"{a.prefix}-{i:06d}"
        payload = payload_of(mid, a.size)
        if a.rate:
            await asyncio.sleep(max(0.0, t0 + (i - 1) / a.rate - time.monotonic()))
        async with sem:
            ack = await retrying(
                f"publish {mid}",
                lambda: js.publish(a.subject, payload, stream=a.stream, headers={"Nats-Msg-Id": mid}),
                deadline,
            )
        if ack.duplicate:
            dups += 1  # an earlier attempt was stored; the stream kept exactly one
        stored += 1

    await asyncio.gather(*(one(i) for i in range(1, a.n + 1)))
    ms = (time.monotonic() - t0) * 1000
    print(f"published {stored} x {a.size} B as {a.prefix} in {ms:.0f} ms ({dups} retried)")
    await nc.close()


async def try_publish(a):
    """N publishes at once, each waiting --ack-wait seconds for its ack, no retry: prints
    `acked K of N` and what the others got. Exit 0 either way: the scenario judges K."""
    nc = await connect(a)
    js = nc.jetstream(timeout=a.ack_wait)

    async def one(i):
        mid = f"{a.prefix}-{i:06d}"
        try:
            ack = await js.publish(
                a.subject, payload_of(mid, a.size), stream=a.stream, headers={"Nats-Msg-Id": mid}
            )
            return f"acked (seq {ack.seq})"
        except Exception as e:  # noqa: BLE001 - every failure is an answer here
            return type(e).__name__

    t0 = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(1, a.n + 1)))
    ms = (time.monotonic() - t0) * 1000
    acked = sum(1 for r in results if r.startswith("acked"))
    kinds = {}
    for r in results:
        k = "acked" if r.startswith("acked") else r
        kinds[k] = kinds.get(k, 0) + 1
    print(
        f"acked {acked} of {a.n} through {a.via or 'any node'} in {ms:.0f} ms: "
        + ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))
    )
    await nc.close()


async def consume_all(a):
    nc = await connect(a)
    js = nc.jetstream(timeout=2)
    deadline = time.monotonic() + a.timeout
    si = await retrying(
        f"stream {a.stream} info (no replica answering?)", lambda: js.stream_info(a.stream), deadline
    )
    total = si.state.messages
    want = a.expect if a.expect is not None else total
    # An ephemeral pull consumer from the first message, removed by the server when idle; one
    # replica in memory, so reading does not wait for a consumer group of its own to elect a
    # leader. nats-server places it on one of the stream's replicas (its choice) and it reads
    # that server's copy.
    cfg = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        num_replicas=1,
        mem_storage=True,
    )
    sub = await retrying(
        "create consumer", lambda: js.pull_subscribe(">", stream=a.stream, config=cfg), deadline
    )
    reader = await consumer_host(sub, deadline)
    if a.replica_of:
        # The server puts the consumer on one of the stream's replicas, its choice; a consumer
        # reads its own server's copy. Make new ones until it is the replica asked for.
        tries = 1
        while reader != a.replica_of:
            if time.monotonic() > deadline:
                raise Fail(f"no consumer placed on {a.replica_of} in {tries} tries (last on {reader})")
            name = (await sub.consumer_info()).name
            await sub.unsubscribe()
            await retrying("delete consumer", lambda: js.delete_consumer(a.stream, name), deadline)
            sub = await retrying(
                "create consumer", lambda: js.pull_subscribe(">", stream=a.stream, config=cfg), deadline
            )
            reader = await consumer_host(sub, deadline)
            tries += 1
    seen = {}
    order = []
    bad = []
    while len(order) < want and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(batch=500, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            mid = (m.headers or {}).get("Nats-Msg-Id", "")
            if m.data != payload_of(mid, a.size):
                bad.append(f"seq {m.metadata.sequence.stream}: {len(m.data)} B, id {mid!r}")
            seen[mid] = seen.get(mid, 0) + 1
            order.append(f"{m.metadata.sequence.stream} {mid}")
    # Done with it: delete it now rather than leave it to the inactivity timer.
    name = (await sub.consumer_info()).name
    await sub.unsubscribe()
    try:
        await js.delete_consumer(a.stream, name)
    except Exception:  # noqa: BLE001 - the server removes it when idle anyway
        pass
    await nc.close()
    n = sum(seen.values())
    by_prefix = {}
    for mid in seen:
        p = mid.rsplit("-", 1)[0]
        by_prefix[p] = by_prefix.get(p, 0) + 1
    summary = " ".join(f"{p}={c}" for p, c in sorted(by_prefix.items()))
    if a.digest:
        # The same on every node whose copy holds the same ids at the same sequence numbers.
        h = hashlib.sha256("\n".join(order).encode()).hexdigest()[:16]
        print(f"{n} messages: {summary} (sha256 of seq+id: {h})")
    else:
        print(f"consumed {n} of {want} from {reader}'s replica (stream holds {total}): {summary}")
    dup = [k for k, v in seen.items() if v > 1]
    if bad:
        raise Fail(f"{len(bad)} malformed messages, first: {bad[0]}")
    if dup:
        raise Fail(f"{len(dup)} duplicated messages, first: {dup[0]}")
    if n != want:
        raise Fail(f"consumed {n} messages, expected {want}")


async def consumer_host(sub, deadline):
    ci = await retrying("consumer info", sub.consumer_info, deadline)
    return ci.cluster.leader if ci.cluster else None


def cluster_dict(ci):
    return {
        "leader": ci.leader,
        "replicas": [{"name": r.name, "current": r.current, "offline": r.offline} for r in ci.replicas or []],
    }


async def stream_info(a):
    nc = await connect(a)
    js = nc.jetstream(timeout=2)
    si = await retrying("stream info", lambda: js.stream_info(a.stream), time.monotonic() + a.timeout)
    print(json.dumps({
        "name": si.config.name,
        "replicas": si.config.num_replicas,
        "messages": si.state.messages,
        "last_seq": si.state.last_seq,
        "cluster": cluster_dict(si.cluster),
    }))
    await nc.close()


def healthy_leader(si):
    """The stream leader's name when every replica is current, else None."""
    if not si.cluster or not si.cluster.leader:
        return None
    lagging = [r.name for r in si.cluster.replicas or [] if not r.current or r.offline]
    if len(si.cluster.replicas or []) + 1 != si.config.num_replicas or lagging:
        return None
    return si.cluster.leader


async def stream_leader(a):
    nc = await connect(a)
    js = nc.jetstream(timeout=2)
    si = await retrying("stream info", lambda: js.stream_info(a.stream), time.monotonic() + a.timeout)
    await nc.close()
    if not si.cluster or not si.cluster.leader:
        raise Fail("the stream has no leader")
    if a.healthy and not healthy_leader(si):
        # A leader with every replica current: the stream is fully replicated.
        raise Fail(f"leader {si.cluster.leader}, replicas not all current: {cluster_dict(si.cluster)}")
    print(si.cluster.leader)


async def move_leader(a):
    """Asks the stream leader to step down until `a.node` leads, every replica current. A
    stepdown hands leadership to a current replica in about 300 ms; which one is up to the
    server, so this may take a few rounds."""
    nc = await connect(a)
    js = nc.jetstream(timeout=2)
    deadline = time.monotonic() + a.timeout
    steps = 0
    while True:
        si = await retrying("stream info", lambda: js.stream_info(a.stream), deadline)
        leader = healthy_leader(si)
        if leader == a.node:
            break
        if time.monotonic() > deadline:
            raise Fail(f"{a.node} does not lead {a.stream} after {steps} stepdowns: {cluster_dict(si.cluster)}")
        if leader:
            steps += 1
            await retrying(
                "stepdown",
                lambda: nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{a.stream}", b"", timeout=2),
                deadline,
            )
        await asyncio.sleep(0.05)
    print(f"{a.node} leads {a.stream} ({steps} stepdowns)")
    await nc.close()


def jsz(http_url, query):
    with urllib.request.urlopen(f"{http_url}/jsz?{query}", timeout=2) as r:
        return json.load(r)


async def local_state(a):
    d = jsz(a.http_url, "accounts=true&streams=true")
    for acc in d.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if s["name"] == a.stream:
                st = s["state"]
                print(f"messages={st['messages']} first={st['first_seq']} last={st['last_seq']}")
                return
    raise Fail(f"{a.http_url} holds no replica of {a.stream}")


async def meta_leader(a):
    print(jsz(a.http_url, "").get("meta_cluster", {}).get("leader") or "")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stream", default="ORDERS")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before giving up (default 20)")
    p.add_argument("--via", metavar="NODE", help="connect to this node only (e.g. nats-2)")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("create-stream")
    c.add_argument("stream_name", nargs="?")
    c.add_argument("--replicas", type=int, default=3)
    c.add_argument("--subjects", default="orders.>")
    c.add_argument("--on", metavar="NODE", help="place the stream on this node (a 1-replica stream)")
    c.add_argument("--allow-direct", action="store_true", help="let every replica answer direct gets from its own copy")

    for name in ("publish", "try-publish"):
        c = sub.add_parser(name)
        c.add_argument("n", type=int)
        c.add_argument("--size", type=int, default=512)
        c.add_argument("--prefix", default="m")
        c.add_argument("--subject", default="orders.new")
        if name == "publish":
            c.add_argument("--window", type=int, default=64, help="publishes in flight (default 64)")
            c.add_argument("--rate", type=float, default=0, help="messages per second (default: as fast as acked)")
        else:
            c.add_argument("--ack-wait", type=float, default=2.0, help="seconds to wait for each ack (default 2)")

    c = sub.add_parser("consume-all")
    c.add_argument("--expect", type=int)
    c.add_argument("--replica-of", metavar="NODE", help="read that node's copy of the stream")
    c.add_argument("--digest", action="store_true", help="print only what was read and a hash of it")
    c.add_argument("--size", type=int, default=512)
    sub.add_parser("stream-info")
    c = sub.add_parser("stream-leader")
    c.add_argument("--healthy", action="store_true", help="fail unless every replica is current")
    c = sub.add_parser("move-leader")
    c.add_argument("node")
    c = sub.add_parser("local-state")
    c.add_argument("http_url")
    c = sub.add_parser("meta-leader")
    c.add_argument("http_url")

    a = p.parse_args()
    if getattr(a, "stream_name", None):
        a.stream = a.stream_name
    fn = {
        "create-stream": create_stream,
        "publish": publish,
        "try-publish": try_publish,
        "consume-all": consume_all,
        "stream-info": stream_info,
        "stream-leader": stream_leader,
        "move-leader": move_leader,
        "local-state": local_state,
        "meta-leader": meta_leader,
    }[a.cmd]
    try:
        asyncio.run(asyncio.wait_for(fn(a), a.timeout + 5))
    except Fail as e:
        sys.exit(f"js.py {a.cmd}: {e}")
    except (RuntimeError, OSError, asyncio.TimeoutError, nats.errors.Error) as e:
        sys.exit(f"js.py {a.cmd}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
