//! From what the gateway pods answered to the session counts in status (pure).
//!
//! A count is written only where it is known and differs from the stored one, so a census that
//! finds nothing new writes nothing, also right after an operator restart. A gateway is unknown
//! for one round when one of its ready pods has never answered (its sessions cannot be guessed);
//! a pod that answered before and misses one round keeps its last answer, so one lost request
//! does not make the count flap. A pod that is not ready and has never answered is starting or
//! broken and carries no session.

use std::collections::BTreeMap;

use kube::ResourceExt;
use sstp_api::{SstpGateway, SstpUser};

/// What one gateway pod reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    /// The pod's namespace (its gateway's).
    pub namespace: String,
    /// Its gateway's name.
    pub gateway: String,
    /// The user of each session it carries (`None` where the gateway does not name users), or
    /// `None` when its sessions are unknown this round.
    pub sessions: Option<Vec<Option<String>>>,
}

/// One status field to set: `count` `None` removes it (the census no longer knows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Namespace of the object.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The new `status.activeSessions`.
    pub count: Option<i32>,
}

/// The status writes for this round, gateways and users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writes {
    /// `SstpGateway` statuses.
    pub gateways: Vec<Write>,
    /// `SstpUser` statuses.
    pub users: Vec<Write>,
}

/// What a round knows about one gateway.
#[derive(Debug, Default)]
struct Known {
    /// Whether any of its pods was counted (else it has none that could carry a session).
    counted: bool,
    /// Sessions on all its pods.
    total: usize,
    /// Sessions per user name.
    per_user: BTreeMap<String, usize>,
}

/// The writes that bring the stored counts to what `pods` say.
pub fn tally(gateways: &[&SstpGateway], users: &[&SstpUser], pods: &[PodReport]) -> Writes {
    // `None`: unknown this round.
    let mut known: BTreeMap<(String, String), Option<Known>> = gateways
        .iter()
        .map(|gw| (key(gw), Some(Known::default())))
        .collect();
    for pod in pods {
        let Some(slot) = known.get_mut(&(pod.namespace.clone(), pod.gateway.clone())) else {
            continue;
        };
        match (&pod.sessions, slot.as_mut()) {
            (None, _) => *slot = None,
            (Some(_), None) => {}
            (Some(sessions), Some(known)) => {
                known.counted = true;
                known.total += sessions.len();
                for user in sessions.iter().flatten() {
                    *known.per_user.entry(user.clone()).or_default() += 1;
                }
            }
        }
    }

    let mut writes = Writes::default();
    for gw in gateways {
        let Some(Some(known)) = known.get(&key(gw)) else {
            continue;
        };
        let stored = gw.status.as_ref().and_then(|s| s.active_sessions);
        let count = (known.counted || stored.is_some()).then(|| saturating(known.total));
        if count != stored {
            writes.gateways.push(Write {
                namespace: gw.namespace().unwrap_or_default(),
                name: gw.name_any(),
                count,
            });
        }
    }
    let omits_names: BTreeMap<(String, String), bool> = gateways
        .iter()
        .map(|gw| (key(gw), gw.spec.logging.omit_user_names))
        .collect();
    for user in users {
        let namespace = user.namespace().unwrap_or_default();
        let login = user.login_name();
        let stored = user.status.as_ref().and_then(|s| s.active_sessions);
        let served_by = user
            .status
            .as_ref()
            .map(|s| s.gateways.as_slice())
            .unwrap_or_default();
        let mut counted = false;
        let mut total = 0;
        let mut unknown = false;
        let mut unnamed = false;
        for gateway in served_by {
            let at = (namespace.clone(), gateway.clone());
            match known.get(&at) {
                // Not (or no longer) in the store: nothing to count there.
                None => {}
                Some(None) => unknown = true,
                Some(Some(known)) => {
                    unnamed |= omits_names.get(&at).copied().unwrap_or(false);
                    counted |= known.counted;
                    total += known.per_user.get(&login).copied().unwrap_or(0);
                }
            }
        }
        if unknown {
            continue;
        }
        let count = if unnamed {
            None
        } else {
            (counted || stored.is_some()).then(|| saturating(total))
        };
        if count != stored {
            writes.users.push(Write {
                namespace,
                name: user.name_any(),
                count,
            });
        }
    }
    writes
}

fn key(gw: &SstpGateway) -> (String, String) {
    (gw.namespace().unwrap_or_default(), gw.name_any())
}

fn saturating(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
