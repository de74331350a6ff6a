import json, urllib.request
from base64 import b64encode as b64
from troupe.pytest_plugin import troupe_cluster

etcd = troupe_cluster("../../examples/etcd/cluster.toml", scope="module")

def put(node, key, value):  # etcd's JSON gateway, over mTLS with the node's client certificate
    body = json.dumps({"key": b64(key).decode(), "value": b64(value).decode()}).encode()
    urllib.request.urlopen(node.url("client") + "/v3/kv/put", body, context=node.ssl_context())

def test_a_new_leader_takes_writes_after_the_leader_is_killed(etcd):
    [old] = etcd.kill("main:leader")  # the node it killed
    new = etcd.wait_leader()
    assert new != old
    put(etcd.node(new), b"k", b"written after the failover")
    etcd.start(old)  # same ports, data and certificates; waits until ready
    assert etcd.status().cluster("main").failovers[-1].to == new
