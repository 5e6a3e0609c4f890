#!/usr/bin/env bash
# Regenerates the figures in docs/figures from the shipped examples (about 2 minutes on 2 cores):
#   bash docs/figures/make_figures.sh
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
cd "$work"
meanfield example all -o . 2> /dev/null
run() { meanfield run "$1.toml" -o "$1.h5" --quiet; }
plot() { meanfield plot "$1.h5" --overwrite -o "$out/$2.png" "${@:3}"; }
run linear;          plot linear linear_kymograph; plot linear linear_rates --kind rates
run clustering;      plot clustering clustering_kymograph; plot clustering clustering_spectrum --kind spectrum
run metastable;      plot metastable metastable_kymograph
run longtime_circle; plot longtime_circle longtime_kymograph; plot longtime_circle longtime_staircase --kind clusters
run viscous_usa;     plot viscous_usa viscous_usa_energy --kind energy
run sphere;          plot sphere sphere
run particles;       plot particles particles_sphere
rm -rf "$work"
