//! Writes the CRDs (`sstpgateway.yaml`, `sstpuser.yaml`) into the directory given as the only
//! argument (default `crds`). CI: `cargo run -p sstp-operator --bin crdgen -- crds && git diff
//! --exit-code crds/`.

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || std::path::PathBuf::from("crds"),
        std::path::PathBuf::from,
    );
    sstp_operator::crdgen::write_all(&dir)
}
