//! TLS for the stories: certificates made at test time (never a committed
//! key), and a client socket that is plain TCP or TLS, so every helper of
//! [`super::Client`] works over either.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use ferroxy::config::{CertificateConfig, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::TempSite;

/// The socket under a [`super::Client`]: the bytes a story writes go out
/// as they are, or through a rustls client session.
pub enum WireStream {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl WireStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            WireStream::Tcp(tcp) => tcp,
            WireStream::Tls(tls) => &tls.sock,
        }
    }

    pub fn session(&self) -> Option<&ClientConnection> {
        match self {
            WireStream::Tcp(_) => None,
            WireStream::Tls(tls) => Some(&tls.conn),
        }
    }

    /// TLS only: `bytes` and then close_notify in one write, so both
    /// arrive in one segment, and no FIN after them.
    pub fn send_with_close_notify(&mut self, bytes: &[u8]) -> io::Result<()> {
        let WireStream::Tls(tls) = self else {
            return Err(io::Error::other("not a TLS client"));
        };
        tls.conn.writer().write_all(bytes)?;
        tls.conn.send_close_notify();
        let mut records = Vec::new();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut records)?;
        }
        tls.sock.write_all(&records)
    }

    /// "I have sent everything": on TLS, close_notify, then the FIN.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let WireStream::Tls(tls) = self {
            tls.conn.send_close_notify();
            tls.flush()?;
        }
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Read for WireStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            WireStream::Tcp(tcp) => tcp.read(buf),
            WireStream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for WireStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WireStream::Tcp(tcp) => tcp.write(buf),
            WireStream::Tls(tls) => {
                let n = tls.write(buf)?;
                // StreamOwned encrypts into its buffer; send it now, so a
                // story's "sent" means on the wire.
                tls.flush()?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WireStream::Tcp(tcp) => tcp.flush(),
            WireStream::Tls(tls) => tls.flush(),
        }
    }
}

/// A certificate and key written to a temp directory, removed on drop.
pub struct TestCert {
    pub files: CertificateConfig,
    pub der: CertificateDer<'static>,
    _dir: TempSite,
}

impl TestCert {
    /// A self-signed ECDSA P-256 certificate for `names`.
    pub fn new(story: &str, names: &[&str]) -> TestCert {
        let dir = TempSite::new(&format!("tls-{story}"));
        let made = ferroxy::demo_tls::self_signed(names).expect("a self-signed certificate");
        let files = made.write_to(&dir.dir).expect("write the certificate");
        let der = CertificateDer::from_pem_slice(made.cert_pem.as_bytes()).expect("PEM");
        TestCert {
            files,
            der,
            _dir: dir,
        }
    }

    /// Write a new certificate for `names` over this one's files (what a
    /// renewal does before SIGHUP); its DER, for the trust store.
    pub fn renew(&mut self, names: &[&str]) {
        let made = ferroxy::demo_tls::self_signed(names).expect("a self-signed certificate");
        std::fs::write(&self.files.cert, &made.cert_pem).expect("write the certificate");
        std::fs::write(&self.files.key, &made.key_pem).expect("write the key");
        self.der = CertificateDer::from_pem_slice(made.cert_pem.as_bytes()).expect("PEM");
    }

    pub fn cert_path(&self) -> PathBuf {
        self.files.cert.clone()
    }
}

/// `tls` for a config: an ephemeral loopback port and these certificates.
pub fn tls_section(certs: &[&TestCert]) -> TlsConfig {
    TlsConfig {
        listen: "127.0.0.1:0".to_string(),
        certificates: certs.iter().map(|c| c.files.clone()).collect(),
    }
}

/// A client config that trusts exactly `certs`, offers ALPN `http/1.1`,
/// and speaks the given versions (both when empty).
pub fn client_config(
    certs: &[&TestCert],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let ders: Vec<_> = certs.iter().map(|c| c.der.clone()).collect();
    client_config_trusting(&ders, versions)
}

/// [`client_config`] for certificates by their DER (one since replaced).
pub fn client_config_trusting(
    ders: &[CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for der in ders {
        roots.add(der.clone()).expect("a trust anchor");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = if versions.is_empty() {
        rustls::DEFAULT_VERSIONS
    } else {
        versions
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connect and finish the handshake (verifying the certificate for
/// `name`), or say why not.
pub fn connect_tls(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
) -> Result<WireStream, String> {
    let tcp = TcpStream::connect_timeout(&addr, super::IO_TIMEOUT).map_err(|e| e.to_string())?;
    handshake_over(tcp, config, name)
}

/// The client's side of the handshake on a socket already connected
/// (one a story has shaped: a small receive buffer, a pause first).
pub fn handshake_over(
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: &str,
) -> Result<WireStream, String> {
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(Arc::clone(config), server_name).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(super::IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(super::IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(WireStream::Tls(Box::new(stream)))
}
