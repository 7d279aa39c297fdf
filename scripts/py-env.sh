#!/usr/bin/env bash
# A Python virtual environment for the tests that use tools nobody here wrote (Python's
# official grpcio and grpcio-reflection; kubernetes-validate, which checks deploy/k8s
# against the Kubernetes schemas, since no cluster runs here), in target/pyenv. Idempotent:
# it installs only what is missing. scripts/test.sh calls it; run it by hand to run
# those tests with plain `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=target/pyenv
if [ ! -x "$ENV/bin/python" ]; then
  python3 -m venv "$ENV"
fi
if ! "$ENV/bin/python" -c 'import grpc, grpc_reflection, google.protobuf' 2>/dev/null; then
  "$ENV/bin/pip" install -q --disable-pip-version-check \
    'grpcio==1.76.0' 'grpcio-reflection==1.76.0' 'protobuf>=6.31,<7'
fi
if ! "$ENV/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
  "$ENV/bin/pip" install -q --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
echo "$ENV/bin/python"
