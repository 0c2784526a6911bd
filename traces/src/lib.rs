//! Trace files of Rehearsal runs.
//!
//! A trace is JSON Lines: a header (format, version, seed, the full run configuration),
//! one line per event, and a footer (outcome, event count, digest, and a checksum of every
//! line before it, so a truncated or edited file is refused rather than misread).

mod file;
mod render;

pub use file::{
    first_difference, read_trace, read_trace_from, write_trace, Divergence, Footer, Header,
    TraceError, TraceFile, FORMAT_NAME, FORMAT_VERSION,
};
pub use render::render_text;
