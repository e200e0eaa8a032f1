//! PodDisruptionBudget `<gw>`: voluntary disruptions (node drains) take at most one gateway pod
//! at a time. It is `maxUnavailable: 1` rather than `minAvailable: replicas`, because a budget
//! that allows nothing would block every drain of a single-replica gateway forever.

use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::Owner;

/// The budget: at most one pod unavailable.
pub fn pod_disruption_budget(owner: &Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.meta(&owner.names.base),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(owner.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn the_budget_selects_the_gateway_pods_and_allows_one_disruption() {
        let owner = Owner::of(&fixtures::minimal()).unwrap();
        let spec = pod_disruption_budget(&owner).spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels,
            Some(owner.selector_labels())
        );
    }
}
