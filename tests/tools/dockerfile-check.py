#!/usr/bin/env python3
"""Checks the structure of a Dockerfile where no Docker engine runs.

    dockerfile-check.py [DOCKERFILE] [--context DIR]
    dockerfile-check.py [DOCKERFILE] --materialize STAGE DIR
    dockerfile-check.py [DOCKERFILE] --healthcheck

The context defaults to the Dockerfile's directory; its .dockerignore is
honoured. Each finding is printed as FILE:LINE: message; exit 1 if any.
--materialize lays out under DIR what STAGE's COPYs would put in it;
--healthcheck prints the HEALTHCHECK's command, one argument a line.
hadolint, the usual linter, is not packaged in Debian 12, so these are the
rules this project needs, nothing more:

- every FROM names a Debian 12 image by tag (debian:12, debian:12-slim,
  debian:bookworm..., optionally with a digest) or an earlier stage;
- stage names are unique;
- every COPY --from= names an earlier stage;
- every plain COPY/ADD source exists in the context and is not excluded by
  .dockerignore, nor is anything inside a copied directory;
- the final stage has a HEALTHCHECK on /healthz and a USER; USER root
  needs a comment right above it saying why;
- no compiler or -dev package is installed in the final stage;
- EXPOSE lists exactly the non-loopback listen ports of the example
  configuration the final stage copies to /etc/appliance/appliance.yaml,
  and the HEALTHCHECK uses its observability port.
"""

import fnmatch
import glob
import json
import os
import re
import shlex
import sys

CONFIG_DEST = "/etc/appliance/appliance.yaml"
DEBIAN12 = re.compile(
    r"^(docker\.io/)?(library/)?debian:(12(\.\d+)?|bookworm(-\d{8})?)(-slim)?(@sha256:[0-9a-f]{64})?$"
)
COMPILER = re.compile(
    r"^(gcc|g\+\+|cpp|cc|c\+\+|clang|clang\+\+|tcc|build-essential|make|cmake|"
    r"dpkg-dev|libc6-dev|binutils|[a-z0-9.+-]+-dev)(-\d+)?(:[a-z0-9]+)?(=.*)?$"
)


class Instr:
    def __init__(self, line, keyword, args, comments):
        self.line = line
        self.keyword = keyword
        self.args = args
        self.comments = comments  # the comment lines right above it


def parse(path):
    """Instructions with their first line, continuations joined."""
    out = []
    comments = []
    buf, start = "", 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        if not buf:
            if not s:
                comments = []
                continue
            if s.startswith("#"):
                comments.append(s)
                continue
            start = no
        elif s.startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        kw, _, rest = buf.partition(" ")
        out.append(Instr(start, kw.upper(), rest.strip(), comments))
        buf, comments = "", []
    return out


def split_flags(args):
    """('--from=x', ...) flags and the remaining words (JSON or shell form)."""
    a = args.strip()
    flags = {}
    while a.startswith("--"):
        word, _, a = a.partition(" ")
        k, _, v = word[2:].partition("=")
        flags[k] = v
        a = a.strip()
    if a.startswith("["):
        try:
            words = json.loads(a)
        except ValueError:
            words = shlex.split(a)
    else:
        words = shlex.split(a)
    return flags, words


def load_ignore(ctx):
    pats = []
    p = os.path.join(ctx, ".dockerignore")
    if os.path.exists(p):
        with open(p, encoding="utf-8") as f:
            for line in f:
                s = line.strip()
                if s and not s.startswith("#"):
                    neg = s.startswith("!")
                    s = s[1:] if neg else s
                    pats.append((neg, os.path.normpath(s.lstrip("/"))))
    return pats


def pattern_matches(pat, path):
    """Docker's rule: a pattern matches the path or one of its parents."""
    rx = re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        if re.fullmatch(rx, "/".join(parts[:i])):
            return True
    return fnmatch.fnmatch(path, pat)


def ignored(pats, path):
    path = os.path.normpath(path)
    result = False
    for neg, pat in pats:
        if pattern_matches(pat, path):
            result = not neg
    return result


def dropped_inside(ctx, pats, top):
    """Files under a copied directory that .dockerignore excludes."""
    out = []
    if not os.path.isdir(top):
        return out
    for d, dirs, files in os.walk(top):
        for f in files + dirs:
            rel = os.path.relpath(os.path.join(d, f), ctx)
            if ignored(pats, rel):
                out.append(rel)
        dirs[:] = [x for x in dirs if not ignored(pats, os.path.relpath(os.path.join(d, x), ctx))]
    return sorted(out)


def listen_ports(config):
    """(section, host, port, line) of every listen: in the YAML file."""
    found = []
    section = None
    with open(config, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            m = re.match(r"^([A-Za-z_]+):", line)
            if m:
                section = m.group(1)
            m = re.match(r"^\s*(-\s+)?listen:\s*(\S+)", line)
            if m:
                hp = m.group(2)
                host, _, port = hp.rpartition(":")
                if port.isdigit():
                    found.append((section, host.strip("[]"), int(port), no))
    return found


def loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


def check(path, ctx):
    errs = []

    def err(line, msg):
        errs.append("%s:%d: %s" % (path, line, msg))

    instrs = parse(path)
    pats = load_ignore(ctx)
    stages = []  # (name or None, first instruction index)
    for i, ins in enumerate(instrs):
        if ins.keyword == "FROM":
            _, words = split_flags(ins.args)
            image = words[0] if words else ""
            name = None
            if len(words) >= 3 and words[1].upper() == "AS":
                name = words[2].lower()
            earlier = [s[0] for s in stages if s[0]]
            if image.lower() not in earlier and not DEBIAN12.match(image):
                err(ins.line, "FROM %s: not an image pinned to a Debian 12 tag "
                    "(debian:12, debian:12-slim, debian:bookworm...) nor an earlier stage" % image)
            if name and name in earlier:
                err(ins.line, "stage name '%s' used twice" % name)
            stages.append((name, i))
    if not stages:
        err(1, "no FROM")
        return errs

    def stage_of(i):
        n = 0
        for k, (_, first) in enumerate(stages):
            if first <= i:
                n = k
        return n

    for i, ins in enumerate(instrs):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, words = split_flags(ins.args)
        if len(words) < 2:
            err(ins.line, "%s needs a source and a destination" % ins.keyword)
            continue
        cur = stage_of(i)
        if "from" in flags:
            ref = flags["from"].lower()
            names = [s[0] for s in stages[:cur]]
            if not (ref in names or (ref.isdigit() and int(ref) < cur)):
                err(ins.line, "COPY --from=%s: not an earlier stage" % flags["from"])
            continue
        for src in words[:-1]:
            rel = os.path.normpath(src.lstrip("/"))
            hits = glob.glob(os.path.join(ctx, rel))
            if not hits:
                err(ins.line, "%s %s: does not exist in the context %s" % (ins.keyword, src, ctx))
            elif rel != "." and ignored(pats, rel):
                err(ins.line, "%s %s: excluded by .dockerignore" % (ins.keyword, src))
            else:
                # A pattern such as **/*.d would silently drop conf.d/ or
                # sysusers.d/ from a copied tree.
                for hit in hits:
                    for f in dropped_inside(ctx, pats, hit)[:3]:
                        err(ins.line, "%s %s: .dockerignore drops %s from it" % (ins.keyword, src, f))

    first = stages[-1][1]
    final = instrs[first:]
    fline = instrs[first].line
    hc = [x for x in final if x.keyword == "HEALTHCHECK"]
    if not hc or hc[-1].args.strip().upper() == "NONE":
        err(fline, "final stage: no HEALTHCHECK")
    elif "/healthz" not in hc[-1].args:
        err(hc[-1].line, "HEALTHCHECK does not ask /healthz")
    users = [x for x in final if x.keyword == "USER"]
    if not users:
        err(fline, "final stage: no USER (name one, or USER root with a comment saying why)")
    else:
        u = users[-1]
        if u.args.split(":")[0] in ("root", "0"):
            why = " ".join(u.comments).lower()
            if "root" not in why or len(u.comments) < 2:
                err(u.line, "USER root without a comment above it saying why root is needed")
    for x in final:
        if x.keyword != "RUN":
            continue
        for m in re.finditer(r"(apt-get|apt)\s+install\s+([^&;|]*)", x.args):
            for w in m.group(2).split():
                if w.startswith("-") or "/" in w:
                    continue
                if COMPILER.match(w):
                    err(x.line, "final stage installs %s: a compiler or -dev package" % w)

    cfg = None
    for x in final:
        if x.keyword == "COPY":
            flags, words = split_flags(x.args)
            if "from" not in flags and len(words) == 2 and words[1] == CONFIG_DEST:
                cfg = os.path.join(ctx, words[0])
    if not cfg or not os.path.exists(cfg):
        err(fline, "final stage: no COPY of an example configuration to %s" % CONFIG_DEST)
        return errs
    ports = listen_ports(cfg)
    want = sorted({p for (_, h, p, _) in ports if not loopback(h)})
    exposed = []
    eline = fline
    for x in final:
        if x.keyword == "EXPOSE":
            eline = x.line
            for w in x.args.split():
                exposed.append(int(w.split("/")[0]))
    if sorted(set(exposed)) != want:
        err(eline, "EXPOSE %s, but %s listens on %s (loopback excluded)"
            % (" ".join(map(str, sorted(set(exposed)))) or "nothing", cfg,
               " ".join(map(str, want)) or "nothing"))
    obs = [p for (s, _, p, _) in ports if s == "observability"]
    if hc and obs and (":%d/" % obs[0]) not in hc[-1].args:
        err(hc[-1].line, "HEALTHCHECK does not use the observability port %d of %s" % (obs[0], cfg))
    elif hc and not obs:
        err(hc[-1].line, "%s has no observability listen for the HEALTHCHECK" % cfg)
    return errs


def materialize(path, ctx, stage, out):
    """Lays out what STAGE's plain COPYs put in the image under OUT, as
    docker would (WORKDIR-relative destinations, .dockerignore honoured),
    so that its build can be tried without a Docker engine."""
    import shutil
    workdir = "/"
    active = False
    for ins in parse(path):
        if ins.keyword == "FROM":
            _, words = split_flags(ins.args)
            active = len(words) >= 3 and words[2].lower() == stage.lower()
            workdir = "/"
            continue
        if not active:
            continue
        if ins.keyword == "WORKDIR":
            workdir = os.path.join(workdir, ins.args.strip())
            os.makedirs(out + workdir, exist_ok=True)
        elif ins.keyword == "COPY":
            flags, words = split_flags(ins.args)
            if "from" in flags:
                continue
            dest = os.path.join(workdir, words[-1])
            srcs = words[:-1]
            into_dir = words[-1].endswith("/") or len(srcs) > 1
            for src in srcs:
                for hit in sorted(glob.glob(os.path.join(ctx, src.lstrip("/")))):
                    rel = os.path.relpath(hit, ctx)
                    if os.path.isdir(hit):
                        target = out + dest
                        shutil.copytree(hit, target, dirs_exist_ok=True,
                                        ignore=lambda d, names: [
                                            n for n in names
                                            if ignored(load_ignore(ctx),
                                                       os.path.relpath(os.path.join(d, n), ctx))])
                    else:
                        target = out + (os.path.join(dest, os.path.basename(rel)) if into_dir else dest)
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        shutil.copy2(hit, target)
    return 0


def print_healthcheck(path):
    """The final stage's HEALTHCHECK CMD, one argument a line (exec form
    only), so that a test can run exactly what docker would."""
    hc = [x for x in parse(path) if x.keyword == "HEALTHCHECK"]
    if not hc:
        return 1
    args = hc[-1].args
    while args.startswith("--"):
        args = args.partition(" ")[2].strip()
    if not args.upper().startswith("CMD"):
        return 1
    words = json.loads(args[3:].strip())
    for w in words:
        print(w)
    return 0


def main(argv):
    args = [a for a in argv[1:]]
    ctx = None
    if "--context" in args:
        i = args.index("--context")
        ctx = args[i + 1]
        del args[i:i + 2]
    mat = None
    if "--materialize" in args:
        i = args.index("--materialize")
        mat = args[i + 1:i + 3]
        del args[i:i + 3]
    want_hc = "--healthcheck" in args
    if want_hc:
        args.remove("--healthcheck")
    path = args[0] if args else "Dockerfile"
    if want_hc:
        return print_healthcheck(path)
    if ctx is None:
        ctx = os.path.dirname(os.path.abspath(path))
    if mat:
        return materialize(path, ctx, mat[0], os.path.abspath(mat[1]))
    if not os.path.exists(path):
        print("%s: no such file" % path)
        return 1
    errs = check(path, ctx)
    for e in errs:
        print(e)
    if not errs:
        print("%s: ok" % path)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
