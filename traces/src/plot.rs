//! Space-time diagrams of a run, as standalone SVG.
//!
//! One horizontal lane per node (`n0` at the top), virtual time running left to right, an
//! arrow per delivered message from its send (time, sender's lane) to its delivery (time,
//! receiver's lane), coloured by message type. A dropped message is a dashed red stroke
//! ending in a red cross: short when dropped as it is sent, most of the way to the receiver
//! when dropped later (at a crashed receiver). A message still in flight at the end is a
//! short dashed grey stroke.
//! Small marks show starts (black dot), timers (amber ring), outputs (green square, below the
//! lane), annotations (purple diamond, above the lane) and faults (orange triangle); a
//! violation is a red disc with a red line across every lane and the invariant's name. A
//! message corrupted in flight is a dashed arrow; a duplicated one has one arrow per copy. Every mark has a tooltip (`<title>`)
//! with the full event. A legend below the time axis lists what the plot shows.
//!
//! Time scales linearly. With [`PlotOptions::compress_gaps`], long idle stretches (longer
//! than a tenth of the run and than twenty times the lower quartile of the gaps between
//! event times) are squeezed into a narrow grey break marked with the time it skips, so runs
//! whose times span orders of magnitude (timeouts of seconds, latencies of milliseconds) stay
//! readable. A trace whose events all happen at one instant is drawn in one column.

use crate::export::{describe, msg_kind, node_count, one_line, Messages};
use rehearsal_sim_core::{format_ns, EventKind, NodeId, TraceEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// How to draw a space-time diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotOptions {
    /// Width of the image in pixels, [`WIDTH_MIN`] to [`WIDTH_MAX`] (others are clamped);
    /// the height follows from the number of nodes.
    pub width: u32,
    /// Squeeze long idle stretches into narrow breaks (see the [module docs](self)).
    pub compress_gaps: bool,
    /// A title drawn above the plot.
    pub title: Option<String>,
}

impl Default for PlotOptions {
    /// 1200 pixels wide, gaps compressed, no title.
    fn default() -> Self {
        PlotOptions {
            width: 1200,
            compress_gaps: true,
            title: None,
        }
    }
}

/// Narrowest picture: room for the margins, a legend row and a few ticks.
pub const WIDTH_MIN: u32 = 300;
/// Widest picture. The cost of a plot grows with its width (ticks, labels), never with the
/// time span of the trace; this keeps it to a moment and the file to its events' size.
pub const WIDTH_MAX: u32 = 20_000;

/// Left margin, where the lane labels are.
const LEFT: f64 = 56.0;
/// Right margin.
const RIGHT: f64 = 28.0;
/// Space kept free at both ends of the time axis, so marks at the ends are not cut.
const INSET: f64 = 14.0;
/// Width of a compressed gap, at most.
const BREAK_PX: f64 = 28.0;
/// Wanted distance between time ticks.
const TICK_PX: f64 = 90.0;
/// Least gap between two tick labels.
const TICK_LABEL_GAP: f64 = 12.0;
/// Estimated width of a character of a tick label.
const TICK_CHAR_PX: f64 = 6.0;

/// Message colours, given to message types in the order they are first sent; red (drops,
/// violations) and grey (in flight) are kept apart.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
];
/// Colour of message types beyond the palette.
const OTHER_COLOR: &str = "#7f7f7f";
const RED: &str = "#d62728";
const AMBER: &str = "#c08a00";
const GREEN: &str = "#2e9e44";
const PURPLE: &str = "#7b3fb0";
const GREY: &str = "#999999";
const ORANGE: &str = "#ff9f1c";

/// Renders the events as a space-time diagram (see the [module docs](self)). The same events
/// and options always give the same SVG text.
pub fn render_svg(events: &[TraceEvent], options: &PlotOptions) -> String {
    let width = f64::from(options.width.clamp(WIDTH_MIN, WIDTH_MAX));
    let nodes = node_count(events);
    let messages = Messages::index(events);

    // Vertical layout.
    let title_h = if options.title.is_some() { 26.0 } else { 0.0 };
    let lane_h = match nodes {
        0..=6 => 70.0,
        n => (480.0 / f64::from(n)).max(28.0),
    };
    let lanes_top = title_h + 44.0;
    let lane_y = |n: NodeId| lanes_top + f64::from(n.0) * lane_h;
    let lanes_bottom = lanes_top + f64::from(nodes.max(1) - 1) * lane_h;
    let axis_y = lanes_bottom + 34.0;

    let scale = TimeScale::new(
        events.iter().map(|e| e.t).collect(),
        LEFT + INSET,
        width - RIGHT - INSET,
        options.compress_gaps,
    );

    // Colours of message types, in order of first send.
    let mut kinds: Vec<&str> = Vec::new();
    for e in events {
        if let EventKind::Send { msg, .. } = &e.kind {
            let kind = msg_kind(msg);
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    let color_of = |kind: &str| -> &'static str {
        kinds
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| PALETTE.get(i).copied())
            .unwrap_or(OTHER_COLOR)
    };

    // The body first, to know which legend entries it needs.
    let mut body = String::new();
    let mut seen = Seen::default();

    // Breaks, behind everything.
    for b in &scale.breaks {
        let _ = writeln!(
            body,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#eeeeee"><title>{} without events, from {} to {}</title></rect>"##,
            b.x0 + 3.0,
            lanes_top - 24.0,
            b.x1 - b.x0 - 6.0,
            axis_y - lanes_top + 24.0,
            xml(&format_ns(b.t1 - b.t0)),
            xml(&format_ns(b.t0)),
            xml(&format_ns(b.t1)),
        );
        let (cx, cy) = ((b.x0 + b.x1) / 2.0, (lanes_top + lanes_bottom) / 2.0);
        let _ = writeln!(
            body,
            r##"<text x="{cx:.1}" y="{cy:.1}" transform="rotate(-90 {cx:.1} {cy:.1})" text-anchor="middle" dy="4" font-size="10" fill="#666666">+{}</text>"##,
            xml(&short_time(b.t1 - b.t0)),
        );
    }

    // Lanes.
    for n in 0..nodes {
        let y = lane_y(NodeId(n));
        let _ = writeln!(
            body,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#c8c8c8" stroke-width="1"/>"##,
            LEFT,
            width - RIGHT,
        );
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{y:.1}" dy="4" text-anchor="end" font-size="13" font-weight="bold">{}</text>"##,
            LEFT - 10.0,
            NodeId(n),
        );
    }

    // Time axis.
    let _ = writeln!(
        body,
        r##"<line x1="{LEFT:.1}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#444444" stroke-width="1"/>"##,
        width - RIGHT,
    );
    for b in &scale.breaks {
        // A "//" cut on the axis.
        for dx in [-3.0, 3.0] {
            let x = (b.x0 + b.x1) / 2.0 + dx;
            let _ = writeln!(
                body,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#444444" stroke-width="1.2"/>"##,
                x - 3.0,
                axis_y + 5.0,
                x + 3.0,
                axis_y - 5.0,
            );
        }
    }
    for tick in scale.ticks() {
        let _ = writeln!(
            body,
            r##"<line x1="{x:.1}" y1="{axis_y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444444" stroke-width="1"/>"##,
            axis_y + 4.0,
            x = tick.x,
        );
        if let Some((text, anchor)) = &tick.label {
            let _ = writeln!(
                body,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="10"><title>{}</title>{}</text>"##,
                tick.x,
                axis_y + 16.0,
                xml(&format_ns(tick.t)),
                xml(text),
            );
        }
    }
    let _ = writeln!(
        body,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10" fill="#666666">virtual time</text>"##,
        width - RIGHT,
        axis_y + 30.0,
    );

    // Messages, under the marks.
    for e in events {
        let tip = |what: String| format!("#{} @{} {}: {what}", e.seq, format_ns(e.t), e.node);
        match &e.kind {
            EventKind::Deliver { from, id } => {
                let Some(&s) = messages.send.get(id) else {
                    continue;
                };
                let send = &events[s];
                let kind = messages.summary(events, *id).map_or("message", msg_kind);
                let color = color_of(kind);
                let (x1, y1) = (scale.x(send.t), lane_y(*from));
                let (x2, y2) = (scale.x(e.t), lane_y(e.node));
                let corrupted = messages.corrupted(*id);
                let title = xml(&format!(
                    "#{id} {from} → {}, sent {}, delivered {}{}: {}",
                    e.node,
                    format_ns(send.t),
                    format_ns(e.t),
                    if corrupted { " corrupted" } else { "" },
                    messages.delivered_summary(events, *id).unwrap_or("")
                ));
                let dash = if corrupted {
                    seen.corrupt = true;
                    r#" stroke-dasharray="6,3""#
                } else {
                    ""
                };
                let path = if from == &e.node {
                    // To itself: a small arc above the lane.
                    format!(
                        "M{x1:.1},{y1:.1} Q{:.1},{:.1} {x2:.1},{y2:.1}",
                        (x1 + x2) / 2.0,
                        y1 - lane_h * 0.45
                    )
                } else {
                    format!("M{x1:.1},{y1:.1} L{x2:.1},{y2:.1}")
                };
                let _ = writeln!(
                    body,
                    r##"<path d="{path}" fill="none" stroke="{color}" stroke-width="1.2" stroke-opacity="0.85"{dash} marker-end="url(#arrow-{})"><title>{title}</title></path>"##,
                    color.trim_start_matches('#'),
                );
                seen.kind(kind);
            }
            EventKind::Drop { to, id, .. } => {
                // From the send (or the drop, without one) towards the receiver: a short
                // stroke when the message is dropped as it is sent, else most of the way
                // to the receiver at the time it is dropped (a crashed or cut-off receiver).
                let send = messages.send.get(id).map(|&s| &events[s]);
                let (x1, y1) = match send {
                    Some(s) => (scale.x(s.t), lane_y(s.node)),
                    None => (scale.x(e.t), lane_y(e.node)),
                };
                let y_to = lane_y(*to);
                let late = send.is_some_and(|s| e.t > s.t);
                let (x2, y2) = if y_to == y1 {
                    (scale.x(e.t).max(x1 + 16.0), y1 - lane_h * 0.3)
                } else if late {
                    (scale.x(e.t), y1 + (y_to - y1) * 0.85)
                } else {
                    // A short stroke aimed at where an arrow to the receiver would go.
                    let (dx, dy) = (lane_h * 0.6, y_to - y1);
                    let len = (dx * dx + dy * dy).sqrt();
                    let cut = 30.0_f64.min(len / 2.0) / len;
                    (x1 + dx * cut, y1 + dy * cut)
                };
                let title = xml(&tip(describe(events, &messages, e)));
                let _ = writeln!(
                    body,
                    r##"<g><title>{title}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{RED}" stroke-width="1.4" stroke-dasharray="3,2"/>{}</g>"##,
                    cross(x2, y2, 4.5, RED),
                );
                seen.drop = true;
            }
            EventKind::Send { to, id, .. } if messages.in_flight(*id) => {
                let (x1, y1) = (scale.x(e.t), lane_y(e.node));
                let y_to = lane_y(*to);
                let y2 = if y_to == y1 {
                    y1 - lane_h * 0.3
                } else {
                    y1 + (y_to - y1) * 0.4
                };
                let title = xml(&tip(format!(
                    "{} (in flight at the end)",
                    describe(events, &messages, e)
                )));
                let _ = writeln!(
                    body,
                    r##"<g><title>{title}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{:.1}" y2="{y2:.1}" stroke="{GREY}" stroke-width="1.2" stroke-dasharray="4,3"/><circle cx="{:.1}" cy="{y2:.1}" r="2.5" fill="none" stroke="{GREY}"/></g>"##,
                    x1 + 16.0,
                    x1 + 16.0,
                );
                seen.in_flight = true;
            }
            _ => {}
        }
    }

    // Marks.
    let mut violation_labels: Vec<f64> = Vec::new();
    for e in events {
        let (x, y) = (scale.x(e.t), lane_y(e.node));
        let title = xml(&format!(
            "#{} @{} {}: {}",
            e.seq,
            format_ns(e.t),
            e.node,
            one_line(&describe(events, &messages, e))
        ));
        match &e.kind {
            EventKind::Start => {
                let _ = writeln!(
                    body,
                    r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="black"><title>{title}</title></circle>"##,
                );
                seen.start = true;
            }
            EventKind::Timer { .. } => {
                let _ = writeln!(
                    body,
                    r##"<circle cx="{x:.1}" cy="{y:.1}" r="4.5" fill="white" stroke="{AMBER}" stroke-width="2"><title>{title}</title></circle>"##,
                );
                seen.timer = true;
            }
            EventKind::Output { .. } => {
                let _ = writeln!(
                    body,
                    r##"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{GREEN}"><title>{title}</title></rect>"##,
                    x - 3.5,
                    y + 6.0,
                );
                seen.output = true;
            }
            EventKind::Annotate { .. } => {
                let _ = writeln!(
                    body,
                    r##"<path d="{}" fill="{PURPLE}"><title>{title}</title></path>"##,
                    diamond(x, y - 10.0, 4.5),
                );
                seen.annotation = true;
            }
            EventKind::Fault { .. } => {
                let _ = writeln!(
                    body,
                    r##"<path d="M{:.1},{:.1} L{:.1},{:.1} L{x:.1},{:.1} z" fill="{ORANGE}" stroke="#7a4a00" stroke-width="0.8"><title>{title}</title></path>"##,
                    x - 6.0,
                    y - 6.0,
                    x + 6.0,
                    y - 6.0,
                    y + 5.0,
                );
                seen.fault = true;
            }
            EventKind::Violation { invariant, .. } => {
                let _ = writeln!(
                    body,
                    r##"<g><title>{title}</title><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{RED}" stroke-width="2" stroke-opacity="0.55"/><circle cx="{x:.1}" cy="{y:.1}" r="7" fill="{RED}"/><text x="{x:.1}" y="{y:.1}" dy="4" text-anchor="middle" font-size="11" font-weight="bold" fill="white">!</text></g>"##,
                    lanes_top - 16.0,
                    lanes_bottom + 12.0,
                );
                // Name the invariant above the lanes, unless another violation label is there.
                if !violation_labels.iter().any(|&lx| (lx - x).abs() < 80.0) {
                    violation_labels.push(x);
                    let anchor = if x > width * 0.7 { "end" } else { "start" };
                    let _ = writeln!(
                        body,
                        r##"<text x="{x:.1}" y="{:.1}" text-anchor="{anchor}" font-size="11" font-weight="bold" fill="{RED}">{}</text>"##,
                        lanes_top - 20.0,
                        xml(&format!("violation: {invariant}")),
                    );
                }
                seen.violation = true;
            }
            _ => {}
        }
    }

    if events.is_empty() {
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666666">no events</text>"##,
            width / 2.0,
            lanes_top,
        );
    }

    // Legend.
    // (swatch, label) pairs.
    let mut items: Vec<(String, String)> = Vec::new();
    for kind in &seen.kinds {
        let color = color_of(kind);
        items.push((
            format!(
                r##"<line x1="0" y1="0" x2="22" y2="0" stroke="{color}" stroke-width="1.5" marker-end="url(#arrow-{})"/>"##,
                color.trim_start_matches('#'),
            ),
            kind.clone(),
        ));
    }
    let mut mark = |on: bool, svg: String, label: &str| {
        if on {
            items.push((svg, label.to_string()));
        }
    };
    mark(
        seen.drop,
        format!(
            r##"<line x1="2" y1="0" x2="14" y2="0" stroke="{RED}" stroke-width="1.4" stroke-dasharray="3,2"/>{}"##,
            cross(16.0, 0.0, 4.5, RED)
        ),
        "dropped",
    );
    mark(
        seen.corrupt,
        format!(
            r##"<line x1="0" y1="0" x2="22" y2="0" stroke="{OTHER_COLOR}" stroke-width="1.5" stroke-dasharray="6,3"/>"##
        ),
        "corrupted in flight",
    );
    mark(
        seen.in_flight,
        format!(
            r##"<line x1="2" y1="0" x2="16" y2="0" stroke="{GREY}" stroke-width="1.2" stroke-dasharray="4,3"/><circle cx="18" cy="0" r="2.5" fill="none" stroke="{GREY}"/>"##
        ),
        "in flight at the end",
    );
    mark(
        seen.start,
        r##"<circle cx="11" cy="0" r="3" fill="black"/>"##.to_string(),
        "start",
    );
    mark(
        seen.timer,
        format!(
            r##"<circle cx="11" cy="0" r="4.5" fill="white" stroke="{AMBER}" stroke-width="2"/>"##
        ),
        "timer",
    );
    mark(
        seen.output,
        format!(r##"<rect x="7.5" y="-3.5" width="7" height="7" fill="{GREEN}"/>"##),
        "output",
    );
    mark(
        seen.annotation,
        format!(
            r##"<path d="{}" fill="{PURPLE}"/>"##,
            diamond(11.0, 0.0, 4.5)
        ),
        "annotation",
    );
    mark(
        seen.violation,
        format!(
            r##"<circle cx="11" cy="0" r="7" fill="{RED}"/><text x="11" y="0" dy="4" text-anchor="middle" font-size="11" font-weight="bold" fill="white">!</text>"##
        ),
        "violation",
    );
    mark(
        seen.fault,
        format!(
            r##"<path d="M5,-6 L17,-6 L11,5 z" fill="{ORANGE}" stroke="#7a4a00" stroke-width="0.8"/>"##
        ),
        "fault",
    );
    mark(
        !scale.breaks.is_empty(),
        r##"<rect x="4" y="-8" width="14" height="16" fill="#eeeeee"/>"##.to_string(),
        "idle time left out",
    );
    let legend_top = axis_y + 40.0;
    let mut legend = String::new();
    let (mut lx, mut ly) = (LEFT, legend_top);
    for (swatch, label) in &items {
        // Estimated width: the swatch, about 6.5 px per character of label, a space.
        let w = 30.0 + 6.5 * label.chars().count() as f64 + 24.0;
        if lx + w > width - RIGHT && lx > LEFT {
            lx = LEFT;
            ly += 20.0;
        }
        let _ = writeln!(
            legend,
            r##"<g transform="translate({lx:.1},{ly:.1})">{swatch}<text x="30" y="0" dy="4">{}</text></g>"##,
            xml(label)
        );
        lx += w;
    }
    let height = ly + 20.0;

    // Arrowheads, one per colour used.
    let mut colors: BTreeSet<&str> = seen.kinds.iter().map(|k| color_of(k)).collect();
    colors.insert(OTHER_COLOR);
    let mut defs = String::from("<defs>\n");
    for color in colors {
        let _ = writeln!(
            defs,
            r##"<marker id="arrow-{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,1 L10,5 L0,9 z" fill="{color}"/></marker>"##,
            color.trim_start_matches('#'),
        );
    }
    defs.push_str("</defs>\n");

    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="11">"##
    );
    out.push_str(&defs);
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"##
    );
    if let Some(title) = &options.title {
        let _ = writeln!(
            out,
            r##"<text x="{LEFT:.1}" y="20" font-size="15" font-weight="bold">{}</text>"##,
            xml(title)
        );
    }
    out.push_str(&body);
    out.push_str(&legend);
    out.push_str("</svg>\n");
    out
}

/// What the plot shows, for the legend.
#[derive(Default)]
struct Seen {
    kinds: Vec<String>,
    drop: bool,
    in_flight: bool,
    start: bool,
    timer: bool,
    output: bool,
    annotation: bool,
    violation: bool,
    fault: bool,
    corrupt: bool,
}

impl Seen {
    fn kind(&mut self, kind: &str) {
        if !self.kinds.iter().any(|k| k == kind) {
            self.kinds.push(kind.to_string());
        }
    }
}

/// A cross (×) centred on (x, y).
fn cross(x: f64, y: f64, r: f64, color: &str) -> String {
    format!(
        r##"<path d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="{color}" stroke-width="2.2"/>"##,
        x - r,
        y - r,
        x + r,
        y + r,
        x - r,
        y + r,
        x + r,
        y - r,
    )
}

/// A diamond path centred on (x, y).
fn diamond(x: f64, y: f64, r: f64) -> String {
    format!(
        "M{x:.1},{:.1} L{:.1},{y:.1} L{x:.1},{:.1} L{:.1},{y:.1} z",
        y - r,
        x + r,
        y + r,
        x - r
    )
}

/// Text for SVG character data and attribute values.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A stretch of time drawn linearly.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    t0: u64,
    t1: u64,
    x0: f64,
}

/// An idle stretch left out of the plot.
#[derive(Debug, Clone, PartialEq)]
struct Break {
    t0: u64,
    t1: u64,
    x0: f64,
    x1: f64,
}

/// A tick of the time axis, with its label text and anchor if it has one.
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    t: u64,
    x: f64,
    label: Option<(String, &'static str)>,
}

/// Maps virtual time to x: linear within segments, a fixed width per break.
#[derive(Debug)]
struct TimeScale {
    segments: Vec<Segment>,
    breaks: Vec<Break>,
    /// Pixels per nanosecond (0 when every segment is a single instant).
    px_per_ns: f64,
}

impl TimeScale {
    /// A scale over the event times `times` (in any order) onto `x_min..=x_max`.
    fn new(times: Vec<u64>, x_min: f64, x_max: f64, compress: bool) -> Self {
        let times: Vec<u64> = times
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let plot_w = (x_max - x_min).max(1.0);
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return TimeScale {
                segments: Vec::new(),
                breaks: Vec::new(),
                px_per_ns: 0.0,
            };
        };
        if first == last {
            // One instant: one column in the middle.
            return TimeScale {
                segments: vec![Segment {
                    t0: first,
                    t1: first,
                    x0: x_min + plot_w / 2.0,
                }],
                breaks: Vec::new(),
                px_per_ns: 0.0,
            };
        }
        let span = last - first;
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mut sorted = gaps.clone();
        sorted.sort_unstable();
        let lower_quartile = sorted[sorted.len() / 4];
        let threshold = (span / 10).max(lower_quartile.saturating_mul(20));
        let broken: Vec<bool> = gaps.iter().map(|&g| compress && g > threshold).collect();
        let n_breaks = broken.iter().filter(|&&b| b).count();
        let kept: u64 = gaps
            .iter()
            .zip(&broken)
            .filter(|(_, &b)| !b)
            .map(|(g, _)| g)
            .sum();
        let (break_px, px_per_ns) = if kept == 0 {
            (plot_w / n_breaks as f64, 0.0)
        } else {
            let break_px = BREAK_PX.min(plot_w * 0.3 / n_breaks.max(1) as f64);
            let px = (plot_w - break_px * n_breaks as f64) / kept as f64;
            (break_px, px)
        };
        let mut segments = vec![Segment {
            t0: first,
            t1: first,
            x0: x_min,
        }];
        let mut breaks = Vec::new();
        for (i, &gap) in gaps.iter().enumerate() {
            let next = times[i + 1];
            let seg = segments.last_mut().expect("there is always a segment");
            if broken[i] {
                let x0 = seg.x0 + (seg.t1 - seg.t0) as f64 * px_per_ns;
                breaks.push(Break {
                    t0: seg.t1,
                    t1: next,
                    x0,
                    x1: x0 + break_px,
                });
                segments.push(Segment {
                    t0: next,
                    t1: next,
                    x0: x0 + break_px,
                });
            } else {
                seg.t1 += gap;
            }
        }
        TimeScale {
            segments,
            breaks,
            px_per_ns,
        }
    }

    /// The x of time `t`; times outside every segment go to the nearest segment's edge.
    fn x(&self, t: u64) -> f64 {
        let i = self
            .segments
            .partition_point(|s| s.t0 <= t)
            .saturating_sub(1);
        match self.segments.get(i) {
            Some(s) => s.x0 + (t.clamp(s.t0, s.t1) - s.t0) as f64 * self.px_per_ns,
            None => 0.0,
        }
    }

    /// Ticks at round times within each segment, plus one at the start of each segment; only
    /// some are labelled, so that labels never overlap. Segment starts are labelled first:
    /// they say where time jumps.
    fn ticks(&self) -> Vec<Tick> {
        let mut ticks: BTreeMap<u64, Tick> = BTreeMap::new();
        let mut taken: Vec<(f64, f64)> = Vec::new();
        let mut place = |t: u64, x: f64, text: String, anchor: &'static str| -> Tick {
            let w = TICK_CHAR_PX * text.chars().count() as f64;
            let (l, r) = match anchor {
                "start" => (x - 2.0, x + w),
                _ => (x - w / 2.0, x + w / 2.0),
            };
            let free = !taken
                .iter()
                .any(|&(tl, tr)| l < tr + TICK_LABEL_GAP && tl < r + TICK_LABEL_GAP);
            let label = free.then(|| {
                taken.push((l, r));
                (text, anchor)
            });
            Tick { t, x, label }
        };
        for (i, s) in self.segments.iter().enumerate() {
            let anchor = if i == 0 { "middle" } else { "start" };
            ticks.insert(s.t0, place(s.t0, s.x0, short_time(s.t0), anchor));
        }
        if self.px_per_ns > 0.0 {
            // Ticks at multiples k * step. k is counted in integers from the first multiple
            // in the segment to the last, so the work is the number of ticks (about the
            // segment's width over TICK_PX), whatever the times, and nothing overflows near
            // u64::MAX.
            let step = nice_step(TICK_PX / self.px_per_ns);
            for s in &self.segments {
                let first = s.t0.div_ceil(step);
                let last = s.t1 / step;
                for k in first..=last {
                    let t = k * step;
                    ticks
                        .entry(t)
                        .or_insert_with(|| place(t, self.x(t), format_ns(t), "middle"));
                }
            }
        }
        ticks.into_values().collect()
    }
}

/// A time for a label, to four significant digits or so: `397.9ms`, `1.152s`, `30s`.
fn short_time(ns: u64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    const UNITS: [(u64, &str); 4] = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let (scale, unit) = UNITS
        .into_iter()
        .find(|&(scale, _)| ns >= scale)
        .unwrap_or((1, "ns"));
    let value = ns as f64 / scale as f64;
    let decimals = match value {
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

/// The least round duration (1, 2 or 5 times a power of ten nanoseconds) of at least `ns`.
fn nice_step(ns: f64) -> u64 {
    let mut step: u64 = 1;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if s as f64 >= ns || s == u64::MAX {
                return s.max(1);
            }
        }
        if step > u64::MAX / 10 {
            return u64::MAX;
        }
        step *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_round() {
        assert_eq!(nice_step(0.3), 1);
        assert_eq!(nice_step(3.0), 5);
        assert_eq!(nice_step(7.0), 10);
        assert_eq!(nice_step(1_500_000.0), 2_000_000);
    }

    #[test]
    fn short_times_keep_four_digits_or_so() {
        assert_eq!(short_time(0), "0s");
        assert_eq!(short_time(30_000_000_000), "30s");
        assert_eq!(short_time(397_883_650), "397.9ms");
        assert_eq!(short_time(1_151_870_912), "1.152s");
        assert_eq!(short_time(45_010_000_000), "45.01s");
        assert_eq!(short_time(999), "999ns");
    }

    #[test]
    fn one_instant_is_one_column() {
        let scale = TimeScale::new(vec![5, 5, 5], 0.0, 100.0, true);
        assert_eq!(scale.x(5), 50.0);
        assert!(scale.breaks.is_empty());
        assert_eq!(scale.ticks().len(), 1);
    }

    #[test]
    fn no_times_draw_nothing() {
        let scale = TimeScale::new(vec![], 0.0, 100.0, true);
        assert!(scale.ticks().is_empty());
        assert_eq!(scale.x(3), 0.0);
    }

    #[test]
    fn long_idle_gaps_become_breaks() {
        // Two bursts 10 ms wide, 30 s apart.
        let ms = 1_000_000;
        let times = vec![0, 10 * ms, 30_000 * ms, 30_010 * ms];
        let scale = TimeScale::new(times.clone(), 0.0, 1000.0, true);
        assert_eq!(scale.breaks.len(), 1);
        assert!(scale.x(10 * ms) > 400.0, "{}", scale.x(10 * ms));
        assert!((scale.x(30_010 * ms) - 1000.0).abs() < 1e-6);
        let plain = TimeScale::new(times, 0.0, 1000.0, false);
        assert!(plain.breaks.is_empty());
        assert!(plain.x(10 * ms) < 1.0);
    }

    #[test]
    fn ticks_are_few_whatever_the_time_span() {
        // Times near the end of u64: a step that saturates must not loop forever.
        for times in [
            vec![0, u64::MAX],
            vec![u64::MAX - 10, u64::MAX],
            vec![0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX],
        ] {
            let scale = TimeScale::new(times, 0.0, 1000.0, true);
            let ticks = scale.ticks();
            assert!(!ticks.is_empty() && ticks.len() < 40, "{}", ticks.len());
            assert!(ticks.windows(2).all(|w| w[0].t < w[1].t));
        }
    }

    #[test]
    fn widths_are_clamped_to_the_documented_range() {
        let events = vec![TraceEvent {
            seq: 0,
            t: 0,
            node: NodeId(0),
            kind: EventKind::Start,
        }];
        for (asked, drawn) in [(0, WIDTH_MIN), (u32::MAX, WIDTH_MAX), (640, 640)] {
            let options = PlotOptions {
                width: asked,
                ..PlotOptions::default()
            };
            let svg = render_svg(&events, &options);
            assert!(svg.contains(&format!("width=\"{drawn}\"")), "{asked}");
        }
    }

    #[test]
    fn times_map_monotonically() {
        let ms = 1_000_000;
        let times = vec![0, 1, 10 * ms, 11 * ms, 5_000 * ms, 5_001 * ms, 90_000 * ms];
        let scale = TimeScale::new(times.clone(), 0.0, 1000.0, true);
        let xs: Vec<f64> = times.iter().map(|&t| scale.x(t)).collect();
        assert!(xs.windows(2).all(|w| w[0] <= w[1]), "{xs:?}");
        assert!(xs[0] >= 0.0 && xs[6] <= 1000.0 + 1e-6);
    }
}
