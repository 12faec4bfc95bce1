#!/usr/bin/env python3
"""MSRV check: the `rust-version` the workspace states is the real minimum.

No second toolchain can be installed where CI runs (only package registries are reachable), so
the check has two halves that together cover what a newer toolchain could let slip in:
  1. every dependency compiled for this target declares a `rust-version` <= ours (cargo tree +
     cargo metadata), and
  2. `cargo clippy -D warnings` (run by scripts/test.sh) includes clippy's `incompatible_msrv`
     lint, which rejects std APIs stabilised after our `rust-version`.
Language features are pinned by hand: let chains are why the floor is 1.88.
"""
import json
import subprocess
import sys


def version(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1"]))
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in meta["workspace_members"]}
if len(ours) != 1 or None in ours:
    sys.exit(f"check-msrv: workspace members disagree on rust-version: {ours}")
ours = ours.pop()
used = set(
    subprocess.check_output(
        ["cargo", "tree", "--workspace", "-e", "normal,build,dev", "--prefix", "none",
         "--format", "{p}", "--no-dedupe"],
        text=True,
    ).split("\n")
)
used_names = {(line.split()[0], line.split()[1].lstrip("v")) for line in used if line.strip()}
bad = [
    f"{p['name']} {p['version']} needs Rust {p['rust_version']}"
    for p in meta["packages"]
    if (p["name"], p["version"]) in used_names
    and p.get("rust_version")
    and version(p["rust_version"]) > version(ours)
]
if bad:
    sys.exit(f"check-msrv: rust-version is {ours}, but:\n  " + "\n  ".join(sorted(bad)))
print(f"check-msrv: rust-version {ours} covers all {len(used_names)} crates in the build")
