//! ferroxy: a small reverse proxy on one mio loop, written to be read.
pub mod buffer;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod reactor;
