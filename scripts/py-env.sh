#!/usr/bin/env bash
# A Python virtual environment for the tests that use client libraries nobody here
# wrote (Python's official grpcio and grpcio-reflection), in target/pyenv. Idempotent:
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
echo "$ENV/bin/python"
