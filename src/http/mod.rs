//! Sans-IO HTTP/1.1: everything ferroxy knows about the protocol, as plain
//! functions and structs fed bytes. Nothing here touches a socket, a clock or
//! mio, so every rule can be unit-tested byte by byte and stepped through in a
//! debugger.
//!
//! Where it sits in the loop: the reactor reads bytes into a
//! [`crate::buffer::Buffer`], asks [`request`] or [`response`] whether a complete head is there,
//! asks [`rewrite`] for the head to send on, and asks [`framing`] which of the
//! following bytes belong to the body. It never interprets HTTP itself.
//!
//! Reading order: [`head`] (what both heads share), [`request`] and
//! [`response`] (parse and validate each, [`authority`] checking `Host`), [`framing`] and [`chunked`]
//! (where a body ends), [`rewrite`] (what is forwarded), [`errors`] (what the
//! proxy answers itself).
//!
//! The rule throughout is the contract's "strict by default": a request
//! smuggling attack needs two parsers on the path that disagree about where
//! a message ends, so wherever the RFCs leave room for two readings we refuse
//! the message instead of picking one.
//!
//! What it does not do: HTTP/2, compression, caching, or decoding bodies
//! (chunked framing is tracked, the bytes pass through untouched).
//!
//! Lessons: `lessons/07-parsing-heads` and `lessons/11-body-framing`.

pub mod authority;
pub mod chunked;
pub mod errors;
pub mod framing;
pub mod head;
pub mod request;
pub mod response;
pub mod rewrite;
