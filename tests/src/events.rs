//! CloudEvents to send, and what a server stores.

use std::collections::HashMap;

use crate::{json, Server};

/// A structured CloudEvent with the given id.
pub fn event_json(id: &str, ty: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"/tests","type":"{ty}","data":{{"n":1}}}}"#)
}

/// Every stored event id, with how many times it is stored, read through
/// `GET /events` page by page (10,000 a page) until `next_after` is null.
pub fn stored_ids(s: &Server) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    let mut after = 0u64;
    loop {
        let page = json(&s.get(&format!("/events?limit=10000&after={after}")));
        let events = page["events"].as_array().unwrap_or_else(|| panic!("a page has `events`: {page}"));
        for e in events {
            let id = e["event"]["id"].as_str().unwrap_or_else(|| panic!("a stored event has an id: {e}"));
            *ids.entry(id.to_string()).or_insert(0) += 1;
        }
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => return ids,
        }
    }
}
