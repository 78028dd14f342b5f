//! A scripted socket for the byte-level stories: each `read` returns what
//! the script says next (bytes, an error such as `WouldBlock`, or, once the
//! script is empty, end of stream). Bytes that do not fit stay queued, as
//! in a real socket. Shared with `#[path = "support/scripted.rs"] mod scripted;`.

use std::collections::VecDeque;
use std::io::{self, Read};

pub struct ScriptedReader(pub VecDeque<io::Result<Vec<u8>>>);

#[allow(dead_code)]
impl ScriptedReader {
    /// A reader that yields these chunks, one per `read`, then EOF.
    pub fn chunks(chunks: &[&[u8]]) -> ScriptedReader {
        ScriptedReader(chunks.iter().map(|c| Ok(c.to_vec())).collect())
    }
}

impl ferroxy::conn::Incoming for ScriptedReader {}

impl Read for ScriptedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.0.pop_front() {
            None => Ok(0),
            Some(Err(e)) => Err(e),
            Some(Ok(mut bytes)) => {
                let n = bytes.len().min(out.len());
                out[..n].copy_from_slice(&bytes[..n]);
                if n < bytes.len() {
                    self.0.push_front(Ok(bytes.split_off(n)));
                }
                Ok(n)
            }
        }
    }
}
