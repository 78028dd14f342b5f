//! Sans-IO HTTP/1.1: everything ferroxy knows about the protocol, as plain
//! functions and structs fed bytes. Nothing here touches a socket, a clock or
//! mio, so every rule can be unit-tested byte by byte and stepped through in a
//! debugger.
//!
//! Where it sits in the loop: the reactor reads bytes into a
//! [`crate::buffer::Buffer`], asks [`head`] whether a complete head is there,
//! asks [`rewrite`] for the head to send on, and asks [`framing`] which of the
//! following bytes belong to the body. It never interprets HTTP itself.
//!
//! Lessons: `lessons/07-parsing-heads` and `lessons/11-body-framing`.

pub mod chunked;
pub mod errors;
pub mod framing;
pub mod head;
pub mod rewrite;
