//! ServiceAccount, Role and RoleBinding `<gw>`: the gateway pods may read and watch exactly two
//! Secrets, their users document and their TLS Secret, and nothing else.
//!
//! `resourceNames` restricts list and watch too, as long as the client asks with the field
//! selector `metadata.name=<name>` (which the gateway's watcher does).

use k8s_openapi::api::{
    core::v1::ServiceAccount,
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};

use super::Owner;

/// The ServiceAccount the pods run as.
pub fn service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.meta(&owner.names.base),
        ..ServiceAccount::default()
    }
}

/// The Role: get/list/watch on `<gw>-users` and `<gw>-tls` only.
pub fn role(owner: &Owner) -> Role {
    Role {
        metadata: owner.meta(&owner.names.base),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".to_owned()]),
            resource_names: Some(vec![owner.names.users.clone(), owner.names.tls.clone()]),
            verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
            ..PolicyRule::default()
        }]),
    }
}

/// The RoleBinding of the Role to the ServiceAccount.
pub fn role_binding(owner: &Owner) -> RoleBinding {
    RoleBinding {
        metadata: owner.meta(&owner.names.base),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: owner.names.base.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: owner.names.base.clone(),
            namespace: Some(owner.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn the_role_names_only_the_users_and_tls_secrets_read_only() {
        let owner = Owner::of(&fixtures::minimal()).unwrap();
        let rules = role(&owner).rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resources.as_ref().unwrap(), &["secrets"]);
        assert_eq!(
            rules[0].resource_names.as_ref().unwrap(),
            &["gw-users", "gw-tls"]
        );
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
        let binding = role_binding(&owner);
        assert_eq!(binding.subjects.unwrap()[0].name, "gw");
        assert_eq!(service_account(&owner).metadata.name.as_deref(), Some("gw"));
    }
}
