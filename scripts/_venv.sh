# Sourced by the scripts/ one-worders: make .venv in the project and install
# what it needs, once (again only when pyproject.toml changes). Installs go
# through uv (from PyPI, into .venv): seconds where pip takes a minute or two,
# and nox makes its sessions' environments with it too (noxfile.py). Leaves
# the caller's working directory alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=${PYTHON:-python3}
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    echo "runyard: creating .venv (first run only)" >&2
    "$PY" -m venv "$ROOT/.venv"
fi
if [ ! -x "$ROOT/.venv/bin/uv" ]; then
    "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check uv
fi
stamp="$ROOT/.venv/.runyard-installed"
want="$(sha256sum < "$ROOT/pyproject.toml" | cut -c1-16) $1"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "runyard: installing into .venv ($1)" >&2
    "$ROOT/.venv/bin/uv" pip install -q --python "$ROOT/.venv/bin/python" -e "$ROOT$1"
    echo "$want" > "$stamp"
fi
