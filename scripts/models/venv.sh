# Shared by scripts/make-test-models and scripts/train-default-model (sourced, not run).
# Creates or reuses the training venv outside git and installs the pinned requirements.
# Idempotent: when the venv already matches requirements.txt it returns at once.

tinylcm_train_venv() {
    local here req cache venv stamp want
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    req="$here/requirements.txt"
    cache="${TINYLCM_CACHE:-$HOME/.cache/tinylcm}"
    venv="$cache/venv-train"
    stamp="$venv/.tinylcm-requirements.sha256"
    want="$(sha256sum "$req" | cut -d' ' -f1)"

    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        TINYLCM_PY="$venv/bin/python"
        return 0
    fi
    mkdir -p "$cache"
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "==> creating venv $venv" >&2
        python3 -m venv "$venv"
    fi
    echo "==> installing pinned requirements (tensorflow-cpu is ~274 MB; first run only)" >&2
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$req"
    echo "$want" > "$stamp"
    TINYLCM_PY="$venv/bin/python"
}
