//! Replays the committed cargo-fuzz seed corpus through the fuzz target bodies, so stable CI
//! catches a regression on any input the fuzzers ever kept.

use std::{fs, path::PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data = fs::read(&path).expect("corpus file is readable");
            (path, data)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_ppp_frame_corpus_input_replays_without_panic() {
    let inputs = corpus("ppp_frame");
    assert!(inputs.len() >= 10, "the seed corpus is committed");
    for (path, data) in inputs {
        eprintln!("replaying {}", path.display());
        sstp_ppp::fuzzing::ppp_frame(&data);
    }
}

#[test]
fn every_lcp_options_corpus_input_replays_without_panic() {
    let inputs = corpus("lcp_options");
    assert!(inputs.len() >= 5, "the seed corpus is committed");
    for (path, data) in inputs {
        eprintln!("replaying {}", path.display());
        sstp_ppp::fuzzing::lcp_options(&data);
    }
}

#[test]
fn every_dhcp_inform_corpus_input_replays_without_panic() {
    let inputs = corpus("dhcp_inform");
    assert!(inputs.len() >= 3, "the seed corpus is committed");
    for (path, data) in inputs {
        eprintln!("replaying {}", path.display());
        sstp_ppp::fuzzing::dhcp_inform(&data);
    }
}
