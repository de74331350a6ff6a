//! The link-proxy backend with the fixture: every directed link between a cluster's nodes
//! goes through a proxy that templates and the descriptor name; partitions cut exactly the
//! links they should, heal restores them, degrade delays, and what it cannot do is refused.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use troupe::Cluster;
use troupe_spec::control::Fault;

fn cluster() -> Cluster {
    let spec = format!(
        r#"
[clusters.fx]
nodes = 3
binary = "{}"
network = "proxies"
ports = ["main"]
args = ["--listen", "{{{{ node.addrs.main }}}}", "--say", "links: {{% for p, l in node.links | items %}}{{{{ p }}}}={{{{ l.addrs.main }}}} {{% endfor %}}"]
[[clusters.fx.ready]]
tcp = "main"
timeout = "10s"
"#,
        common::fixture_bin().display()
    );
    Cluster::from_toml("links.toml", spec).start().unwrap()
}

/// One request through `addr`: Some(elapsed) if the fixture answered within `limit`.
fn ask(addr: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .ends_with("ok")
        .then(|| started.elapsed())
}

fn link(c: &Cluster, from: &str, to: &str) -> String {
    c.node(from).unwrap().0.links[to]["main"].clone()
}

#[test]
fn link_proxies_carry_each_directed_link_and_faults_cut_exactly_those() {
    let c = cluster();
    // Templates and the descriptor agree on the link addresses.
    let log = std::fs::read_to_string(c.node("fx-1").unwrap().log()).unwrap();
    assert!(
        log.contains(&format!("fx-2={}", link(&c, "fx-1", "fx-2"))),
        "{log}"
    );
    let long = Duration::from_secs(5);
    let short = Duration::from_millis(300);
    assert!(
        ask(&link(&c, "fx-1", "fx-2"), long).is_some(),
        "fx-1 -> fx-2 through its proxy"
    );

    c.fault(Fault::Partition {
        groups: vec![vec!["fx-1".into()], vec!["fx-2".into(), "fx-3".into()]],
        bridge: None,
    })
    .unwrap();
    assert!(
        ask(&link(&c, "fx-1", "fx-2"), short).is_none(),
        "fx-1 still reaches fx-2"
    );
    assert!(
        ask(&link(&c, "fx-3", "fx-1"), short).is_none(),
        "fx-3 still reaches fx-1"
    );
    assert!(
        ask(&link(&c, "fx-2", "fx-3"), long).is_some(),
        "the majority side was cut too"
    );

    c.heal().unwrap();
    assert!(
        ask(&link(&c, "fx-1", "fx-2"), long).is_some(),
        "heal did not restore fx-1 -> fx-2"
    );

    c.fault(Fault::Reset {
        from: vec!["fx-1".into()],
        to: vec!["fx-2".into()],
    })
    .unwrap();
    assert!(
        ask(&link(&c, "fx-1", "fx-2"), short).is_none(),
        "a reset link still answered"
    );
    assert!(
        ask(&link(&c, "fx-2", "fx-1"), long).is_some(),
        "the reverse link was reset too"
    );
    c.heal().unwrap();
    assert!(
        ask(&link(&c, "fx-1", "fx-2"), long).is_some(),
        "heal did not undo the reset"
    );

    let err = c
        .fault(Fault::Isolate {
            targets: vec!["fx-1".into()],
            host: true,
        })
        .unwrap_err();
    assert!(matches!(err, troupe::Error::Refused { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("cannot cut fx-1 off from the host"),
        "{err}"
    );

    c.fault(Fault::Degrade {
        targets: vec!["fx-1".into()],
        delay_ms: 100.0,
        jitter_ms: 0.0,
        loss_pct: 0.0,
        rate: None,
    })
    .unwrap();
    let slow = ask(&link(&c, "fx-1", "fx-2"), long).expect("a degraded link still answers");
    assert!(
        slow >= Duration::from_millis(100),
        "100 ms of delay took {slow:?}"
    );
    let records = c.descriptor().faults;
    assert_eq!(
        records.len(),
        3,
        "refused faults are not recorded: {records:?}"
    );
    assert!(records[0].healed_at_ms.is_some() && records[1].healed_at_ms.is_some());
    assert!(records[2].healed_at_ms.is_none());
}
