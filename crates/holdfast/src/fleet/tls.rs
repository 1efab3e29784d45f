//! What a fleet shares for TLS besides its versions: the `[[edge.acme]]` link handed to the
//! ACME manager (`acme_link`: etcd reached from the manager's own runtime, ordering gated on
//! the election the controller holds) and the session-ticket key ring (`rotate_ring` on the
//! elected controller at every heartbeat; `install_ring` on every instance at every sync).
//! The data path reads neither etcd nor this module: it reads the `CertStore` and the
//! ticketer's `FleetTicketKeys`, both swapped atomically.

use holdfast_acme::{AcmeFleet, ConnectFuture};
use holdfast_config::Config;
use holdfast_fleet::tickets::{self, unhex, TicketKeyRing};
use holdfast_fleet::{EtcdStore, FleetStore, Layout};
use holdfast_proxy::{FleetTicketKeys, SharedTicketKey};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The etcd calls' bound, as the agent's.
pub(crate) fn etcd_timeout(fleet: &holdfast_config::Fleet) -> Duration {
    fleet
        .heartbeat
        .clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// The ACME manager's part in the fleet of `config` (`None` without `[fleet]`).
pub(crate) fn acme_link(config: &Config, leading: watch::Receiver<bool>) -> Option<AcmeFleet> {
    let fleet = config.fleet.as_ref()?;
    let endpoints = fleet.etcd.clone();
    let timeout = etcd_timeout(fleet);
    let connect = Arc::new(move || -> ConnectFuture {
        let endpoints = endpoints.clone();
        Box::pin(async move {
            let store = EtcdStore::connect(&endpoints, timeout).await?;
            Ok(Arc::new(store) as Arc<dyn FleetStore>)
        })
    });
    Some(AcmeFleet {
        connect,
        layout: Layout::new(&fleet.prefix),
        instance: super::start::instance_id(fleet),
        leading,
        resync: fleet.heartbeat,
    })
}

/// The elected controller's step: keep the ring rotating on `edge.session_tickets.rotate`
/// of the configuration it runs (nothing while tickets are off).
pub(crate) async fn rotate_ring(store: &dyn FleetStore, layout: &Layout, config: &Config) {
    let settings = config.edge.session_tickets;
    if !settings.enabled {
        return;
    }
    let now = super::now_ms() / 1000;
    match tickets::rotate(
        store,
        layout,
        settings.rotate.as_secs(),
        now,
        &mut holdfast_proxy::fresh_ticket_key,
    )
    .await
    {
        Ok(Some(ring)) => {
            tracing::info!(
                keys = ring.keys.len(),
                "fleet: session-ticket key ring rotated"
            )
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "fleet controller: cannot rotate the session-ticket key ring")
        }
    }
}

/// Why a stored ring is not installed.
fn parse_ring(value: &[u8]) -> Result<(u64, Vec<SharedTicketKey>), String> {
    let ring: TicketKeyRing = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    let keys = ring
        .keys
        .iter()
        .map(|k| {
            Some(SharedTicketKey {
                id: unhex::<4>(&k.id)?,
                secret: unhex::<32>(&k.secret)?,
                from: k.from,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("a key's id or secret is not hex of the right length")?;
    Ok((ring.period_secs, keys))
}

/// What an instance did with the stored ring.
pub(crate) enum RingRead {
    /// No ring in etcd (yet).
    Absent,
    /// Installed (or already the one installed).
    Installed,
    /// Refused: the installed ring (or the local keys) stay.
    Refused(String),
}

/// Read the ring and install it into `keys` when it changed (`last`: its revision).
pub(crate) async fn install_ring(
    store: &dyn FleetStore,
    layout: &Layout,
    keys: &FleetTicketKeys,
    last: &mut i64,
) -> Result<RingRead, holdfast_fleet::StoreError> {
    let Some(kv) = store.get(&layout.ticket_keys()).await? else {
        return Ok(RingRead::Absent);
    };
    if kv.mod_revision == *last {
        return Ok(RingRead::Installed);
    }
    *last = kv.mod_revision;
    let installed = parse_ring(&kv.value)
        .and_then(|(period, ring)| keys.install(period, &ring).map_err(|e| e.to_string()));
    Ok(match installed {
        Ok(()) => RingRead::Installed,
        Err(e) => RingRead::Refused(e),
    })
}
