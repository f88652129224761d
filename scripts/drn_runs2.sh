#!/bin/sh
# Second queue of docs/drn.md runs (exact-gradient reference, p-ep comparison).
#   nohup nice -n 10 sh scripts/drn_runs2.sh > runs/drn/log2.txt 2>&1 &
set -x
export OPENBLAS_NUM_THREADS=1
[ -d runs/drn/xs-exact ] || aeqprop train --preset drn-xs --algorithm exact-gradient --epochs 3 --out runs/drn/xs-exact --quiet
aeqprop train --preset drn-xs --algorithm p-ep --epochs 3 --out runs/drn/xs-pep3 --quiet
