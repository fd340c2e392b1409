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

Usage: scripts/feature-check.py FEATURES... [--doc] [--target-dir DIR]  (FEATURES
comma-separated, "" for none, "DEFAULT" for the default features, "ALL" for every one).
Several combinations are checked in one cargo run, side by side: each gets a copy of our
two manifests under a name of its own (dbmanager-combo-<n>, pointing at the same
sources), so cargo checks them in parallel against the one set of pinned dependencies.
With --doc (one combination), documents our two crates instead (`cargo doc --no-deps`,
rustdoc's warnings as errors). Exits non-zero on an error or a warning.
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
    ] + pinned_lines(crates)
    return "\n".join(lines) + "\n"


def pinned_lines(crates):
    lines = []
    for (name, version), feats in sorted(crates.items()):
        key = re.sub(r"[^A-Za-z0-9_]", "_", "%s_%s" % (name, version))
        listed = ", ".join('"%s"' % f for f in sorted(feats))
        lines.append('%s = { package = "%s", version = "=%s", default-features = false, features = [%s] }'
                     % (key, name, version, listed))
    return lines


def sections(text):
    """A manifest's sections, as (header, lines) in order (the header of the part before
    the first section is "")."""
    out, header, lines = [], "", []
    for line in text.splitlines():
        if line.startswith("["):
            out.append((header, lines))
            header, lines = line.strip(), []
        else:
            lines.append(line)
    out.append((header, lines))
    return out


def copy_manifest(crate_dir, name, lib_name, n):
    """Our crate's manifest for combination `n`: renamed, its targets pointing at the real
    sources, without examples, tests, benches and dev-dependencies."""
    src = os.path.join(ROOT, crate_dir)
    out = []
    for header, lines in sections(open(os.path.join(src, "Cargo.toml")).read()):
        if header in ("[[example]]", "[[test]]", "[[bench]]", "[dev-dependencies]") \
                or header.startswith("[package.metadata"):
            continue
        if header:
            out.append(header)
        for line in lines:
            if header == "[package]" and line.startswith("name ="):
                line = 'name = "%s-combo-%d"' % (name, n)
            if header == "[package]" and line.startswith("readme"):
                continue
            if header == "[[bin]]" and line.startswith("path ="):
                line = 'path = "%s/%s"' % (src, line.split('"')[1])
            if line.startswith("dbmanager-providers = {"):
                line = line.replace("{", '{ package = "dbmanager-providers-combo-%d",' % n, 1)
            out.append(line)
        if header == "[package]":
            out += ["autobins = false", "autobenches = false", "",
                    "[lib]", 'name = "%s"' % lib_name, 'path = "%s/src/lib.rs"' % src, ""]
    return "\n".join(out) + "\n"


def workspace_sections():
    """The project's [workspace.package], [workspace.dependencies] and profiles, which our
    manifests inherit from."""
    keep = []
    for header, lines in sections(open(os.path.join(ROOT, "Cargo.toml")).read()):
        if header.startswith("[workspace.") or header.startswith("[profile"):
            keep.append(header)
            keep += lines
    return keep


def check_all(combos, crates, target_dir):
    pin = os.path.join(target_dir, "feature-pin-all")
    os.makedirs(pin, exist_ok=True)
    members, deps = [], []
    for n, features in enumerate(combos):
        for crate_dir, name, lib in (("dbmanager", "dbmanager", "dbmanager"),
                                     ("providers", "dbmanager-providers", "dbmanager_providers")):
            d = os.path.join(pin, "combo-%d" % n, crate_dir)
            os.makedirs(d, exist_ok=True)
            open(os.path.join(d, "Cargo.toml"), "w").write(copy_manifest(crate_dir, name, lib, n))
            members.append('"combo-%d/%s"' % (n, crate_dir))
        if features == "DEFAULT":
            deps.append('dbm_%d = { package = "dbmanager-combo-%d", path = "combo-%d/dbmanager" }' % (n, n, n))
        else:
            listed = ", ".join('"%s"' % f for f in features.split(",") if f)
            deps.append('dbm_%d = { package = "dbmanager-combo-%d", path = "combo-%d/dbmanager", '
                        'default-features = false, features = [%s] }' % (n, n, n, listed))
    lines = [
        "[package]", 'name = "feature-pin"', 'version = "0.0.0"', 'edition = "2024"',
        "publish = false", "", "[lib]", 'path = "lib.rs"', "",
        "[workspace]", "members = [%s]" % ", ".join(members), "",
    ] + workspace_sections() + ["", "[dependencies]"] + deps + pinned_lines(crates)
    open(os.path.join(pin, "Cargo.toml"), "w").write("\n".join(lines) + "\n")
    open(os.path.join(pin, "lib.rs"), "w").write("//! Pins dependency features.\n")
    open(os.path.join(pin, "Cargo.lock"), "w").write(open(os.path.join(ROOT, "Cargo.lock")).read())
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    # Not quiet: on a failure, cargo's "`dbmanager-combo-<n>` (lib) generated 1 warning"
    # lines say which combinations it was.
    run = subprocess.run(["cargo", "check", "--manifest-path", os.path.join(pin, "Cargo.toml")],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    output = run.stdout + run.stderr
    if run.returncode != 0 or re.search(r"^warning", output, re.M):
        sys.stdout.write("\n".join(l for l in output.splitlines()
                                    if not l.lstrip().startswith(("Checking", "Compiling", "Finished")))
                         + "\n")
        sys.stdout.write("\n".join("dbmanager-combo-%d: features '%s'" % (n, f)
                                    for n, f in enumerate(combos)) + "\n")
        sys.exit("the feature check %s" % ("failed" if run.returncode else "has warnings"))


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    target_dir = os.path.join(ROOT, "target")
    if "--target-dir" in args:
        i = args.index("--target-dir")
        target_dir = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    doc = "--doc" in args
    combos = [a for a in args if a != "--doc"]
    features = combos[0]
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
    if len(combos) > 1 and not doc:
        check_all(["" if c == "NONE" else c for c in combos], crates, target_dir)
        return
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
