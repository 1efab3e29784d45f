//! The challenge's `/status`, typed.

use super::*;

/// `/status` of the challenge module.
#[derive(Debug, serde::Serialize)]
pub struct ChallengeStatus {
    #[serde(flatten)]
    pub module: ModuleStatus,
    pub challenge: ChallengeDetail,
}

#[derive(Debug, serde::Serialize)]
pub struct ChallengeDetail {
    /// Where the keys came from: the key file, the generated key's file, or in memory.
    pub keys: String,
    pub key_count: usize,
    pub cookie_name: String,
    pub difficulty: u8,
    pub nojs_wait_ms: u64,
    pub critical_routes: Vec<String>,
    pub issued: ByFormat,
    pub solved: ByMethod,
    pub passed_by_cookie: u64,
    /// By reason.
    pub rejected: BTreeMap<&'static str, u64>,
    pub loop_pages: u64,
    pub fail_open: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ByFormat {
    pub html: u64,
    pub json: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ByMethod {
    pub pow: u64,
    pub nojs: u64,
}
