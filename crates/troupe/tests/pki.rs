//! What the built-in CA issues holds up in a real TLS handshake: a server certificate is
//! accepted for 127.0.0.1, a client certificate from the same CA gets in, and everything else
//! is refused (no certificate, a foreign CA, a client certificate used as a server's). Each
//! deliberately bad certificate is refused by the side that checks it, for its own reason; and
//! a run with two CAs gives every node certificates that chain to the CA named for it.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use troupe::client_config;
use troupe::pki::write_cluster_certs;
use troupe_spec::KeyType;

fn server_config(dir: &Path, ca: &Path, stem: &str) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join(format!("{stem}.pem")))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{stem}.key"))).unwrap();
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// Why a connection failed: the TLS error each side saw, if any, else what else went wrong.
#[derive(Debug)]
struct Refused {
    server: Option<rustls::Error>,
    client: Option<rustls::Error>,
    other: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server saw {:?}, client saw {:?} ({})",
            self.server, self.client, self.other
        )
    }
}

fn tls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

/// Like [`exchange`], with the TLS errors kept: Ok if both sides accepted each other.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<(), Refused> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = tokio_rustls::TlsAcceptor::from(server).accept(tcp).await?;
        s.write_all(b"welcome").await?;
        s.shutdown().await
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let client_side = async {
        let mut s = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    }
    .await;
    let server_side = accept.await.unwrap();
    match (server_side, client_side) {
        (Ok(()), Ok(msg)) if msg == "welcome" => Ok(()),
        (s, c) => Err(Refused {
            server: s.as_ref().err().and_then(tls_error),
            client: c.as_ref().err().and_then(tls_error),
            other: format!("server: {s:?}, client: {c:?}"),
        }),
    }
}

/// One connection: Ok(message) if the server accepted the client and the client the server.
async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match tokio_rustls::TlsAcceptor::from(server).accept(tcp).await {
            Ok(mut s) => {
                let _ = s.write_all(b"welcome").await;
                let _ = s.shutdown().await;
            }
            Err(e) => return Err(format!("server refused: {e}")),
        }
        Ok(())
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let client_side = async {
        let mut s = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("client refused: {e}"))?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(buf)
    }
    .await;
    let server_side = accept.await.unwrap();
    match (server_side, client_side) {
        (Ok(()), Ok(msg)) if msg == "welcome" => Ok(msg),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (_, Ok(other)) => Err(format!("unexpected reply {other:?}")),
    }
}

async fn check_set(key_type: KeyType) {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let files = write_cluster_certs(ours.path(), &["a".into(), "b".into()], key_type).unwrap();
    assert_eq!(files.len(), 10);
    write_cluster_certs(theirs.path(), &["x".into()], key_type).unwrap();
    let (o, t) = (ours.path(), theirs.path());
    let ca = o.join("ca.pem");
    let server = server_config(o, &ca, "a-server");

    // Our client certificate, of either cluster: accepted, and the server's SAN 127.0.0.1 checks out.
    for stem in ["a-client", "b-client", "b-server"] {
        let client = client_config(
            &ca,
            Some((
                &o.join(format!("{stem}.pem")),
                &o.join(format!("{stem}.key")),
            )),
        )
        .unwrap();
        exchange(server.clone(), client)
            .await
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
    // No client certificate.
    let anon = client_config(&ca, None).unwrap();
    assert!(
        exchange(server.clone(), anon).await.is_err(),
        "a client without a certificate got in"
    );
    // A client certificate from another CA.
    let foreign = client_config(
        &ca,
        Some((&t.join("x-client.pem"), &t.join("x-client.key"))),
    )
    .unwrap();
    assert!(
        exchange(server.clone(), foreign).await.is_err(),
        "a foreign CA's client got in"
    );
    // A client that trusts another CA does not trust our server.
    let distrust = client_config(
        &t.join("ca.pem"),
        Some((&t.join("x-client.pem"), &t.join("x-client.key"))),
    )
    .unwrap();
    assert!(
        exchange(server.clone(), distrust).await.is_err(),
        "a client trusted a server of another CA"
    );
    // A client certificate (client auth only) cannot serve.
    let impostor = server_config(o, &ca, "a-client");
    let client = client_config(
        &ca,
        Some((&o.join("b-client.pem"), &o.join("b-client.key"))),
    )
    .unwrap();
    assert!(
        exchange(impostor, client).await.is_err(),
        "a client certificate was accepted as a server's"
    );
}

#[tokio::test]
async fn p256_certificates_hold_up_in_real_mtls_handshakes() {
    check_set(KeyType::P256).await;
}

#[tokio::test]
async fn rsa_certificates_hold_up_in_real_mtls_handshakes() {
    check_set(KeyType::Rsa2048).await;
}

#[test]
fn private_keys_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for f in write_cluster_certs(dir.path(), &["a".into()], KeyType::P256).unwrap() {
        let mode = f.metadata().unwrap().permissions().mode() & 0o777;
        let expected = if f.extension().unwrap() == "key" {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{}", f.display());
    }
}

/// What a refusal must be: which side refuses, and the certificate error it names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reason {
    Expired,
    NotValidYet,
    NotValidForName,
    InvalidPurpose,
    UnknownIssuer,
}

fn reason(e: &rustls::Error) -> Option<Reason> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e else {
        return None;
    };
    Some(match c {
        C::Expired | C::ExpiredContext { .. } => Reason::Expired,
        C::NotValidYet | C::NotValidYetContext { .. } => Reason::NotValidYet,
        C::NotValidForName | C::NotValidForNameContext { .. } => Reason::NotValidForName,
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => Reason::InvalidPurpose,
        C::UnknownIssuer => Reason::UnknownIssuer,
        _ => return None,
    })
}

/// The server refused the client's certificate for `why`.
fn server_refused(got: Result<(), Refused>, why: Reason, what: &str) {
    let e = got.expect_err(&format!("{what}: the server let the client in"));
    assert_eq!(
        e.server.as_ref().and_then(reason),
        Some(why),
        "{what}: the server refused for another reason: {e}"
    );
}

/// The client refused the server's certificate for `why`.
fn client_refused(got: Result<(), Refused>, why: Reason, what: &str) {
    let e = got.expect_err(&format!("{what}: the client trusted the server"));
    assert_eq!(
        e.client.as_ref().and_then(reason),
        Some(why),
        "{what}: the client refused for another reason: {e}"
    );
}

#[tokio::test]
async fn each_bad_certificate_is_refused_for_its_own_reason_and_the_good_ones_get_in() {
    use troupe::pki::{BadCert, Ca, write_pair};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test CA", KeyType::P256).unwrap();
    write_pair(d, "ca", ca.cert()).unwrap();
    write_pair(d, "server", &ca.issue_server("n-1", &[]).unwrap()).unwrap();
    write_pair(d, "client", &ca.issue_client("n-1").unwrap()).unwrap();
    for b in BadCert::ALL {
        write_pair(d, b.name(), &ca.issue_bad(b, "n-1", &[]).unwrap()).unwrap();
    }
    let cafile = d.join("ca.pem");
    let as_server = |stem: &str| server_config(d, &cafile, stem);
    let as_client = |stem: &str| {
        client_config(
            &cafile,
            Some((
                &d.join(format!("{stem}.pem")),
                &d.join(format!("{stem}.key")),
            )),
        )
        .unwrap()
    };

    // The good pair: both sides accept.
    handshake(as_server("server"), as_client("client"))
        .await
        .expect("the good server and client certificates");

    // Presented by a client to a server that asks for our CA's client certificates.
    let client_cases = [
        ("expired", Reason::Expired),
        ("not_yet_valid", Reason::NotValidYet),
        ("no_client_auth", Reason::InvalidPurpose),
        ("self_signed", Reason::UnknownIssuer),
    ];
    for (stem, why) in client_cases {
        let got = handshake(as_server("server"), as_client(stem)).await;
        server_refused(got, why, &format!("{stem} as a client certificate"));
    }
    // Presented by a server to a client that trusts our CA and dials 127.0.0.1.
    let server_cases = [
        ("expired", Reason::Expired),
        ("not_yet_valid", Reason::NotValidYet),
        ("wrong_san", Reason::NotValidForName),
        ("no_server_auth", Reason::InvalidPurpose),
        ("self_signed", Reason::UnknownIssuer),
    ];
    for (stem, why) in server_cases {
        let got = handshake(as_server(stem), as_client("client")).await;
        client_refused(got, why, &format!("{stem} as a server certificate"));
    }
    // Each variant is wrong in its one way only: used where that way does not matter, it works.
    // (A client certificate's names are not checked; a server certificate needs no client auth,
    // a client certificate no server auth.)
    for stem in ["wrong_san", "no_server_auth"] {
        handshake(as_server("server"), as_client(stem))
            .await
            .unwrap_or_else(|e| panic!("{stem} as a client certificate: {e}"));
    }
    handshake(as_server("no_client_auth"), as_client("client"))
        .await
        .expect("no_client_auth as a server certificate");
}

#[test]
fn certs_with_bad_writes_every_variant_per_cluster_with_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let files =
        troupe::pki::write_cluster_certs_with_bad(dir.path(), &["a".into()], KeyType::P256, true)
            .unwrap();
    // CA, server, client and six bad pairs.
    assert_eq!(files.len(), 2 * (3 + 6));
    for b in troupe::pki::BadCert::ALL {
        let key = dir.path().join(format!("a-bad-{}.key", b.name()));
        let mode = key.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        assert!(files.contains(&key.with_extension("pem")));
    }
}

fn two_ca_spec() -> &'static str {
    r#"
[tls]
cas = ["other"]
bad = true

# Node 3 of `a` has its certificates from `other`, the rest from `default`.
[clusters.a]
nodes = 3
binary = "sleep"
args = ["1000"]
ca = "{{ 'other' if node.index == 3 else 'default' }}"

[clusters.a.files."paths.txt"]
template = """
{{ node.tls.ca_name }}
{{ node.tls.ca }}
{{ tls.cas.other }}
{{ tls.bundle }}
{{ node.tls.bad.expired.cert }}
{{ node.tls.bad.self_signed.key }}"""

[clusters.b]
nodes = 1
binary = "sleep"
args = ["1000"]
ca = "other"
"#
}

#[test]
fn nodes_chain_to_the_ca_named_for_them_in_a_run_with_two_cas() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = troupe::Cluster::from_toml("two-cas.toml", two_ca_spec())
        .start()
        .unwrap();
    let d = cluster.descriptor();
    let default_ca = d.cas["default"].clone();
    let other_ca = d.cas["other"].clone();
    assert_eq!(
        d.ca.as_ref(),
        Some(&default_ca),
        "`default` is the run's CA"
    );
    assert!(
        default_ca.ends_with("tls/ca.pem"),
        "{}",
        default_ca.display()
    );
    assert!(
        other_ca.ends_with("tls/ca-other.pem"),
        "{}",
        other_ca.display()
    );
    let bundle = d.ca_bundle.clone().expect("a bundle");
    assert_eq!(
        CertificateDer::pem_file_iter(&bundle).unwrap().count(),
        2,
        "the bundle holds both CAs"
    );
    let env: std::collections::BTreeMap<_, _> = troupe::envvars::vars(&d).into_iter().collect();
    assert_eq!(env["TROUPE_CA_OTHER"], other_ca.display().to_string());
    assert_eq!(env["TROUPE_CA_BUNDLE"], bundle.display().to_string());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let expected = [
        ("a-1", "default"),
        ("a-2", "default"),
        ("a-3", "other"),
        ("b-1", "other"),
    ];
    for (name, ca_name) in expected {
        let n = d.nodes.iter().find(|n| n.name == name).unwrap();
        let t = n.tls.as_ref().unwrap();
        let (own, foreign) = match ca_name {
            "default" => (&default_ca, &other_ca),
            _ => (&other_ca, &default_ca),
        };
        assert_eq!(t.ca_name.as_deref(), Some(ca_name), "{name}");
        assert_eq!(t.ca.as_ref(), Some(own), "{name}");
        let var = format!("TROUPE_{}_CA", name.to_uppercase().replace('-', "_"));
        assert_eq!(env[&var], own.display().to_string(), "{var}");

        // The node's server certificate chains to its own CA, and not to the other one.
        let dir = t.cert.parent().unwrap();
        let server = server_config(dir, own, "server");
        let identity = Some((t.client_cert.as_path(), t.client_key.as_path()));
        rt.block_on(handshake(
            server.clone(),
            client_config(own, identity).unwrap(),
        ))
        .unwrap_or_else(|e| panic!("{name} with its own CA: {e}"));
        let got = rt.block_on(handshake(server, client_config(foreign, identity).unwrap()));
        client_refused(
            got,
            Reason::UnknownIssuer,
            &format!("{name} against the other CA"),
        );
        // Its client certificate is refused by a server that trusts only the other CA, and
        // accepted by one that trusts the bundle of both.
        let bundle_server = server_config(dir, &bundle, "server");
        rt.block_on(handshake(
            bundle_server,
            client_config(own, identity).unwrap(),
        ))
        .unwrap_or_else(|e| panic!("{name} at a server trusting the bundle: {e}"));
        let other_server = server_config(dir, foreign, "server");
        let got = rt.block_on(handshake(
            other_server,
            client_config(&bundle, identity).unwrap(),
        ));
        server_refused(
            got,
            Reason::UnknownIssuer,
            &format!("{name} at a server of the other CA"),
        );

        // Every bad variant is there, from the same CA, with a private key.
        assert_eq!(t.bad.len(), 6, "{name}");
        for (variant, pair) in &t.bad {
            let key_mode = pair.key.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(key_mode, 0o600, "{}", pair.key.display());
            let var = format!(
                "TROUPE_{}_BAD_{}_CERT",
                name.to_uppercase().replace('-', "_"),
                variant.to_uppercase()
            );
            assert_eq!(env[&var], pair.cert.display().to_string(), "{var}");
        }
        let expired = Some((
            t.bad["expired"].cert.as_path(),
            t.bad["expired"].key.as_path(),
        ));
        let server = server_config(dir, own, "server");
        let got = rt.block_on(handshake(server, client_config(own, expired).unwrap()));
        server_refused(
            got,
            Reason::Expired,
            &format!("{name}'s expired certificate"),
        );

        if let Some(a) = name.strip_prefix("a-") {
            let paths =
                std::fs::read_to_string(n.data_dir.parent().unwrap().join("paths.txt")).unwrap();
            let want = [
                ca_name.to_string(),
                own.display().to_string(),
                other_ca.display().to_string(),
                bundle.display().to_string(),
                t.bad["expired"].cert.display().to_string(),
                t.bad["self_signed"].key.display().to_string(),
            ];
            assert_eq!(paths.lines().collect::<Vec<_>>(), want, "a-{a}'s paths.txt");
        }
    }
    cluster.stop();
}
