#!/usr/bin/env python3
"""The files of each image, and nothing else: what `tests/images/build` packs into an OCI archive
and what the Dockerfiles' rootfs stage copies onto `scratch`, so both make the same tree.

    rootfs.py gateway|operator|pause --bin PROGRAM --into DIR

A program goes in with every shared library `ldd` says it loads and the dynamic loader, each at
the path the host has it, together with the symlinks on the way (`/lib` -> `usr/lib`,
`libnftnl.so.11` -> `libnftnl.so.11.6.0`): the loader finds them in the image exactly as on the
host, with no /etc/ld.so.cache. Owners are root and modes the host's, without set-id bits.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The gateway sets up NAT with `nft -f -` (gateway/src/nat.rs), found on PATH; it runs no other
# program (`ip` is used only by tests), so nftables is the one package it needs.
NFT = "/usr/sbin/nft"
# Who is who inside the image: root (the gateway), nonroot 65532 (the operator), nobody.
ETC = ("passwd", "group", "nsswitch.conf")


@dataclass(frozen=True)
class Entry:
    """One tar member: a directory, a regular file (its host source) or a symlink."""

    kind: str  # "dir", "file" or "symlink"
    mode: int = 0o755
    source: str = ""  # host file to copy, for "file"
    target: str = ""  # link text, for "symlink"


class Tree:
    """Image paths (absolute, normalised) to entries; refuses two different entries at one path."""

    def __init__(self):
        self.entries = {}

    def add(self, path, entry):
        self._parents(path)
        old = self.entries.setdefault(path, entry)
        if old != entry:
            raise SystemExit(f"rootfs: {path} would be both {old} and {entry}")

    def _parents(self, path):
        parent = os.path.dirname(path)
        if parent != "/" and parent not in self.entries:
            self.add(parent, Entry("dir", host_mode(parent) if os.path.isdir(parent) else 0o755))
        elif parent != "/" and self.entries[parent].kind != "dir":
            raise SystemExit(f"rootfs: {path} lies under the symlink {parent}")

    def copy(self, source, dest):
        """Adds host file `source` (symlinks followed) as the regular file `dest`."""
        real = os.path.realpath(source)
        if not os.path.isfile(real):
            raise SystemExit(f"rootfs: {source} is not a file")
        self.add(dest, Entry("file", host_mode(real), source=real))

    def host_path(self, path):
        """Adds host file `path` at the same path, with every symlink that leads to it."""
        pending = [part for part in path.split("/") if part]
        current = "/"
        for _ in range(64):  # more hops than this is a symlink loop
            if not pending:
                break
            part = pending.pop(0)
            if part in (".", ".."):
                current = os.path.dirname(current) if part == ".." else current
                continue
            here = os.path.join(current, part)
            if os.path.islink(here):
                target = os.readlink(here)
                self.add(here, Entry("symlink", 0o777, target=target))
                current = "/" if target.startswith("/") else current
                pending = [p for p in target.split("/") if p] + pending
            elif pending:
                self.add(here, Entry("dir", host_mode(here)))
                current = here
            else:
                self.copy(here, here)
                return
        raise SystemExit(f"rootfs: cannot resolve {path}")

    def program(self, source, dest):
        """Adds a program at `dest` and, at their host paths, the libraries and loader it needs."""
        self.copy(source, dest)
        for library in shared_libraries(source):
            self.host_path(library)


def host_mode(path):
    return os.stat(path).st_mode & 0o777


# `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`.
LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(\S+) \(0x[0-9a-f]+\)$")


def shared_libraries(program):
    """Absolute paths of what `ldd` says `program` loads (none for a static program)."""
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if out.returncode != 0 or "not found" in text:
        raise SystemExit(f"rootfs: ldd {program} failed:\n{text}")
    paths = []
    for line in out.stdout.splitlines():
        match = LDD_LINE.match(line)
        if not match:
            raise SystemExit(f"rootfs: unexpected ldd line for {program}: {line!r}")
        path = match.group(2)
        if path.startswith("/"):  # linux-vdso.so.1 is in the kernel, not a file
            paths.append(path)
    return paths


def tree(image, program):
    """The tree of `image`, whose main program is the host file `program`."""
    files = Tree()
    if image == "pause":
        # As upstream's Dockerfile: FROM scratch, ADD the static binary as /pause, nothing else.
        files.program(program, "/pause")
        return files
    name = "sstp-transfer-server" if image == "transfer" else f"sstp-{image}"
    files.program(program, f"/usr/local/bin/{name}")
    if image == "gateway":
        files.program(NFT, NFT)
    for name in ETC:
        files.add(f"/etc/{name}", Entry("file", 0o644, source=str(HERE / "etc" / name)))
    return files


def write_into(files, root):
    """Materialises the tree under `root` (the Dockerfiles' rootfs stage)."""
    for path, entry in sorted(files.entries.items()):
        dest = os.path.join(root, path.lstrip("/"))
        if entry.kind == "dir":
            os.makedirs(dest, exist_ok=True)
            os.chmod(dest, entry.mode)
        elif entry.kind == "symlink":
            os.symlink(entry.target, dest)
        else:
            shutil.copyfile(entry.source, dest)
            os.chmod(dest, entry.mode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", choices=["gateway", "operator", "pause", "transfer"])
    parser.add_argument("--bin", required=True, help="the image's program on this host")
    parser.add_argument("--into", required=True, help="an empty or absent directory")
    args = parser.parse_args()
    os.makedirs(args.into, exist_ok=True)
    if os.listdir(args.into):
        sys.exit(f"rootfs: {args.into} is not empty")
    write_into(tree(args.image, args.bin), args.into)


if __name__ == "__main__":
    main()
