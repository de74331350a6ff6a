//! Every endpoint and certificate path of a run as `TROUPE_*` variables: what `troupe env`
//! prints and what scenario commands find in their environment.

use troupe_spec::Descriptor;

pub(crate) fn var(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `host:port`, with an IPv6 host in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Every endpoint and certificate path as `TROUPE_*` variables.
pub fn vars(d: &Descriptor) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        vec![("TROUPE_STATE_DIR".into(), d.state_dir.display().to_string())];
    if let Some(ca) = &d.ca {
        v.push(("TROUPE_CA".into(), ca.display().to_string()));
    }
    // Named CAs (`default` is TROUPE_CA) and all of them in one file.
    for (name, ca) in d.cas.iter().filter(|(n, _)| *n != "default") {
        v.push((format!("TROUPE_CA_{}", var(name)), ca.display().to_string()));
    }
    if let Some(bundle) = &d.ca_bundle {
        v.push(("TROUPE_CA_BUNDLE".into(), bundle.display().to_string()));
    }
    v.push(("TROUPE_SUPERVISOR_PID".into(), d.supervisor_pid.to_string()));
    v.push((
        "TROUPE_NODES".into(),
        d.nodes
            .iter()
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
            .join(" "),
    ));
    for n in &d.nodes {
        let p = format!("TROUPE_{}", var(&n.name));
        v.push((format!("{p}_HOST"), n.host.clone()));
        if let Some(pid) = n.pid {
            v.push((format!("{p}_PID"), pid.to_string()));
        }
        for (port, num) in &n.ports {
            v.push((format!("{p}_{}", var(port)), host_port(&n.host, *num)));
            v.push((format!("{p}_{}_PORT", var(port)), num.to_string()));
            if let Some(url) = n.urls.get(port) {
                v.push((format!("{p}_{}_URL", var(port)), url.clone()));
            }
        }
        v.push((format!("{p}_DATA_DIR"), n.data_dir.display().to_string()));
        v.push((format!("{p}_LOG"), n.log.display().to_string()));
        if let Some(t) = &n.tls {
            v.push((format!("{p}_CERT"), t.cert.display().to_string()));
            v.push((format!("{p}_KEY"), t.key.display().to_string()));
            v.push((
                format!("{p}_CLIENT_CERT"),
                t.client_cert.display().to_string(),
            ));
            v.push((
                format!("{p}_CLIENT_KEY"),
                t.client_key.display().to_string(),
            ));
            if let Some(ca) = &t.ca {
                v.push((format!("{p}_CA"), ca.display().to_string()));
            }
            for (variant, pair) in &t.bad {
                let b = format!("{p}_BAD_{}", var(variant));
                v.push((format!("{b}_CERT"), pair.cert.display().to_string()));
                v.push((format!("{b}_KEY"), pair.key.display().to_string()));
            }
        }
    }
    for c in &d.clusters {
        let p = format!("TROUPE_{}", var(&c.name));
        let nodes: Vec<_> = d.nodes.iter().filter(|n| n.cluster == c.name).collect();
        let ports: std::collections::BTreeSet<&String> =
            nodes.iter().flat_map(|n| n.ports.keys()).collect();
        for port in ports {
            let urls: Vec<&str> = nodes
                .iter()
                .filter_map(|n| n.urls.get(port).map(String::as_str))
                .collect();
            v.push((format!("{p}_{}_URLS", var(port)), urls.join(",")));
            // Bootstrap lists as Kafka-style clients want them: `host:port,host:port`.
            let addrs: Vec<String> = nodes
                .iter()
                .filter_map(|n| n.ports.get(port).map(|num| host_port(&n.host, *num)))
                .collect();
            v.push((format!("{p}_{}_ADDRS", var(port)), addrs.join(",")));
        }
        if let Some(l) = &c.leader {
            v.push((format!("{p}_LEADER"), l.clone()));
        }
    }
    v
}
