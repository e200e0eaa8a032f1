//! The committed `crds/` must be exactly what `crdgen` renders from the types.

#[test]
fn the_committed_crds_equal_the_crdgen_output() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for (file, text) in sstp_operator::crdgen::render().expect("the CRDs render") {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == text,
            "crds/{file} is stale: run `cargo run -p sstp-operator --bin crdgen -- crds` and commit"
        );
    }
}
