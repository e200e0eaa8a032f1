//! End-to-end test harness for the SSTP operator: a real Kubernetes control plane for tests.
//!
//! The control plane is the real thing, built from Go modules by `tests/k8s/build`: etcd,
//! kube-apiserver (RBAC on, static admin token) and kube-controller-manager (so Deployments get
//! ReplicaSets and owner references are garbage-collected). There are no nodes and no scheduler: Pods
//! are stored but never run.
//!
//! [`ControlPlane::shared`] starts one control plane per test binary on first use (or reuses the one
//! named by `KUBECONFIG`, e.g. after `eval` of `tests/k8s/up`'s output), and every test takes its own
//! [`TestNamespace`], deleted when the guard drops, pass or fail. Nothing outlives the test binary:
//! the control plane runs under `tests/k8s/up --foreground`, which receives SIGTERM when the test
//! binary exits (parent-death signal) and whose components receive SIGKILL if it dies uncleanly.
//!
//! For the data plane: [`gateway_process`] runs the real `sstp-gateway` binary on loopback,
//! [`netns`] makes the network behind it (a namespace and a veth pair), [`transfer_server`] serves
//! checksummed bulk transfers inside that namespace, and [`vm`] boots the VM in which the real
//! SSTP client (sstpc + pppd) runs. [`prometheus`] runs the real Prometheus and promtool (built by
//! `tests/prometheus/build`) against them.
//!
//! For the gateway's own tests: [`thread_netns`] runs a body in a throwaway network namespace
//! and [`reaper::Reaper`] kills a child process when its test ends.

mod control_plane;
mod error;
pub mod gateway_process;
mod namespace;
pub mod netns;
pub mod prometheus;
pub mod reaper;
pub mod thread_netns;
pub mod transfer_server;
pub mod vm;
mod wait;
pub mod workspace_bins;

pub use control_plane::{ControlPlane, k8s_bin_dir};
pub use error::Error;
pub use namespace::TestNamespace;
pub use wait::{Started, eventually, poll_until, wait_http_ready};
