# Sourced by the set-up scripts: the project-local Python venv that carries
# libtorch (the PyPI torch wheel), first on PATH, so torch-sys builds against it.
NEURALIGN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NEURALIGN_ROOT
export PATH="$NEURALIGN_ROOT/.venv/bin:$HOME/.cargo/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
