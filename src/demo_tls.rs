//! `ferroxy --demo`'s TLS listener: a self-signed certificate made at
//! start, so a newcomer can try `curl -k https://...` with nothing to set
//! up (lesson 17).
//!
//! The certificate (ECDSA P-256, for `localhost` and `127.0.0.1`) and its
//! key are written to a fresh temp directory, removed when the demo ends.
//! A config that has its own `tls` keeps it: the demo adds, never
//! overrides. The same generator makes the test suite's certificates, so
//! no private key is ever committed.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::config::{CertificateConfig, Config, TlsConfig};

/// The port the demo would like for TLS (the conventional alternative
/// HTTPS port); if it is taken, any free one.
pub const PREFERRED_PORT: u16 = 8443;

/// A self-signed certificate and its key, PEM.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed ECDSA P-256 certificate for `names` (DNS names or IP
/// addresses).
pub fn self_signed(names: &[&str]) -> Result<SelfSigned, String> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    Ok(SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.key_pair.serialize_pem(),
    })
}

impl SelfSigned {
    /// Write `cert.pem` and `key.pem` into `dir`; the config entry naming them.
    pub fn write_to(&self, dir: &Path) -> io::Result<CertificateConfig> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok(CertificateConfig { cert, key })
    }
}

/// The demo's certificate directory, removed on drop.
pub struct DemoTls {
    pub dir: PathBuf,
    /// Where the TLS listener will listen.
    pub listen: SocketAddr,
}

impl DemoTls {
    /// Make the certificate and add a `tls` section to `config` (not if it
    /// has one: `None` says so).
    pub fn add_to(config: &mut Config) -> io::Result<Option<DemoTls>> {
        if config.tls.is_some() {
            return Ok(None);
        }
        let ip = config.listen_addr().ip();
        let listen = free_port(SocketAddr::new(ip, PREFERRED_PORT))?;
        let made = self_signed(&["localhost", "127.0.0.1", "::1"]).map_err(io::Error::other)?;
        let dir = std::env::temp_dir().join(format!("ferroxy-demo-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let demo = DemoTls { dir, listen };
        let entry = made.write_to(&demo.dir)?;
        config.tls = Some(TlsConfig {
            listen: listen.to_string(),
            certificates: vec![entry],
        });
        Ok(Some(demo))
    }
}

/// `wanted` if nothing listens there, else a port the kernel picks. (A
/// moment passes before the proxy binds it; for a demo that is fine.)
fn free_port(wanted: SocketAddr) -> io::Result<SocketAddr> {
    match TcpListener::bind(wanted) {
        Ok(_) => Ok(wanted),
        Err(_) => TcpListener::bind(SocketAddr::new(wanted.ip(), 0))?.local_addr(),
    }
}

impl Drop for DemoTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
