//! Real runtime for Rehearsal actors: the `Transport` trait, TCP and DPDK transports, and the node runtime; built in a later issue.
