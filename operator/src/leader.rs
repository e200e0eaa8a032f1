//! Leader election over a `coordination.k8s.io` Lease (kube-lease-manager): only the holder
//! runs the controllers, so two operator replicas are safe.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::{sync::watch, task::JoinHandle};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry the holder renews.
    pub grace_seconds: u64,
}

/// A running election: `is_leader` changes as the lease is won or lost; dropping it releases
/// the lease.
#[derive(Debug)]
pub struct Election {
    /// True while this replica holds the lease.
    pub is_leader: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Election {
    /// Starts competing for the lease.
    pub async fn start(
        client: Client,
        settings: &LeaseSettings,
    ) -> Result<Self, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.duration_seconds)
            .with_grace(settings.grace_seconds)
            .with_field_manager(format!("{}-lease", crate::FIELD_MANAGER))
            .build()
            .await?;
        let (is_leader, task) = manager.watch().await;
        Ok(Self { is_leader, task })
    }

    /// Waits until this replica leads; `false` if the election ended first.
    pub async fn won(&mut self) -> bool {
        self.is_leader.wait_for(|leader| *leader).await.is_ok()
    }

    /// Waits until leadership is lost (or the election ends).
    pub async fn lost(&mut self) {
        let _ = self.is_leader.wait_for(|leader| !*leader).await;
    }

    /// Releases the lease (if held) and stops competing.
    pub async fn release(self) {
        let Self { is_leader, task } = self;
        drop(is_leader);
        let _ = task.await;
    }
}
