//! Scopes: what a token may do. `write` is `POST /events` and `POST /echo`,
//! `read` is `GET /events` and `/stats`, `metrics` is `/metrics`;
//! `/health` needs none. A token's scopes are a bit set, so the check on
//! every request is one `AND`.

use std::fmt;

/// One permission a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Write,
    Read,
    Metrics,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 3] = [Scope::Write, Scope::Read, Scope::Metrics];

    /// The name used in the tokens file and in problem details.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
            Scope::Metrics => "metrics",
        }
    }

    /// Parses a scope name exactly as the tokens file spells it (lower case).
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Write => 1,
            Scope::Read => 2,
            Scope::Metrics => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        iter.into_iter().fold(Scopes::NONE, Scopes::with)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(Scope::as_str)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("Write"), None);
        assert_eq!(Scope::parse("admin"), None);
        assert_eq!(Scope::parse(""), None);
    }

    #[test]
    fn a_set_contains_exactly_what_was_put_in() {
        let set: Scopes = [Scope::Write, Scope::Metrics].into_iter().collect();
        assert!(set.contains(Scope::Write));
        assert!(!set.contains(Scope::Read));
        assert!(set.contains(Scope::Metrics));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![Scope::Write, Scope::Metrics]);
        assert_eq!(format!("{set:?}"), r#"["write", "metrics"]"#);
        assert!(Scopes::NONE.is_empty());
        assert!(!set.is_empty());
    }
}
