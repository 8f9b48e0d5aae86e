#!/usr/bin/env bash
# The main job: train CGCNN on 1,400 generated short carbon chains to predict the lattice length a,
# then print the test MAE and R². Extra arguments go to `crystalgnn train`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "$root/.venv/bin/crystalgnn" train --dataset chains:short --target a --run-dir runs/chains-short "$@"
