//! Stands for a protocol author's own crate: its test, `tests/order.rs`, is the README's
//! `cargo test` example, run with `rehearsal-sim-core` and `rehearsal-traces` alone.
