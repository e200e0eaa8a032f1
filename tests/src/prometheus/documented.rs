//! The metrics the READMEs document, parsed from them, so the tests check exactly what users read:
//! the gateway's table (gateway/README.md, "Metrics") and the operator's list (operator/README.md).
//! The parsers panic on a row they cannot read: the README is then what needs fixing.

/// One row of a metrics table: names, type, and the label with the values it documents.
#[derive(Debug, Clone)]
pub struct Documented {
    /// The metric's name (a histogram's, without `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// counter, gauge or histogram.
    pub kind: String,
    /// The label the row documents and the values it lists (none listed for the operator's).
    pub label: Option<(String, Vec<String>)>,
}

/// The backticked parts of `text`.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Every row of gateway/README.md's metrics table (one entry per metric name of a row).
pub fn gateway() -> Vec<Documented> {
    let readme = include_str!("../../../gateway/README.md");
    let section = readme
        .split("## Metrics (`/metrics` on the admin port)")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("gateway/README.md has a Metrics section");
    let mut documented = Vec::new();
    for line in section.lines().filter(|line| line.starts_with("| `sstp_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 6, "metric, type, labels, updated: {line}");
        let label = (!cells[3].is_empty()).then(|| {
            let (name, values) = cells[3]
                .split_once(':')
                .unwrap_or_else(|| panic!("labels as `label`: values: {line}"));
            let name = backticked(name)[0].to_owned();
            // "a, b (a note), ... (every X), c": the first word of each item, "..." aside.
            let values: Vec<String> = values
                .split(',')
                .filter_map(|item| item.split_whitespace().next())
                .filter(|word| *word != "...")
                .map(str::to_owned)
                .collect();
            for value in &values {
                assert!(
                    value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{value:?} is not a label value: {line}"
                );
            }
            (name, values)
        });
        for name in backticked(cells[1]) {
            documented.push(Documented {
                name: name.to_owned(),
                kind: cells[2].to_owned(),
                label: label.clone(),
            });
        }
    }
    documented
}

/// The operator's metrics as operator/README.md lists them: `name{label,...}` (type; ...).
pub fn operator() -> Vec<Documented> {
    let readme = include_str!("../../../operator/README.md");
    let paragraph = readme
        .split("Metrics (`/metrics`):")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("operator/README.md lists its metrics");
    let pieces: Vec<&str> = paragraph.split('`').collect();
    let mut documented = Vec::new();
    for (index, code) in pieces.iter().enumerate().skip(1).step_by(2) {
        if !code.starts_with("sstp_operator_") {
            continue;
        }
        let (name, labels) = match code.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (*code, ""),
        };
        let after = pieces.get(index + 1).copied().unwrap_or_default();
        let kind = after
            .trim_start()
            .strip_prefix('(')
            .and_then(|rest| rest.split([')', ';']).next())
            .unwrap_or_else(|| panic!("{code} has no (type) after it in operator/README.md"));
        let labels: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
        assert!(labels.len() <= 2, "{code}");
        documented.push(Documented {
            name: name.to_owned(),
            kind: kind.trim().to_owned(),
            // The values are checked below against what the test makes the operator do.
            label: labels.first().map(|l| ((*l).to_owned(), Vec::new())),
        });
        if let Some(second) = labels.get(1) {
            documented.push(Documented {
                name: name.to_owned(),
                kind: kind.trim().to_owned(),
                label: Some(((*second).to_owned(), Vec::new())),
            });
        }
    }
    documented
}
