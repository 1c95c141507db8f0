#!/usr/bin/env bash
# Tools for the observability and deployment tests, cached outside git:
#   apt: prometheus (with promtool) and chromium + chromium-driver (the status-page browser test);
#   Go module proxy: helm v3.22.0, kubeconform v0.8.0 and deploy/compose-check (compose-go loader),
#   built into $STREAMSVC_HOME/tools/bin (default ~/.cache/streamsvc) when missing.
#   .ci/ops-tools.sh          install what is missing, print the tools directory
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR="${STREAMSVC_HOME:-$HOME/.cache/streamsvc}"
BIN="$HOME_DIR/tools/bin"
mkdir -p "$BIN"
say() { echo "[ops-tools] $*" >&2; }

missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} from apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2
fi

export GOBIN="$BIN" GOFLAGS=-mod=mod
[ -x "$BIN/kubeconform" ] || { say "building kubeconform"; go install github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0 >&2; }
[ -x "$BIN/helm" ] || { say "building helm (several minutes)"; go install helm.sh/helm/v3/cmd/helm@v3.22.0 >&2; }
if [ ! -x "$BIN/compose-check" ] || [ deploy/compose-check/go.mod -nt "$BIN/compose-check" ]; then
  say "building compose-check"
  (cd deploy/compose-check && go build -o "$BIN/compose-check" .) >&2
fi
echo "$BIN"
