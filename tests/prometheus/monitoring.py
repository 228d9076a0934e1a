#!/usr/bin/env python3
"""Checks of the shipped monitoring files, for tests/integration/t_monitoring.sh.

  monitoring.py dashboard DASHBOARD.json
      the dashboard is importable (schemaVersion, a DS_PROMETHEUS input that
      every panel and target uses) and has the panels operators need.
  monitoring.py as-rules DASHBOARD.json
      prints the dashboard's queries as a rules file of recording rules, with
      Grafana's variables replaced, for `promtool check rules` to parse.
  monitoring.py names METRICS.txt FILE...
      every metric name (and label) the PromQL in FILE uses is on METRICS.txt,
      a scrape of a real bridge's /metrics. FILE is the rules (*.yml) or the
      dashboard (*.json). Names in annotations and descriptions count too.

Standard library only (python3 is on every machine the tests run on; PyYAML
is not installed by scripts/deps.sh), so the rules file is read by its
indentation: it is this project's own file. Prints '# ' lines saying what is
wrong and exits 1; exits 0 and prints a one-line summary when all is well.
"""
import json
import re
import sys

# Produced by Prometheus itself for every target, not by the appliance.
PROMETHEUS_OWN = {"up"}
# Labels the scrape adds; the bridge never sets them.
TARGET_LABELS = {"job", "instance"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
# A metric named in prose: mllp_... or appliance_..., not a pattern like mllp_out_*.
PROSE_NAME = re.compile(r"\b(?:mllp|appliance)_[a-z0-9_]*[a-z0-9]\b(?![_*])")


def scrape(path):
    """name -> {label: set(values)} from Prometheus text format; TYPE'd families too."""
    samples, families = {}, set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# TYPE "):
                families.add(line.split()[2])
                continue
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+\S+$", line)
            if not m:
                continue
            labels = samples.setdefault(m.group(1), {})
            for k, _, v in MATCHER.findall(m.group(3) or ""):
                labels.setdefault(k, set()).add(v)
    return samples, families


def rule_texts(path):
    """(exprs, prose) of a rules file: each `expr:` (one line or a >- block), and
    the annotation text."""
    exprs, prose = [], []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(expr|summary|description):\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        if rest in (">-", ">", "|", "|-"):
            block = []
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            rest = " ".join(block)
        (exprs if key == "expr" else prose).append(rest)
    return exprs, prose


def dashboard_texts(path):
    d = json.load(open(path, encoding="utf-8"))
    exprs, prose = [], [d.get("description", "")]
    for p in d.get("panels", []):
        prose.append(p.get("description", ""))
        exprs.extend(t.get("expr", "") for t in p.get("targets", []))
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        exprs.append(q.get("query", "") if isinstance(q, dict) else q or "")
    return exprs, prose


def selectors(expr):
    """[(metric, [(label, op, value)])] of one PromQL expression."""
    out = []
    s = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges: [5m], [$__rate_interval]
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,[^)]*\)", r" \1 ", s)
    pos = 0
    while True:
        m = IDENT.search(s, pos)
        if not m:
            break
        name, pos = m.group(0), m.end()
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] in "$."):
            continue  # 1e3, $__interval
        rest = s[pos:].lstrip()
        if rest.startswith("("):
            continue  # a function
        matchers = []
        if rest.startswith("{"):
            end = s.index("}", pos)
            matchers = MATCHER.findall(s[s.index("{", pos) + 1:end])
            pos = end + 1
        if name.lower() in KEYWORDS:
            continue
        out.append((name, matchers))
    return out


def check_names(metrics_path, files):
    samples, families = scrape(metrics_path)
    if len(samples) < 20:
        print(f"# {metrics_path} holds {len(samples)} metric names: not a real scrape")
        return 1
    bad, names = 0, set()
    for path in files:
        exprs, prose = (dashboard_texts if path.endswith(".json") else rule_texts)(path)
        if not exprs:
            print(f"# {path}: no expression found")
            bad += 1
        used = []
        for e in exprs:
            used.extend(selectors(e))
        for t in prose:
            used.extend((n, []) for n in PROSE_NAME.findall(t))
        for name, matchers in used:
            names.add(name)
            if name in PROMETHEUS_OWN:
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in samples and not (name == base and base in families) and \
                    not (base in families and base + "_bucket" in samples):
                print(f"# {path}: {name} is not on /metrics")
                bad += 1
                continue
            have = samples.get(name, {})
            for label, op, value in matchers:
                if label in TARGET_LABELS:
                    continue
                if label not in have:
                    print(f"# {path}: {name} has no label {label}")
                    bad += 1
                    continue
                wanted = [value] if op == "=" else value.split("|") if op == "=~" else []
                for v in wanted:
                    if re.fullmatch(r"[A-Za-z0-9_]+", v) and v not in have[label]:
                        print(f'# {path}: {name} has no sample with {label}="{v}"'
                              f" (it has {sorted(have[label])})")
                        bad += 1
    real = sorted(n for n in names if n not in PROMETHEUS_OWN)
    print(f"# {len(real)} metric names checked against {metrics_path}: {' '.join(real)}")
    return 1 if bad or len(real) < 10 else 0


# Panels an operator expects to find (issue 13): title -> what its queries use.
REQUIRED_PANELS = {
    "Hospital → cloud: received and delivered": "mllp_frames_total",
    "Cloud → hospital: accepted and acknowledged": "mllp_out_acked_total",
    "Inbound ACK codes": "mllp_acks_total",
    "ACK latency quantiles": "histogram_quantile",
    "ACK latency heatmap": "mllp_ack_latency_seconds_bucket",
    "Upstream latency heatmap": "mllp_upstream_latency_seconds_bucket",
    "Spool depth": "mllp_spool_depth",
    "Oldest message age": "mllp_spool_oldest_age_seconds",
    "Tunnel state": "appliance_tunnel_up",
    "Dead letters": "mllp_dead_letters_total",
    "Upstream errors": "mllp_upstream_responses_total",
    # SFTP file channels (issue 14)
    "SFTP sessions by outcome": "mllp_sftp_sessions_total",
    "SFTP files by outcome": "mllp_sftp_files_total",
    "SFTP up and waiting for the gate": "mllp_sftp_waiting_gate",
    "SFTP open files and queued": "mllp_sftp_queued",
    "SFTP bytes": "mllp_sftp_bytes_total",
}


def check_dashboard(path):
    d = json.load(open(path, encoding="utf-8"))
    bad = []
    if not isinstance(d.get("schemaVersion"), int):
        bad.append("no schemaVersion")
    if not any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus"
               for i in d.get("__inputs", [])):
        bad.append("no DS_PROMETHEUS datasource input")
    if d.get("id") is not None:
        bad.append("id must be null for an import")
    panels = d.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        bad.append("panel ids repeat")
    titles = {p.get("title"): p for p in panels}
    for title, needle in REQUIRED_PANELS.items():
        p = titles.get(title)
        if not p:
            bad.append(f"no panel '{title}'")
        elif not any(needle in t.get("expr", "") for t in p.get("targets", [])):
            bad.append(f"panel '{title}' does not query {needle}")
    for p in panels:
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            bad.append(f"panel '{p.get('title')}' does not use ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            bad.append(f"panel '{p.get('title')}' has no query")
        for t in p.get("targets", []):
            if not t.get("expr") or t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                bad.append(f"panel '{p.get('title')}' has a target without expr or datasource")
        if p.get("type") == "heatmap" and not all(t.get("format") == "heatmap"
                                                  for t in p["targets"]):
            bad.append(f"heatmap '{p.get('title')}' does not ask for format heatmap")
    for b in bad:
        print(f"# {path}: {b}")
    print(f"# {path}: {len(panels)} panels")
    return 1 if bad else 0


def dashboard_as_rules(path):
    """Grafana's variables replaced by what they stand for at run time."""
    exprs, _ = dashboard_texts(path)
    print("groups:\n  - name: dashboard\n    rules:")
    n = 0
    for e in exprs:
        if e.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        e = e.replace("$__rate_interval", "2m").replace("$__interval", "1m")
        e = e.replace("$instance", ".*")
        n += 1
        print(f"      - record: dashboard:query{n}\n        expr: {json.dumps(e)}")
    return 0 if n else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "as-rules":
        sys.exit(dashboard_as_rules(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "dashboard":
        sys.exit(check_dashboard(sys.argv[2]))
    if len(sys.argv) >= 4 and sys.argv[1] == "names":
        sys.exit(check_names(sys.argv[2], sys.argv[3:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
