//! The key layout under the fleet's prefix (default `/holdfast`). docs/fleet.md describes
//! every key, who writes it and who reads it; this file is the one place that spells them.

/// Keys of one fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix` without a trailing `/` (one is removed if given).
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `PREFIX/versions/N`: a `VersionRecord` (config text and its artifacts' digests).
    pub fn version(&self, n: u64) -> String {
        format!("{}/versions/{n:020}", self.prefix)
    }

    pub fn versions(&self) -> String {
        format!("{}/versions/", self.prefix)
    }

    /// `PREFIX/blobs/SHA256`: an artifact's bytes, content-addressed.
    pub fn blob(&self, sha256: &str) -> String {
        format!("{}/blobs/{sha256}", self.prefix)
    }

    /// `PREFIX/instances/ID`: an `InstanceReport`, under the instance's lease.
    pub fn instance(&self, id: &str) -> String {
        format!("{}/instances/{id}", self.prefix)
    }

    pub fn instances(&self) -> String {
        format!("{}/instances/", self.prefix)
    }

    /// `PREFIX/current`: the version every instance without a target runs (the last one
    /// a rollout completed).
    pub fn current(&self) -> String {
        format!("{}/current", self.prefix)
    }

    /// `PREFIX/target/ID`: the version this instance runs instead of `current`, while a
    /// rollout is in progress.
    pub fn target(&self, id: &str) -> String {
        format!("{}/target/{id}", self.prefix)
    }

    pub fn targets(&self) -> String {
        format!("{}/target/", self.prefix)
    }

    /// `PREFIX/rollout`: the `RolloutRecord` of the last rollout (one at a time).
    pub fn rollout(&self) -> String {
        format!("{}/rollout", self.prefix)
    }

    /// `PREFIX/intent`: an operator's pending `Intent` (pause, resume, abort).
    pub fn intent(&self) -> String {
        format!("{}/intent", self.prefix)
    }

    /// `PREFIX/history/N`: a `HistoryEntry` per finished rollout, by version started.
    pub fn history(&self, seq: u64) -> String {
        format!("{}/history/{seq:020}", self.prefix)
    }

    pub fn histories(&self) -> String {
        format!("{}/history/", self.prefix)
    }

    /// `PREFIX/defaults`: the elected controller's `[fleet.rollout]` (`RolloutDefaults`).
    pub fn defaults(&self) -> String {
        format!("{}/defaults", self.prefix)
    }

    /// `PREFIX/election`: the controllers' etcd election; its leader acts.
    pub fn election(&self) -> String {
        format!("{}/election", self.prefix)
    }

    /// `PREFIX/tls/ticket_keys`: the fleet's session-ticket key ring (`TicketKeyRing`),
    /// written by the elected controller, read by every instance. Secret: etcd must be on
    /// TLS with authentication.
    pub fn ticket_keys(&self) -> String {
        format!("{}/tls/ticket_keys", self.prefix)
    }

    /// `PREFIX/acme/`: everything the fleet shares of `[[edge.acme]]`.
    pub fn acme(&self) -> String {
        format!("{}/acme/", self.prefix)
    }

    /// `PREFIX/acme/certs/SET`: a name set's certificate chain and private key (PEM),
    /// written by the elected controller's ACME manager, installed by every instance.
    pub fn acme_cert(&self, set_id: &str) -> String {
        format!("{}/acme/certs/{set_id}", self.prefix)
    }

    pub fn acme_certs(&self) -> String {
        format!("{}/acme/certs/", self.prefix)
    }

    /// `PREFIX/acme/challenges/SET`: the challenges of the set's pending order (under a
    /// lease; deleted when the order ends), answered by every instance.
    pub fn acme_challenges(&self, set_id: &str) -> String {
        format!("{}/acme/challenges/{set_id}", self.prefix)
    }

    pub fn acme_challenges_all(&self) -> String {
        format!("{}/acme/challenges/", self.prefix)
    }

    /// `PREFIX/acme/seen/ID`: the revision of the challenges instance ID answers (the
    /// elected instance waits for every live instance before the CA validates).
    pub fn acme_seen(&self, id: &str) -> String {
        format!("{}/acme/seen/{id}", self.prefix)
    }

    pub fn acme_seens(&self) -> String {
        format!("{}/acme/seen/", self.prefix)
    }

    /// The instance id in an `instances/ID` or `target/ID` key.
    pub fn id_in<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.rsplit_once('/').map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_number_and_strip_a_trailing_slash() {
        let l = Layout::new("/holdfast/");
        assert_eq!(l.version(7), "/holdfast/versions/00000000000000000007");
        assert!(l.version(10) > l.version(9));
        assert_eq!(l.instance("edge-1"), "/holdfast/instances/edge-1");
        assert_eq!(l.id_in(&l.target("edge-2")), Some("edge-2"));
    }
}
