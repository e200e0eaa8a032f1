//! Status conditions: the types and reasons both resources use, and the one rule for updating
//! them (the transition time moves only when the status does).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// Everything needed to serve is in place.
    pub const READY: &str = "Ready";
    /// The server certificate is valid and current.
    pub const CERTIFICATE_READY: &str = "CertificateReady";
    /// At least the desired number of pods are ready.
    pub const AVAILABLE: &str = "Available";
    /// A rollout is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong that the operator cannot fix by itself.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (CamelCase, as the API conventions ask).
pub mod reasons {
    /// All children applied and healthy.
    pub const RECONCILED: &str = "Reconciled";
    /// Waiting for pods.
    pub const PODS_NOT_READY: &str = "PodsNotReady";
    /// The Deployment is rolling out.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// Rollout finished.
    pub const ROLLED_OUT: &str = "RolledOut";
    /// The built-in CA issued the certificate.
    pub const ISSUED: &str = "Issued";
    /// cert-manager has not produced the Secret yet.
    pub const WAITING_FOR_CERT_MANAGER: &str = "WaitingForCertManager";
    /// The cert-manager CRDs are not installed.
    pub const CERT_MANAGER_MISSING: &str = "CertManagerNotInstalled";
    /// The named TLS Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The certificate is unusable (names, EKU, expiry, key).
    pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";
    /// A child could not be applied.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Nothing wrong.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// The user's password Secret or key is missing.
    pub const PASSWORD_MISSING: &str = "PasswordMissing";
    /// The user is disabled.
    pub const DISABLED: &str = "Disabled";
    /// The user has expired.
    pub const EXPIRED: &str = "Expired";
    /// The user is active.
    pub const ACTIVE: &str = "Active";

    // Why gateway pods cannot start (`Available`, `Degraded`, `Ready`). The kubelet's own
    // reasons are passed through unchanged, so they match what `kubectl get pods` shows.
    /// The kubelet rejected a pod: an unsafe sysctl it does not allow (`spec.pod.ipForwarding`).
    pub const SYSCTL_FORBIDDEN: &str = "SysctlForbidden";
    /// A pod failed for another reason (evicted, rejected at admission by the kubelet).
    pub const POD_FAILED: &str = "PodFailed";
    /// The ReplicaSet cannot create pods (Pod Security admission, quota).
    pub const FAILED_CREATE: &str = "FailedCreate";
    /// The scheduler finds no node for a pod.
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// Pulling the image failed.
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    /// Pulling the image failed and the kubelet is waiting to retry.
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// The image is not on the node and the pull policy is `Never`.
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    /// The image reference is malformed.
    pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";
    /// A container keeps exiting; the message quotes its last words.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// A container's configuration cannot be built (a missing Secret or ConfigMap key).
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    /// The runtime could not create a container.
    pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
    /// The runtime could not start a container.
    pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";
}

/// `"True"` or `"False"`.
pub fn status_word(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// A new condition observed at `now` for `generation`.
pub fn condition(
    type_: &str,
    value: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status_word(value).to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Puts `new` into `conditions`, replacing the one of the same type. When the status did not
/// change the old transition time is kept, so an unchanged world yields an identical list.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Whether the condition of `type_` is `"True"`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let mut list = vec![condition(types::READY, true, "A", "", Some(1), at(10))];
        set_condition(
            &mut list,
            condition(types::READY, true, "B", "m", Some(2), at(20)),
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, at(10));
        assert_eq!(list[0].reason, "B");
        assert_eq!(list[0].observed_generation, Some(2));
    }

    #[test]
    fn a_changed_status_moves_the_transition_time_and_new_types_are_added() {
        let mut list = vec![condition(types::READY, true, "A", "", None, at(10))];
        set_condition(
            &mut list,
            condition(types::READY, false, "A", "", None, at(20)),
        );
        set_condition(
            &mut list,
            condition(types::DEGRADED, false, "A", "", None, at(30)),
        );
        assert_eq!(list[0].last_transition_time, at(20));
        assert_eq!(list.len(), 2);
        assert!(!is_true(&list, types::READY));
    }
}
