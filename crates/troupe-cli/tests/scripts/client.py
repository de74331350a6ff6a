"""Reads a detached troupe run from Python with the standard library only, and talks to an
etcd member over mutual TLS with the certificates troupe lists. Usage: client.py TROUPE_BIN"""
import http.client
import json
import ssl
import subprocess
import sys

troupe = sys.argv[1]
status = json.loads(subprocess.run([troupe, "status", "--json"], check=True, capture_output=True, text=True).stdout)
env = json.loads(subprocess.run([troupe, "env", "--json"], check=True, capture_output=True, text=True).stdout)

nodes = status["nodes"]
assert [n["state"] for n in nodes] == ["ready"] * 3, nodes
node = nodes[0]
assert env["TROUPE_MAIN_1_CLIENT_URL"] == node["urls"]["client"]
assert env["TROUPE_CA"] == status["ca"]

def get_health(cert):
    ctx = ssl.create_default_context(cafile=status["ca"])
    if cert:
        ctx.load_cert_chain(node["tls"]["client_cert"], node["tls"]["client_key"])
    conn = http.client.HTTPSConnection(node["host"], node["ports"]["client"], context=ctx, timeout=5)
    conn.request("GET", "/health")
    return json.loads(conn.getresponse().read())

assert get_health(cert=True)["health"] == "true"
try:
    get_health(cert=False)
    raise SystemExit("FAIL: served a client without a certificate")
except (ssl.SSLError, ConnectionError, OSError):
    pass
print("PASS")
