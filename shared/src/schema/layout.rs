//! Where each event of a request sits in its body: the pointer prefix of
//! its attributes (`#/3/...` in a batch, `#/...` for one event or an NDJSON
//! line, with the line's number) or, in binary mode, the header that
//! carried each attribute, the body being `data` itself.

use std::cell::OnceCell;

use crate::event::BodyKind;
use crate::problem::FieldError;

/// The layout of one request body, as the parser read it.
#[derive(Debug)]
pub struct Layout<'a> {
    kind: Kind<'a>,
}

#[derive(Debug)]
enum Kind<'a> {
    /// One event object: `#/...`.
    Single,
    /// An array of events: `#/<index>/...`.
    Array,
    /// One event per line: `#/...` and the line number, worked out only
    /// when an error needs it.
    Ndjson { body: &'a [u8], lines: OnceCell<Vec<u64>> },
    /// `ce-*` headers; the body is `data`.
    Binary,
}

impl<'a> Layout<'a> {
    /// The layout of a body of this kind (`body`: the decoded body the
    /// events were parsed from).
    pub fn of(kind: BodyKind, body: &'a [u8]) -> Layout<'a> {
        let kind = match kind {
            BodyKind::Structured => Kind::Single,
            BodyKind::Batch => Kind::Array,
            BodyKind::Json => match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => Kind::Array,
                _ => Kind::Single,
            },
            BodyKind::Ndjson => Kind::Ndjson { body, lines: OnceCell::new() },
            BodyKind::Binary => Kind::Binary,
        };
        Layout { kind }
    }

    /// An NDJSON body (a file checked offline).
    pub fn ndjson(body: &'a [u8]) -> Layout<'a> {
        Layout::of(BodyKind::Ndjson, body)
    }

    /// The number of the line holding the `index`-th event: lines counted
    /// from 1, blank ones skipped, as the NDJSON parser counts them.
    fn line(&self, index: usize) -> Option<u64> {
        let Kind::Ndjson { body, lines } = &self.kind else { return None };
        let lines = lines.get_or_init(|| {
            body.split(|b| *b == b'\n')
                .enumerate()
                .filter(|(_, line)| !crate::event::is_blank_line(line))
                .map(|(i, _)| i as u64 + 1)
                .collect()
        });
        lines.get(index).copied()
    }

    /// The pointer prefix of the `index`-th event.
    fn prefix(&self, index: usize) -> String {
        match self.kind {
            Kind::Array => format!("#/{index}"),
            _ => "#".to_string(),
        }
    }

    /// An error at an attribute of the `index`-th event.
    pub fn attribute(&self, index: usize, name: &str, detail: String) -> FieldError {
        match self.kind {
            Kind::Binary => match name {
                "datacontenttype" => FieldError::header("content-type".into(), detail),
                // Binary-mode data becomes `data_base64` when it is neither
                // JSON nor text: the body is where it came from.
                "data_base64" | "data" => FieldError::pointer("#".into(), None, detail),
                _ => FieldError::header(format!("ce-{name}"), detail),
            },
            _ => FieldError::pointer(format!("{}/{name}", self.prefix(index)), self.line(index), detail),
        }
    }

    /// An error inside the `data` of the `index`-th event, at `path` (a JSON
    /// Pointer within `data`, `""` for `data` itself).
    pub fn data(&self, index: usize, path: &str, detail: String) -> FieldError {
        match self.kind {
            Kind::Binary => FieldError::pointer(format!("#{path}"), None, detail),
            _ => FieldError::pointer(format!("{}/data{path}", self.prefix(index)), self.line(index), detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_for_each_layout() {
        let d = || "x".to_string();
        let single = Layout::of(BodyKind::Structured, b"{}");
        assert_eq!(single.data(0, "/a/0", d()).pointer.as_deref(), Some("#/data/a/0"));
        assert_eq!(single.attribute(0, "type", d()).pointer.as_deref(), Some("#/type"));
        let array = Layout::of(BodyKind::Json, b"  [{}]");
        assert_eq!(array.data(3, "/items/0/qty", d()).pointer.as_deref(), Some("#/3/data/items/0/qty"));
        let object = Layout::of(BodyKind::Json, b" {}");
        assert_eq!(object.data(0, "", d()).pointer.as_deref(), Some("#/data"));
        let binary = Layout::of(BodyKind::Binary, b"{}");
        assert_eq!(binary.data(0, "/qty", d()).pointer.as_deref(), Some("#/qty"));
        assert_eq!(binary.attribute(0, "dataschema", d()).header.as_deref(), Some("ce-dataschema"));
        assert_eq!(binary.attribute(0, "datacontenttype", d()).header.as_deref(), Some("content-type"));
    }

    #[test]
    fn ndjson_lines_skip_blank_ones_as_the_parser_does() {
        let body = b"\n{}\r\n  \n\r\n{}\n\n{}";
        let layout = Layout::ndjson(body);
        let lines: Vec<Option<u64>> = (0..4).map(|i| layout.data(i, "", "x".into()).line).collect();
        assert_eq!(lines, [Some(2), Some(5), Some(7), None]);
        assert_eq!(layout.data(1, "/a", "x".into()).pointer.as_deref(), Some("#/data/a"));
    }
}
