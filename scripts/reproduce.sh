#!/usr/bin/env bash
# Run one figure's sweep and publish its aggregated table to results/<experiment>/.
#   scripts/reproduce.sh fig1 small [extra Hydra overrides...]
#   RESULTS=mine scripts/reproduce.sh fig1 smoke    # publish to mine/fig1/ (results/ untouched)
# RESULTS (default results) and MULTIRUN (default multirun, where the sweep runs) are
# relative to the repository root unless absolute.
# Writes $RESULTS/<experiment>/{metrics.parquet,runs.csv,runs.parquet,provenance.json}:
# the exact command, scale, git commit, start time and wall time of the sweep. A sweep with
# failed, invalid or lost jobs is not published (its aggregate stays in multirun/...).
set -euo pipefail
cd "$(dirname "$0")/.."
exp=${1:?usage: scripts/reproduce.sh EXPERIMENT SCALE [overrides...]}
scale=${2:?usage: scripts/reproduce.sh EXPERIMENT SCALE [overrides...]}
shift 2
py=${PYTHON:-.venv/bin/python}
results=${RESULTS:-results}
[ -f "flossrepro/conf/experiment/$exp.yaml" ] || { echo "reproduce: no experiment '$exp'; have: $(ls flossrepro/conf/experiment | sed -n 's/\.yaml$//p' | tr '\n' ' ')" >&2; exit 2; }
sweep="${MULTIRUN:-multirun}/$exp/$scale"
cmd=("$py" -m flossrepro "+experiment=$exp" "scale=$scale" logger=none progress=log "hydra.sweep.dir=$sweep" "$@")
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$(date +%s)
echo "reproduce: ${cmd[*]}" >&2
"${cmd[@]}" || { rc=$?; echo "reproduce: the sweep did not finish every job (exit $rc); not published to $results/$exp (see $sweep)" >&2; exit "$rc"; }
t1=$(date +%s)
"$py" -m flossrepro.report.aggregate "$sweep" --out "$results/$exp" \
  --provenance "command=${cmd[*]}" "scale=$scale" "started=$start" "wall_s=$((t1 - t0))"
