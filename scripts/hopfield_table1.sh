#!/bin/sh
# Aeqprop paper, Table 1, Fashion-MNIST, dense 784-2048-10 (preset aeqprop-dense): the three Aeqprop
# variants trained in turn, one epoch each per round, so that after any number of rounds all three
# have the same budget. Checkpointed each epoch; rerunning resumes. From the repository root:
#   nohup nice -n 10 sh scripts/hopfield_table1.sh 200 > runs/hopfield/table1.log 2>&1 &
# With the oracle controller and one parameter relaxation (the preset, App. C) each rule's step is
# the EP step of its phases, so `aeqprop train` runs them in the in-place loop (docs/hopfield.md).
set -x
export OPENBLAS_NUM_THREADS=1
rounds=${1:-200}
for epoch in $(seq 1 "$rounds"); do
    for rule in centered optimistic pessimistic; do
        dir=runs/hopfield/table1/$rule
        if [ -f "$dir/config.json" ]; then
            aeqprop train --resume "$dir" --epochs "$epoch" --quiet
        else
            aeqprop train --preset aeqprop-dense --algorithm "aeqprop-$rule" --trace-every 200 \
                --epochs "$epoch" --out "$dir" --quiet
        fi
    done
done
