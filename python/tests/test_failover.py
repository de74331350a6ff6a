import json, urllib.request
from troupe.pytest_plugin import troupe_cluster

etcd = troupe_cluster("../../examples/etcd/cluster.toml", scope="module")


def test_a_new_leader_takes_writes_after_the_leader_is_killed(etcd):
    [old] = etcd.kill("main:leader")  # the node it killed
    new = etcd.node(etcd.wait_leader())
    assert new.name != old
    put = json.dumps({"key": "aw==", "value": "djE="}).encode()  # k=v1 for etcd's JSON API
    urllib.request.urlopen(new.url("client") + "/v3/kv/put", put, context=new.ssl_context())
    etcd.start(old)  # same ports, data and certificates; waits until ready
    assert etcd.status().cluster("main").failovers[-1].to == new.name
