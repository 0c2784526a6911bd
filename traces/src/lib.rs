//! Trace files of Rehearsal runs, and the checking library built on them: the `cargo
//! test` harness ([`check`]), the shrinker ([`shrink`]) and schedule-following replay
//! ([`ScheduleFollower`]). A protocol's own crate tests itself with this crate and
//! `rehearsal-sim-core` alone; nothing here needs the command line or the transports.
//!
//! A trace is JSON Lines: a header (format, version, seed, the full run configuration),
//! one line per event, and a footer (outcome, event count, digest, and a checksum of every
//! line before it and of its own fields, so a truncated or edited file is refused rather than
//! misread). Reading checks every field's type and the events against each other and the
//! footer, and caps each line and the whole file (see [`read_trace_from`]).
//!
//! Besides reading and writing traces, this crate renders them: as aligned text
//! ([`render_text`]), as a space-time diagram in SVG ([`render_svg`]), and for outside
//! tools ([`export`]): Chrome trace / Perfetto JSON, ShiViz logs, Mermaid sequence diagrams
//! and Graphviz happens-before graphs.

pub mod check;
pub mod export;
mod file;
pub mod plot;
mod render;
pub mod schedules;
pub mod shrink;

pub use export::chrome::{chrome_trace, write_chrome_trace};
pub use export::dot::{dot_graph, happens_before, HbEdge};
pub use export::mermaid::mermaid_sequence;
pub use export::shiviz::{shiviz_log, vector_clocks, VectorClock, SHIVIZ_REGEX};
pub use plot::{render_svg, PlotOptions};

pub use file::{
    first_difference, read_trace, read_trace_from, write_trace, Divergence, Footer, Header,
    TraceError, TraceFile, FORMAT_NAME, FORMAT_VERSION, TRACE_EVENTS_MAX, TRACE_FILE_BYTES_MAX,
    TRACE_LINE_BYTES_MAX, TRACE_NODES_MAX,
};
pub use render::{render_text, render_timeline, Filter};
pub mod follow;
#[cfg(test)]
mod test_events;
pub use follow::{FollowStats, LinkMessage, ScheduleFollower};
