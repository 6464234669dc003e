//! What parsing a structured body allocates: an event over
//! `max_event_bytes` is refused without its members being collected (or
//! its strings unescaped) past the limit, however large the body.
//!
//! A counting allocator (this test binary only) keeps, per thread, the
//! bytes live and the most live at once, so tests running in parallel do
//! not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use inlet_shared::event::{parse_array, parse_object_or_array, Events, ParseError, ParseLimits, MAX_LISTED_ERRORS};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: nothing is counted while the thread's locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed on to `System` unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The result of `parse` on `body`, and the most bytes it had allocated at once.
fn peak_of(parse: impl FnOnce() -> Result<Events, ParseError>) -> (Result<Events, ParseError>, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = parse();
    let peak = PEAK.with(Cell::get) - base;
    (result, usize::try_from(peak).unwrap_or(0))
}

const LIMIT: usize = 4096;
const BOUND: usize = 256 * 1024;
const HEAD: &str = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t""#;

fn limits() -> ParseLimits {
    ParseLimits { max_event_bytes: LIMIT, ..ParseLimits::default() }
}

/// The pointer and detail of a too-large refusal.
fn too_large(result: Result<Events, ParseError>) -> (Option<String>, String) {
    match result {
        Err(ParseError::EventTooLarge { at }) => (at.pointer, at.detail),
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
}

/// An event object of `members` members after the required four.
fn big_event(member: &str, members: usize) -> String {
    format!("{HEAD}{}}}", format!(",{member}").repeat(members))
}

#[test]
fn a_batch_item_of_two_mib_in_small_members_is_refused_with_its_members_bounded_by_the_limit() {
    for member in [r#""a":1"#, r#""\u0061":1"#, r#""a":"\u0062""#] {
        let item = big_event(member, 2 * 1024 * 1024 / member.len());
        let ok = big_event(member, 2);
        let body = format!("[{ok}, {item},{ok}]");
        let (result, peak) = peak_of(|| parse_array(body.as_bytes(), &limits()));
        let detail = format!("event is {} bytes; the limit is {LIMIT}", item.len());
        assert_eq!(too_large(result), (Some("#/1".into()), detail), "{member}");
        assert!(peak < BOUND, "{member}: {peak} bytes allocated at once for a {} byte body", body.len());
    }
}

#[test]
fn a_long_escaped_string_past_the_limit_is_not_unescaped() {
    let escapes = r"\u0041".repeat(2 * 1024 * 1024 / 6);
    for item in [format!(r#"{HEAD},"x":"{escapes}"}}"#), format!(r#"{HEAD},"{escapes}":1}}"#)] {
        let body = format!("[{item}]");
        let (result, peak) = peak_of(|| parse_object_or_array(body.as_bytes(), &limits()));
        let detail = format!("event is {} bytes; the limit is {LIMIT}", item.len());
        assert_eq!(too_large(result), (Some("#/0".into()), detail));
        assert!(peak < BOUND, "{peak} bytes allocated at once for a {} byte body", body.len());
    }
}

#[test]
fn a_batch_item_that_is_a_long_escaped_string_is_refused_without_being_unescaped() {
    let item = format!(r#""{}""#, r"\u0041".repeat(2 * 1024 * 1024 / 6));
    let body = format!("[{item}]");
    let (result, peak) = peak_of(|| parse_array(body.as_bytes(), &limits()));
    let detail = format!("event is {} bytes; the limit is {LIMIT}", item.len());
    assert_eq!(too_large(result), (Some("#/0".into()), detail));
    assert!(peak < BOUND, "{peak} bytes allocated at once for a {} byte body", body.len());
}

#[test]
fn an_item_over_the_limit_is_still_read_to_its_end_as_json() {
    let item = big_event(r#""a":1"#, 10_000);
    // Broken past the limit: still a syntax error (400), as before.
    for broken in [item.replacen(r#""a":1}"#, r#""a":}"#, 1), item.replacen(r#","a":1}"#, r#","a":1"#, 1)] {
        let body = format!("[{broken}]");
        let (result, _) = peak_of(|| parse_array(body.as_bytes(), &limits()));
        assert!(matches!(result, Err(ParseError::Json { .. })), "{result:?}");
    }
    // An unpaired surrogate in a name past the limit: too large wins, as before.
    let body = format!("[{}]", item.replacen(r#""a":1}"#, r#""\ud800":1}"#, 1));
    let (result, _) = peak_of(|| parse_array(body.as_bytes(), &limits()));
    let detail = format!("event is {} bytes; the limit is {LIMIT}", body.len() - 2);
    assert_eq!(too_large(result), (Some("#/0".into()), detail));
}

/// The result of `parse` and the bytes it still holds once it returned
/// (what its error keeps).
fn retained_of(parse: impl FnOnce() -> Result<Events, ParseError>) -> (Result<Events, ParseError>, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = parse();
    let live = LIVE.with(Cell::get) - base;
    (result, usize::try_from(live).unwrap_or(0))
}

/// The `errors` of the `422` body answering `result`.
fn problem_errors(result: &Result<Events, ParseError>) -> Vec<inlet_shared::problem::FieldError> {
    match result {
        Err(e) => {
            let problem = e.to_problem();
            assert_eq!(problem.status, 422, "{}", problem.detail);
            problem.errors
        }
        Ok(events) => panic!("expected 422, got {} events", events.len()),
    }
}

const MORE: &str = "more error(s) not listed: the first 1000 are, and the first of every invalid event";

/// `"X<n>":1` members: an upper-case letter makes each an invalid extension name.
fn bad_members(count: usize) -> String {
    (0..count).map(|n| format!(r#","X{n}":1"#)).collect()
}

#[test]
fn a_batch_of_many_bad_items_keeps_the_first_errors_and_counts_the_rest() {
    const ITEMS: usize = 150;
    const BAD: usize = 1000;
    let item = format!("{HEAD}{}}}", bad_members(BAD));
    let body = format!("[{}]", vec![item; ITEMS].join(","));
    let (result, retained) = retained_of(|| parse_array(body.as_bytes(), &ParseLimits::default()));
    let errors = problem_errors(&result);
    // The first thousand in document order (item 0's members), then the
    // first error of each later item.
    assert_eq!(errors.len(), MAX_LISTED_ERRORS + ITEMS - 1 + 1);
    assert_eq!(errors[0].pointer.as_deref(), Some("#/0/X0"));
    assert_eq!(errors[999].pointer.as_deref(), Some("#/0/X999"));
    assert_eq!(errors[1000].pointer.as_deref(), Some("#/1/X0"));
    assert_eq!(errors[1148].pointer.as_deref(), Some("#/149/X0"));
    let more = &errors[1149];
    assert_eq!((more.pointer.as_ref(), more.header.as_ref(), more.line), (None, None, None));
    assert_eq!(more.detail, format!("{} {MORE}", ITEMS * BAD - 1149));
    let detail = result.as_ref().err().map(|e| e.to_problem().detail);
    assert_eq!(detail.as_deref(), Some("150000 invalid attribute(s); nothing of this request was stored"));
    // What the error holds: the thousand, plus each later item's first error.
    assert!(retained < 512 * 1024, "the error holds {retained} bytes");
}

#[test]
fn one_event_of_forty_thousand_bad_members_builds_no_more_than_the_cap() {
    let limits = ParseLimits::default();
    let room = limits.max_event_bytes - HEAD.len() - 1;
    // Distinct invalid names; one invalid name repeated (each repeat is an error).
    let distinct: String = bad_members(room / 12);
    let repeated = r#","X":1"#.repeat(room / 6);
    for (members, count) in [(distinct, room / 12), (repeated, room / 6)] {
        assert!(count > 20_000, "{count}");
        let event = format!("{HEAD}{members}}}");
        assert!(event.len() <= limits.max_event_bytes, "{}", event.len());
        let single: fn(&[u8], &ParseLimits) -> _ = parse_object_or_array;
        for (parse, body) in [(single, event.clone()), (parse_array, format!("[{event}]"))] {
            let (result, retained) = retained_of(|| parse(body.as_bytes(), &limits));
            let errors = problem_errors(&result);
            assert_eq!(errors.len(), MAX_LISTED_ERRORS + 1);
            assert_eq!(errors[1000].detail, format!("{} {MORE}", count - 1000));
            assert!(retained < 512 * 1024, "the error holds {retained} bytes");
        }
    }
}
