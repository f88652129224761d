"""`aeqprop meta train | gradcheck`: a circuit's conductance prior meta-learnt over a family of tasks.

Also `aeqprop reproduce cml` (added to the reproduce group here): the meta-learning and least-control studies.
"""

from __future__ import annotations

import click

from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.cli.reproduce import reproduce
from aeqprop_circuits.solvers import SOLVER_NAMES

# The estimator names are a contract (listed in `meta train --help`); learning/bilevel.py maps them to rules.
ESTIMATOR_NAMES = ("cml", "cml-symmetric", "cml-multipoint", "implicit-cg", "implicit-neumann", "t1t2", "fomaml",
                   "reptile", "exact")
ESTIMATOR_HELP = ("cml (p-ep one level up, Eq. 4), cml-symmetric (c-ep), cml-multipoint (multi-point-ep, --points), "
                  "implicit-cg, implicit-neumann (--iterations, --alpha), t1t2, fomaml, reptile, exact (dense "
                  "Hessian)")


def _default(key: str):
    from aeqprop_circuits.experiments.meta import MetaConfig

    return MetaConfig.__dataclass_fields__[key].default


def setting(key: str, text: str, **options):
    """An option of a MetaConfig setting, its default shown from the dataclass (None: not given)."""
    name = f"--{key.replace('_', '-')}"
    shown = options.pop("shown", None)
    return click.option(name, key, default=None, help=f"{text} [default: {shown or _default(key)}]", **options)


@click.group("meta")
def meta():
    """Meta-learning: a circuit's conductance prior learnt over tasks (CML, implicit differentiation, MAML)."""


@meta.command("train")
@click.argument("netlist", required=False)
@setting("tasks", "Task family: sinusoid (5-shot regression of A sin(pi z + p), A and p random per task) or "
                  "mismatched-copies (copies of the netlist with device mismatch, each learning --data; "
                  "--shots and --queries points of its training split).",
         type=click.Choice(["sinusoid", "mismatched-copies"]))
@setting("mismatch", "mismatched-copies: relative spread sigma of the copies' element values.", type=float)
@setting("data", "mismatched-copies: the data set the copies learn.", type=str)
@setting("model_epochs", "mismatched-copies: exact-gradient epochs of the netlist on --data before the copies "
                         "(0: its values as written).", type=int)
@setting("estimator", "Meta-gradient estimator: " + ESTIMATOR_HELP + ".", type=click.Choice(ESTIMATOR_NAMES))
@setting("seed", "Seed of the tasks and their order.", type=int)
@setting("beta", "CML nudge of the query loss.", type=float)
@setting("strength", "lambda: pull of each log-conductance to the prior (per unit of the support loss).",
         type=float)
@click.option("--learn-strength", is_flag=True, default=None, help="Meta-learn lambda too (per conductance).")
@setting("strength_floor", "Learnt strengths stay above it (lambda of about 0.1 keeps the lower level of "
                           "regression_fourier.cir convex).", type=float)
@setting("inner", "The lower level's optimiser: lbfgs (to --inner-tolerance) or gd (--inner-steps steps of "
                  "--inner-rate).", type=click.Choice(["lbfgs", "gd"]))
@setting("inner_steps", "Iterations of a free phase (lbfgs: at most).", type=int)
@setting("nudged_steps", "Iterations of a nudged phase, warm-started from the free one.", type=int,
         shown="--inner-steps")
@setting("inner_rate", "Step size of the gd lower level.", type=float)
@setting("inner_tolerance", "lbfgs: largest projected gradient entry at convergence.", type=float)
@setting("inner_rule", "How the circuit copies measure their support loss gradient: exact-gradient, or in situ "
                       "by an EP or Aeqprop rule (oracle controller).",
         type=click.Choice(["exact-gradient", "p-ep", "n-ep", "c-ep", "aeqprop-optimistic", "aeqprop-pessimistic",
                            "aeqprop-centered"]))
@setting("inner_beta", "Nudge of the in-situ rule.", type=float)
@setting("inner_epsilon", "Knob coupling of an in-situ Aeqprop rule.", type=float)
@setting("shots", "Support points per task.", type=int)
@setting("queries", "Query points per task.", type=int)
@setting("train_tasks", "Training tasks (one epoch goes through them once).", type=int)
@setting("test_tasks", "Held-out tasks the query MSE is measured on.", type=int)
@setting("epochs", "Epochs over the training tasks.", type=int)
@setting("meta_batch", "Tasks per meta-step.", type=int)
@setting("lr", "Meta learning rate (SGD on the prior).", type=float)
@setting("momentum", "SGD momentum of the meta-steps.", type=float)
@setting("points", "cml-multipoint: the p of its p-point forward difference.", type=int)
@setting("iterations", "implicit-cg / implicit-neumann: steps of the second phase.", type=int,
         shown="20 for cg, 50 for neumann")
@setting("alpha", "implicit-neumann / t1t2: step of the Neumann series.", type=float,
         shown="1 / largest curvature")
@setting("solver", "Solver settling the circuit copies.", type=click.Choice(SOLVER_NAMES))
@setting("trace_every", "Lyapunov trace every N meta-steps (0: never).", type=int)
@click.option("--out", default=None, help="Run directory. [default: runs/NETLIST-meta-ESTIMATOR-TIME; a fresh name "
                                          "when it exists]")
@click.option("--resume", default=None, metavar="DIR", help="Continue the meta-learning run in DIR from its newest "
              "checkpoint, with its own settings.")
@user_errors
def train(netlist, resume, **given):
    """Meta-learn NETLIST's conductance prior; writes a run directory with summary.json and plots."""
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.meta import MetaConfig, meta_train

    settings = {key: value for key, value in given.items() if value is not None and value is not False}
    if resume is not None:
        if netlist or settings:
            raise AeqpropError("--resume continues a run with its own netlist and settings: give neither")
        meta_train(resume=resume, echo=click.echo)
    elif not netlist:
        raise AeqpropError("no netlist: give NETLIST (e.g. netlists/regression_fourier.cir) or --resume DIR")
    else:
        meta_train(MetaConfig(model=netlist, **settings), echo=click.echo)


@meta.command("gradcheck")
@click.argument("netlist")
@click.option("--estimator", "estimators", multiple=True, type=click.Choice(ESTIMATOR_NAMES[:-1]),
              default=("cml", "cml-symmetric", "implicit-cg"), show_default=True,
              help="Estimators to compare with the exact meta-gradient. Repeatable.")
@click.option("--beta", type=float, default=None, help="CML nudge. [default: 0.01]")
@click.option("--strength", type=float, default=None, help="lambda. [default: 0.1]")
@click.option("--tasks-per-batch", "count", type=click.IntRange(min=1), default=4, show_default=True,
              help="Tasks in the batch the estimates are taken on.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the tasks.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@user_errors
def gradcheck(netlist, estimators, beta, strength, count, seed, as_json):
    """Meta-gradient estimates on one batch of tasks against the exact (dense-Hessian) meta-gradient."""
    import json

    from aeqprop_circuits.experiments.gradcheck import check_gradients
    from aeqprop_circuits.experiments.meta import MetaConfig, prepare
    from aeqprop_circuits.learning.bilevel import ESTIMATORS

    settings = {k: v for k, v in {"beta": beta, "strength": strength}.items() if v is not None}
    setup = prepare(MetaConfig(model=netlist, seed=seed, train_tasks=count, test_tasks=1, **settings))
    rows = check_gradients(setup.system, setup.data.x_train, setup.data.y_train,
                           [ESTIMATORS[name] for name in estimators], setup.config.beta, [])
    for name, row in zip(estimators, rows):
        record = {"estimator": name, **row.as_dict()}
        click.echo(json.dumps(record) if as_json else
                   f"{name:17s} cosine {record['cosine']:.6f}  relative error {record['relative_error']:.3g}  "
                   f"norm ratio {record['norm_ratio']:.4f}")


@click.command("cml")
@click.option("--study", "studies", multiple=True,
              type=click.Choice(["quadratic", "fewshot", "least-control", "table1"]),
              help="Study to run; repeatable. [default: all four]")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seeds per configuration (fewshot, least-control, table1).")
@click.option("--estimator", "estimators", multiple=True, type=click.Choice(ESTIMATOR_NAMES),
              help="fewshot: estimators to meta-train with; repeatable. [default: exact cml cml-symmetric "
                   "implicit-cg t1t2 fomaml reptile]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="fewshot: meta-training epochs. "
              "[default: meta train's]")
@click.option("--test-tasks", type=click.IntRange(min=1), default=None,
              help="fewshot: held-out tasks. [default: meta train's]")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory. Run the same command again to resume: finished runs are kept.")
@user_errors
def reproduce_cml(studies, seeds, estimators, epochs, test_tasks, out):
    """Contrastive meta-learning and least-control studies: the quadratic model, few-shot sinusoids, Iris and Wine,
    regularisation learning on Fashion-MNIST (Table 1)."""
    import os

    from aeqprop_circuits.experiments.reproduce.cml import FEWSHOT_ESTIMATORS, STUDIES, reproduce

    os.makedirs(out, exist_ok=True)
    settings = {k: v for k, v in {"epochs": epochs, "test_tasks": test_tasks}.items() if v is not None}
    result = reproduce(out, studies=tuple(studies) or STUDIES, seeds=seeds,
                       estimators=tuple(estimators) or FEWSHOT_ESTIMATORS, log=click.echo, **settings)
    click.echo(f"{len(result['records'])} records in {os.path.abspath(out)}")
    for path in result["files"]:
        click.echo(f"  {os.path.basename(path)}")


reproduce.add_command(reproduce_cml)  # `aeqprop reproduce cml`
