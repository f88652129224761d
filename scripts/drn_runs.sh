#!/bin/sh
# Background training runs behind docs/drn.md (checkpointed each epoch; rerun a line with
# `aeqprop train --resume DIR --epochs N` to continue). Run from the repository root:
#   nohup nice -n 10 sh scripts/drn_runs.sh > runs/drn/log.txt 2>&1 &
set -x
export OPENBLAS_NUM_THREADS=1
aeqprop train --preset drn-xs --out runs/drn/xs-cep --quiet
aeqprop train --preset drn-1h --epochs 3 --out runs/drn/1h-cep --quiet
aeqprop train --preset drn-xs --algorithm p-ep --out runs/drn/xs-pep --quiet
