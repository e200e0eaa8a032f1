//! Pure builders of every child object of an `SstpGateway`: no I/O, no clock, so each is
//! unit-tested on its own. The controller applies what these return with server-side apply.
//!
//! Children of gateway `gw` (design.md): Deployment `gw`, Service `gw`, ServiceAccount + Role +
//! RoleBinding `gw`, Secrets `gw-users`, `gw-tls` (+ `gw-ca` when self-managed), ConfigMap
//! `gw-config`, PodDisruptionBudget `gw`, and ServiceMonitor `gw` when asked for and installed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sstp_api::SstpGateway;

use crate::{Error, Result};

pub mod config;
pub mod deployment;
pub mod pdb;
pub mod rbac;
pub mod secrets;
pub mod service;
pub mod service_monitor;
pub mod users;

/// The names of a gateway's children, all derived from the gateway's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The gateway's name: also the Deployment, Service, ServiceAccount, Role, RoleBinding, PDB.
    pub base: String,
    /// Secret with the users document.
    pub users: String,
    /// `kubernetes.io/tls` Secret with the served chain, key, CA certificate and CRL.
    pub tls: String,
    /// Secret with the built-in CA's certificate, key and CRL (self-managed mode only).
    pub ca: String,
    /// ConfigMap with the gateway configuration.
    pub config: String,
}

impl Names {
    /// The children names of gateway `name`.
    pub fn of(name: &str) -> Self {
        Self {
            base: name.to_owned(),
            users: format!("{name}-users"),
            tls: format!("{name}-tls"),
            ca: format!("{name}-ca"),
            config: format!("{name}-config"),
        }
    }
}

/// The gateway's identity as every builder needs it.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Namespace of the gateway and all children.
    pub namespace: String,
    /// Children names.
    pub names: Names,
    /// The owner reference every child carries (controller = true, so garbage collection and
    /// `Controller::owns` both find the gateway).
    pub reference: OwnerReference,
}

impl Owner {
    /// Reads namespace, name and uid of a stored gateway.
    pub fn of(gateway: &SstpGateway) -> Result<Self> {
        let namespace = gateway
            .namespace()
            .ok_or(Error::MissingField("namespace"))?;
        let reference = gateway
            .controller_owner_ref(&())
            .ok_or(Error::MissingField("metadata.uid"))?;
        Ok(Self {
            namespace,
            names: Names::of(&gateway.name_any()),
            reference,
        })
    }

    /// Metadata of a child named `name`: namespace, labels, owner reference.
    pub fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Labels of every child (and of the pods).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(MANAGED_BY_LABEL.to_owned(), crate::FIELD_MANAGER.to_owned());
        labels
    }

    /// Labels that select this gateway's pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        [
            (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.names.base.clone()),
        ]
        .into()
    }
}

/// `app.kubernetes.io/name`.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the gateway's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of the name label.
pub const APP_NAME: &str = "sstp-gateway";

/// Ports the gateway pods listen on (fixed; the Service maps its own ports onto them).
pub mod ports {
    /// SSTP over TLS.
    pub const SSTP: i32 = 443;
    /// Plain HTTP: `/sstp/ca.crl`, `/sstp/ca.crt`.
    pub const HTTP: i32 = 80;
    /// Admin: `/metrics`, `/healthz`, `/readyz`.
    pub const ADMIN: i32 = 9090;
}

#[cfg(test)]
pub(crate) mod fixtures;
