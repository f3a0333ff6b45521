#!/usr/bin/env bash
# Every query of the Grafana dashboards in deploy/grafana/ is valid PromQL: each is written into a
# throw-away rule file as a recording rule (Grafana's $__rate_interval as 5m) for
# `promtool check rules`. Which series they may name is checked by tests/it/deploy.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
rules=$(mktemp --suffix=.yml)
trap 'rm -f "$rules"' EXIT
python3 - "$rules" deploy/grafana/*.json <<'PY'
import json, sys
out, files = sys.argv[1], sys.argv[2:]
lines = ["groups:"]
for n, path in enumerate(files):
    lines += [f"  - name: dashboard{n}", "    rules:"]
    for p, panel in enumerate(json.load(open(path))["panels"]):
        for t, target in enumerate(panel.get("targets", [])):
            expr = target["expr"].replace("$__rate_interval", "5m")
            lines += [f"      - record: dashboard:panel{p}:target{t}", f"        expr: {json.dumps(expr)}"]
open(out, "w").write("\n".join(lines) + "\n")
PY
promtool check rules "$rules" >/dev/null
echo "dashboards: every query parses ($(ls deploy/grafana/*.json | wc -l) dashboard(s))"
