#!/usr/bin/env bash
# Checks what deploys chatstream, with no Docker engine and no cluster:
#
#  1. the image: the crate builds from exactly the files the Dockerfile's
#     `binary` stage copies (less .dockerignore), and the image's
#     HEALTHCHECK succeeds against a node of that build and fails without;
#  2. Kubernetes: the base and every overlay render, every document is valid
#     against the Kubernetes API's schemas (strict, a fixed version), and
#     the manifests agree with the image, the node's drain time and the
#     scrape configuration;
#  3. Prometheus: the scrape configurations, the alert rules and their unit
#     tests (promtool);
#  4. Grafana: the dashboard is JSON, its queries parse, and every metric it
#     and the alerts read is one the code records;
#  5. compose.yaml: the files it mounts, its grace period, its scrape list.
#
# Needs python3 with PyYAML, kubernetes-validate (PyPI) and promtool
# (Debian's `prometheus`); .ci/run installs them. Takes the time of one
# build of the crate (its dependencies are reused) plus about 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."

# One schema version for every run, so a result does not change with the
# kubernetes-validate release installed; raise it with the clusters served.
KUBERNETES_VERSION=1.33.0

for tool in python3 promtool; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check-deploy: $tool is needed (.ci/run installs it)" >&2
    exit 2
  fi
done
if ! python3 -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
  echo "check-deploy: python3 needs kubernetes-validate (.ci/run installs it)" >&2
  exit 2
fi

started=$SECONDS
work="$(mktemp -d -t chatstream-check-deploy-XXXXXX)"
trap 'rm -rf "$work"' EXIT
checks() { python3 deploy/check/checks.py "$@"; }
step() { printf '\n== check-deploy: %s\n' "$1"; }

step "the image's binary stage"
# The crate is built in a directory holding only what the Dockerfile
# copies, reusing the dependencies the project's target directory already
# has (CARGO_TARGET_DIR or cargo's configuration respected), so only the
# crate compiles. Its target directory links deps/, build/, .fingerprint/,
# incremental/ and cargo's lock file to the project's, so cargo shares the
# artifacts and serialises with the project's builds, while the copy's
# binary lands there and never on the project's target/debug/chatstream.
# Without debug info the crate's own artifacts get names apart from the
# project's (cargo names a workspace's artifacts relative to its root, so
# they would otherwise be the same files), and build faster. The dev
# profile: which files a build needs does not depend on the profile, and a
# release build would compile every dependency again. Both directories'
# paths are fixed per target directory, so each run replaces the artifacts
# of the one before rather than piling up new ones.
target_dir="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
context="${TMPDIR:-/tmp}/chatstream-image-context-$(printf %s "$target_dir" | sha256sum | cut -c1-12)"
crate="$(checks image-context "$context")"
image_target="$target_dir/image-context"
mkdir -p "$image_target/debug" "$target_dir/debug"
for shared in .fingerprint build deps incremental; do
  mkdir -p "$target_dir/debug/$shared"
  rm -rf "${image_target:?}/debug/$shared"
  ln -s "../../debug/$shared" "$image_target/debug/$shared"
done
touch "$target_dir/debug/.cargo-lock"
ln -sfn ../../debug/.cargo-lock "$image_target/debug/.cargo-lock"
(cd "$crate" && CARGO_TARGET_DIR="$image_target" cargo build --locked --bin chatstream --quiet \
  --config 'profile.dev.package.chatstream.debug=false')
checks healthcheck "$image_target/debug/chatstream"

step "Kubernetes manifests (schemas of Kubernetes $KUBERNETES_VERSION)"
# Rendered from a copy, where each overlay's secrets.env is its example, so
# the check needs no secrets and never reads real ones. kubectl is not
# packaged in the registries CI installs from, so deploy/check/kustomize.py
# renders; where kubectl is present, its render must be the same.
cp -r deploy/kubernetes "$work/kubernetes"
for dir in "$work/kubernetes/base" "$work"/kubernetes/overlays/*; do
  name="${dir#"$work"/kubernetes/}"
  out="$work/$(echo "$name" | tr / -)"
  complete=(--complete)
  [ "$name" = base ] && complete=()   # the base leaves the Secret to overlays
  if [ -f "$dir/secrets.env.example" ]; then
    cp "$dir/secrets.env.example" "$dir/secrets.env"
  fi
  python3 deploy/check/kustomize.py "$dir" >"$out.yaml"
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$dir" >"$out.kubectl.yaml"
    checks same-documents "$out.yaml" "$out.kubectl.yaml"
  else
    echo "kubectl not found: rendered by deploy/check/kustomize.py alone"
  fi
  python3 -m kubernetes_validate --strict --kubernetes-version "$KUBERNETES_VERSION" --quiet "$out.yaml"
  echo "$name: $(grep -c '^kind:' "$out.yaml") documents valid"
  checks manifests "$out.yaml" "${complete[@]}"
done

step "Prometheus"
# Debian's promtool is built without Kubernetes discovery and refuses
# prometheus.yml whole: checks.py checks its pod discovery and hands
# promtool the rest.
checks promtool-config deploy/prometheus/prometheus.yml "$work/prometheus/prometheus.yml"
promtool check config "$work/prometheus/prometheus.yml"
promtool check config deploy/prometheus/compose.yml
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts.test.yml)

step "Grafana dashboard"
python3 -m json.tool deploy/grafana/chatstream.json >/dev/null
checks dashboard-rules "$work/dashboard-rules.yml"
promtool check rules "$work/dashboard-rules.yml"
checks metric-names

step "compose.yaml"
checks compose

printf '\ncheck-deploy: everything checked in %d s\n' "$((SECONDS - started))"
