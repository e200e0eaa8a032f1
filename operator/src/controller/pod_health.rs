//! Why a gateway's pods cannot start, read from what the ReplicaSet controller, the scheduler and
//! the kubelet wrote (pure). The status turns it into `Available`/`Degraded`/`Ready` reasons, so
//! `kubectl get sstpgw` says "the kubelet refuses the sysctl" instead of "0 of 2 pods available".
//!
//! Only pods of the current template count (`sstp.io/template-hash`): a rollout that fixed a
//! problem leaves the failed pods of the old template behind, and they must not keep the old
//! reason alive. A pod that failed for good (phase `Failed`: rejected by the kubelet, evicted)
//! counts only while fewer pods of the current template are ready than desired: the ReplicaSet
//! replaces it, but the failed pod stays in the API until garbage collection.
//!
//! The pod named is the oldest with the most important problem, so a ReplicaSet that keeps
//! making and losing pods does not change the message (and the status) with every new pod.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ContainerStatus, Pod},
};
use sstp_api::condition::reasons;

use crate::resources::deployment::TEMPLATE_HASH_ANNOTATION;

/// The problem to report: a condition reason and a message naming the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    /// Condition reason (see [`reasons`]).
    pub reason: &'static str,
    /// What happened, with the pod's name and what Kubernetes said.
    pub message: String,
}

/// The most important reason the gateway's pods cannot start, if any.
pub fn pod_problem(
    pods: &[Pod],
    deployment: Option<&Deployment>,
    desired: i32,
) -> Option<PodProblem> {
    if let Some(problem) = deployment.and_then(replica_failure) {
        return Some(problem);
    }
    let template = deployment.and_then(template_hash);
    let mut current: Vec<&Pod> = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| template.is_none() || pod_template_hash(pod) == template)
        .collect();
    current.sort_by(|a, b| {
        (&a.metadata.creation_timestamp, &a.metadata.name)
            .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
    });
    let ready = current.iter().filter(|pod| is_ready(pod)).count();
    let short = usize::try_from(desired).is_ok_and(|desired| ready < desired);
    current
        .iter()
        .filter_map(|pod| problem_of(pod, short))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, problem)| problem)
}

/// The Deployment's `ReplicaFailure` condition: the ReplicaSet could not create pods (Pod
/// Security admission, a quota). Its message names the pod it tried to make, a new name on
/// every retry; that part is left out so the message stays the same.
fn replica_failure(deployment: &Deployment) -> Option<PodProblem> {
    let condition = deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
    let said = condition.message.as_deref().unwrap_or_default();
    let said = strip_pod_name(said);
    let mut message = format!("the ReplicaSet cannot create pods: {said}");
    if said.contains("violates PodSecurity") {
        message.push_str(
            "; gateway pods need the privileged Pod Security level: label the namespace \
             pod-security.kubernetes.io/enforce=privileged",
        );
    }
    Some(PodProblem {
        reason: reasons::FAILED_CREATE,
        message: bounded(message),
    })
}

/// `pods "gw-7d9c-x2b4q" is forbidden: ...` -> `forbidden: ...`.
fn strip_pod_name(message: &str) -> &str {
    message
        .strip_prefix("pods \"")
        .and_then(|rest| rest.split_once("\" is "))
        .map_or(message, |(_, rest)| rest)
}

/// Problems rank: a pod that failed for good, then one the scheduler cannot place, then a
/// container that cannot start.
fn problem_of(pod: &Pod, short: bool) -> Option<(u8, PodProblem)> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        if !short {
            return None;
        }
        let why = status.reason.as_deref().unwrap_or("Failed");
        let said = status.message.as_deref().unwrap_or_default();
        let problem = if why == reasons::SYSCTL_FORBIDDEN {
            PodProblem {
                reason: reasons::SYSCTL_FORBIDDEN,
                message: format!(
                    "pod {name}: the kubelet rejected it: {said}; allow the sysctl on every node \
                     (kubelet --allowed-unsafe-sysctls=net.ipv4.ip_forward) or set \
                     spec.pod.ipForwarding to initContainer or inheritFromNode"
                ),
            }
        } else {
            PodProblem {
                reason: reasons::POD_FAILED,
                message: format!("pod {name} failed: {why}: {said}"),
            }
        };
        return Some((0, bounded_problem(problem)));
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(condition) = unschedulable {
        let said = condition.message.as_deref().unwrap_or_default();
        return Some((
            1,
            bounded_problem(PodProblem {
                reason: reasons::UNSCHEDULABLE,
                message: format!("pod {name} cannot be scheduled: {said}"),
            }),
        ));
    }
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    init.map(|c| ("init container", c))
        .chain(main.map(|c| ("container", c)))
        .find_map(|(what, container)| waiting_problem(name, what, container))
        .map(|problem| (2, problem))
}

/// A container waiting for a reason that will not go away by itself.
fn waiting_problem(pod: &str, what: &str, container: &ContainerStatus) -> Option<PodProblem> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = STUCK_REASONS
        .iter()
        .copied()
        .find(|r| Some(*r) == waiting.reason.as_deref())?;
    let mut message = format!("pod {pod}: {what} {}: {reason}", container.name);
    if let Some(said) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
        message.push_str(": ");
        message.push_str(said);
    }
    if let Some(last) = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
    {
        message.push_str(&format!("; last exit code {}", last.exit_code));
        if let Some(said) = last
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            message.push_str(": ");
            message.push_str(said);
        }
    }
    Some(PodProblem {
        reason,
        message: bounded(message),
    })
}

/// Waiting reasons of the kubelet that mean the container cannot start (passed through as the
/// condition reason); `ContainerCreating` and `PodInitializing` are just slow and not listed.
const STUCK_REASONS: [&str; 8] = [
    reasons::ERR_IMAGE_PULL,
    reasons::IMAGE_PULL_BACK_OFF,
    reasons::ERR_IMAGE_NEVER_PULL,
    reasons::INVALID_IMAGE_NAME,
    reasons::CRASH_LOOP_BACK_OFF,
    reasons::CREATE_CONTAINER_CONFIG_ERROR,
    reasons::CREATE_CONTAINER_ERROR,
    reasons::RUN_CONTAINER_ERROR,
];

fn template_hash(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

fn pod_template_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn bounded_problem(problem: PodProblem) -> PodProblem {
    PodProblem {
        message: bounded(problem.message),
        ..problem
    }
}

/// Cut to [`MAX_MESSAGE`] bytes on a character boundary: a crash's log tail can be long, and a
/// condition is read in `kubectl describe`, not as a log.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// Longest message before [`bounded`] cuts it.
const MAX_MESSAGE: usize = 1024;

#[cfg(test)]
mod tests;
