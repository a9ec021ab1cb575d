//! The output replies whole and in pages: the same JSON, whatever the size
//! of the output and of the host's answers.

use serde_json::Value;

use super::fake::Fake;
use crate::api;
use crate::model::*;

/// The paged reply to `GET .../{selector}`, its pages joined: the status
/// and body, and how many pages it took.
fn paged(fake: &Fake, reference: &str, selector: OutputSelector) -> (u16, String, usize) {
    match api::output_open(fake, reference, selector) {
        Err(reply) => (reply.status, reply.body, 0),
        Ok(mut page) => {
            let (mut body, mut pages) = (std::mem::take(&mut page.text), 1);
            while !page.done {
                page = api::output_next(fake, page.position);
                body.push_str(&page.text);
                pages += 1;
            }
            (200, body, pages)
        }
    }
}

/// Asserts the paged reply is the whole one, byte for byte; returns it.
fn same_both_ways(fake: &Fake, pid: Pid, selector: OutputSelector) -> (Value, usize) {
    let whole = api::output(fake, &pid.to_string(), selector);
    let (status, body, pages) = paged(fake, &pid.to_string(), selector);
    assert_eq!((status, &body), (whole.status, &whole.body));
    (serde_json::from_str(&body).expect("the pages make JSON"), pages)
}

#[test]
fn pages_make_the_whole_reply() {
    let fake = Fake::new();
    let quiet = fake.spawn("true");
    fake.exit(quiet, 0);
    let (value, pages) = same_both_ways(&fake, quiet, OutputSelector::Merged);
    assert_eq!(value, serde_json::json!({"pid": quiet, "lines": [], "line_count": 0}));
    assert_eq!(pages, 1);

    let pid = fake.spawn("seq");
    for i in 0..10_000 {
        fake.emit(pid, OutputStream::Stdout, &format!("{i} \"quoted\" \u{1}"));
    }
    fake.emit(pid, OutputStream::Stderr, "warning");
    fake.exit(pid, 0);
    let (value, pages) = same_both_ways(&fake, pid, OutputSelector::Stdout);
    assert_eq!(value["line_count"], 10_000);
    assert_eq!(value["lines"][9999], "9999 \"quoted\" \u{1}");
    assert_eq!(pages, 3, "4096 lines a page");
    let (value, _) = same_both_ways(&fake, pid, OutputSelector::Merged);
    assert_eq!(value["line_count"], 10_001);
    fake.0.borrow_mut().dropped.insert(pid, 5);
    let (value, _) = same_both_ways(&fake, pid, OutputSelector::Stdout);
    assert_eq!((value["line_count"].clone(), value["dropped_lines"].clone()), (9995.into(), 5.into()));
}

/// A host may answer fewer lines than asked for (to bound one answer): the
/// reply goes on while it says more are there.
#[test]
fn short_answers_with_more_to_come_do_not_end_the_reply() {
    let fake = Fake::new();
    let pid = fake.spawn("seq");
    for i in 0..1000 {
        fake.emit(pid, OutputStream::Stdout, &i.to_string());
    }
    fake.exit(pid, 0);
    fake.0.borrow_mut().read_bound = Some(100);
    let (value, pages) = same_both_ways(&fake, pid, OutputSelector::Stdout);
    assert_eq!(value["line_count"], 1000);
    assert_eq!(pages, 10);
}

#[test]
fn merged_pages_read_past_the_gaps_of_a_stream_that_kept_less() {
    let fake = Fake::new();
    let pid = fake.spawn("sh");
    for i in 0..5000 {
        fake.emit(pid, OutputStream::Stdout, &format!("out {i}"));
        fake.emit(pid, OutputStream::Stderr, &format!("err {i}"));
    }
    fake.exit(pid, 0);
    fake.0.borrow_mut().stderr_dropped.insert(pid, 3000);
    let (value, _) = same_both_ways(&fake, pid, OutputSelector::Merged);
    assert_eq!((value["line_count"].clone(), value["dropped_lines"].clone()), (7000.into(), 3000.into()));
}

/// A child writing faster than the reply is read laps it: the reply ends,
/// with what it had and the drops, instead of going on for ever.
#[test]
fn a_flood_ends_the_pages_once_it_laps_them() {
    let fake = Fake::new();
    let pid = fake.spawn("yes");
    for _ in 0..10_000 {
        fake.emit(pid, OutputStream::Stdout, "y");
    }
    fake.0.borrow_mut().flooding.insert(pid, 5_000);
    let (status, body, pages) = paged(&fake, &pid.to_string(), OutputSelector::Stdout);
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, pages), (200, 2));
    assert_eq!(value["line_count"], 2 * 4096);
    assert_eq!(value["dropped_lines"], 10_000);
}

#[test]
fn a_bad_reference_or_an_unknown_process_gets_the_error_reply() {
    let fake = Fake::new();
    let (status, body, _) = paged(&fake, "abc", OutputSelector::Stdout);
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = paged(&fake, "2147483647", OutputSelector::Stdout);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NOT_FOUND"));
}

/// A failure between two pages leaves the JSON open: a client fails to
/// parse it rather than take part of the output for all of it.
#[test]
fn a_reply_cut_short_is_not_valid_json() {
    let fake = Fake::new();
    let pid = fake.spawn("seq");
    for i in 0..5000 {
        fake.emit(pid, OutputStream::Stdout, &i.to_string());
    }
    let first = api::output_open(&fake, &pid.to_string(), OutputSelector::Stdout).unwrap();
    assert!(!first.done);
    fake.fail("read_output", ProcessError::NotFound(pid));
    let next = api::output_next(&fake, first.position);
    assert!(next.done);
    let body = first.text + &next.text;
    assert!(serde_json::from_str::<Value>(&body).is_err());
}
