"""Meta-learning over device-mismatched copies of one netlist (`aeqprop meta train --tasks mismatched-copies`).

The netlist as designed (the model) is first trained with the exact gradient on the data
(`model_epochs`; 0 takes the netlist's values as they are): its parameters are the
*model-trained* start, and the prior's initial value. Copies of the netlist with element
values off by a relative spread sigma (systems/hardware.py `mismatch`, one hardware seed per
copy) are the tasks of a bilevel system (systems/mismatch_tasks.py). The lower level learns a
copy on `shots` points of the data's training split (with `--inner gd --inner-steps K
--inner-rule c-ep`: K full-batch steps of in-situ EP from the prior). The training copies are
read at the next `queries` training points. Held-out copies have hardware seeds of their own
and are read at the first `queries` points of the test split, which meta-training never sees.
The run's `query_mse_before` is then the held-out copies' test-point MSE after the K steps from
the model-trained parameters, and `query_mse_after` the same from the meta-learnt prior.
summary.json also holds `query_mse_nominal` (the model itself at those test points) and
`query_mse_unadapted` (the held-out copies at the model-trained parameters, no steps).
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.data.datasets import Dataset, load_dataset
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.bilevel import BilevelSystem, InnerSolve
from aeqprop_circuits.systems.mismatch_tasks import MismatchedCopies

SEED_STRIDE = 100_000  # hardware seeds of run seed s: s * SEED_STRIDE + 1, ... (training copies, then held-out)


def in_situ(rule_name: str = "c-ep", beta: float = 0.01, **options):
    """The copies' gradient measurement: an EP or Aeqprop rule's estimate on the copy itself."""
    rule = get_algorithm(rule_name, beta=beta, **options)

    def measure(system, inputs, target):
        estimate = rule.estimate(system, inputs, target)
        return estimate.outputs, estimate.gradient

    return measure


def model_trained(config):
    """The netlist as designed, trained on the data with the exact gradient for `model_epochs` epochs."""
    from aeqprop_circuits.experiments.session import train
    from aeqprop_circuits.systems.circuit import CircuitSystem
    from aeqprop_circuits.systems.models import load_circuit

    if config.model_epochs == 0:
        return CircuitSystem(load_circuit(config.model), solver=config.solver)
    return train(config.model, data=config.data, algorithm="exact-gradient", epochs=config.model_epochs,
                 seed=config.seed, solver=config.solver).system


def prepare_copies(config):
    """`MetaSetup` of the mismatched-copies family (module docstring), all checked; nothing is written."""
    from aeqprop_circuits.experiments.meta import MetaSetup, estimator_rule
    from aeqprop_circuits.experiments.trainer import TrainOptions

    model = model_trained(config)
    task = load_dataset(config.data, seed=config.seed)
    if task.n_features != model.n_inputs:
        raise AeqpropError(f"mismatched-copies: {config.data} has {task.n_features} features but {config.model} has "
                           f"{model.n_inputs} inputs")
    if config.shots + config.queries > len(task.x_train) or config.queries > len(task.x_test):
        raise AeqpropError(f"mismatched-copies: shots + queries = {config.shots + config.queries} exceed the "
                           f"{len(task.x_train)} training points of {config.data}, or queries = {config.queries} its "
                           f"{len(task.x_test)} test points")
    y = task.targets(task.y_train, model.n_outputs, 0.5)
    xs, ys = task.x_train[:config.shots], y[:config.shots]
    xq, yq = task.x_train[config.shots:config.shots + config.queries], y[config.shots:config.shots + config.queries]
    measure = None
    if config.inner_rule != "exact-gradient":
        options = {"epsilon": config.inner_epsilon} if config.inner_rule.startswith("aeqprop") else {}
        measure = in_situ(config.inner_rule, config.inner_beta, **options)
    xe, ye = task.x_test[:config.queries], task.targets(task.y_test[:config.queries], model.n_outputs, 0.5)
    copies = MismatchedCopies(model, config.mismatch, (xs, ys), xq, measure=measure, evaluation=xe)
    inner = InnerSolve(config.inner, config.inner_steps, config.nudged_steps, config.inner_rate,
                       config.inner_tolerance)
    system = BilevelSystem(copies, prior=copies.initial, strength=config.strength,
                           learn_strength=config.learn_strength, inner=inner, strength_floor=config.strength_floor)
    first = config.seed * SEED_STRIDE + 1
    seeds = np.arange(first, first + config.train_tasks + config.test_tasks, dtype=np.float64)
    train_rows = np.column_stack([seeds[:config.train_tasks], np.zeros(config.train_tasks)])
    test_rows = np.column_stack([seeds[config.train_tasks:], np.ones(config.test_tasks)])
    data = Dataset("mismatched-copies", train_rows, np.tile(yq.ravel(), (config.train_tasks, 1)),
                   test_rows, np.tile(ye.ravel(), (config.test_tasks, 1)), 0)
    held_out = np.tile(copies.initial, (config.test_tasks, 1))
    facts = {"query_mse_nominal": float(((model.predict(xe) - ye) ** 2).mean()),
             "query_mse_unadapted": float(((copies.query(held_out, test_rows)[0] - data.y_test) ** 2).mean())}
    options = TrainOptions(epochs=config.epochs, batch_size=config.meta_batch, learning_rate=config.lr,
                           momentum=config.momentum, seed=config.seed, trace_every=config.trace_every,
                           eval_batch=config.test_tasks, progress=False)
    return MetaSetup(config, data, None, system, estimator_rule(config), options, facts)
