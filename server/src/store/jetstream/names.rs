//! What `--stream` and `--subject-prefix` may be, checked at start, and
//! whether an existing stream takes the events' subjects.
//!
//! NATS takes neither a stream name with `.`, `*`, `>`, a path separator,
//! whitespace or a control character, nor a subject with an empty token,
//! whitespace or a control character; a wildcard in the prefix would make
//! every event's subject a pattern, which cannot be published to. Without
//! this check such a flag started a server whose stream was never ready:
//! every write answered `503` and the cause was only in the log. Now the
//! server refuses to start and says which flag is wrong.

use std::fmt;

/// Why a stream name cannot be used, or `None` if it can.
pub fn stream_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("has whitespace or a control character");
    }
    if name.contains(['.', '*', '>']) {
        return Some("has '.', '*' or '>' (NATS stream names cannot)");
    }
    if name.contains(['/', '\\']) {
        return Some("has a path separator (NATS stream names cannot)");
    }
    None
}

/// Why a subject prefix cannot be used, or `None` if it can.
pub fn subject_prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("has whitespace or a control character");
    }
    if prefix.split('.').any(str::is_empty) {
        return Some("has an empty token (it is empty, or has '..' or a '.' at an end)");
    }
    if prefix.split('.').any(|t| t == "*" || t == ">") {
        return Some("has a wildcard token ('*' or '>'); events are published to <prefix>.<type>");
    }
    None
}

/// The start-up check of both flags, as the message the server exits with.
pub fn check(stream: &str, prefix: &str) -> Result<(), String> {
    if let Some(problem) = stream_name_problem(stream) {
        return Err(format!("--stream {stream:?} {problem}"));
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

/// An existing stream whose subjects do not take the events' subjects.
#[derive(Debug)]
pub struct SubjectsNotCovered {
    pub stream: String,
    pub subjects: Vec<String>,
    pub prefix: String,
}

impl fmt::Display for SubjectsNotCovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subjects.is_empty() {
            write!(f, "stream {} takes no subjects (a mirror, or a stream of sources), ", self.stream)?;
        } else {
            write!(f, "stream {} takes subjects {:?}, ", self.stream, self.subjects)?;
        }
        write!(f, "not {}.> (give the --subject-prefix the stream was made for, or another --stream)", self.prefix)
    }
}

impl std::error::Error for SubjectsNotCovered {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_nats_takes_pass_and_others_say_why() {
        for ok in ["INLET_EVENTS", "events-2", "E", "ünïcode"] {
            assert_eq!(stream_name_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("JS X", "has whitespace or a control character"),
            ("JS\tX", "has whitespace or a control character"),
            ("A\u{7}", "has whitespace or a control character"),
            ("A.B", "has '.', '*' or '>' (NATS stream names cannot)"),
            ("A*", "has '.', '*' or '>' (NATS stream names cannot)"),
            ("A>", "has '.', '*' or '>' (NATS stream names cannot)"),
            ("a/b", "has a path separator (NATS stream names cannot)"),
            ("a\\b", "has a path separator (NATS stream names cannot)"),
        ] {
            assert_eq!(stream_name_problem(bad), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn subject_prefixes_nats_takes_pass_and_others_say_why() {
        for ok in ["inlet.events", "a", "a.b-c_d.e", "x.*y"] {
            assert_eq!(subject_prefix_problem(ok), None, "{ok}");
        }
        let empty = "has an empty token (it is empty, or has '..' or a '.' at an end)";
        let wildcard = "has a wildcard token ('*' or '>'); events are published to <prefix>.<type>";
        for (bad, why) in [
            ("a b", "has whitespace or a control character"),
            ("a\r\nb", "has whitespace or a control character"),
            ("", empty),
            ("a..b", empty),
            (".a", empty),
            ("a.", empty),
            ("a.>", wildcard),
            ("*.events", wildcard),
        ] {
            assert_eq!(subject_prefix_problem(bad), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn the_start_up_message_names_the_flag_and_its_value() {
        assert_eq!(check("INLET_EVENTS", "inlet.events"), Ok(()));
        assert_eq!(
            check("JS X", "inlet.events"),
            Err("--stream \"JS X\" has whitespace or a control character".into())
        );
        assert_eq!(check("OK", "a b"), Err("--subject-prefix \"a b\" has whitespace or a control character".into()));
    }

    #[test]
    fn the_refusal_says_which_subjects_the_stream_takes() {
        let wrong = |subjects: &[&str]| SubjectsNotCovered {
            stream: "S".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            prefix: "inlet.events".into(),
        };
        let tail = "not inlet.events.> (give the --subject-prefix the stream was made for, or another --stream)";
        assert_eq!(wrong(&["a.>", "b"]).to_string(), format!("stream S takes subjects [\"a.>\", \"b\"], {tail}"));
        assert_eq!(
            wrong(&[]).to_string(),
            format!("stream S takes no subjects (a mirror, or a stream of sources), {tail}")
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
}
