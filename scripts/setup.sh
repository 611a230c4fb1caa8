#!/usr/bin/env bash
# Installs what neuralign needs to build and run, skipping what is there:
# Debian packages (PostgreSQL, protoc, a C++ compiler, python venv), and the
# PyPI torch wheel that matches `tch` into the project-local .venv.
# Sourced by up.sh and test.sh; safe to run again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

TORCH_VERSION=2.13.0   # the libtorch that tch 0.26 expects

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no Rust toolchain found; installing Debian's cargo (a rustup toolchain >= 1.85 is recommended)"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq cargo >/dev/null
fi

venv="$NEURALIGN_ROOT/.venv"
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing torch==$TORCH_VERSION into $venv (this is a large download, once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "torch==$TORCH_VERSION" numpy
fi
