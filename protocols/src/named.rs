//! The names of a protocol's test hooks (mutants, Byzantine behaviours): parsing one, with
//! an error that lists them all, and printing one.

/// The one of `all` whose `name` is `text`; otherwise an error that says what `kind` of
/// name was expected and lists every name (and `also`, a further word accepted elsewhere,
/// such as `correct`). Each protocol's `Mutant` and `Behavior` parse with it.
pub(crate) fn parse_named<T: Copy>(
    text: &str,
    kind: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    also: Option<&str>,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|&v| name(v) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|&v| name(v)).collect();
            let also = also.map_or(String::new(), |word| format!(" (or `{word}`)"));
            format!(
                "unknown {kind} `{text}`: expected one of {}{also}",
                names.join(", ")
            )
        })
}

/// `Display` as the type's `name()`.
macro_rules! display_by_name {
    ($($t:ty),+ $(,)?) => {
        $(impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        })+
    };
}
pub(crate) use display_by_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_parses_and_an_unknown_one_lists_every_name() {
        let all = [1u8, 2];
        let name = |v: u8| if v == 1 { "one" } else { "two" };
        assert_eq!(parse_named("two", "number", &all, name, None), Ok(2));
        assert_eq!(
            parse_named("three", "number", &all, name, Some("none")),
            Err("unknown number `three`: expected one of one, two (or `none`)".to_string())
        );
    }
}
