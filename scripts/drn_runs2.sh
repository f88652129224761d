#!/bin/sh
# Second queue of docs/drn.md runs (exact-gradient reference, p-ep/aeqprop at input gain 1).
#   nohup nice -n 10 sh scripts/drn_runs2.sh > runs/drn/log2.txt 2>&1 &
set -x
export OPENBLAS_NUM_THREADS=1
aeqprop train --preset drn-xs --algorithm exact-gradient --epochs 3 --out runs/drn/xs-exact --quiet
