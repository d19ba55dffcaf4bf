#!/usr/bin/env bash
# Regenerates the checked-in Python stubs from protos/. CI runs it with
# --check and fails when the stubs on disk differ from what the protos give.
set -euo pipefail
cd "$(dirname "$0")/.."
out=service/api
check=0
[ "${1:-}" = "--check" ] && check=1
target=$out
if [ $check = 1 ]; then target=$(mktemp -d); fi
rm -rf "$target/lookalike"
python -m grpc_tools.protoc -Iprotos --python_out="$target" --pyi_out="$target" --grpc_python_out="$target" protos/lookalike/v1/*.proto
# protoc writes absolute imports ("from lookalike.v1 import ..."); the stubs live
# inside the service package, so the imports are rewritten to match.
find "$target/lookalike" -name '*.py*' -exec sed -i -E 's/^from lookalike\.v1 import/from service.api.lookalike.v1 import/' {} +
touch "$target/lookalike/__init__.py" "$target/lookalike/v1/__init__.py"
if [ $check = 1 ]; then
  if ! diff -r -x __pycache__ "$target/lookalike" "$out/lookalike"; then
    echo "generated stubs differ from the checked-in ones: run scripts/gen_protos.sh and commit" >&2
    exit 1
  fi
  echo "stubs up to date"
fi
