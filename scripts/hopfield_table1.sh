#!/bin/sh
# Aeqprop paper, Table 1, Fashion-MNIST, dense 784-2048-10 (preset aeqprop-dense): the three Aeqprop
# variants trained in turn, one epoch each per round, so that after any number of rounds all three
# have the same budget. Checkpointed each epoch; rerunning resumes. From the repository root:
#   nohup nice -n 10 sh scripts/hopfield_table1.sh 200 > runs/hopfield/table1.log 2>&1 &
# A second argument picks the variants; one variant trains in a single process, e.g.
# `sh scripts/hopfield_table1.sh 200 centered` (the paper's 200 epochs fit one session that way).
# With the oracle controller and one parameter relaxation (the preset, App. C) each rule's step is
# the EP step of its phases, so `aeqprop train` runs them in the in-place loop (docs/hopfield.md).
set -x
export OPENBLAS_NUM_THREADS=1
rounds=${1:-200}
rules=${2:-"centered optimistic pessimistic"}
train() {  # $1 variant, $2 last epoch
    dir=runs/hopfield/table1/$1
    if [ -f "$dir/config.json" ]; then
        aeqprop train --resume "$dir" --epochs "$2" --quiet
    else
        aeqprop train --preset aeqprop-dense --algorithm "aeqprop-$1" --trace-every 200 \
            --epochs "$2" --out "$dir" --quiet
    fi
}
case $rules in
    *" "*) for epoch in $(seq 1 "$rounds"); do for rule in $rules; do train "$rule" "$epoch"; done; done ;;
    *) train "$rules" "$rounds" ;;
esac
