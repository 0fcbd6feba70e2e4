#!/usr/bin/env python3
"""Checks the Dockerfile's stages against what the binary really links, without
a Docker engine.

usage: dockerfile_check.py ROOT BINARY [DOCKERFILE]
Prints ok/not ok lines (TAP-like); exits 1 when one fails.

The runtime stage's `apt-get install` line must
  * name the Debian package of every library the binary links directly
    (readelf NEEDED -> ldd path -> dpkg -S), and of every library that CMake
    links through pkg-config (even those the linker drops today with
    --as-needed: the code that uses them is being written);
  * cover every other library ldd resolves through those packages' Depends
    (the closure over this Debian 12 machine's package database), or be one
    of the base packages in bookworm-slim (libc6, libgcc-s1, libstdc++6);
  * only name packages that exist in Debian 12.
A library missing from the image is then caught here, not at pod start.
"""
import fnmatch
import os
import re
import subprocess
import sys

BASE = {"libc6", "libgcc-s1", "libstdc++6"}
results = []


def ok(what):
    results.append(True)
    print(f"ok - {what}")


def not_ok(what, *details):
    results.append(False)
    print(f"not ok - {what}")
    for d in details:
        for line in str(d).splitlines():
            print(f"    {line}")


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def parse_dockerfile(path):
    """Returns ({ARG: default}, [stage dicts with base, name, instructions])."""
    text = open(path).read()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    args, stages = {}, []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        elif instr == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            base = re.sub(r"\$\{?(\w+)\}?", lambda mm: args.get(mm.group(1), ""), m.group(1))
            stages.append({"base": base, "name": (m.group(2) or "").lower(), "instr": []})
        elif stages:
            stages[-1]["instr"].append((instr, rest))
    return args, stages


def apt_packages(stage):
    pkgs = []
    for instr, rest in stage["instr"]:
        if instr != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", rest):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                after = words[words.index("install") + 1:]
                pkgs += [w for w in after if not w.startswith("-") and "=" not in w]
    return pkgs


def dpkg_owner(path):
    """The package that ships path, trying the usr-merged spellings."""
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        for a, b in (("/usr/lib/", "/lib/"), ("/lib/", "/usr/lib/")):
            if p.startswith(a):
                cands.append(b + p[len(a):])
    # The symlink named by the soname is what dpkg lists for most libraries.
    for p in dict.fromkeys(cands):
        r = run("dpkg", "-S", p)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


def ldd(binary):
    libs, missing = {}, []
    for line in run("ldd", binary).stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            if m.group(2) == "not":
                missing.append(m.group(1))
            else:
                libs[m.group(1)] = m.group(2)
        else:
            m = re.match(r"\s*(/\S+) \(", line)
            if m:
                libs[os.path.basename(m.group(1))] = m.group(1)
    return libs, missing


def needed(binary):
    out = run("readelf", "-d", binary).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def depends_closure(pkgs):
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = run("dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", p)
        if r.returncode != 0:
            continue
        for dep in r.stdout.split(","):
            for alt in dep.split("|"):
                name = alt.strip().split(" ")[0].split(":")[0]
                if name:
                    todo.append(name)
    return seen


def pkgconfig_runtime_packages(root):
    """{pkg-config module: [runtime packages]} for the modules CMakeLists links."""
    cm = open(os.path.join(root, "CMakeLists.txt")).read()
    mods = re.findall(r"pkg_check_modules\(\s*(\w+)\s+REQUIRED\s+IMPORTED_TARGET\s+([\w.+-]+)", cm)
    out = {}
    for var, mod in mods:
        if var == "CRITERION":  # unit tests only (SN_TESTS=OFF in the image)
            continue
        r = run("pkg-config", "--libs-only-l", "--libs-only-L", mod)
        if r.returncode != 0:
            out[mod] = None
            continue
        dirs = [w[2:] for w in r.stdout.split() if w.startswith("-L")]
        dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib", "/lib/x86_64-linux-gnu"]
        pkgs = []
        for lib in [w[2:] for w in r.stdout.split() if w.startswith("-l")]:
            dev = next((os.path.join(d, f"lib{lib}.so") for d in dirs
                        if os.path.exists(os.path.join(d, f"lib{lib}.so"))), None)
            if not dev:
                continue
            soname = re.search(r"SONAME\s+\S+\s+\[?([^\]\s]+)", run("readelf", "-d", os.path.realpath(dev)).stdout)
            real = os.path.join(os.path.dirname(dev), soname.group(1)) if soname else os.path.realpath(dev)
            owner = dpkg_owner(real)
            if owner:
                pkgs.append(owner)
        out[mod] = pkgs
    return out


def main():
    root, binary = sys.argv[1:3]
    dockerfile = sys.argv[3] if len(sys.argv) > 3 else os.path.join(root, "Dockerfile")
    _, stages = parse_dockerfile(dockerfile)
    names = [s["name"] for s in stages]
    if len(stages) < 2:
        not_ok("Dockerfile is multi-stage", f"stages: {names}")
        return
    build, runtime = stages[0], stages[-1]
    ok(f"Dockerfile is multi-stage ({', '.join(n or '?' for n in names)})")

    if re.fullmatch(r"debian:(12|bookworm)(-\d+)?(@sha256:[0-9a-f]{64})?", build["base"]):
        ok(f"build stage on Debian 12 ({build['base']})")
    else:
        not_ok("build stage on Debian 12", f"FROM {build['base']}")
    if re.fullmatch(r"debian:(12|bookworm)-slim(@sha256:[0-9a-f]{64})?", runtime["base"]):
        ok(f"runtime stage on Debian 12 slim ({runtime['base']})")
    else:
        not_ok("runtime stage on Debian 12 slim", f"FROM {runtime['base']}")

    build_runs = " ".join(r for i, r in build["instr"] if i == "RUN")
    if re.search(r"cmake -S \. -B build -G Ninja\b.*-DSN_TESTS=OFF", build_runs) and "cmake --build build" in build_runs:
        ok("build stage runs the project's build (cmake -G Ninja -DSN_TESTS=OFF, cmake --build)")
    else:
        not_ok("build stage runs cmake -S . -B build -G Ninja -DSN_TESTS=OFF && cmake --build build")

    # The build stage has the product's -dev packages that scripts/setup lists.
    setup = open(os.path.join(root, "scripts/setup")).read()
    m = re.search(r"# the product's libraries\n(.*?)\n\s*#", setup, re.S)
    want_dev = m.group(1).split() if m else []
    have_build = set(apt_packages(build))
    miss = [p for p in want_dev if p not in have_build]
    if want_dev and not miss:
        ok(f"build stage installs the {len(want_dev)} library packages of scripts/setup")
    else:
        not_ok("build stage installs the library packages of scripts/setup", f"missing: {miss or 'none found in scripts/setup'}")

    have = apt_packages(runtime)
    if not have:
        not_ok("runtime stage installs its libraries with apt-get install")
        return
    no_recommends = any("--no-install-recommends" in r for i, r in runtime["instr"] if i == "RUN")
    (ok if no_recommends else not_ok)("runtime apt-get install uses --no-install-recommends")
    unknown = [p for p in have if run("dpkg-query", "-W", p).returncode != 0 and
               run("apt-cache", "show", p).returncode != 0]
    if unknown:
        not_ok("runtime packages exist in Debian 12", f"unknown: {unknown}")
    else:
        ok(f"runtime packages exist in Debian 12 ({len(have)})")

    libs, missing = ldd(binary)
    if missing:
        not_ok("ldd resolves every library of the binary here", f"not found: {missing}")
    owners, unowned = {}, []
    for soname, path in libs.items():
        if soname.startswith("linux-vdso"):
            continue
        pkg = dpkg_owner(path)
        if pkg:
            owners[soname] = pkg
        else:
            unowned.append(f"{soname} => {path}")
    if unowned:
        not_ok("every linked library belongs to a Debian package", *unowned)
    else:
        ok(f"ldd: {len(owners)} libraries from {len(set(owners.values()))} Debian packages")

    direct = {n: owners.get(n) for n in needed(binary)}
    miss = sorted({f"{p} (for {n})" for n, p in direct.items() if p and p not in BASE and p not in have})
    if miss:
        not_ok("runtime install line names the package of every directly linked library", *miss)
    else:
        ok("runtime install line names every directly linked library's package: " +
           ", ".join(sorted({p for p in direct.values() if p})))

    closure = depends_closure(have) | BASE
    miss = sorted({f"{p} (for {n})" for n, p in owners.items() if p not in closure})
    if miss:
        not_ok("every library ldd resolves is installed by the runtime stage (install line + Depends)",
               *miss, f"install line: {' '.join(have)}")
    else:
        ok("every library ldd resolves is installed by the runtime stage (install line + Depends)")

    pc = pkgconfig_runtime_packages(root)
    miss = sorted({f"{p} (pkg-config {mod})" for mod, ps in pc.items() for p in (ps or []) if p not in BASE and p not in have})
    broken = [mod for mod, ps in pc.items() if ps is None]
    if miss or broken:
        not_ok("runtime install line names the runtime package of every pkg-config module CMake links",
               *miss, *(f"pkg-config {m} not found here" for m in broken))
    else:
        ok("runtime install line names every pkg-config module's runtime package: " +
           ", ".join(f"{m}={'/'.join(sorted(set(ps)))}" for m, ps in sorted(pc.items())))

    # Non-root numeric user, the binary as the entrypoint.
    users = [r for i, r in runtime["instr"] if i == "USER"]
    if users and re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1].strip()):
        ok(f"runs as a numeric non-root user ({users[-1].strip()})")
    else:
        not_ok("runs as a numeric non-root user", f"USER {users[-1] if users else '(none)'}")
    eps = [r for i, r in runtime["instr"] if i == "ENTRYPOINT"]
    if eps and re.fullmatch(r'\[\s*"[^"]*/sentinel"\s*\]', eps[-1].strip()):
        ok(f"entrypoint is the sentinel binary ({eps[-1].strip()})")
    else:
        not_ok("entrypoint is the sentinel binary (exec form)", f"ENTRYPOINT {eps[-1] if eps else '(none)'}")

    # The build context keeps what the build reads and drops build dirs and .git.
    ign_path = os.path.join(root, ".dockerignore")
    if not os.path.exists(ign_path):
        not_ok(".dockerignore exists")
    else:
        pats = [l.strip().rstrip("/") for l in open(ign_path) if l.strip() and not l.startswith("#")]
        cm = open(os.path.join(root, "CMakeLists.txt")).read()
        needed_paths = ["CMakeLists.txt", "cli"] + re.findall(r"sn_module\((\w+)", cm)
        def ignored(p):
            return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.lstrip("*/")) for pat in pats)
        dropped = [p for p in needed_paths if ignored(p)]
        kept = [p for p in (".git", "build", "build-deploy") if not ignored(p)]
        if dropped or kept:
            not_ok(".dockerignore keeps the sources and drops .git and build dirs",
                   f"sources ignored: {dropped}", f"not ignored: {kept}")
        else:
            ok(".dockerignore keeps the sources and drops .git and build dirs")


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
