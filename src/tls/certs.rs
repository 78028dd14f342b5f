//! Certificates: PEM files into rustls keys, and which one a client gets.
//!
//! Each `tls.certificates` entry is a chain (`cert`, leaf first) and its
//! private key (`key`). A handshake's ClientHello may name a host (SNI); the
//! first certificate valid for that name answers it, checked the way a
//! client would check it (`webpki`, so `*.example.com` covers
//! `a.example.com` and not `a.b.example.com`). No name, or no certificate
//! for it: the first entry, as nginx's default server does.
//!
//! Reloading (SIGHUP) reads every file again. A pair that no longer loads
//! keeps the version loaded before, with a log line: a certificate renewal
//! that went wrong half-way must not take the site down.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{info, warn};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::CertificateConfig;

/// One loaded pair, and the files it came from.
pub struct LoadedCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub key: Arc<CertifiedKey>,
}

/// The certificates in config order; the first is the default.
pub struct CertStore {
    pub certs: Vec<LoadedCert>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<_> = self.certs.iter().map(|c| &c.cert_path).collect();
        f.debug_struct("CertStore").field("certs", &paths).finish()
    }
}

/// Read one chain and its key, and check that they belong together.
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: holds no certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key_path.display()))?;
    // Checks the key against the leaf's public key: a mismatched pair
    // would otherwise fail every handshake, long after the reload said ok.
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "{} and {} do not make a usable pair: {e}",
            cert_path.display(),
            key_path.display()
        )
    })
}

impl CertStore {
    /// Load every entry; any failure is an error naming the entry (at
    /// start, a certificate that does not load stops the proxy).
    pub fn load(entries: &[CertificateConfig], provider: &CryptoProvider) -> Result<Self, String> {
        let mut certs = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let key = load_pair(&entry.cert, &entry.key, provider)
                .map_err(|e| format!("tls.certificates[{i}]: {e}"))?;
            certs.push(LoadedCert {
                cert_path: entry.cert.clone(),
                key_path: entry.key.clone(),
                key: Arc::new(key),
            });
        }
        Ok(CertStore { certs })
    }

    /// Load the entries again for a reload: a pair that fails keeps what
    /// `self` had for the same files (logged); a new pair that fails is
    /// left out (logged). `None` when nothing at all would be left.
    pub fn reload(&self, entries: &[CertificateConfig], provider: &CryptoProvider) -> Option<Self> {
        let mut certs = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            match load_pair(&entry.cert, &entry.key, provider) {
                Ok(key) => {
                    info!("tls.certificates[{i}]: loaded {}", entry.cert.display());
                    certs.push(LoadedCert {
                        cert_path: entry.cert.clone(),
                        key_path: entry.key.clone(),
                        key: Arc::new(key),
                    });
                }
                Err(e) => {
                    let old = self
                        .certs
                        .iter()
                        .find(|c| c.cert_path == entry.cert && c.key_path == entry.key);
                    match old {
                        Some(old) => {
                            warn!("tls.certificates[{i}]: {e}; keeping the one loaded before");
                            certs.push(LoadedCert {
                                cert_path: old.cert_path.clone(),
                                key_path: old.key_path.clone(),
                                key: Arc::clone(&old.key),
                            });
                        }
                        None => warn!("tls.certificates[{i}]: {e}; left out"),
                    }
                }
            }
        }
        (!certs.is_empty()).then_some(CertStore { certs })
    }

    /// The certificate for `sni`: the first valid for that name, else the
    /// first of all.
    pub fn choose(&self, sni: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let wanted = sni.and_then(|name| DnsName::try_from(name).ok());
        if let Some(name) = wanted {
            let name = ServerName::DnsName(name);
            let valid_for = |key: &CertifiedKey| {
                let Some(leaf) = key.cert.first() else {
                    return false;
                };
                webpki::EndEntityCert::try_from(leaf)
                    .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
                    .is_ok()
            };
            if let Some(found) = self.certs.iter().find(|c| valid_for(&c.key)) {
                return Some(&found.key);
            }
        }
        self.certs.first().map(|c| &c.key)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(client_hello.server_name()).cloned()
    }
}
