//! Buffer skeleton.
