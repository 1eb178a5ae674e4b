//! Mutual TLS between relays and their clients (rustls, ring provider), and
//! the certificate authority that `drc tls init` writes.
//!
//! A server built from [`TlsConfig`] demands a client certificate signed by the
//! configured CA: a client without one, or with one from another CA, fails the
//! handshake. Clients verify the server against the same CA and the host name
//! (or IP) of the URL. Both sides offer only HTTP/2 (ALPN `h2`).
//!
//! [`generate`] creates a CA (`ca.pem`, `ca.key`) and one certificate per
//! region (`REGION.pem`, `REGION.key`) usable as server and as client: its
//! names are `localhost`, `127.0.0.1`, the region and `relay-REGION`. Keys are
//! written with mode 0600 and never overwritten. A CA that already exists is
//! reused, so regions can be added later.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;

use crate::error::{RelayError, Result};

/// TLS files of a listener or of a client: the CA that signs the peers, and
/// this side's own certificate chain and private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) that a peer's certificate must be signed by.
    pub ca: PathBuf,
    /// This side's certificate (chain), PEM.
    pub cert: PathBuf,
    /// This side's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// ALPN protocol of gRPC.
const ALPN_H2: &[u8] = b"h2";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| {
        RelayError::Tls(format!(
            "cannot read the {what} file {}: {e}; create it with `drc tls init DIR` or fix the path",
            path.display()
        ))
    })
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| RelayError::Tls(format!("bad PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(RelayError::Tls(format!(
            "{} holds no certificate (expected PEM \"BEGIN CERTIFICATE\")",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| RelayError::Tls(format!("no usable private key in {}: {e}", path.display())))
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "CA certificate")? {
        roots.add(cert).map_err(|e| {
            RelayError::Tls(format!("bad CA certificate in {}: {e}", path.display()))
        })?;
    }
    Ok(Arc::new(roots))
}

impl TlsConfig {
    /// Server side: our certificate, and client certificates required and
    /// verified against the CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let roots = load_roots(&self.ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| RelayError::Tls(format!("client verifier: {e}")))?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| RelayError::Tls(format!("protocol versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(load_certs(&self.cert, "certificate")?, load_key(&self.key)?)
            .map_err(|e| self.mismatch(e))?;
        cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(cfg))
    }

    fn mismatch(&self, e: rustls::Error) -> RelayError {
        RelayError::Tls(format!(
            "certificate {} and key {} do not go together: {e}",
            self.cert.display(),
            self.key.display()
        ))
    }

    /// Client side: the server verified against the CA, our certificate
    /// presented when asked.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let roots = load_roots(&self.ca)?;
        let mut cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| RelayError::Tls(format!("protocol versions: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(load_certs(&self.cert, "certificate")?, load_key(&self.key)?)
            .map_err(|e| self.mismatch(e))?;
        cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// The name a client checks the server certificate against.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| RelayError::Config(format!("bad server name {host:?} in url: {e}")))
}

/// File names [`generate`] writes.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

/// What [`generate`] did.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// True when the CA was created now, false when an existing one was used.
    pub ca_created: bool,
    /// Files written, in order.
    pub written: Vec<PathBuf>,
}

/// Years a certificate stays valid.
const CA_VALID_YEARS: i64 = 10;
const LEAF_VALID_YEARS: i64 = 5;

/// The CA's parameters. They are the same every time, so a CA certificate
/// rebuilt from `ca.key` issues certificates that verify under the `ca.pem`
/// written the first time (same subject, same key).
fn ca_params() -> Result<rcgen::CertificateParams> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "DRC");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "DRC relay CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let (from, to) = validity(CA_VALID_YEARS);
    p.not_before = from;
    p.not_after = to;
    Ok(p)
}

fn validity(years: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for peers whose clocks are behind.
    (
        now - time::Duration::days(1),
        now + time::Duration::days(365 * years),
    )
}

fn rcgen_err(e: rcgen::Error) -> RelayError {
    RelayError::Tls(format!("certificate generation: {e}"))
}

/// A region name usable as a file name and a DNS name.
fn check_region(region: &str) -> Result<()> {
    let ok = !region.is_empty()
        && region.len() <= 63
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-')
        && region != "ca";
    if ok {
        Ok(())
    } else {
        Err(RelayError::Config(format!(
            "bad region name {region:?}: use letters, digits and '-' (a DNS label), not \"ca\""
        )))
    }
}

/// Creates (or reuses) the CA in `dir` and a certificate for each region.
/// Refuses to overwrite an existing region certificate or key.
pub fn generate(dir: &Path, regions: &[String]) -> Result<Generated> {
    generate_with_sans(dir, regions, &[])
}

/// [`generate`], adding names to region certificates: `(region, name)` pairs
/// where the name is a DNS name or an IP address the region's relay is
/// reached by (e.g. `("a", "10.0.0.5")`).
pub fn generate_with_sans(
    dir: &Path,
    regions: &[String],
    extra: &[(String, String)],
) -> Result<Generated> {
    for (r, _) in extra {
        if !regions.contains(r) {
            return Err(RelayError::Config(format!(
                "--san names region {r:?}, which is not in --regions"
            )));
        }
    }
    for r in regions {
        check_region(r)?;
    }
    for r in regions {
        for f in [dir.join(format!("{r}.pem")), dir.join(format!("{r}.key"))] {
            if f.exists() {
                return Err(RelayError::Config(format!(
                    "{} already exists; remove it to issue a new certificate for region {r:?}",
                    f.display()
                )));
            }
        }
    }
    fs::create_dir_all(dir).map_err(|e| RelayError::io("create directory", dir, e))?;
    let mut out = Generated::default();
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let (ca_key, ca_cert) = match (ca_cert_path.exists(), ca_key_path.exists()) {
        (true, true) => {
            let pem = fs::read_to_string(&ca_key_path)
                .map_err(|e| RelayError::io("read CA key", &ca_key_path, e))?;
            let key = rcgen::KeyPair::from_pem(&pem).map_err(rcgen_err)?;
            let cert = ca_params()?.self_signed(&key).map_err(rcgen_err)?;
            (key, cert)
        }
        (false, false) => {
            let key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
            let cert = ca_params()?.self_signed(&key).map_err(rcgen_err)?;
            write_file(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
            write_file(&ca_cert_path, cert.pem().as_bytes(), false)?;
            out.ca_created = true;
            out.written.push(ca_cert_path.clone());
            out.written.push(ca_key_path.clone());
            (key, cert)
        }
        (true, false) | (false, true) => {
            return Err(RelayError::Config(format!(
                "{} and {} must both exist or both be absent; restore the missing one or remove both to create a new CA",
                ca_cert_path.display(),
                ca_key_path.display()
            )))
        }
    };
    for r in regions {
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            r.clone(),
            format!("relay-{r}"),
        ];
        sans.extend(
            extra
                .iter()
                .filter(|(er, _)| er == r)
                .map(|(_, n)| n.clone()),
        );
        let mut p = rcgen::CertificateParams::new(sans).map_err(rcgen_err)?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "DRC");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("relay-{r}"));
        p.is_ca = rcgen::IsCa::NoCa;
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let (from, to) = validity(LEAF_VALID_YEARS);
        p.not_before = from;
        p.not_after = to;
        let key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
        let cert = p.signed_by(&key, &ca_cert, &ca_key).map_err(rcgen_err)?;
        let key_path = dir.join(format!("{r}.key"));
        let cert_path = dir.join(format!("{r}.pem"));
        write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
        write_file(&cert_path, cert.pem().as_bytes(), false)?;
        out.written.push(cert_path);
        out.written.push(key_path);
    }
    Ok(out)
}

/// Writes a new file (never replacing one), private keys with mode 0600,
/// and fsyncs it.
fn write_file(path: &Path, data: &[u8], private: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .map_err(|e| RelayError::io("create", path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| RelayError::io("write", path, e))
}

/// The TLS files of `region` in a directory written by [`generate`].
pub fn region_files(dir: &Path, region: &str) -> TlsConfig {
    TlsConfig {
        ca: dir.join(CA_CERT_FILE),
        cert: dir.join(format!("{region}.pem")),
        key: dir.join(format!("{region}.key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_private_keys_and_reuses_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = generate(dir.path(), &["a".into(), "b".into()]).expect("generate");
        assert!(g.ca_created);
        assert_eq!(g.written.len(), 6);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["ca.key", "a.key", "b.key"] {
                let mode = fs::metadata(dir.path().join(f))
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        // Adding a region later reuses the CA.
        let ca_before = fs::read(dir.path().join("ca.pem")).expect("ca");
        let g = generate(dir.path(), &["c".into()]).expect("generate c");
        assert!(!g.ca_created);
        assert_eq!(fs::read(dir.path().join("ca.pem")).expect("ca"), ca_before);
        // Never overwrites.
        assert!(generate(dir.path(), &["a".into()]).is_err());
        assert!(generate(dir.path(), &["bad/name".into()]).is_err());
        // The configs load.
        for r in ["a", "b", "c"] {
            let files = region_files(dir.path(), r);
            files.server_config().expect("server config");
            files.client_config().expect("client config");
        }
    }
}
