//! The built-in certificate authority: a fresh CA per run, and per node a server certificate
//! (server and client auth, so it also serves as a peer identity) and a client certificate
//! (client auth only). No openssl: rcgen in-process, P-256 by default, RSA on request.
//!
//! For negative tests a CA also issues deliberately bad certificates ([`BadCert`]): each is
//! wrong in exactly one way and right in every other (same CA, same SANs, both usages), so a
//! peer that refuses it can only be refusing it for that reason.
//!
//! Private keys are written with mode 0600 from the moment they exist (never chmod'ed after).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use troupe_spec::KeyType;

use crate::error::{Error, io_err};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that lives for one run.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    key_type: KeyType,
    cert: Issued,
}

fn key_pair(key_type: KeyType) -> Result<KeyPair, rcgen::Error> {
    use rcgen::RsaKeySize::*;
    match key_type {
        KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, _2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, _3072),
        KeyType::Rsa4096 | _ => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, _4096),
    }
}

fn pki_err(what: &str, e: rcgen::Error) -> Error {
    Error::Pki(format!("{what}: {e}"))
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "troupe");
    dn
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

fn validity(params: &mut CertificateParams) {
    // Valid from a day ago (clock skew between hosts later) for a year: runs are short, but a
    // kept state dir should still be usable for a while.
    let now = std::time::SystemTime::now();
    params.not_before = (now - DAY).into();
    params.not_after = (now + 365 * DAY).into();
}

/// A certificate that is wrong in one way, for tests that a peer refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCert {
    /// Validity ended yesterday.
    Expired,
    /// Validity starts tomorrow.
    NotYetValid,
    /// Its only SAN is `wrong-san.invalid`: no `localhost`, no address of the node.
    WrongSan,
    /// Server auth only: refused as a client certificate.
    NoClientAuth,
    /// Client auth only: refused as a server certificate.
    NoServerAuth,
    /// Signed by its own key, not by a CA.
    SelfSigned,
}

impl BadCert {
    pub const ALL: [BadCert; 6] = [
        BadCert::Expired,
        BadCert::NotYetValid,
        BadCert::WrongSan,
        BadCert::NoClientAuth,
        BadCert::NoServerAuth,
        BadCert::SelfSigned,
    ];

    /// The name in templates (`node.tls.bad.<name>`), file names and `TROUPE_*` variables.
    pub fn name(self) -> &'static str {
        match self {
            BadCert::Expired => "expired",
            BadCert::NotYetValid => "not_yet_valid",
            BadCert::WrongSan => "wrong_san",
            BadCert::NoClientAuth => "no_client_auth",
            BadCert::NoServerAuth => "no_server_auth",
            BadCert::SelfSigned => "self_signed",
        }
    }
}

/// SANs `localhost`, `127.0.0.1`, `::1` and `extra` (IP addresses become IP SANs, anything
/// else a DNS name).
fn server_sans(extra: &[String]) -> Result<Vec<SanType>, Error> {
    let mut sans = vec![
        SanType::DnsName("localhost".try_into().expect("ascii")),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress("::1".parse().expect("ip")),
    ];
    for s in extra {
        let san = match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                s.as_str()
                    .try_into()
                    .map_err(|e| pki_err(&format!("SAN `{s}`"), e))?,
            ),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn leaf_params(
    common_name: &str,
    sans: Vec<SanType>,
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = eku;
    validity(&mut params);
    params
}

impl Ca {
    /// A new self-signed CA, `CN = <common_name>`.
    pub fn new(common_name: &str, key_type: KeyType) -> Result<Ca, Error> {
        let key = key_pair(key_type).map_err(|e| pki_err("generating the CA key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let cert = params
            .self_signed(&key)
            .map_err(|e| pki_err("self-signing the CA", e))?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Ca {
            issuer: Issuer::new(params, key),
            key_type,
            cert: issued,
        })
    }

    pub fn cert(&self) -> &Issued {
        &self.cert
    }

    /// A server certificate: SANs `localhost`, `127.0.0.1`, `::1` and `extra_sans` (IP addresses
    /// become IP SANs, anything else a DNS name); server and client auth.
    pub fn issue_server(&self, common_name: &str, extra_sans: &[String]) -> Result<Issued, Error> {
        let params = leaf_params(
            common_name,
            server_sans(extra_sans)?,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        self.sign(common_name, params)
    }

    /// A client certificate: `CN = <common_name>`, client auth only.
    pub fn issue_client(&self, common_name: &str) -> Result<Issued, Error> {
        let params = leaf_params(
            common_name,
            vec![],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        self.sign(common_name, params)
    }

    /// A certificate like [`Ca::issue_server`]'s (so usable as a server's or a client's) but
    /// wrong in the one way `bad` says.
    pub fn issue_bad(
        &self,
        bad: BadCert,
        common_name: &str,
        extra_sans: &[String],
    ) -> Result<Issued, Error> {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let sans = server_sans(extra_sans)?;
        let mut params = leaf_params(common_name, sans, vec![ServerAuth, ClientAuth]);
        let now = std::time::SystemTime::now();
        match bad {
            BadCert::Expired => {
                params.not_before = (now - 30 * DAY).into();
                params.not_after = (now - DAY).into();
            }
            BadCert::NotYetValid => {
                params.not_before = (now + DAY).into();
                params.not_after = (now + 365 * DAY).into();
            }
            BadCert::WrongSan => {
                params.subject_alt_names = vec![SanType::DnsName(
                    "wrong-san.invalid".try_into().expect("ascii"),
                )];
            }
            BadCert::NoClientAuth => params.extended_key_usages = vec![ServerAuth],
            BadCert::NoServerAuth => params.extended_key_usages = vec![ClientAuth],
            BadCert::SelfSigned => {
                let key = key_pair(self.key_type)
                    .map_err(|e| pki_err(&format!("generating the key of `{common_name}`"), e))?;
                let cert = params.self_signed(&key).map_err(|e| {
                    pki_err(
                        &format!("self-signing the certificate of `{common_name}`"),
                        e,
                    )
                })?;
                return Ok(Issued {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                });
            }
        }
        self.sign(common_name, params)
    }

    fn sign(&self, common_name: &str, mut params: CertificateParams) -> Result<Issued, Error> {
        let key = key_pair(self.key_type)
            .map_err(|e| pki_err(&format!("generating the key of `{common_name}`"), e))?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| pki_err(&format!("signing the certificate of `{common_name}`"), e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes a file that is created with `mode` (keys: 0o600), replacing any old one.
pub fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_err("create", path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| io_err("write", path, e))
}

/// Writes `cert.pem` as `<stem>.pem` (0644) and its key as `<stem>.key` (0600) in `dir`.
pub fn write_pair(dir: &Path, stem: &str, issued: &Issued) -> Result<(PathBuf, PathBuf), Error> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    write_private(&cert, &issued.cert_pem, 0o644)?;
    write_private(&key, &issued.key_pem, 0o600)?;
    Ok((cert, key))
}

/// The layout of a hand-written `gen_certs.sh`: `ca.pem`, `ca.key`, and per cluster
/// `<cluster>-server.pem/.key` and `<cluster>-client.pem/.key`. Returns the files written.
pub fn write_cluster_certs(
    out: &Path,
    clusters: &[String],
    key_type: KeyType,
) -> Result<Vec<PathBuf>, Error> {
    write_cluster_certs_with_bad(out, clusters, key_type, false)
}

/// [`write_cluster_certs`], and with `bad` per cluster every [`BadCert`] as
/// `<cluster>-bad-<variant>.pem/.key` too (`a-bad-expired.pem`, ...).
pub fn write_cluster_certs_with_bad(
    out: &Path,
    clusters: &[String],
    key_type: KeyType,
    bad: bool,
) -> Result<Vec<PathBuf>, Error> {
    fs::create_dir_all(out).map_err(|e| io_err("create directory", out, e))?;
    let ca = Ca::new("troupe CA", key_type)?;
    let mut written = Vec::new();
    let (c, k) = write_pair(out, "ca", ca.cert())?;
    written.extend([c, k]);
    for cluster in clusters {
        let server = ca.issue_server(&format!("{cluster}-server"), &[])?;
        let (c, k) = write_pair(out, &format!("{cluster}-server"), &server)?;
        written.extend([c, k]);
        let client = ca.issue_client(&format!("{cluster}-client"))?;
        let (c, k) = write_pair(out, &format!("{cluster}-client"), &client)?;
        written.extend([c, k]);
        for variant in BadCert::ALL.into_iter().filter(|_| bad) {
            let cert = ca.issue_bad(variant, &format!("{cluster}-bad"), &[])?;
            let (c, k) = write_pair(out, &format!("{cluster}-bad-{}", variant.name()), &cert)?;
            written.extend([c, k]);
        }
    }
    Ok(written)
}
