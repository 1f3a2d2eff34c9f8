# Sourced by the scripts/ one-worders: make ./.venv and install what it needs, once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "runyard: creating .venv (first run only)" >&2
    "$PY" -m venv .venv
fi
stamp=.venv/.runyard-installed
want="$(cat pyproject.toml | sha256sum | cut -c1-16) $1"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "runyard: installing into .venv ($1)" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$1"
    echo "$want" > "$stamp"
fi
