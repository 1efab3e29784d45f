//! Small helpers that several Holdfast crates need and that belong to none of them: `lock`
//! (a poison-tolerant `Mutex` lock) and `html_escape`. It sits below every other crate of
//! the workspace (even `holdfast-artifact` and `holdfast-challenge`, which depend on no other
//! Holdfast crate), so it has no dependencies at all: anything it pulled in would be built,
//! audited and version-pinned by every crate. Helpers that need `http` types live in the
//! lowest crate that has them (`holdfast-proxy`: `content_length`; `holdfast-modules`: `wants_json`, which the challenge
//! shares with the error pages).

#![forbid(unsafe_code)]

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, also when a thread panicked while holding it. Holdfast's mutexes guard data that
/// stays consistent between statements (counters, lists, maps updated in one call), and a
/// request or a background thread must not fail because another one panicked.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `s` escaped for HTML text and for attribute values in double or single quotes:
/// `& < > " '`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_still_usable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = std::sync::Arc::clone(&m);
        let panicked = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn html_escape_covers_text_and_both_quotes() {
        assert_eq!(
            html_escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(html_escape("plain ü"), "plain ü");
    }
}
