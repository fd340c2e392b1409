#!/usr/bin/env python3
"""Checks dbmanager with one combination of its features, without re-checking its
dependencies for that combination.

Each combination would otherwise resolve every third-party crate's features anew (a tokio
without `process`, a rustls without a provider...), and cargo would check much of the
dependency tree again for each: most of the lint's time. Here the third-party crates are
pinned, at the versions of Cargo.lock, to the features they have with every feature on
(what clippy checks them with), so each combination checks only dbmanager and
dbmanager-providers, with exactly that combination's features: every `cfg(feature)` of
ours is compiled as a service with that combination compiles it.

What a pinned check cannot see: a feature of a dependency that one of our features needs
but forgets to enable while another of our features enables it. Our features enable their
dependencies' features explicitly (dbmanager/Cargo.toml, providers/Cargo.toml), and
`scripts/test.sh --lint-unpinned` checks every combination without the pin.

Usage: scripts/feature-check.py FEATURES [--doc] [--target-dir DIR]  (FEATURES
comma-separated, "" for none, "DEFAULT" for the default features, "ALL" for every one).
With --doc, documents our two crates instead (`cargo doc --no-deps`, rustdoc's warnings
as errors), reusing the same dependency checks. Exits non-zero on an error or a warning.
"""

import json
import os
import re
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def target_side_crates():
    """Third-party crates of clippy's build (the workspace, every target, every feature)
    for the target platform (not those built only for proc-macros or build scripts), with
    their features, from `cargo tree`."""
    out = subprocess.run(
        ["cargo", "tree", "--workspace", "--all-features", "-e", "normal,dev", "--prefix", "depth",
         "-f", "{p}|{f}", "--no-dedupe"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    crates = {}
    host_depth = None  # depth of the proc-macro whose subtree is being skipped
    for line in out.splitlines():
        m = re.match(r"(\d+)(\S+) v(\S+)(.*?)\|(.*)$", line)
        if not m:
            continue
        depth, name, version, rest, features = int(m[1]), m[2], m[3], m[4], m[5]
        if host_depth is not None:
            if depth > host_depth:
                continue
            host_depth = None
        if "(proc-macro)" in rest:
            host_depth = depth
            continue
        if "(/" in rest:  # a path dependency: one of ours
            continue
        feats = {f for f in features.replace(" (*)", "").split(",") if f}
        crates.setdefault((name, version), set()).update(feats)
    return crates


def manifest(features, crates):
    if features == "ALL":
        manifest_of_ours = tomllib.load(open(os.path.join(ROOT, "dbmanager", "Cargo.toml"), "rb"))
        features = ",".join(f for f in manifest_of_ours["features"] if f != "default")
    if features == "DEFAULT":
        ours = 'dbmanager = { path = "%s/dbmanager" }' % ROOT
    else:
        listed = ", ".join('"%s"' % f for f in features.split(",") if f)
        ours = 'dbmanager = { path = "%s/dbmanager", default-features = false, features = [%s] }' % (ROOT, listed)
    lines = [
        "[package]", 'name = "feature-pin"', 'version = "0.0.0"', 'edition = "2024"',
        "publish = false", "", "[lib]", 'path = "lib.rs"', "",
        "[workspace]", "",
        # The same profile as the project's, so the pinned crates' check results are the
        # ones clippy made, shared through the target directory.
        "[profile.dev]", 'debug = "line-tables-only"', "",
        '[profile.dev.package."*"]', "debug = false", "",
        "[dependencies]", ours,
    ]
    for (name, version), feats in sorted(crates.items()):
        key = re.sub(r"[^A-Za-z0-9_]", "_", "%s_%s" % (name, version))
        listed = ", ".join('"%s"' % f for f in sorted(feats))
        lines.append('%s = { package = "%s", version = "=%s", default-features = false, features = [%s] }'
                     % (key, name, version, listed))
    return "\n".join(lines) + "\n"


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    features = args[0]
    target_dir = os.path.join(ROOT, "target")
    if "--target-dir" in args:
        target_dir = os.path.abspath(args[args.index("--target-dir") + 1])
    pin = os.path.join(target_dir, "feature-pin")
    os.makedirs(pin, exist_ok=True)
    cache = os.path.join(pin, "crates.json")
    lock = os.path.join(ROOT, "Cargo.lock")
    stamp = os.path.getmtime(lock)
    crates = None
    if os.path.exists(cache):
        saved = json.load(open(cache))
        if saved.get("lock_mtime") == stamp:
            crates = {tuple(k.split(" ")): set(v) for k, v in saved["crates"].items()}
    if crates is None:
        crates = target_side_crates()
        json.dump({"lock_mtime": stamp,
                   "crates": {"%s %s" % k: sorted(v) for k, v in crates.items()}},
                  open(cache, "w"))
    open(os.path.join(pin, "Cargo.toml"), "w").write(manifest(features, crates))
    open(os.path.join(pin, "lib.rs"), "w").write("//! Pins dependency features.\n")
    # The project's lock file: the same versions, nothing resolved anew.
    open(os.path.join(pin, "Cargo.lock"), "w").write(open(lock).read())
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    command = ["cargo", "check", "-q", "--manifest-path", os.path.join(pin, "Cargo.toml")]
    if "--doc" in args:
        env["RUSTDOCFLAGS"] = "-D warnings"
        command = ["cargo", "doc", "-q", "--no-deps", "--manifest-path",
                   os.path.join(pin, "Cargo.toml"), "-p", "feature-pin", "-p", "dbmanager",
                   "-p", "dbmanager-providers"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    output = run.stdout + run.stderr
    if run.returncode != 0 or re.search(r"^warning", output, re.M):
        sys.stdout.write(output)
        sys.exit("cargo %s with features '%s' %s" % ("doc" if "--doc" in args else "check",
            features, "failed" if run.returncode else "has warnings"))


if __name__ == "__main__":
    main()
