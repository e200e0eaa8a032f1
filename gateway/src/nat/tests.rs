use super::*;
use sstp_e2e::thread_netns::{in_new_netns, run};

fn settings(id: &str) -> NatSettings {
    NatSettings {
        id: id.into(),
        pool: "10.77.0.0/24".parse().unwrap(),
        tun_name: "sstp0".into(),
        mtu: 1400,
        masquerade: true,
    }
}

#[test]
fn the_ruleset_masquerades_the_pool_and_clamps_mss_to_the_mtu() {
    let script = ruleset("sstp_gateway_t", &settings("t")).unwrap();
    assert!(
        script.contains("ip saddr 10.77.0.0/24 oifname != \"sstp0\" masquerade"),
        "{script}"
    );
    assert!(
        script.contains("maxseg size > 1360 tcp option maxseg size set 1360"),
        "{script}"
    );
    let no_nat = ruleset(
        "x",
        &NatSettings {
            masquerade: false,
            ..settings("t")
        },
    )
    .unwrap();
    assert!(!no_nat.contains("masquerade"));
}

#[test]
fn names_that_could_inject_nft_syntax_are_refused() {
    assert!(matches!(
        table_name("a b"),
        Err(NatError::UnsafeName { .. })
    ));
    assert!(matches!(table_name(""), Err(NatError::UnsafeName { .. })));
    let evil = NatSettings {
        tun_name: "x\" accept; #".into(),
        ..settings("t")
    };
    assert!(matches!(
        ruleset("x", &evil),
        Err(NatError::UnsafeName { .. })
    ));
    assert_eq!(table_name("gw-1.prod").unwrap(), "sstp_gateway_gw_1_prod");
}

#[test]
fn the_table_appears_on_install_and_disappears_on_remove() {
    in_new_netns(
        "nat::the_table_appears_on_install_and_disappears_on_remove",
        || {
            let table = NatTable::install(&settings("a")).unwrap();
            let listed = run(&["nft", "list", "table", "inet", "sstp_gateway_a"]);
            assert!(listed.contains("masquerade"), "{listed}");
            assert!(listed.contains("maxseg size set 1360"), "{listed}");
            table.remove().unwrap();
            assert!(!run(&["nft", "list", "tables"]).contains("sstp_gateway_a"));
            remove_stale("a").unwrap();
        },
    );
}

#[test]
fn installing_over_a_stale_table_replaces_it_and_drop_cleans_up() {
    in_new_netns(
        "nat::installing_over_a_stale_table_replaces_it_and_drop_cleans_up",
        || {
            let crashed = NatTable::install(&settings("b")).unwrap();
            std::mem::forget(crashed); // a crashed run never removes its table
            let fresh = NatTable::install(&NatSettings {
                mtu: 1300,
                masquerade: false,
                ..settings("b")
            })
            .unwrap();
            let listed = run(&["nft", "list", "table", "inet", "sstp_gateway_b"]);
            assert!(
                listed.contains("maxseg size set 1260") && !listed.contains("masquerade"),
                "{listed}"
            );
            assert!(!listed.contains("1360"), "the old rules are gone: {listed}");
            drop(fresh);
            assert!(!run(&["nft", "list", "tables"]).contains("sstp_gateway_b"));
        },
    );
}

#[test]
fn another_gateways_table_is_left_alone() {
    in_new_netns("nat::another_gateways_table_is_left_alone", || {
        let other = NatTable::install(&settings("other")).unwrap();
        NatTable::install(&settings("mine"))
            .unwrap()
            .remove()
            .unwrap();
        assert!(run(&["nft", "list", "tables"]).contains("sstp_gateway_other"));
        drop(other);
    });
}
