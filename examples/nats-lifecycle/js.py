#!/usr/bin/env python3
"""A small JetStream client for the nats-lifecycle suite, on the `nats-py` library.

Server URLs come from the environment that `troupe env` (and `troupe run`) exports:
TROUPE_<CLUSTER>_CLIENT_URLS, the cluster's client URLs (nats://, as cluster.toml sets
`schemes = { client = "nats" }`). The cluster is NATS unless JS_CLUSTER says otherwise; NATS_URLS (a comma
separated list) overrides everything.

    js.py create-stream NAME [--replicas 3] [--subjects 'orders.>']
    js.py publish N [--size 512] [--prefix p1] [--rate PER_S] [--subject orders.new]
    js.py count [--stream S]                      messages in the stream, as its leader sees them
    js.py consume-all [--stream S] [--expect N]   read every message back through a fresh consumer
    js.py stream-info [--stream S]                leader, replicas and state as JSON
    js.py stream-leader [--stream S]              the stream leader's name
    js.py bystander [--stream S]                  a node that leads neither the stream nor the meta group
    js.py local-count HTTP_URL [--stream S]       messages this node's replica stores (monitoring /jsz)
    js.py meta-leader HTTP_URL                    the meta leader as this node sees it (/jsz)

Every message carries a Nats-Msg-Id header (<prefix>-<i>), so a publish retried across a leader
change is stored once: the stream deduplicates it. Every payload is <prefix>-<i> padded with dots
to --size bytes, so consume-all can check each one.

Exit status: 0 ok, 1 the check failed (the reason on stderr), 2 usage.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType


class Fail(Exception):
    """A check failed; the message says why."""


def servers():
    if os.environ.get("NATS_URLS"):
        urls = os.environ["NATS_URLS"].split(",")
    else:
        cluster = os.environ.get("JS_CLUSTER", "NATS").upper()
        key = f"TROUPE_{cluster}_CLIENT_URLS"
        if key not in os.environ:
            sys.exit(f"js.py: {key} is not set: run under `troupe run` or eval \"$(troupe env)\"")
        urls = os.environ[key].split(",")
    return [u.strip() for u in urls if u.strip()]


async def quiet(e):
    # nats-py prints a traceback for every refused connection by default; nodes are down on
    # purpose here, so one line is enough.
    if os.environ.get("JS_VERBOSE"):
        print(f"js.py: nats: {type(e).__name__}: {e}", file=sys.stderr)


async def connect():
    # Nodes may be down (killed on purpose): try every URL quickly, in order.
    return await nats.connect(
        servers=servers(),
        error_cb=quiet,
        dont_randomize=True,
        connect_timeout=1,
        allow_reconnect=True,
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


async def create_stream(a):
    nc = await connect()
    js = nc.jetstream(timeout=2)
    deadline = time.monotonic() + a.timeout
    si = await retrying(
        "create stream",
        lambda: js.add_stream(
            name=a.stream, subjects=[a.subjects], num_replicas=a.replicas, storage=StorageType.FILE
        ),
        deadline,
    )
    print(f"stream {si.config.name} replicas={si.config.num_replicas} leader={si.cluster.leader}")
    await nc.close()


async def publish(a):
    nc = await connect()
    js = nc.jetstream(timeout=2)
    deadline = time.monotonic() + a.timeout
    stored = 0
    dups = 0
    sem = asyncio.Semaphore(a.window)
    t0 = time.monotonic()

    async def one(i):
        nonlocal stored, dups
        mid = f"{a.prefix}-{i:06d}"
        payload = mid.encode().ljust(a.size, b".")
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


async def count(a):
    nc = await connect()
    js = nc.jetstream(timeout=2)
    si = await retrying("stream info", lambda: js.stream_info(a.stream), time.monotonic() + a.timeout)
    print(si.state.messages)
    await nc.close()


async def consume_all(a):
    nc = await connect()
    js = nc.jetstream(timeout=2)
    deadline = time.monotonic() + a.timeout
    si = await retrying(
        f"stream {a.stream} info (no replica answering?)", lambda: js.stream_info(a.stream), deadline
    )
    total = si.state.messages
    want = a.expect if a.expect is not None else total
    # An ephemeral pull consumer from the first message, removed by the server when idle; one
    # replica in memory, so reading does not wait for a consumer group of its own to elect a leader.
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
    seen = {}
    bad = []
    while len(seen) < want and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(batch=500, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            mid = (m.headers or {}).get("Nats-Msg-Id", "")
            if len(m.data) != a.size or not m.data.startswith(mid.encode()):
                bad.append(f"seq {m.metadata.sequence.stream}: {len(m.data)} B, id {mid!r}")
            seen[mid] = seen.get(mid, 0) + 1
    await nc.close()
    n = sum(seen.values())
    by_prefix = {}
    for mid in seen:
        p = mid.rsplit("-", 1)[0]
        by_prefix[p] = by_prefix.get(p, 0) + 1
    summary = " ".join(f"{p}={c}" for p, c in sorted(by_prefix.items()))
    print(f"consumed {n} of {want} (stream holds {total}): {summary}")
    dup = [k for k, v in seen.items() if v > 1]
    if bad:
        raise Fail(f"{len(bad)} malformed messages, first: {bad[0]}")
    if dup:
        raise Fail(f"{len(dup)} duplicated messages, first: {dup[0]}")
    if n != want:
        raise Fail(f"consumed {n} messages, expected {want}")


def cluster_dict(ci):
    return {
        "leader": ci.leader,
        "replicas": [{"name": r.name, "current": r.current, "offline": r.offline} for r in ci.replicas or []],
    }


async def stream_info(a):
    nc = await connect()
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


async def stream_leader(a):
    nc = await connect()
    js = nc.jetstream(timeout=2)
    si = await retrying("stream info", lambda: js.stream_info(a.stream), time.monotonic() + a.timeout)
    await nc.close()
    if not si.cluster or not si.cluster.leader:
        raise Fail("the stream has no leader")
    if a.healthy:
        # A leader with every replica current: the stream is fully replicated again.
        lagging = [r.name for r in si.cluster.replicas or [] if not r.current or r.offline]
        if len(si.cluster.replicas or []) + 1 != si.config.num_replicas or lagging:
            raise Fail(f"leader {si.cluster.leader}, replicas not all current: {cluster_dict(si.cluster)}")
    print(si.cluster.leader)


def jsz(http_url, query):
    with urllib.request.urlopen(f"{http_url}/jsz?{query}", timeout=2) as r:
        return json.load(r)


async def bystander(a):
    nc = await connect()
    js = nc.jetstream(timeout=2)
    si = await retrying("stream info", lambda: js.stream_info(a.stream), time.monotonic() + a.timeout)
    await nc.close()
    meta = None
    for u in os.environ.get(f"TROUPE_{os.environ.get('JS_CLUSTER', 'NATS').upper()}_HTTP_URLS", "").split(","):
        try:
            meta = jsz(u, "").get("meta_cluster", {}).get("leader")
            if meta:
                break
        except OSError:
            continue
    nodes = [si.cluster.leader] + [r.name for r in si.cluster.replicas or []]
    for n in sorted(nodes):
        if n not in (si.cluster.leader, meta):
            print(n)
            return
    raise Fail(f"no node besides stream leader {si.cluster.leader} and meta leader {meta}")


async def local_count(a):
    d = jsz(a.http_url, "accounts=true&streams=true")
    for acc in d.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if s["name"] == a.stream:
                print(s["state"]["messages"])
                return
    raise Fail(f"{a.http_url} holds no replica of {a.stream}")


async def meta_leader(a):
    print(jsz(a.http_url, "").get("meta_cluster", {}).get("leader") or "")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stream", default="ORDERS")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before giving up (default 20)")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("create-stream")
    c.add_argument("stream_name", nargs="?")
    c.add_argument("--replicas", type=int, default=3)
    c.add_argument("--subjects", default="orders.>")

    c = sub.add_parser("publish")
    c.add_argument("n", type=int)
    c.add_argument("--size", type=int, default=512)
    c.add_argument("--prefix", default="m")
    c.add_argument("--subject", default="orders.new")
    c.add_argument("--window", type=int, default=64, help="publishes in flight (default 64)")
    c.add_argument("--rate", type=float, default=0, help="messages per second (default: as fast as acked)")

    sub.add_parser("count")
    c = sub.add_parser("consume-all")
    c.add_argument("--expect", type=int)
    c.add_argument("--size", type=int, default=512)
    sub.add_parser("stream-info")
    c = sub.add_parser("stream-leader")
    c.add_argument("--healthy", action="store_true", help="fail unless every replica is current")
    sub.add_parser("bystander")
    c = sub.add_parser("local-count")
    c.add_argument("http_url")
    c = sub.add_parser("meta-leader")
    c.add_argument("http_url")

    a = p.parse_args()
    if getattr(a, "stream_name", None):
        a.stream = a.stream_name
    fn = {
        "create-stream": create_stream,
        "publish": publish,
        "count": count,
        "consume-all": consume_all,
        "stream-info": stream_info,
        "stream-leader": stream_leader,
        "bystander": bystander,
        "local-count": local_count,
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
