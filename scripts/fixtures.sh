#!/usr/bin/env bash
# Generates the reference fixtures the engine's tests check against, with the
# pinned reference packages (fixtures/requirements.txt) in the project venv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$NEURALIGN_ROOT"
if ! python -c '
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open("fixtures/requirements.txt"):
    line = line.split("#")[0].strip()
    if not line: continue
    name, want = line.split("==")
    try:
        if version(name) != want: sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
' 2>/dev/null; then
  echo "fixtures: installing the pinned reference packages"
  pip install -q -r fixtures/requirements.txt
fi
mkdir -p target/fixtures
python fixtures/engine_fixtures.py target/fixtures/engine.json
python fixtures/ingest_fixtures.py target/fixtures/ingest
python fixtures/model_fixtures.py target/fixtures/models
