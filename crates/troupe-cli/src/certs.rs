//! `troupe certs`: the layout of a hand-written `gen_certs.sh`, in milliseconds.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use troupe_spec::{KeyType, exit};

#[derive(Args)]
pub struct CertsArgs {
    /// Directory to write into (created if missing; existing files of the same names are replaced).
    #[arg(long)]
    out: PathBuf,
    /// A cluster to issue a server and a client certificate for; repeat for several.
    #[arg(long = "cluster", required = true, value_name = "NAME")]
    clusters: Vec<String>,
    /// Key algorithm: p256, p384, ed25519, rsa2048, rsa3072 or rsa4096.
    #[arg(long, default_value = "p256", value_parser = parse_key_type)]
    key_type: KeyType,
    /// Per cluster also every deliberately bad certificate, for negative tests:
    /// `<cluster>-bad-{expired,not_yet_valid,wrong_san,no_client_auth,no_server_auth,self_signed}`.
    #[arg(long)]
    bad: bool,
}

fn parse_key_type(s: &str) -> Result<KeyType, String> {
    KeyType::from_name(s).ok_or_else(|| format!("use one of {}", KeyType::NAMES.join(", ")))
}

pub fn run(args: CertsArgs) -> i32 {
    for c in &args.clusters {
        if c.is_empty() || c.contains('/') {
            eprintln!("error: `{c}` is not a usable cluster name (it becomes part of file names)");
            return exit::INVALID_INPUT;
        }
    }
    let started = Instant::now();
    let written = troupe::pki::write_cluster_certs_with_bad(
        &args.out,
        &args.clusters,
        args.key_type,
        args.bad,
    );
    match written {
        Ok(files) => {
            let took = started.elapsed();
            for f in &files {
                println!("{}", f.display());
            }
            eprintln!(
                "wrote {} files in {} (CA + {} cluster{})",
                files.len(),
                troupe_spec::format_duration(took),
                args.clusters.len(),
                if args.clusters.len() == 1 { "" } else { "s" }
            );
            exit::OK
        }
        Err(e) => crate::report(e),
    }
}
