//! Writes a throwaway certificate authority and a server certificate signed by it, for
//! trying the relay over HTTPS on this machine (the benchmark and the README's TLS
//! quickstart use it).
//!
//! Run: `cargo run --example gen_cert -- --out DIR`
//!
//! Files written:
//! - `DIR/ca.crt`: the CA certificate (PEM); clients trust it (`curl --cacert`,
//!   `provider --ca`, `oha --cacert`).
//! - `DIR/relay.crt`: the server's chain (PEM), here the leaf alone, valid for
//!   `localhost` and `127.0.0.1`.
//! - `DIR/relay.key`: the leaf's private key (PKCS#8 PEM, mode 0600).
//!
//! The CA's own key is not kept: nothing else can ever be signed by it.
//! Never use these files for anything but local tests.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Write a throwaway CA and a `localhost`/`127.0.0.1` server certificate signed by it.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Directory to write ca.crt, relay.crt and relay.key into (created if missing;
    /// existing files are overwritten).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Names the server certificate is valid for (DNS names or IP addresses).
    #[arg(long = "name", value_name = "NAME", default_values = ["localhost", "127.0.0.1"])]
    names: Vec<String>,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;

    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params(&args.names)?.signed_by(&leaf_key, &ca, &ca_key)?;

    let ca_path = args.out.join("ca.crt");
    let cert_path = args.out.join("relay.crt");
    let key_path = args.out.join("relay.key");
    write_file(&ca_path, &ca.pem(), false)?;
    write_file(&cert_path, &chain_pem(&leaf), false)?;
    write_file(&key_path, &leaf_key.serialize_pem(), true)?;

    println!("CA certificate:     {}", ca_path.display());
    println!(
        "server certificate: {} (valid for {})",
        cert_path.display(),
        args.names.join(", ")
    );
    println!("server key:         {}", key_path.display());
    Ok(())
}

fn ca_params() -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "callback-relay throwaway test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// `CertificateParams::new` turns names that parse as IP addresses into IP SANs.
fn leaf_params(names: &[String]) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    let common_name = names.first().map_or("localhost", String::as_str);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The chain the server presents: the leaf alone (clients already hold the CA).
fn chain_pem(leaf: &Certificate) -> String {
    leaf.pem()
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
