//! `user add | disable | enable | remove | list`: edits a users file in place. Writes go to a
//! temporary file in the same directory, then rename over the original, so the gateway's
//! reloader never sees half a file. Only the NT hash is stored, never the password.

use std::{
    io::{BufRead, IsTerminal, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rand::RngExt;
use sstp_api::{UserEntry, UsersDocument, users::NtHashHex};
use sstp_ppp::NtHash;

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user (or set a new password). The password is read from stdin; with --generate,
    /// or when stdin is a terminal, a strong one is generated and printed.
    Add {
        #[command(flatten)]
        target: Target,
        /// Generate the password and print it.
        #[arg(long, env = "SSTP_GATEWAY_GENERATE_PASSWORD")]
        generate: bool,
    },
    /// Disable a user: they cannot log in, and their sessions end within seconds.
    Disable(Target),
    /// Enable a disabled user.
    Enable(Target),
    /// Remove a user: their sessions end within seconds.
    Remove(Target),
    /// List users (name, state).
    List {
        /// The users file.
        #[arg(long, env = "SSTP_GATEWAY_USERS_FILE")]
        users_file: PathBuf,
    },
}

/// A users file and a user name.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The users file.
    #[arg(long, env = "SSTP_GATEWAY_USERS_FILE")]
    users_file: PathBuf,
    /// The user name (what the client types).
    name: String,
}

/// Length of generated passwords: 20 characters of a 62-letter alphabet, ~119 bits.
const GENERATED_LEN: usize = 20;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub(super) fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { target, generate } => {
            let mut doc = read_or_new(&target.users_file)?;
            let (password, generated) = if generate || std::io::stdin().is_terminal() {
                (generate_password(), true)
            } else {
                (read_password()?, false)
            };
            if password.is_empty() {
                bail!("empty password on stdin");
            }
            let hash = NtHashHex::from_bytes(NtHash::from_password(&password).0);
            doc.users
                .entry(target.name.clone())
                .and_modify(|entry| entry.nt_hash = hash.clone())
                .or_insert_with(|| UserEntry::new(hash));
            write_atomically(&target.users_file, &doc)?;
            if generated {
                println!("{password}");
            }
            eprintln!(
                "user {} saved in {}",
                target.name,
                target.users_file.display()
            );
            Ok(())
        }
        UserCommand::Disable(target) => modify(&target, |e| e.disabled = true),
        UserCommand::Enable(target) => modify(&target, |e| e.disabled = false),
        UserCommand::Remove(target) => {
            let mut doc = read(&target.users_file)?;
            if doc.users.remove(&target.name).is_none() {
                bail!("no user {} in {}", target.name, target.users_file.display());
            }
            write_atomically(&target.users_file, &doc)
        }
        UserCommand::List { users_file } => {
            let doc = read(&users_file)?;
            for (name, entry) in &doc.users {
                let state = if entry.disabled {
                    "disabled"
                } else {
                    "enabled"
                };
                let mut line = format!("{name}\t{state}");
                if let Some(addr) = entry.static_address {
                    line.push_str(&format!("\tstaticAddress={addr}"));
                }
                if let Some(at) = entry.expires_at {
                    line.push_str(&format!("\texpiresAt={at}"));
                }
                println!("{line}");
            }
            Ok(())
        }
    }
}

fn modify(target: &Target, change: impl FnOnce(&mut UserEntry)) -> anyhow::Result<()> {
    let mut doc = read(&target.users_file)?;
    let Some(entry) = doc.users.get_mut(&target.name) else {
        bail!("no user {} in {}", target.name, target.users_file.display());
    };
    change(entry);
    write_atomically(&target.users_file, &doc)
}

fn read(path: &Path) -> anyhow::Result<UsersDocument> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    UsersDocument::from_json(&text)
        .with_context(|| format!("{} is not a valid users file", path.display()))
}

fn read_or_new(path: &Path) -> anyhow::Result<UsersDocument> {
    if path.exists() {
        read(path)
    } else {
        Ok(UsersDocument::new())
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn generate_password() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Writes `doc` to `path` through a temporary file and a rename (mode 0600: NT hashes are
/// password equivalents for MS-CHAPv2).
pub(super) fn write_atomically(path: &Path, doc: &UsersDocument) -> anyhow::Result<()> {
    doc.validate()
        .with_context(|| format!("refusing to write an invalid users file {}", path.display()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("the users file path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut text = doc.to_json_pretty();
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
