//! What the dynamic loader needs to start a program, read from the ELF file (its `PT_INTERP`
//! interpreter and `DT_NEEDED` libraries), and where it would find them inside an unpacked image.

use std::path::{Component, Path, PathBuf};

use object::{
    Endianness,
    elf::{DT_NEEDED, FileHeader64},
    read::elf::{FileHeader, ProgramHeader},
};

/// glibc's search path when there is no /etc/ld.so.cache (`ld.so --help` on Debian amd64), as in
/// these images.
pub const SEARCH_PATH: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// How an ELF file is linked.
#[derive(Debug)]
pub struct Linkage {
    /// The dynamic loader it names; `None` for a static program or a library.
    pub interpreter: Option<String>,
    /// The libraries it needs, by soname.
    pub needed: Vec<String>,
}

/// The linkage of `data`, or `None` when it is not an ELF file.
pub fn linkage(data: &[u8]) -> Result<Option<Linkage>, object::Error> {
    if !data.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let header = FileHeader64::<Endianness>::parse(data)?;
    let endian = header.endian()?;
    let mut interpreter = None;
    for segment in header.program_headers(endian, data)? {
        if let Some(path) = segment.interpreter(endian, data)? {
            interpreter = Some(String::from_utf8_lossy(path).into_owned());
        }
    }
    let table = header.sections(endian, data)?.dynamic_table(endian, data)?;
    let mut needed = Vec::new();
    for entry in table.iter().filter(|entry| entry.tag == DT_NEEDED) {
        needed.push(String::from_utf8_lossy(table.string(entry)?).into_owned());
    }
    Ok(Some(Linkage {
        interpreter,
        needed,
    }))
}

/// Resolves the absolute image path `path` inside the image unpacked at `root`, following
/// symlinks as the kernel would inside the container (an absolute target starts again at the
/// image's root, not the host's). `None` when it does not lead to an existing file.
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = components(path).collect();
    pending.reverse();
    let mut current = PathBuf::new(); // relative to root
    for _ in 0..256 {
        let Some(part) = pending.pop() else {
            return root.join(&current).is_file().then(|| root.join(current));
        };
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&part);
        match std::fs::read_link(root.join(&candidate)) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    current = PathBuf::new();
                }
                pending.extend(components(&target).collect::<Vec<_>>().into_iter().rev());
            }
            Err(_) => current = candidate,
        }
    }
    None // a symlink loop
}

fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    Path::new(path).components().filter_map(|c| match c {
        Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
        Component::ParentDir => Some("..".to_owned()),
        _ => None,
    })
}
