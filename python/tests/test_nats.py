"""The client against a real 3-node NATS JetStream cluster: the meta leader is killed and
another takes over, and a message published on one node reaches a subscriber on another.
NATS's text protocol is spoken over a plain socket, so the test needs no client library."""

import socket
import time

from conftest import EXAMPLES
from troupe.pytest_plugin import troupe_cluster

nats = troupe_cluster(EXAMPLES / "nats-lifecycle" / "cluster.toml", scope="module")


class Conn:
    """One client connection, speaking NATS's text protocol."""

    def __init__(self, node):
        self.sock = socket.create_connection((node.host, node.port("client")), timeout=10)
        self.buf = b""
        assert self.readline(10).startswith(b"INFO ")
        self.send(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        self.ping()

    def send(self, data):
        self.sock.sendall(data)

    def readline(self, timeout):
        """The next line, or None if none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                return None
            assert chunk, "the server closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def ping(self):
        """PING, PONG: the server has processed everything sent before."""
        self.send(b"PING\r\n")
        line = self.readline(10)
        assert line == b"PONG", line

    def close(self):
        self.sock.close()


def test_the_meta_leader_is_killed_and_another_takes_over(nats):
    [old] = nats.kill("nats:leader")
    new = nats.wait_leader(timeout=30)
    assert new != old
    nats.start(old)
    assert nats.status().cluster("nats").failovers[-1].from_ == old


def test_a_message_crosses_the_cluster(nats):
    sub, pub = Conn(nats.node("nats-1")), Conn(nats.node("nats-3"))
    try:
        sub.send(b"SUB greetings 1\r\n")
        sub.ping()
        # The subscription reaches the other nodes over the routes a moment later: publish
        # until a message arrives, for at most 10 s.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pub.send(b"PUB greetings 5\r\nhello\r\n")
            pub.ping()
            line = sub.readline(0.2)
            if line is not None:
                assert line.startswith(b"MSG greetings 1 5"), line
                assert sub.readline(10) == b"hello"
                return
        raise AssertionError("no message reached nats-1 from nats-3 within 10 s")
    finally:
        sub.close()
        pub.close()
