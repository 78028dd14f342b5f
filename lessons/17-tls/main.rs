//! Lesson 17: the TLS record layer with no sockets at all. A rustls server
//! and client talk through two in-memory byte queues, and each flight is
//! printed as it crosses: which side wanted to write, how many bytes, which
//! records, and where each side's state machine stands afterwards.
//!
//! rustls never touches a socket. Whoever owns the connection calls
//! `write_tls` to take the records it wants sent, `read_tls` to hand it
//! bytes that arrived, `process_new_packets` to let it decrypt them and move
//! the handshake on, and `reader()` for the plaintext. Here the wire is a
//! `VecDeque`; in ferroxy it is a non-blocking `TcpStream`, and the same
//! calls are strung together by `TlsSession` in `src/tls/session.rs`.
//!
//! Run it: `cargo run --release --example lesson17_tls`.
//!
//! Shortcuts: one exchange, then the goodbye. Nothing here can fill up, so
//! the "socket full, wait for WRITABLE" case of the lesson does not arise;
//! in memory every write succeeds.

use std::collections::VecDeque;
use std::error::Error;
use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};
use rustls::{ServerConnection, crypto::aws_lc_rs};

/// One direction of a TCP connection, in memory. Empty, it says
/// `WouldBlock`, as a non-blocking socket does. It remembers the largest
/// read rustls asked for, which bounds what one `read_tls` can take in.
#[derive(Default)]
struct Wire {
    bytes: VecDeque<u8>,
    largest_ask: usize,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.largest_ask = self.largest_ask.max(buf.len());
        if self.bytes.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.bytes.read(buf)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let (server_config, client_config) = configs()?;
    let name = "localhost".try_into()?;
    let mut client = Connection::from(ClientConnection::new(client_config, name)?);
    let mut server = Connection::from(ServerConnection::new(server_config)?);
    let mut to_server = Wire::default();
    let mut to_client = Wire::default();

    println!("before any I/O:   {}", states(&client, &server));
    // Whoever wants to write sends a flight; the other reads it. Nobody
    // asks rustls for a handshake message: it queues them itself, in
    // answer to what it read. Bounded: a TLS 1.3 handshake is 4 flights.
    for flight in 1..=8 {
        if client.wants_write() {
            fly(flight, "client", &mut client, &mut server, &mut to_server)?;
        } else if server.wants_write() {
            fly(flight, "server", &mut server, &mut client, &mut to_client)?;
        } else {
            break;
        }
        println!("                  {}", states(&client, &server));
    }
    if let Connection::Server(s) = &server {
        let version = s.protocol_version().map(|v| format!("{v:?}"));
        let group = s.negotiated_key_exchange_group().map(|g| g.name());
        let alpn = s.alpn_protocol().map(String::from_utf8_lossy);
        println!("negotiated:       {version:?}, key exchange {group:?}, ALPN {alpn:?}\n");
    }

    client
        .writer()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    fly(5, "client", &mut client, &mut server, &mut to_server)?;
    // A pump with only 16 bytes of room: the wire is already empty, yet
    // the request is still inside rustls. A loop that took the first short
    // read for "drained" would leave the rest there, with no edge to come.
    let mut room = [0u8; 16];
    for _ in 0..8 {
        match server.reader().read(&mut room) {
            Ok(n) => println!(
                "  server reader(): {n:2} bytes {:?}, wire holds {}",
                String::from_utf8_lossy(&room[..n]),
                to_server.bytes.len()
            ),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                println!("  server reader(): WouldBlock: only now is everything read");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }

    server
        .writer()
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n")?;
    fly(6, "server", &mut server, &mut client, &mut to_client)?;
    let mut answer = Vec::new();
    let _ = client.reader().read_to_end(&mut answer); // ends in WouldBlock
    println!(
        "  client reader(): {:?}\n",
        String::from_utf8_lossy(&answer)
    );

    // Goodbye: close_notify says "this is really the end", so a truncation
    // by an attacker (a forged FIN) can be told from the real thing.
    server.send_close_notify();
    fly(7, "server", &mut server, &mut client, &mut to_client)?;
    println!("  client reader(): {:?}", client.reader().read(&mut room));
    client.send_close_notify();
    fly(8, "client", &mut client, &mut server, &mut to_server)?;
    println!("  server reader(): {:?}", server.reader().read(&mut room));
    println!(
        "largest read_tls ask: {} bytes (server), {} (client)",
        to_server.largest_ask, to_client.largest_ask
    );
    Ok(())
}

/// One flight: everything `from` wants to write crosses the wire, and `to`
/// takes it in with `read_tls` and `process_new_packets`.
fn fly(
    flight: usize,
    who: &str,
    from: &mut Connection,
    to: &mut Connection,
    wire: &mut Wire,
) -> Result<(), Box<dyn Error>> {
    let mut sent = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut sent)?;
    }
    println!(
        "flight {flight}: {who} -> {:4} bytes [{}]",
        sent.len(),
        records(&sent)
    );
    wire.bytes.extend(&sent);
    while !wire.bytes.is_empty() {
        to.read_tls(wire)?;
        to.process_new_packets()?;
    }
    Ok(())
}

/// The records in a flight, from their 5-byte headers. In TLS 1.3 all but
/// the first handshake messages are encrypted, so they travel as
/// `application_data` too (the `change_cipher_spec` is for middleboxes).
fn records(mut bytes: &[u8]) -> String {
    let mut seen = Vec::new();
    while bytes.len() >= 5 {
        let kind = match bytes[0] {
            20 => "change_cipher_spec",
            21 => "alert",
            22 => "handshake",
            23 => "application_data",
            _ => "?",
        };
        let len = u16::from_be_bytes([bytes[3], bytes[4]]) as usize;
        seen.push(format!("{kind} {len}"));
        bytes = &bytes[(5 + len).min(bytes.len())..];
    }
    seen.join(", ")
}

fn states(client: &Connection, server: &Connection) -> String {
    let one = |c: &Connection| {
        let mut s = String::from(if c.is_handshaking() {
            "handshaking"
        } else {
            "done"
        });
        for (flag, name) in [
            (c.wants_write(), "wants_write"),
            (c.wants_read(), "wants_read"),
        ] {
            if flag {
                s += &format!(", {name}");
            }
        }
        s
    };
    format!("client: {:32} server: {}", one(client), one(server))
}

/// A self-signed certificate the client trusts as its only root, so the
/// client really verifies the server (no "accept anything" switch).
fn configs() -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), Box<dyn Error>> {
    let made = ferroxy::demo_tls::self_signed(&["localhost"])?;
    let cert = CertificateDer::from_pem_slice(made.cert_pem.as_bytes())?;
    let key = PrivateKeyDer::from_pem_slice(made.key_pem.as_bytes())?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(cert)?;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(server), Arc::new(client)))
}
