#!/usr/bin/env bash
# Wheel check: build the wheel, install it into a fresh venv (dependencies from the pip cache / local wheel
# mirror, pinned to the test environment's versions so nothing is resolved afresh), then, from a folder outside
# the repository, run `triage analyze` on a LIDC sample with the models located through TRIAGE_MODEL_DIR, and
# check that without it the command stops with the documented message instead of a traceback.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
WORK=$(mktemp -d /tmp/triage-wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Build from a copy of the tracked files: no stale build/ folder or untracked file can slip into the wheel.
mkdir -p "$WORK/src"
git -C "$REPO" ls-files -z | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/chest_ct_triage-*.whl)
"$PY" - "$WHEEL" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = {"db/migrations/versions/0001_initial_schema.py", "db/migrations/env.py", "inference/dicom/series_rules.json",
          "dashboard/app.py", "dashboard/components/heartbeat_frontend/index.html"}
missing = needed - names
assert not missing, f"the wheel lacks {sorted(missing)}"
PY

"$PY" -m venv "$WORK/venv"
"$PY" -m pip freeze --exclude-editable | grep -v -i '^chest-ct-triage' > "$WORK/constraints.txt"
"$WORK/venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check -c "$WORK/constraints.txt" "$WHEEL"

mkdir -p "$WORK/outside"
cp "$REPO/assets/samples/lidc/LIDC-IDRI-0001.zip" "$WORK/outside/"
cd "$WORK/outside"
export TRIAGE_DATA_DIR="$WORK/outside/data"
where=$("$WORK/venv/bin/python" -c "import inference; print(inference.__file__)")
case "$where" in "$WORK"/venv/*) ;; *) echo "the package was imported from $where, not the wheel"; exit 1 ;; esac

# Without a model directory: the documented message, exit 3, no traceback.
set +e
env -u TRIAGE_MODEL_DIR "$WORK/venv/bin/triage" analyze LIDC-IDRI-0001.zip --json >/dev/null 2>"$WORK/err.txt"
rc=$?
set -e
if [ "$rc" -ne 3 ] || ! grep -q "TRIAGE_MODEL_DIR" "$WORK/err.txt" || grep -q Traceback "$WORK/err.txt"; then
    echo "wheel check: expected exit 3 naming TRIAGE_MODEL_DIR without models, got $rc:"; cat "$WORK/err.txt"; exit 1
fi

TRIAGE_MODEL_DIR="$REPO/assets/models" "$WORK/venv/bin/triage" analyze LIDC-IDRI-0001.zip --json >"$WORK/result.json"
"$WORK/venv/bin/python" - "$WORK/result.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["schema_version"] >= 2 and doc["study_uid"] and doc["quality"]["ok"], doc
assert {"nodule", "embolism", "priority"} <= set(doc["scores"]), doc["scores"]
print(f"wheel check: triage analyze from the wheel OK ({len(doc['findings'])} findings, "
      f"priority {doc['scores']['priority']}, models {sorted(doc['model_versions'])})")
PY
