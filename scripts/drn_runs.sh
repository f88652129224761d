#!/bin/sh
# Background training runs behind docs/drn.md, with the drn-* presets (checkpointed each epoch).
# Rerunning the script resumes each run where it stopped. Run from the repository root:
#   nohup nice -n 10 sh scripts/drn_runs.sh main > runs/drn/log-main.txt 2>&1 &     # XS c-ep, then 1H c-ep
#   nohup nice -n 10 sh scripts/drn_runs.sh compare > runs/drn/log-compare.txt 2>&1 &  # XS p-ep, exact, aeqprop
set -x
export OPENBLAS_NUM_THREADS=1

# run DIR EPOCHS ARGS...: start the run, or resume it when DIR already holds one.
run() {
    dir=$1; epochs=$2; shift 2
    if [ -f "$dir/config.json" ]; then
        aeqprop train --resume "$dir" --epochs "$epochs" --quiet
    else
        aeqprop train "$@" --epochs "$epochs" --out "$dir" --quiet
    fi
}

case "$1" in
main)
    run runs/drn/v2/xs-cep 10 --preset drn-xs
    run runs/drn/v2/1h-cep 50 --preset drn-1h
    ;;
compare)
    run runs/drn/v2/xs-pep 10 --preset drn-xs --algorithm p-ep
    run runs/drn/v2/xs-exact 3 --preset drn-xs --algorithm exact-gradient
    run runs/drn/v2/xs-aeqprop-centered 3 --preset drn-xs --algorithm aeqprop-centered
    ;;
*)
    echo "usage: sh scripts/drn_runs.sh main|compare" >&2
    exit 2
    ;;
esac
