# shellcheck shell=bash
# Sourced by scripts/setup, scripts/test and scripts/ee (bash).

# A venv made once from python $1 and the requirements files $2..., reused while both stay
# the same: ~/.cache/yogurt-phone/venvs/<name>-<hash of the Python and the pins>. Prints its path.
cached_venv() {
  local name=$1 py=$2 hash dir; shift 2
  hash=$( { "$py" -c 'import sys; print(sys.executable, sys.version)'; cat "$@"; } | sha256sum | cut -c1-12)
  dir=$HOME/.cache/yogurt-phone/venvs/$name-$hash
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    "$py" -m venv "$dir" >&2
    local reqs=() req
    for req in "$@"; do reqs+=(-r "$req"); done
    "$dir/bin/pip" install -q --disable-pip-version-check "${reqs[@]}" >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}

# The venv of the execution-environment tools (ansible-builder, ansible-navigator,
# ansible-runner), from the Python .venv was made from. Run from the checkout.
ee_venv() {
  cached_venv ee "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" requirements/builder.txt requirements/ee.txt
}
