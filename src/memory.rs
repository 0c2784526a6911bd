//! Memory: the process's resident set and the machine's total, read from Linux's `/proc`,
//! for the bound a state-space search keeps to (its seen set and frontier grow with every
//! state, and a fast search on a large protocol fills a machine in a minute).

/// The bound when none is given: half the machine's memory, or 8 GiB where `/proc` does
/// not say.
pub fn default_bound() -> u64 {
    machine_bytes().map_or(8 << 30, |total| total / 2)
}

/// This process's resident memory (`VmRSS`), where `/proc` tells it.
pub fn resident_bytes() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

/// This process's peak resident memory (`VmHWM`) since it started or since the last
/// [`reset_peak`], where `/proc` tells it.
pub fn peak_bytes() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
}

/// Starts [`peak_bytes`] afresh from the current resident memory (Linux's
/// `/proc/self/clear_refs`); false where that is not possible, and then the peak is the
/// whole process's.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The machine's memory (`MemTotal`), where `/proc` tells it.
pub fn machine_bytes() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// A size: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024, an optional
/// `iB` or `B` after it), e.g. `512M`, `8GiB`, `1.5G`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let scale: u64 = match unit
        .trim()
        .trim_end_matches("iB")
        .trim_end_matches('B')
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}` is not a size: a number with K, M, G or T, e.g. 8G"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: a number with K, M, G or T, e.g. 8G"))?;
    let bytes = value * scale as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` is not a size above zero"));
    }
    Ok(bytes as u64)
}

/// A size in GiB or MiB, for messages.
pub fn format_size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_bad_ones_are_refused() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "G", "8X", "-1G", "0", "1..2G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_and_machine_have_memory_on_linux() {
        let rss = resident_bytes().expect("VmRSS in /proc/self/status");
        let total = machine_bytes().expect("MemTotal in /proc/meminfo");
        assert!(rss > 0 && rss < total, "{rss} of {total}");
        assert_eq!(default_bound(), total / 2);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_peak_counts_freed_memory_until_it_is_reset() {
        const BIG: usize = 256 << 20;
        let block = vec![1u8; BIG];
        let rss = resident_bytes().expect("VmRSS");
        assert!(
            rss >= BIG as u64,
            "a touched {BIG}-byte block is resident: {rss}"
        );
        drop(std::hint::black_box(block)); // a block this large goes back to the system
        let peak = peak_bytes().expect("VmHWM");
        assert!(
            peak >= BIG as u64,
            "the peak remembers the freed block: {peak}"
        );
        assert!(reset_peak(), "/proc/self/clear_refs takes 5");
        let after = peak_bytes().expect("VmHWM");
        assert!(
            after + (BIG as u64) / 2 < peak,
            "the reset peak starts from what is resident now: {after} after {peak}"
        );
    }
}
