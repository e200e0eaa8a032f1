//! A namespace per test, deleted when the test ends however it ends.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::{ControlPlane, Error};

/// Longest name of a namespace (an RFC 1123 label).
const MAX_NAME_LEN: usize = 63;
/// Every test namespace starts with this, so leftovers are easy to find.
const NAME_PREFIX: &str = "sstp-e2e";

/// Numbers the namespaces of this process.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace made for one test. Dropping it deletes it (without waiting for its contents to go),
/// also when the test panics.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// Creates a namespace named `sstp-e2e-<label>-<unique suffix>`; `label` (say, the test's name)
    /// is cut down to what a namespace name allows.
    pub async fn create(
        control_plane: &ControlPlane,
        client: &kube::Client,
        label: &str,
    ) -> Result<Self, Error> {
        let name = unique_name(label);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/part-of".to_owned(),
                        NAME_PREFIX.to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(Self {
            name,
            kubectl: control_plane.bin_dir().join("kubectl"),
            kubeconfig: control_plane.kubeconfig().to_owned(),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    /// Synchronous on purpose: Drop cannot await, and a guard that spawns a task could be cut short by
    /// the end of the test's runtime. kubectl returns as soon as the deletion is accepted.
    fn drop(&mut self) {
        let outcome = Command::new(&self.kubectl)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output();
        let problem = match outcome {
            Ok(output) if output.status.success() => return,
            Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
            Err(error) => error.to_string(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "sstp-e2e: could not delete namespace {}: {}",
            self.name,
            problem.trim()
        );
    }
}

/// `sstp-e2e-<label>-<pid><n><time>`: unique within this process by the counter, among processes by
/// the pid, and across runs against a reused control plane (where an earlier run's namespace of the
/// same pid may still be terminating) by the clock's low bits.
fn unique_name(label: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or_default();
    let suffix = format!("{:x}-{n}-{:x}", std::process::id(), nanos & 0xff_ffff);
    let room = MAX_NAME_LEN - NAME_PREFIX.len() - suffix.len() - 2;
    let label: String = label
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(room)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        format!("{NAME_PREFIX}-{suffix}")
    } else {
        format!("{NAME_PREFIX}-{label}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_dns_labels_even_for_long_odd_labels() {
        let name = unique_name("Deleting_an owner garbage-collects its dependents, eventually!!");
        assert!(name.len() <= MAX_NAME_LEN, "{name} is too long");
        assert!(name.starts_with("sstp-e2e-deleting-an-owner"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(!name.ends_with('-'));
    }

    #[test]
    fn two_names_for_the_same_label_differ() {
        assert_ne!(unique_name("same"), unique_name("same"));
    }

    #[test]
    fn an_empty_label_still_gives_a_name() {
        let name = unique_name("--");
        assert!(
            name.starts_with("sstp-e2e-") && !name.contains("--"),
            "{name}"
        );
    }
}
