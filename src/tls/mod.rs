//! TLS termination with rustls, on the same poll loop.
//!
//! The `tls.listen` listener accepts TCP like the plain one; each accepted
//! socket gets a [`session::TlsSession`] and becomes a
//! `Transport::Tls` (`src/transport.rs`). From then on the reactor reads
//! and writes plaintext through the same pumps as ever: it never learns
//! TLS, and the exchange never knows which listener its client came from
//! (beyond `X-Forwarded-Proto: https`).
//!
//! - `certs.rs`: PEM files into keys, and which certificate an SNI name
//!   gets;
//! - `session.rs`: one session's record layer as byte pumps.
//!
//! This file builds the rustls `ServerConfig` once per (re)load, so a
//! handshake only clones an `Arc`:
//!
//! - TLS 1.3 and 1.2, the provider's default suites (AEADs only, ECDHE
//!   only);
//! - ALPN offers `http/1.1` alone (a client that offers only `h2` is
//!   refused with `no_application_protocol`, as RFC 7301 asks);
//! - resumption: stateless tickets for 1.3 and 1.2, and a session cache
//!   for 1.2 clients that do not take tickets. The ticket keys live in the
//!   [`TlsAcceptor`] and survive a reload, so resumed sessions do too
//!   (aws-lc-rs's ticketer rotates them every 6 hours, and a ticket
//!   stays valid across one rotation).
//!
//! The crypto provider is aws-lc-rs: in a measurement before this module
//! was written it did 5x the P-256 handshakes per second of `ring` (about
//! 2,800 against 550 per second on one core, client and server together),
//! for about 35 s more of a clean build. See `lessons/17-tls`.

pub mod certs;
pub mod session;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::{ServerConfig, version};

use crate::config::TlsConfig;
use certs::CertStore;
use session::TlsSession;

/// TLS 1.2 sessions kept for resumption by clients that do not take
/// tickets (each about 100 bytes).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// What the TLS listener needs to start sessions: the current config and
/// what a reload must keep.
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
    session_cache: Arc<ServerSessionMemoryCache>,
}

impl TlsAcceptor {
    /// Load the certificates and build the config. A certificate that does
    /// not load is an error naming it.
    pub fn new(settings: &TlsConfig) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let store = Arc::new(CertStore::load(&settings.certificates, &provider)?);
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| format!("tls: cannot make session ticket keys: {e}"))?;
        let session_cache = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let config = server_config(&provider, &store, &ticketer, &session_cache)?;
        Ok(TlsAcceptor {
            config,
            store,
            provider,
            ticketer,
            session_cache,
        })
    }

    /// SIGHUP: read the certificate files again. New handshakes get the new
    /// certificates; open sessions keep theirs. A pair that fails to load
    /// keeps its old version (see `CertStore::reload`).
    pub fn reload(&mut self, settings: &TlsConfig) {
        let Some(store) = self.store.reload(&settings.certificates, &self.provider) else {
            log::error!("tls: no certificate loads any more; keeping the ones loaded before");
            return;
        };
        let store = Arc::new(store);
        match server_config(&self.provider, &store, &self.ticketer, &self.session_cache) {
            Ok(config) => {
                self.config = config;
                self.store = store;
            }
            Err(e) => log::error!("{e}; keeping the certificates loaded before"),
        }
    }

    /// The same certificates, ticket keys and session cache, for another
    /// worker: a ticket one worker issued resumes on any of them.
    pub fn sibling(&self) -> TlsAcceptor {
        TlsAcceptor {
            config: Arc::clone(&self.config),
            store: Arc::clone(&self.store),
            provider: Arc::clone(&self.provider),
            ticketer: Arc::clone(&self.ticketer),
            session_cache: Arc::clone(&self.session_cache),
        }
    }

    /// A session for a socket just accepted.
    pub fn session(&self) -> Result<TlsSession, rustls::Error> {
        TlsSession::new(Arc::clone(&self.config))
    }
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    store: &Arc<CertStore>,
    ticketer: &Arc<dyn ProducesTickets>,
    session_cache: &Arc<ServerSessionMemoryCache>,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(store) as Arc<dyn rustls::server::ResolvesServerCert>);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = Arc::clone(ticketer);
    config.session_storage = Arc::clone(session_cache) as _;
    Ok(Arc::new(config))
}
