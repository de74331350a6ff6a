//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every target feeds arbitrary bytes to one of troupe's parsers and, when the parser refuses
//! the input, renders the error the way the `troupe` binary does (miette's graphical handler,
//! with the source snippet), because a span that points outside the text or into the middle of
//! a character panics there, not in the parser.

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use serde_json::{Value as Json, json};

/// Renders `e` as the CLI would (minus colours), plus its `Display` and `Debug` forms.
pub fn render(e: &dyn Diagnostic) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, e)
        .expect("rendering into a String cannot fail");
    out.push_str(&format!("{e}\n{e:?}"));
    out
}

/// The context every template sees, shaped as `troupe::plan` builds it for a two-node cluster
/// with TLS on, plus the `vars` scenarios add: fixed, so a finding reproduces.
pub fn template_context() -> Json {
    let node = |i: u32| {
        let (client, peer) = (2379 + 100 * i, 2380 + 100 * i);
        json!({
            "name": format!("main-{i}"),
            "index": i - 1,
            "cluster": "main",
            "host": "127.0.0.1",
            "ports": {"client": client, "peer": peer, "http": client + 5},
            "urls": {"client": format!("https://127.0.0.1:{client}"), "peer": format!("https://127.0.0.1:{peer}"), "http": format!("http://127.0.0.1:{}", client + 5)},
            "addrs": {"client": format!("127.0.0.1:{client}"), "peer": format!("127.0.0.1:{peer}"), "http": format!("127.0.0.1:{}", client + 5)},
            "dir": format!("/tmp/troupe/nodes/main-{i}"),
            "data_dir": format!("/tmp/troupe/nodes/main-{i}/data"),
            "log": format!("/tmp/troupe/nodes/main-{i}/node.log"),
            "files": {"nats.conf": format!("/tmp/troupe/nodes/main-{i}/nats.conf")},
            "tls": {
                "cert": format!("/tmp/troupe/nodes/main-{i}/tls/server.pem"),
                "key": format!("/tmp/troupe/nodes/main-{i}/tls/server-key.pem"),
                "client_cert": format!("/tmp/troupe/nodes/main-{i}/tls/client.pem"),
                "client_key": format!("/tmp/troupe/nodes/main-{i}/tls/client-key.pem"),
                "ca": "/tmp/troupe/tls/ca.pem",
            },
        })
    };
    let nodes = vec![node(1), node(2)];
    let cluster = json!({"name": "main", "size": 2, "nodes": nodes});
    json!({
        "node": nodes[0],
        "cluster": cluster,
        "clusters": {"main": cluster},
        "tls": {"enabled": true, "ca": "/tmp/troupe/tls/ca.pem"},
        "run": {"name": "demo", "id": "r-0123abcd", "state_dir": "/tmp/troupe", "spec_dir": "examples/demo"},
        "vars": {"VICTIM": "main-2", "LEADER": "main-1"},
    })
}
