//! What the built-in CA issues holds up in a real TLS handshake: a server certificate is
//! accepted for 127.0.0.1, a client certificate from the same CA gets in, and everything else
//! is refused (no certificate, a foreign CA, a client certificate used as a server's).

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
