//! What `--stream` and `--subject-prefix` may be, checked at start, and
//! whether an existing stream takes the events' subjects.
//!
//! The rules are NATS's where NATS has one (nats-server 2.15 and async-nats
//! 0.51): a stream name has no `.`, `*`, `>`, path separator or whitespace
//! (space, tab, CR, LF, form feed: what NATS counts, so a name with other
//! characters NATS takes is taken) and is at most 255 bytes; a subject has
//! no empty token and no such whitespace. For stream names inlet adds: no
//! ASCII control character and nothing above U+FFFF. nats-server takes
//! those, but writes the stream's name into every publish ack quoted Go's
//! way (`"bel\ax"`, `"\x7f"`, `"\U000e0001"`), which no JSON reader takes,
//! so every write was stored and answered `503`. For the prefix inlet adds: no wildcard
//! token in the prefix (every event's subject would be a pattern, which
//! cannot be published to), a prefix of at most [`MAX_PREFIX`] bytes (an
//! event's whole subject must fit NATS's control line, see
//! [`super::subject_for`]), and none in NATS's own name spaces (a first
//! token starting with `$`, such as `$JS`, or `_INBOX`, where the client's
//! request replies go: a stream on it would store them as events). Without
//! this check such a flag started a server whose stream was never ready
//! (every write answered `503`, the cause only in the log) or, for
//! `_INBOX`, one that served NATS's replies as events.

use std::fmt;

/// Longest stream name NATS takes.
pub const MAX_STREAM_NAME: usize = 255;

/// What `--keep-rejected` appends to the stream name for its own stream.
pub const REJECTED_STREAM_SUFFIX: &str = "_REJECTED";

/// Longest `--subject-prefix`, in bytes.
pub const MAX_PREFIX: usize = 256;

/// The whitespace NATS refuses in names and subjects.
fn nats_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0c')
}

/// Why a stream name cannot be used, or `None` if it can. `max` is
/// [`MAX_STREAM_NAME`], less the suffix of the rejected events' stream when
/// there is one.
pub fn stream_name_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.contains(nats_whitespace) {
        return Some("has whitespace (NATS stream names cannot)".into());
    }
    if name.contains(|c: char| c.is_ascii_control()) {
        return Some("has a control character (nats-server's acks would quote it in a form that is not JSON)".into());
    }
    if name.contains(|c: char| c > '\u{ffff}') {
        return Some(
            "has a character outside the Basic Multilingual Plane (nats-server's acks quote some of those in a \
             form that is not JSON)"
                .into(),
        );
    }
    if name.contains(['.', '*', '>']) {
        return Some("has '.', '*' or '>' (NATS stream names cannot)".into());
    }
    if name.contains(['/', '\\']) {
        return Some("has a path separator (NATS stream names cannot)".into());
    }
    if name.len() > max {
        return Some(format!("is {} bytes long, more than the {max} it may be", name.len()));
    }
    None
}

/// Why a subject prefix cannot be used, or `None` if it can.
pub fn subject_prefix_problem(prefix: &str) -> Option<String> {
    if prefix.contains(nats_whitespace) {
        return Some("has whitespace (NATS subjects cannot)".into());
    }
    if prefix.split('.').any(str::is_empty) {
        return Some("has an empty token (it is empty, or has '..' or a '.' at an end)".into());
    }
    if prefix.split('.').any(|t| t == "*" || t == ">") {
        return Some("has a wildcard token ('*' or '>'); events are published to <prefix>.<type>".into());
    }
    let first = prefix.split('.').next().unwrap_or_default();
    if first.starts_with('$') || first == "_INBOX" {
        return Some("is in NATS's own subjects (a first token starting with '$', or _INBOX)".into());
    }
    if prefix.len() > MAX_PREFIX {
        return Some(format!("is {} bytes long, more than the {MAX_PREFIX} it may be", prefix.len()));
    }
    None
}

/// The start-up check of both flags, as the message the server exits with.
/// With `--keep-rejected` the stream name leaves room for its suffix.
pub fn check(stream: &str, prefix: &str, keep_rejected: bool) -> Result<(), String> {
    let max = if keep_rejected { MAX_STREAM_NAME - REJECTED_STREAM_SUFFIX.len() } else { MAX_STREAM_NAME };
    if let Some(problem) = stream_name_problem(stream, max) {
        let with = if keep_rejected { " (with --keep-rejected, which adds _REJECTED for its own stream)" } else { "" };
        return Err(format!("--stream {stream:?} {problem}{with}"));
    }
    if let Some(problem) = subject_prefix_problem(prefix) {
        return Err(format!("--subject-prefix {prefix:?} {problem}"));
    }
    Ok(())
}

/// Whether a stream's subject filter takes every subject `<prefix>.<...>`:
/// token by token the filter's is `*` or the prefix's own, and the filter
/// ends in `>` no later than just past the prefix.
pub fn filter_covers(filter: &str, prefix: &str) -> bool {
    let mut filter = filter.split('.');
    let mut prefix = prefix.split('.');
    loop {
        match (filter.next(), prefix.next()) {
            (Some(">"), _) => return true,
            // The prefix is used up; the events' subjects go on by at
            // least one token, which only a trailing `>` takes.
            (_, None) => return false,
            (None, Some(_)) => return false,
            (Some(f), Some(p)) if f == "*" || f == p => {}
            (Some(_), Some(_)) => return false,
        }
    }
}

/// Whether some subject `<prefix>.<...>` matches `filter`: token by token
/// one of the two is `*` or they are equal, until the filter ends in `>`
/// (or, past the prefix, has a token of any kind left).
pub fn filter_touches(filter: &str, prefix: &str) -> bool {
    let mut filter = filter.split('.');
    let mut prefix = prefix.split('.');
    loop {
        match (filter.next(), prefix.next()) {
            (Some(">"), _) => return true,
            // Past the prefix any further token of the filter is matched
            // by some subject under it.
            (Some(_), None) => return true,
            (None, _) => return false,
            (Some(f), Some(p)) if f == "*" || f == p => {}
            (Some(_), Some(_)) => return false,
        }
    }
}

/// An existing stream whose subjects do not fit this server.
#[derive(Debug)]
pub enum WrongSubjects {
    /// They do not take `<prefix>.>`: events would find no stream.
    NotCovered { stream: String, subjects: Vec<String>, prefix: String },
    /// With `--keep-rejected`, they also take `<prefix>_rejected.>`, the
    /// subjects of the rejected events' own stream, which NATS would then
    /// refuse to create (two streams cannot share subjects).
    TakesRejected { stream: String, subjects: Vec<String>, rejected_prefix: String },
}

impl fmt::Display for WrongSubjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrongSubjects::NotCovered { stream, subjects, prefix } => {
                if subjects.is_empty() {
                    write!(f, "stream {stream} takes no subjects (a mirror, or a stream of sources), ")?;
                } else {
                    write!(f, "stream {stream} takes subjects {subjects:?}, ")?;
                }
                write!(f, "not {prefix}.> (give the --subject-prefix the stream was made for, or another --stream)")
            }
            WrongSubjects::TakesRejected { stream, subjects, rejected_prefix } => write!(
                f,
                "stream {stream} takes subjects {subjects:?}, which take {rejected_prefix}.> too, the subjects \
                 --keep-rejected keeps refused events under (give the stream narrower subjects, or another \
                 --stream)"
            ),
        }
    }
}

impl std::error::Error for WrongSubjects {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_nats_takes_pass_and_others_say_why() {
        // nats-server 2.15.1 takes these and acks publishes to them in
        // JSON: only its own whitespace is refused, not every Unicode space.
        for ok in ["INLET_EVENTS", "events-2", "E", "ünïcode", "nb\u{a0}sp", "c1\u{85}x", "max\u{ffff}"] {
            assert_eq!(stream_name_problem(ok, MAX_STREAM_NAME), None, "{ok:?}");
        }
        let space = "has whitespace (NATS stream names cannot)";
        for (bad, why) in [
            ("", "is empty"),
            ("JS X", space),
            ("JS\tX", space),
            ("JS\rX", space),
            ("JS\nX", space),
            ("JS\u{c}X", space),
            ("bel\u{7}x", "has a control character (nats-server's acks would quote it in a form that is not JSON)"),
            ("del\u{7f}x", "has a control character (nats-server's acks would quote it in a form that is not JSON)"),
            (
                "T\u{e0001}",
                "has a character outside the Basic Multilingual Plane (nats-server's acks quote some of those in a \
                 form that is not JSON)",
            ),
            ("A.B", "has '.', '*' or '>' (NATS stream names cannot)"),
            ("A*", "has '.', '*' or '>' (NATS stream names cannot)"),
            ("A>", "has '.', '*' or '>' (NATS stream names cannot)"),
            ("a/b", "has a path separator (NATS stream names cannot)"),
            ("a\\b", "has a path separator (NATS stream names cannot)"),
        ] {
            assert_eq!(stream_name_problem(bad, MAX_STREAM_NAME).as_deref(), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn a_stream_name_at_the_length_limit_passes_and_one_past_it_does_not() {
        let at = "S".repeat(MAX_STREAM_NAME);
        assert_eq!(check(&at, "inlet.events", false), Ok(()));
        let past = "S".repeat(MAX_STREAM_NAME + 1);
        assert_eq!(
            check(&past, "inlet.events", false),
            Err(format!("--stream {past:?} is 256 bytes long, more than the 255 it may be"))
        );
        // With --keep-rejected, `<stream>_REJECTED` must fit too.
        let at = "S".repeat(MAX_STREAM_NAME - REJECTED_STREAM_SUFFIX.len());
        assert_eq!(check(&at, "inlet.events", true), Ok(()));
        let past = format!("{at}S");
        assert_eq!(
            check(&past, "inlet.events", true),
            Err(format!(
                "--stream {past:?} is 247 bytes long, more than the 246 it may be (with --keep-rejected, which adds \
                 _REJECTED for its own stream)"
            ))
        );
    }

    #[test]
    fn subject_prefixes_nats_takes_pass_and_others_say_why() {
        for ok in ["inlet.events", "a", "a.b-c_d.e", "x.*y", "a.$b", "nb\u{a0}old.ev", "my_INBOX", "a._INBOX"] {
            assert_eq!(subject_prefix_problem(ok), None, "{ok:?}");
        }
        let empty = "has an empty token (it is empty, or has '..' or a '.' at an end)";
        let wildcard = "has a wildcard token ('*' or '>'); events are published to <prefix>.<type>";
        let nats_own = "is in NATS's own subjects (a first token starting with '$', or _INBOX)";
        for (bad, why) in [
            ("a b", "has whitespace (NATS subjects cannot)"),
            ("a\r\nb", "has whitespace (NATS subjects cannot)"),
            ("", empty),
            ("a..b", empty),
            (".a", empty),
            ("a.", empty),
            ("a.>", wildcard),
            ("*.events", wildcard),
            ("$JS.API", nats_own),
            ("$KV", nats_own),
            ("_INBOX", nats_own),
            ("_INBOX.events", nats_own),
        ] {
            assert_eq!(subject_prefix_problem(bad).as_deref(), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn a_prefix_at_the_length_limit_passes_and_one_past_it_does_not() {
        let at = format!("{}.{}", "p".repeat(127), "q".repeat(MAX_PREFIX - 128));
        assert_eq!(at.len(), MAX_PREFIX);
        assert_eq!(subject_prefix_problem(&at), None);
        let past = format!("{at}q");
        assert_eq!(subject_prefix_problem(&past), Some("is 257 bytes long, more than the 256 it may be".into()));
    }

    #[test]
    fn the_start_up_message_names_the_flag_and_its_value() {
        assert_eq!(check("INLET_EVENTS", "inlet.events", false), Ok(()));
        assert_eq!(
            check("JS X", "inlet.events", false),
            Err("--stream \"JS X\" has whitespace (NATS stream names cannot)".into())
        );
        assert_eq!(
            check("OK", "a b", false),
            Err("--subject-prefix \"a b\" has whitespace (NATS subjects cannot)".into())
        );
    }

    #[test]
    fn the_refusal_says_which_subjects_the_stream_takes() {
        let subjects = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let wrong = |s: &[&str]| WrongSubjects::NotCovered {
            stream: "S".into(),
            subjects: subjects(s),
            prefix: "inlet.events".into(),
        };
        let tail = "not inlet.events.> (give the --subject-prefix the stream was made for, or another --stream)";
        assert_eq!(wrong(&["a.>", "b"]).to_string(), format!("stream S takes subjects [\"a.>\", \"b\"], {tail}"));
        assert_eq!(
            wrong(&[]).to_string(),
            format!("stream S takes no subjects (a mirror, or a stream of sources), {tail}")
        );
        let rejected = WrongSubjects::TakesRejected {
            stream: "S".into(),
            subjects: subjects(&["inlet.>"]),
            rejected_prefix: "inlet.events_rejected".into(),
        };
        assert_eq!(
            rejected.to_string(),
            "stream S takes subjects [\"inlet.>\"], which take inlet.events_rejected.> too, the subjects \
             --keep-rejected keeps refused events under (give the stream narrower subjects, or another --stream)"
        );
    }

    #[test]
    fn a_filter_covers_the_prefix_when_it_takes_every_subject_under_it() {
        for (filter, prefix) in [
            ("inlet.events.>", "inlet.events"),
            ("inlet.>", "inlet.events"),
            (">", "inlet.events"),
            ("*.events.>", "inlet.events"),
            ("inlet.*.>", "inlet.events"),
        ] {
            assert!(filter_covers(filter, prefix), "{filter} should cover {prefix}.>");
        }
        for (filter, prefix) in [
            ("other.>", "inlet.events"),
            ("inlet.events", "inlet.events"),
            ("inlet.events.*", "inlet.events"),
            ("inlet.events.x.>", "inlet.events"),
            ("inlet.other.>", "inlet.events"),
            ("inlet.events.>", "inlet"),
            ("inlet.*", "inlet.events"),
        ] {
            assert!(!filter_covers(filter, prefix), "{filter} should not cover {prefix}.>");
        }
    }

    #[test]
    fn a_filter_touches_the_prefix_when_some_subject_under_it_matches() {
        let r = "inlet.events_rejected";
        for filter in
            [">", "inlet.>", "*.>", "inlet.*.>", "inlet.events_rejected.>", "inlet.events_rejected.t.x", "*.*.*"]
        {
            assert!(filter_touches(filter, r), "{filter} should touch {r}.>");
        }
        for filter in ["inlet.events.>", "inlet.events_rejected", "inlet.*", "other.>", "inlet.events.*", "*"] {
            assert!(!filter_touches(filter, r), "{filter} should not touch {r}.>");
        }
    }
}
