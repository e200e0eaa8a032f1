//! What a Dockerfile's final stage declares about how the image runs (ENTRYPOINT, USER, EXPOSE,
//! ENV, LABEL), read independently of tests/images/dockerfile.py so that the test checks it.

use std::collections::BTreeMap;

/// The declarations of the final stage. Values keep `${NAME}` build-argument references as
/// written.
#[derive(Debug, Default)]
pub struct FinalStage {
    pub entrypoint: Vec<String>,
    pub user: String,
    /// As `443/tcp`.
    pub ports: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Parses the Dockerfile text `text`.
pub fn final_stage(text: &str) -> FinalStage {
    let mut stage = Vec::new();
    for (instruction, args) in instructions(text) {
        if instruction == "FROM" {
            stage.clear();
        } else {
            stage.push((instruction, args));
        }
    }
    let mut out = FinalStage::default();
    for (instruction, args) in stage {
        match instruction.as_str() {
            "ENTRYPOINT" => {
                out.entrypoint = serde_json::from_str(&args)
                    .unwrap_or_else(|err| panic!("ENTRYPOINT {args} is not the exec form: {err}"));
            }
            "USER" => out.user = args,
            "EXPOSE" => out.ports.extend(args.split_whitespace().map(|port| {
                if port.contains('/') {
                    port.to_owned()
                } else {
                    format!("{port}/tcp")
                }
            })),
            "ENV" => out.env.extend(pairs(&args)),
            "LABEL" => out.labels.extend(pairs(&args)),
            _ => {}
        }
    }
    out
}

/// (INSTRUCTION, arguments) with comments dropped and continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        logical.push(std::mem::take(&mut pending));
    }
    logical
        .into_iter()
        .map(|line| {
            let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
            (word.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// `a=1 b="two words"` as pairs (double quotes only, which is all these Dockerfiles use).
fn pairs(args: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in args.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .into_iter()
        .map(|word| {
            let (name, value) = word
                .split_once('=')
                .unwrap_or_else(|| panic!("{word} is not NAME=value"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}
