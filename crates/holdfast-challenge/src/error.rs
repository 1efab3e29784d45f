//! Why a key file is refused, and why a client's proof is.

/// A key file that cannot be used; every message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("no key in the file (one hex key per line; lines starting with # are comments)")]
    Empty,
    #[error("line {line}: not a hex key ({detail})")]
    NotHex { line: usize, detail: String },
    #[error("line {line}: the key is {bytes} bytes; at least {min} are needed")]
    TooShort {
        line: usize,
        bytes: usize,
        min: usize,
    },
    #[error("line {line}: the key is {bytes} bytes; at most {max} are accepted")]
    TooLong {
        line: usize,
        bytes: usize,
        max: usize,
    },
    #[error("{count} keys; at most {max} (the first signs, the second only verifies)")]
    TooMany { count: usize, max: usize },
    #[error("the random source failed: {0}")]
    Random(String),
}

/// Why a cookie, token or solution was not accepted (the `reason` label and JSON field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not made with any of our keys (or not in our format at all).
    Forged,
    /// Made by us, but too old.
    Expired,
    /// Made for another client address prefix.
    WrongIp,
    /// Made for another `User-Agent`.
    WrongUa,
    /// The proof-of-work does not have the leading zero bits asked for.
    BadSolution,
    /// The no-JavaScript form came back before its wait was over.
    TooEarly,
}

impl Reject {
    pub const ALL: [Reject; 6] = [
        Reject::Forged,
        Reject::Expired,
        Reject::WrongIp,
        Reject::WrongUa,
        Reject::BadSolution,
        Reject::TooEarly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Forged => "forged",
            Reject::Expired => "expired",
            Reject::WrongIp => "wrong_ip",
            Reject::WrongUa => "wrong_ua",
            Reject::BadSolution => "bad_solution",
            Reject::TooEarly => "too_early",
        }
    }
}
