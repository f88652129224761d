"""Bilevel systems: contrastive meta-learning through the EP rules, against the theory of Zucchet et al.

The App. E quadratic model gives everything in closed form; the circuit model (each task in its
own copy of `regression_fourier.cir`) checks the same statements on physics.
"""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.circuit.replicas import replicate
from aeqprop_circuits.cli.main import main
from aeqprop_circuits.data.tasks import quadratic_tasks, sinusoid_tasks
from aeqprop_circuits.experiments.rundir import read_metrics
from aeqprop_circuits.experiments.trainer import History, TrainOptions, train
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.learning.bilevel import conjugate_gradient
from aeqprop_circuits.netlist import parse_netlist
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.bilevel import (
    BilevelError,
    BilevelSystem,
    CircuitTasks,
    EnergyTasks,
    InnerSolve,
    QuadraticTasks,
)
from aeqprop_circuits.systems.circuit import CircuitSystem
from aeqprop_circuits.systems.energy import EnergySystem, fourier_features

FOURIER = "netlists/regression_fourier.cir"
N, LAMBDA = 50, 0.5


# --- App. E: the quadratic model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def quadratic():
    """App. E's model (N = 50, H = diag(1, ..., 1/N), theta ~ N(0, 2)) and its closed-form meta-gradient."""
    curvature = 1.0 / np.arange(1, N + 1)
    model = QuadraticTasks(curvature)
    phi_t, phi_v = quadratic_tasks(1, N, seed=0)
    omega = np.random.default_rng(1).normal(0.0, 2.0, N)
    system = BilevelSystem(model, prior=omega, strength=LAMBDA, inner=InnerSolve(tolerance=1e-13))
    psi = (phi_v - phi_t)[0] + LAMBDA / curvature * (phi_v[0] - omega)
    exact = -LAMBDA * psi / (1.0 + LAMBDA / curvature) ** 2  # App. E: -lambda (I + lambda H^-1)^-2 psi
    return system, phi_t, model.target(phi_v), curvature, exact


def estimate(system, name, x, y, **options):
    return get_algorithm(name, **options).estimate(system, x, y).gradient


def relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def slope(xs, ys):
    return np.polyfit(np.log(xs), np.log(ys), 1)[0]


def test_exact_meta_gradient_is_app_e_closed_form(quadratic):
    system, x, y, _, exact = quadratic
    assert relative(estimate(system, "exact-gradient", x, y), exact) < 1e-7


@pytest.mark.parametrize("beta", [0.01, 0.3, 2.0])
def test_cml_bias_is_app_e_identity(quadratic, beta):
    """nabla - nabla_hat = beta ((1 + beta) I + lambda H^-1)^-1 nabla, coordinate by coordinate."""
    system, x, y, curvature, exact = quadratic
    cml = estimate(system, "p-ep", x, y, beta=beta)
    predicted = exact - beta / ((1 + beta) + LAMBDA / curvature) * exact
    assert np.abs(cml - predicted).max() < 1e-6 * np.abs(exact).max()


@pytest.mark.parametrize("beta", [0.05, 1.0])
def test_cml_bias_within_eq8_bounds(quadratic, beta):
    system, x, y, curvature, exact = quadratic
    error = np.linalg.norm(estimate(system, "p-ep", x, y, beta=beta) - exact)
    mu, top = curvature.min(), curvature.max()
    lower = mu * beta / ((1 + beta) * mu + LAMBDA) * np.linalg.norm(exact)
    upper = top * beta / ((1 + beta) * top + LAMBDA) * np.linalg.norm(exact)
    assert lower * (1 - 1e-6) <= error <= upper * (1 + 1e-6)
    assert error > 2 * lower and error < 0.9 * upper  # strictly inside for this spectrum


@pytest.mark.parametrize("name, options, order", [("p-ep", {}, 1), ("c-ep", {}, 2),
                                                  ("multi-point-ep", {"points": 2}, 2),
                                                  ("multi-point-ep", {"points": 3}, 3)])
def test_bias_slopes_on_the_quadratic(quadratic, name, options, order):
    system, x, y, _, exact = quadratic
    betas = [0.02, 0.04, 0.08]
    errors = [np.linalg.norm(estimate(system, name, x, y, beta=b, **options) - exact) for b in betas]
    assert abs(slope(betas, errors) - order) < 0.15


# --- inexact lower levels: Thm 2 / Cor. 1 against implicit differentiation --------------------------
def test_inexact_inner_solves_implicit_error_linear_cml_error_square_root():
    """With the lower level solved to delta (gradient descent, fixed steps), the implicit gradient's error
    falls as delta and CML's best error over beta as sqrt(delta)."""
    curvature = np.linspace(1.0, 0.1, 20)
    model = QuadraticTasks(curvature)
    phi_t, phi_v = quadratic_tasks(1, 20, seed=2)
    y = model.target(phi_v)
    omega = np.random.default_rng(3).normal(0.0, 2.0, 20)
    exact = estimate(BilevelSystem(model, omega, 0.2, inner=InnerSolve(tolerance=1e-13)), "exact-gradient", phi_t, y)
    betas = np.logspace(-4, 0.5, 28)
    deltas, implicit, cml = [], [], []
    for steps in (20, 40, 60, 80):
        system = BilevelSystem(model, omega, 0.2, inner=InnerSolve("gd", steps, rate=0.8))
        solved = BilevelSystem(model, omega, 0.2, inner=InnerSolve(tolerance=1e-13)).settle(Phase(phi_t))
        deltas.append(np.linalg.norm(system.settle(Phase(phi_t)).phi - solved.phi))
        implicit.append(relative(estimate(system, "implicit-cg", phi_t, y, iterations=40), exact))
        cml.append(min(relative(estimate(system, "p-ep", phi_t, y, beta=b), exact) for b in betas))
    assert abs(slope(deltas, implicit) - 1.0) < 0.1
    assert abs(slope(deltas, cml) - 0.5) < 0.12


# --- the implicit baselines ---------------------------------------------------------------------------
def test_conjugate_gradient_reaches_the_dense_solve(quadratic):
    system, x, y, _, exact = quadratic
    errors = [relative(estimate(system, "implicit-cg", x, y, iterations=k), exact) for k in (1, 3, 10, 60)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[-1] < 1e-7
    rng = np.random.default_rng(0)
    matrices = rng.normal(size=(3, 6, 6))
    spd = matrices @ matrices.transpose(0, 2, 1) + 0.1 * np.eye(6)
    v = rng.normal(size=(3, 6))
    q = conjugate_gradient(lambda p: np.einsum("tij,tj->ti", spd, p), v, 6)
    assert np.allclose(q, np.linalg.solve(spd, v[:, :, None])[:, :, 0], rtol=1e-8, atol=1e-10)


def test_neumann_series_converges_and_t1t2_is_its_first_term(quadratic):
    system, x, y, curvature, exact = quadratic
    assert relative(estimate(system, "implicit-neumann", x, y, iterations=200, alpha=1.0), exact) < 1e-7
    free = system.settle(Phase(x))
    v = system.outer_gradient(free, y)
    t1t2 = estimate(system, "t1t2", x, y, alpha=0.3)
    assert np.allclose(t1t2, LAMBDA * 0.3 * v[0], rtol=1e-12)  # q = alpha v; d2L_in/dphi domega = -lambda I


def test_first_order_rules_move_the_prior_only():
    curvature = np.linspace(1.0, 0.2, 6)
    model = QuadraticTasks(curvature)
    phi_t, phi_v = quadratic_tasks(3, 6, seed=4)
    y = model.target(phi_v)
    system = BilevelSystem(model, prior=0.3, strength=[0.5, 1, 1, 2, 2, 3], learn_strength=True,
                           inner=InnerSolve(tolerance=1e-13))
    free = system.settle(Phase(phi_t))
    fomaml = estimate(system, "fomaml", phi_t, y)
    reptile = estimate(system, "reptile", phi_t, y)
    assert np.allclose(fomaml[:6], system.outer_gradient(free, y).mean(axis=0), rtol=1e-10)  # dL_out/dphi
    assert np.allclose(reptile[:6], (system.strength * (system.prior - free.phi)).mean(axis=0), rtol=1e-10)
    assert not fomaml[6:].any() and not reptile[6:].any()


# --- meta-parameters: the strengths and the knob-coupled relaxation ----------------------------------
def query_loss(system, x, y):
    return float(system.cost(system.settle(Phase(x)), y).mean())


def test_exact_meta_gradient_of_prior_and_strength_matches_finite_differences(circuit_tasks):
    model, data = circuit_tasks
    x, y = data.x_train[:2], data.y_train[:2]
    system = BilevelSystem(model, prior=model.initial + 0.1 * np.sin(np.arange(model.size)), strength=0.1,
                           learn_strength=True, inner=InnerSolve(tolerance=1e-11))
    exact = estimate(system, "exact-gradient", x, y)
    theta = system.parameters
    for k in (3, 40, model.size + 3, model.size + 40):
        h = 1e-4 * max(1.0, abs(theta[k]))
        system.parameters = theta + h * np.eye(len(theta))[k]
        up = query_loss(system, x, y)
        system.parameters = theta - h * np.eye(len(theta))[k]
        down = query_loss(system, x, y)
        system.parameters = theta
        assert (up - down) / (2 * h) == pytest.approx(exact[k], rel=1e-4, abs=1e-9)


def test_relax_parameters_minimises_the_knob_coupled_prior():
    model = QuadraticTasks(np.linspace(1.0, 0.5, 4))
    phi_t, _ = quadratic_tasks(3, 4, seed=5)
    system = BilevelSystem(model, prior=0.1, strength=0.7, learn_strength=True)
    state = system.settle(Phase(phi_t))
    knobs, epsilon = system.parameters + 0.05, 0.3
    theta = system.relax_parameters(state, knobs, epsilon)
    stationary = system.prior_parameter_gradient(state.phi, theta).mean(axis=0) + (theta - knobs) / epsilon
    assert np.abs(stationary).max() < 1e-10


def linear_energy():
    """E = 1/2 (s - w.x)^2 + s^2 / 2 per sample, w shared (P,) or per task (T, P): a scalar state."""
    def predict(w, x):
        return x @ w if w.ndim == 1 else np.einsum("tp,tp->t", w, x)

    def energy(w, x, s):
        return 0.5 * (s[:, 0] - predict(w, x)) ** 2 + 0.5 * s[:, 0] ** 2

    def state_gradient(w, x, s):
        return (2 * s[:, 0] - predict(w, x))[:, None]

    def parameter_gradient(w, x, s):
        return -(s[:, 0] - predict(w, x))[:, None] * x

    return energy, state_gradient, parameter_gradient


def test_aeqprop_is_cml_on_state_and_parameters():
    """Aeqprop's step is the CML estimate of the bilevel problem whose lower level is (s, theta), whose prior
    is the knobs and whose strength is 1 / epsilon (on theta; none on s)."""
    energy, state_gradient, parameter_gradient = linear_energy()
    rng = np.random.default_rng(6)
    x, y, theta = rng.normal(size=(1, 3)), np.array([[0.7]]), rng.normal(size=3)
    beta, epsilon = 0.3, 0.2
    physics = EnergySystem(energy, state_gradient, parameter_gradient, theta, n_inputs=3, n_states=1,
                           knob_dynamics="exact")
    aeqprop = get_algorithm("aeqprop-optimistic", beta=beta, epsilon=epsilon, controller="oracle",
                            relax_rounds=400).estimate(physics, x, y).gradient
    knobs = theta + epsilon * physics.energy_gradient(physics.settle(Phase(x)))  # the oracle's homeostasis
    lower = EnergyTasks(energy, state_gradient, parameter_gradient, n_inputs=3, n_states=1, n_parameters=3)
    bilevel = BilevelSystem(lower, prior=np.concatenate([[0.0], knobs]), strength=np.r_[0.0, np.full(3, 1 / epsilon)],
                            inner=InnerSolve(tolerance=1e-13))
    free = bilevel.settle(Phase(x))
    assert np.allclose(free.phi[0, 1:], theta, atol=1e-10)  # the knobs hold theta in the free phase
    cml = estimate(bilevel, "p-ep", x, y, beta=beta)[1:]
    assert np.allclose(cml, aeqprop, rtol=1e-6, atol=1e-9)


# --- guards -----------------------------------------------------------------------------------------
def test_active_set_change_between_phases_is_refused():
    model = QuadraticTasks(np.ones(2), bounds=(np.full(2, -1.0), np.full(2, 1.0)))
    system = BilevelSystem(model, prior=0.0, strength=0.1)
    x = np.array([[2.0, 0.0]])
    assert system.settle(Phase(x)).active[0].tolist() == [1, 0]
    for leaving in ([[-0.5, 0.0]], [[-5.0, 0.0]]):  # off the bound, or over to the other one
        with pytest.raises(BilevelError, match="active set changed"):
            estimate(system, "p-ep", x, model.target(np.array(leaving)), beta=1.0)
    estimate(system, "p-ep", x, model.target(np.array([[3.0, 0.5]])), beta=1.0)  # stays at the bound: fine


def double_well():
    """E = (s^2 - 1)^2 / 4: a saddle at s = 0, where a lower level started at its prior 0 stays."""
    return (lambda w, x, s: 0.25 * (s[:, 0] ** 2 - 1) ** 2, lambda w, x, s: s ** 3 - s,
            lambda w, x, s: np.zeros((len(s), 0)))


def test_non_convex_lower_level_is_refused():
    lower = EnergyTasks(*double_well(), n_inputs=1, n_states=1, n_parameters=0)
    system = BilevelSystem(lower, prior=0.0, strength=0.5)
    x, y = np.zeros((1, 1)), np.array([[0.2]])
    with pytest.raises(BilevelError, match="not strongly convex at its solution"):
        estimate(system, "exact-gradient", x, y)
    with pytest.raises(BilevelError, match="non-positive curvature"):
        estimate(system, "implicit-cg", x, y)
    with pytest.raises(BilevelError, match="curves down"):
        estimate(system, "p-ep", x, y, beta=0.01)


# --- circuits: copies, slopes, training -------------------------------------------------------------
@pytest.fixture(scope="module")
def circuit_tasks():
    data, layout = sinusoid_tasks(6, 4, shots=5, queries=10, seed=0)
    return CircuitTasks(parse_netlist(FOURIER), layout, features=fourier_features), data


def test_copies_of_a_circuit_settle_as_the_circuit():
    circuit = parse_netlist(FOURIER)
    single, copies = CircuitSystem(circuit), CircuitSystem(replicate(circuit, 3))
    rng = np.random.default_rng(0)
    thetas = single.parameters * rng.uniform(0.5, 2.0, (3, single.parameters.size))
    x = rng.uniform(-1, 1, (4, 3, circuit.n_inputs))
    copies.parameters = thetas.ravel()
    together = copies.outputs(copies.settle(Phase(x.reshape(4, -1)))).reshape(4, 3, -1)
    for k in range(3):
        single.parameters = thetas[k]
        assert np.allclose(single.outputs(single.settle(Phase(x[:, k]))), together[:, k], atol=1e-12)


@pytest.mark.parametrize("name, betas, order", [("p-ep", [0.005, 0.01, 0.02], 1), ("c-ep", [0.04, 0.08, 0.16], 2)])
def test_bias_slopes_on_a_circuit(circuit_tasks, name, betas, order):
    model, data = circuit_tasks
    x, y = data.x_train[:2], data.y_train[:2]
    system = BilevelSystem(model, prior=model.initial, strength=0.1, inner=InnerSolve(tolerance=1e-11))
    exact = estimate(system, "exact-gradient", x, y)
    errors = [np.linalg.norm(estimate(system, name, x, y, beta=b) - exact) for b in betas]
    assert abs(slope(betas, errors) - order) < 0.2


def test_meta_training_through_the_training_loop_follows_the_exact_meta_gradient():
    from aeqprop_circuits.data.datasets import Dataset

    model = QuadraticTasks(np.linspace(1.0, 0.1, 8))
    phi_t, phi_v = quadratic_tasks(40, 8, seed=7, centre_std=0.3)
    centre = np.linspace(-1, 1, 8)
    data = Dataset("quadratic", centre + phi_t[:30], model.target(centre + phi_v[:30]), centre + phi_t[30:],
                   model.target(centre + phi_v[30:]), 0)
    losses = {}
    for name in ("c-ep", "exact-gradient"):
        system, history = BilevelSystem(model, prior=0.0, strength=0.5), History()
        train(system, data, get_algorithm(name, beta=0.05), history, TrainOptions(epochs=5, batch_size=5,
                                                                                   learning_rate=1.0),
              log=lambda message: None)
        losses[name] = [row["test_loss"] for row in history.rows]
    assert losses["c-ep"][-1] < 0.6 * losses["c-ep"][0]
    assert losses["c-ep"][-1] == pytest.approx(losses["exact-gradient"][-1], rel=1e-3)


def test_meta_train_command_writes_its_summary(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["meta", "train", FOURIER, "--estimator", "cml", "--epochs", "2",
                                       "--train-tasks", "4", "--meta-batch", "2", "--test-tasks", "2",
                                       "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert {"estimator", "seed", "query_mse_before", "query_mse_after", "seconds"} <= set(summary)
    assert summary["estimator"] == "cml" and summary["seed"] == 1
    assert (out / "metrics.csv").exists() and (out / "meta.png").exists()
    (out / "adaptation.png").unlink()
    replot = CliRunner().invoke(main, ["plot", str(out)])
    assert replot.exit_code == 0, replot.output
    assert (out / "adaptation.png").exists()
    cut = tmp_path / "cut"  # killed after its first epoch, then resumed: the same run
    shutil.copytree(out, cut)
    (cut / "checkpoints" / "epoch0002.npz").unlink()
    (cut / "summary.json").unlink()
    resumed = CliRunner().invoke(main, ["meta", "train", "--resume", str(cut)])
    assert resumed.exit_code == 0, resumed.output
    columns = ["epoch", "train_loss", "test_loss"]
    np.testing.assert_array_equal([[row[c] for c in columns] for row in read_metrics(str(cut))],
                                  [[row[c] for c in columns] for row in read_metrics(str(out))])
    assert json.loads((cut / "summary.json").read_text())["query_mse_after"] == summary["query_mse_after"]


@pytest.mark.parametrize("arguments, message", [
    (["--beta", "0"], "beta: expected a positive number"),
    (["--strength", "-1"], "strength"),
    (["--inner-steps", "0"], "inner_steps"),
    (["--learn-strength", "--strength-floor", "1"], "strength_floor"),
    (["--estimator", "maml"], "Invalid value"),
])
def test_meta_train_refuses_bad_settings(tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["meta", "train", FOURIER, *arguments, "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_meta_train_refuses_a_netlist_the_tasks_cannot_drive(tmp_path):
    result = CliRunner().invoke(main, ["meta", "train", "netlists/iris.cir", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "4 inputs" in result.output


def test_app_e_study_best_beta_falls_as_the_lower_level_sharpens(tmp_path):
    from aeqprop_circuits.experiments.reproduce.cml import Records, quadratic_study

    records = Records(str(tmp_path))
    quadratic_study(str(tmp_path), records, steps=(20, 60, 120), points=(2, 3), betas=np.logspace(-4, 0.5, 8),
                    log=lambda message: None)
    for p in (2, 3):
        best = [r for r in records.rows if r["study"] == "quadratic-best" and r["points"] == p]
        assert [r["steps"] for r in best] == [20, 60, 120]
        assert best[0]["beta_best"] > best[1]["beta_best"] > best[2]["beta_best"]
        assert best[0]["error_best"] > best[1]["error_best"] > best[2]["error_best"]
    two, three = ([r["error_best"] for r in records.rows if r["study"] == "quadratic-best" and r["points"] == p]
                  for p in (2, 3))
    assert three[-1] < 0.2 * two[-1]  # more points, smaller best error once the lower level is accurate
    assert (tmp_path / "cml-quadratic.png").exists()


def test_lower_level_learning_in_situ_gives_the_meta_gradient():
    """The circuit copies measure their own support gradients by c-ep (in-situ learning): the CML estimate
    moves by c-ep's O(beta^2) bias only. Centered Aeqprop measures them with Theorem 1's O(epsilon) bias."""
    from aeqprop_circuits.experiments.meta import MetaConfig, prepare

    setups = {rule: prepare(MetaConfig(model=FOURIER, train_tasks=2, test_tasks=1, inner_rule=rule, inner_beta=0.01,
                                       inner_epsilon=1e-5))
              for rule in ("exact-gradient", "c-ep", "aeqprop-centered")}
    x, y = setups["c-ep"].data.x_train, setups["c-ep"].data.y_train
    exact, ep = (estimate(setups[rule].system, "c-ep", x, y, beta=0.01) for rule in ("exact-gradient", "c-ep"))
    assert relative(ep, exact) < 3e-3
    phi = np.tile(setups["c-ep"].system.model.initial, (2, 1))
    support = {rule: setup.system.model.support(phi, x)[1] for rule, setup in setups.items()}
    assert relative(support["aeqprop-centered"], support["exact-gradient"]) < 1e-3


# --- regularisation learning: per-synapse strengths of a softmax classifier (Table 1's setting) -------
@pytest.fixture(scope="module")
def regularisation():
    """A 3-class softmax classifier on 4 inputs, 6 training and 30 validation points, lambda = exp(theta) varied."""
    from aeqprop_circuits.systems.regularisation import RegularisationSystem, SoftmaxTask

    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 1.0, (3, 4))
    y_train, y_val = np.arange(6) % 3, rng.integers(0, 3, 30)
    model = SoftmaxTask(centres[y_train] + rng.normal(0, 1, (6, 4)), y_train,
                        centres[y_val] + rng.normal(0, 1, (30, 4)), y_val, 3)
    system = RegularisationSystem(model, strength=np.exp(rng.normal(-2.0, 0.5, model.size)),
                                  inner=InnerSolve(tolerance=1e-12))
    return system, np.zeros((1, 1)), model.target()


def test_regularisation_lower_level_is_strongly_convex_and_its_meta_gradient_matches_finite_differences(
        regularisation):
    system, x, y = regularisation
    free = system.settle(Phase(x))
    assert np.linalg.eigvalsh(system.inner_hessian(free))[0, 0] >= 0.99 * system.strength.min()
    exact = system.loss_gradient(free, y)
    theta, h = system.parameters, 1e-4
    differences = []
    for k in range(len(theta)):
        step = np.zeros_like(theta)
        step[k] = h
        losses = []
        for sign in (1, -1):
            system.parameters = theta + sign * step
            losses.append(system.cost(system.settle(Phase(x)), y)[0])
        differences.append((losses[0] - losses[1]) / (2 * h))
    system.parameters = theta
    assert relative(exact, np.array(differences)) < 1e-3


def test_regularisation_cml_approaches_the_exact_meta_gradient_as_beta_falls(regularisation):
    system, x, y = regularisation
    exact = system.loss_gradient(system.settle(Phase(x)), y)
    betas = [1e-2, 1e-3, 1e-4]
    errors = [relative(estimate(system, "p-ep", x, y, beta=beta), exact) for beta in betas]
    assert errors[-1] < 1e-3 and slope(betas, errors) == pytest.approx(1.0, abs=0.1)
    assert relative(estimate(system, "implicit-cg", x, y, iterations=100), exact) < 1e-8


def test_regularisation_cml_is_local_and_t1t2_drops_the_inverse_hessian(regularisation):
    system, x, y = regularisation
    beta, free = 1e-3, system.settle(Phase(x))
    nudged = system.settle(Phase(x, beta, y), start=free)
    cml = estimate(system, "p-ep", x, y, beta=beta)
    lam = system.strength
    assert np.allclose(cml, lam * (nudged.phi[0] ** 2 - free.phi[0] ** 2) / (2 * beta), rtol=1e-9)  # App. B
    v = system.outer_gradient(free, y)[0]
    assert np.allclose(estimate(system, "t1t2", x, y, alpha=0.5), -lam * free.phi[0] * 0.5 * v, rtol=1e-12)
    assert not estimate(system, "reptile", x, y).any()  # no prior to move


def test_regularisation_run_refuses_bad_settings():
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.regularisation import RegularisationConfig

    with pytest.raises(AeqpropError, match="estimator"):
        RegularisationConfig(estimator="fomaml")
    with pytest.raises(AeqpropError, match="split"):
        RegularisationConfig(samples=10, split=1.0)


# --- device-mismatched copies as tasks (systems/mismatch_tasks.py) ----------------------------------------
@pytest.fixture(scope="module")
def mismatched():
    from aeqprop_circuits.systems.mismatch_tasks import MismatchedCopies

    model = CircuitSystem(parse_netlist("netlists/regression_fourier.cir"))
    rng = np.random.default_rng(0)
    x = fourier_features(rng.uniform(-1, 1, (12, 1)), 10)
    y = 0.3 * np.sin(np.pi * x[:, 1:2])
    return MismatchedCopies(model, 0.05, (x[:6], y[:6]), x[8:], evaluation=x[6:10]), x, y


def test_mismatched_copies_are_tasks_each_its_own_hardware(mismatched):
    from aeqprop_circuits.systems.bilevel import TaskModel

    copies, x, y = mismatched
    assert isinstance(copies, TaskModel) and copies.n_outputs == 4
    phi = np.tile(copies.initial, (3, 1))
    readouts, _ = copies.query(phi, np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]]))
    model = copies.model.outputs(copies.model.settle(Phase(x[8:]))).ravel()
    assert not np.allclose(readouts[0], readouts[1]) and not np.allclose(readouts[0], model)
    assert 1e-4 < np.abs(readouts[:2] - model).max() < 0.1  # a few percent off the design's balance
    # query set 1: the same copy read at the evaluation points (x[6:10]), whose last two are query points
    assert np.allclose(readouts[2, 2:], readouts[0, :2]) and not np.allclose(readouts[2, :2], readouts[0, :2])


def test_mismatched_copies_support_gradient_is_the_copys_own(mismatched):
    """The exact support gradient in phi = log theta is the derivative of the copy's support loss."""
    copies, _, _ = mismatched
    phi, task = copies.initial[None, :].copy(), np.array([[3.0, 0.0]])
    loss, gradient = copies.support(phi, task)
    for k in (0, 7, 30):
        h = 1e-6 * np.eye(copies.size)[k]
        up, down = copies.support(phi + h, task)[0], copies.support(phi - h, task)[0]
        assert (up - down)[0] / 2e-6 == pytest.approx(gradient[0, k], rel=1e-5, abs=1e-12)


def test_k_in_situ_steps_from_the_prior_adapt_an_unseen_copy(mismatched):
    """The lower level as K steps of in-situ c-ep on the copy lowers its support loss; fomaml's meta-gradient
    on copies is the prior part only and finite."""
    from aeqprop_circuits.experiments.mismatch_meta import in_situ
    from aeqprop_circuits.systems.mismatch_tasks import MismatchedCopies

    base, _, y = mismatched
    copies = MismatchedCopies(base.model, 0.05, (base.support_x, base.support_y), base.query_x,
                              measure=in_situ("c-ep", 0.01))
    system = BilevelSystem(copies, prior=copies.initial, strength=1e-3, inner=InnerSolve("gd", 3, rate=2.0),
                           check=False)
    task = np.array([[11.0, 0.0]])
    before = copies.support(copies.initial[None, :], task)[0]
    after = copies.support(system.settle(Phase(task)).phi, task)[0]
    assert after[0] < 0.9 * before[0]
    gradient = get_algorithm("fomaml").estimate(system, task, y[8:].T).gradient
    assert gradient.shape == (copies.size,) and np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


def test_meta_train_takes_the_mismatched_copies_family(tmp_path):
    import re

    run = ["meta", "train", "netlists/regression_fourier.cir", "--tasks", "mismatched-copies", "--model-epochs", "0",
           "--estimator", "fomaml", "--inner", "gd", "--inner-steps", "2", "--inner-rate", "2", "--shots", "5",
           "--queries", "5", "--train-tasks", "2", "--test-tasks", "1", "--epochs", "1", "--meta-batch", "2",
           "--strength", "0.001"]
    result = CliRunner().invoke(main, [*run, "--mismatch", "0.05", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {"query_mse_before", "query_mse_after", "query_mse_nominal", "query_mse_unadapted"} <= set(summary)
    assert summary["query_mse_unadapted"] > 0
    for option, value, message in (("--mismatch", "0", "mismatch"), ("--queries", "2000", "shots \\+ queries")):
        bad = CliRunner().invoke(main, [*run, option, value, "--out", str(tmp_path / "bad")])
        assert bad.exit_code != 0 and "Traceback" not in bad.output
        assert re.search(message, bad.output), bad.output


def test_regularisation_run_lowers_the_validation_loss_and_fills_the_table():
    from aeqprop_circuits.experiments.regularisation import RegularisationConfig, regularisation_run, table1_table

    rng = np.random.default_rng(3)
    centres = rng.normal(0.0, 1.0, (3, 5))
    y_pool, y_test = rng.integers(0, 3, 60), rng.integers(0, 3, 40)
    arrays = (centres[y_pool] + rng.normal(0, 1, (60, 5)), y_pool, centres[y_test] + rng.normal(0, 1, (40, 5)),
              y_test, 3)
    rows = [{"study": "table1", **regularisation_run(RegularisationConfig(estimator=name, samples=50, split=0.1,
                                                                          meta_steps=15, beta=1e-4), arrays)}
            for name in ("cml", "t1t2")]
    for row in rows:
        assert row["n_train"] == 5 and row["n_val"] == 45
        assert row["val_loss"] < row["before_val_loss"]
        assert row["val_loss_trace"][0] == pytest.approx(row["before_val_loss"], rel=1e-6)
    assert rows[0]["before_test_accuracy"] == rows[1]["before_test_accuracy"]  # the same split and initial strengths
    table = table1_table(rows).splitlines()
    assert [line.split(" | ")[3] for line in table[2:]] == ["initial λ", "cml", "t1t2"]
