#!/usr/bin/env bash
# Run one figure's sweep and publish its aggregated table to results/<experiment>/.
#   scripts/reproduce.sh fig1 small [extra Hydra overrides...]
# Writes results/<experiment>/{metrics.parquet,runs.csv,runs.parquet,provenance.json}:
# the exact command, scale, git commit, start time and wall time of the sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
exp=${1:?usage: scripts/reproduce.sh EXPERIMENT SCALE [overrides...]}
scale=${2:?usage: scripts/reproduce.sh EXPERIMENT SCALE [overrides...]}
shift 2
py=${PYTHON:-.venv/bin/python}
[ -f "flossrepro/conf/experiment/$exp.yaml" ] || { echo "reproduce: no experiment '$exp'; have: $(ls flossrepro/conf/experiment | sed -n 's/\.yaml$//p' | tr '\n' ' ')" >&2; exit 2; }
sweep="multirun/$exp/$scale"
cmd=("$py" -m flossrepro "+experiment=$exp" "scale=$scale" logger=none progress=log "hydra.sweep.dir=$sweep" "$@")
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$(date +%s)
echo "reproduce: ${cmd[*]}" >&2
"${cmd[@]}"
t1=$(date +%s)
"$py" -m flossrepro.aggregate "$sweep" --out "results/$exp" \
  --provenance "command=${cmd[*]}" "scale=$scale" "started=$start" "wall_s=$((t1 - t0))"
