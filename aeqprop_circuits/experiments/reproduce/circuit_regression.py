"""The Sec. 5.2 linear-regression study on a physical resistive circuit.

The abstract study (`reproduce/regression.py`) trains theta . phi(z) with E = (s - theta . phi)^2 / 2.
A resistive network cannot compute theta . phi: the potential of a node is the conductance-weighted
average of its neighbours. The circuit here (`fourier_regression_circuit`, shipped as
`netlists/regression_fourier.cir`) is the DRN builder with no hidden layer and no bias resistors:

- the 21 Fourier features phi_i(z) (1, sin i pi z, cos i pi z, i <= 10) drive 21 input pairs of
  voltage sources at +phi_i and -phi_i volts (the constant feature's pair at +-1 V is the bias);
- every input node joins both nodes of the differential output pair (o+, o-) through a trainable
  resistor: 84 positive conductances, bounded in [1 uS, 10 mS] (theta = g / g0 in [0.001, 10]);
- the output is V(o+) - V(o-) = sum_i w_i phi_i(z) with
  w_i = (g+_{i,o+} - g-_{i,o+}) / G_{o+} - (g+_{i,o-} - g-_{i,o-}) / G_{o-}: a linear model again,
  but its weights are ratios of conductances with |w|_1 < 2 (G_n = total conductance at node n).

The start is the circuit analogue of theta_0 = 0: every conductance g0 / 21, so the output is 0 V
for every input, each output node has total conductance G = 2 g0, and then, in the normalised
units of `CircuitSystem` (theta = g / g0, energy = co-content / g0, nudge beta = conductance beta g0):
- the nudged output is (o + (2 beta / G) y) / (1 + 2 beta / G) = (o + beta y) / (1 + beta), exactly the
  abstract model's s_beta, so beta means the same thing;
- |d o / d theta|^2 = 2 sum_i 2 phi_i^2 / G^2 = |phi|^2 = 11, so SGD's stability limit lr x 11 < 2
  is the abstract model's at the start. It is not later: the curvature scales as 1 / G^2, and G moves.
The targets are the paper's random Legendre polynomials scaled into the reachable range: y = kappa f
with kappa = 1 / |c*|_1, c* the least-squares Fourier coefficients of f, so that the best fit of the
abstract model needs |w|_1 = 1, half of what the circuit can reach.

Each run is one replica inside a single circuit of R disjoint copies of that network (one settle
solves them all); every replica also has a nudge resistor between o+ and a node held at V(o-) + y by
a floating source, of conductance beta_r g0 (negative for the pessimistic and centered phases: an
active element), so that one operator loop with its nudge dial at 0 then 1 drives every variant, each
replica mapping the dial to its own (beta_1, beta_2) (as the abstract study does). The conductances
float: in the knob-coupled relaxation each round relaxes theta exactly for the voltages held fixed,
theta = clip(u - epsilon dV^2 / 2, bounds), then the network settles exactly (`settle_with_knobs`):
electrical settling is instantaneous next to conductance drift, so Sec. 5.1's adaptive gradient
dynamics are replaced by exact alternating settles (the abstract study's `--dynamics exact`).

Divergence: the outputs are bounded by the input voltages, so the loss can never blow up. What can go
wrong is a negatively nudged phase without equilibrium: the co-content of a replica is unbounded below
when beta < -G+ G- / (G+ + G-) (a negative resistor stronger than the network; on a bench the node
voltages run to the supply rails). Each settle tests this per replica before solving; a replica that
fails is marked diverged at that step and parked (its nudge switched off, its theta reset).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.circuit.circuit import Circuit, Diodes, IdealDiodes, Learning, Resistors, Sources
from aeqprop_circuits.circuit.elements import RESISTOR
from aeqprop_circuits.circuit.energy import structure
from aeqprop_circuits.data.datasets import regression_task
from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.experiments.reproduce.regression import lyapunov_increases
from aeqprop_circuits.learning.algorithms import AEQPROP_TABLE, get_algorithm
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.circuit import CircuitSystem, _Equilibrium
from aeqprop_circuits.systems.energy import fourier_features

FREQUENCIES = 10
N_FEATURES = 2 * FREQUENCIES + 1
G0 = 1e-3  # S: the unit of theta
G_RANGE = (1e-6, 1e-2)  # S: theta in [0.001, 10]
NODE_CONDUCTANCE = 2.0  # total conductance of each output node at the start, in g0

METHODS = ("sgd", "aeqprop-optimistic", "aeqprop-pessimistic", "aeqprop-centered")
# (epsilon, beta) panels: the paper's grid, then strong nudges at an epsilon below the circuit's convexity
# limit (epsilon < G / sum_k (V_k - V_node)^2 = 2 / 22 at the start, see the module docstring of the study)
PAPER_PANELS = tuple((e, b) for b in (0.5, 0.1, 0.01) for e in (0.5, 0.1, 0.01))
STRONG_PANELS = ((0.05, 2.0), (0.05, 10.0), (0.05, 50.0))
PANELS = PAPER_PANELS + STRONG_PANELS
CONTROLLERS = ("proportional", "oracle")


def fourier_regression_circuit() -> Circuit:
    """The 21-feature regression network at its start (every conductance g0 / 21, output 0 V)."""
    circuit = deep_resistive_network([N_FEATURES, 1], g0=G0, bias=False, g_range=G_RANGE)
    g = np.full(len(circuit.resistors.conductance), NODE_CONDUCTANCE * G0 / (2 * N_FEATURES))
    from dataclasses import replace

    return replace(circuit.with_conductance(g), title=f"fourier regression network {N_FEATURES} pairs - 1 "
                                                      "differential output")


def target_scale(seed: int, points: int = 2001) -> float:
    """kappa = 1 / |c*|_1 for the seed's Legendre target f (c*: least-squares Fourier fit on [-1, 1])."""
    task = regression_task(seed, n_train=1, n_test=points)
    coefficients = np.linalg.lstsq(fourier_features(task.x_test), task.y_test[:, 0], rcond=None)[0]
    return float(1.0 / np.abs(coefficients).sum())


# --- R disjoint copies of a network, each with a nudge resistor --------------------------------------
def replicate(circuit: Circuit, replicas: int) -> tuple[Circuit, dict]:
    """R copies of a one-output network in one circuit, plus per copy a nudge resistor o+ -> t and a
    target source t -> o- (V(t) = V(o-) + y). Returns the circuit and index arrays."""
    if circuit.n_outputs != 1 or len(circuit.diodes.names) or len(circuit.ideal_diodes.names):
        raise ValueError("replicate: a purely resistive network with one output expected")
    R, n = replicas, circuit.n_nodes - 1
    n_res, n_src = len(circuit.resistors.names), len(circuit.sources.names)

    def shift(nodes, r):
        nodes = np.asarray(nodes)
        return np.where(nodes == 0, 0, nodes + r * n)

    names = ["0"] + [f"{name}_{r}" for r in range(R) for name in circuit.node_names[1:]]
    t_nodes = np.arange(len(names), len(names) + R)
    names += [f"t_{r}" for r in range(R)]
    outputs = np.array([shift(circuit.learning.outputs[0], r) for r in range(R)])
    res = circuit.resistors
    resistors = Resistors(
        tuple(f"{name}_{r}" for r in range(R) for name in res.names) + tuple(f"rnudge_{r}" for r in range(R)),
        np.vstack([shift(res.nodes, r) for r in range(R)] + [np.stack([outputs[:, 0], t_nodes], 1)]),
        np.concatenate([np.tile(res.conductance, R), np.zeros(R)]))
    src = circuit.sources
    sources = Sources(
        tuple(f"{name}_{r}" for r in range(R) for name in src.names) + tuple(f"vtarget_{r}" for r in range(R)),
        np.vstack([shift(src.nodes, r) for r in range(R)] + [np.stack([t_nodes, outputs[:, 1]], 1)]),
        np.concatenate([np.tile(src.value, R), np.zeros(R)]),
        np.concatenate([np.tile(src.is_voltage, R), np.ones(R, dtype=bool)]))
    learn = circuit.learning
    n_in = circuit.n_inputs
    input_map = np.zeros((R * n_src + R, R * n_in))
    for r in range(R):
        input_map[r * n_src:(r + 1) * n_src, r * n_in:(r + 1) * n_in] = learn.input_map
    trainable = np.concatenate([learn.trainable + r * n_res for r in range(R)])
    learning = Learning(
        input_sources=tuple(f"{s}_{r}" for r in range(R) for s in learn.input_sources), input_map=input_map,
        output_names=tuple(f"out_{r}" for r in range(R)), outputs=outputs, trainable=trainable,
        low=np.tile(learn.low, R), high=np.tile(learn.high, R), g0=learn.g0)
    empty = np.zeros((0, 2), dtype=np.int64)
    combined = Circuit(f"{R} x {circuit.title}", tuple(names), resistors, Diodes((), empty, [], []),
                       IdealDiodes((), empty), sources, learning)
    info = {"nudge_resistors": np.arange(R * n_res, R * n_res + R), "target_sources": np.arange(R * n_src,
                                                                                                R * n_src + R),
            "owner": np.concatenate([np.repeat(np.arange(R), n_res), np.arange(R)])}
    return combined, info


class ReplicaCircuitSystem(CircuitSystem):
    """R replicas of a regression network; the nudge dial d gives replica r the nudge beta_low_r + d span_r.

    A phase with a target is nudged (dial = phase.beta); a phase without one is free. A replica whose
    nudged phase has no equilibrium is flagged in `broken` and its nudge stays off from then on.
    """

    def __init__(self, base: Circuit, replicas: int, beta_low=0.0, beta_span=0.0, fast: bool = True):
        circuit, info = replicate(base, replicas)
        super().__init__(circuit, solver="newton")
        self.replicas = replicas
        self._nudge, self._target, self._owner = info["nudge_resistors"], info["target_sources"], info["owner"]
        self.beta_low = np.broadcast_to(np.asarray(beta_low, float), (replicas,)).copy()
        self.beta_span = np.broadcast_to(np.asarray(beta_span, float), (replicas,)).copy()
        self.broken = np.zeros(replicas, dtype=bool)
        trainable = base.learning.trainable
        ends = base.resistors.nodes[trainable]
        out_pos, out_neg = base.learning.outputs[0]
        self._at_pos = np.any(ends == out_pos, axis=1)
        self._at_neg = np.any(ends == out_neg, axis=1)
        self.parameters_per_replica = len(trainable)
        self.fast = fast
        # Nodal analysis of this network (no hidden layer): each trainable resistor joins a node fixed by
        # the sources ("far" end) to an output node; slot 2r / 2r + 1 = o+ / o- of replica r.
        c = self.circuit
        self._input_map = sp.csr_matrix(c.learning.input_map)
        self._driven = np.asarray(abs(self._input_map).sum(axis=1)).ravel() > 0
        topo, _ = structure(c)
        self._P, self._Q, self._free_of_node = topo.P.tocsr(), topo.Q.tocsr(), topo.free_of_node
        outs = c.learning.outputs
        slot = np.full(c.n_nodes, -1)
        slot[outs[:, 0]], slot[outs[:, 1]] = 2 * np.arange(replicas), 2 * np.arange(replicas) + 1
        pairs = c.resistors.nodes[c.learning.trainable]
        near_first = slot[pairs[:, 0]] >= 0
        if np.any(slot[np.where(near_first, pairs[:, 1], pairs[:, 0])] >= 0) or np.any(
                self._free_of_node[np.where(near_first, pairs[:, 1], pairs[:, 0])] >= 0):
            raise ValueError("fast settle: every trainable resistor must join a fixed node to an output node")
        self._far = np.where(near_first, pairs[:, 1], pairs[:, 0])
        near = slot[np.where(near_first, pairs[:, 0], pairs[:, 1])]
        self._slots = sp.csr_matrix((np.ones(len(near)), (np.arange(len(near)), near)),
                                    shape=(len(near), 2 * replicas))
        self._outs = outs

    def node_conductances(self, theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(G+, G-) per replica, in g0: total trainable conductance at each output node."""
        theta = (self.parameters if theta is None else theta).reshape(self.replicas, -1)
        return theta[:, self._at_pos].sum(axis=1), theta[:, self._at_neg].sum(axis=1)

    def nudges(self, dial: float) -> np.ndarray:
        """beta per replica at this dial setting, with the convexity test (flags `broken`)."""
        betas = self.beta_low + float(dial) * self.beta_span
        betas[self.broken] = 0.0
        g_pos, g_neg = self.node_conductances()
        bad = g_pos * g_neg + betas * (g_pos + g_neg) <= 1e-6 * g_pos * g_neg
        if np.any(bad):
            self.broken |= bad
            betas[bad] = 0.0
        return betas

    def settle(self, phase: Phase, start=None, callback=None):
        inputs = np.atleast_2d(np.asarray(phase.inputs, dtype=np.float64))
        sources = np.where(self._driven, (self._input_map @ inputs.T).T, self.circuit.sources.value[None, :])
        conductance = self._conductance.copy()
        betas = np.zeros(self.replicas)
        target = np.zeros((len(sources), self.replicas))
        if phase.target is not None:
            betas = self.nudges(phase.beta)
            target = np.broadcast_to(phase.target, target.shape)
            conductance[self._nudge] = betas * self.g0
            sources[:, self._target] = target
        if self.fast:
            result = self._nodal(sources, conductance, betas, target)
        else:
            warm = start is not None and getattr(start, "circuit", None) is self.circuit and len(start.free) == len(
                sources)
            result = solve(self.circuit, sources=sources, conductance=conductance, method="newton",
                           x0=start.free if warm else None, callback=callback)
            if not result.success:
                raise DivergenceError(f"phase with dial {phase.beta:g} did not settle: {result.message}")
        state = _Equilibrium(result, phase, self.circuit, sources, None, self.parameters)
        state.conductance = conductance
        return state

    def _nodal(self, sources, conductance, betas, target) -> SimpleNamespace:
        """Exact DC solution by nodal analysis: per replica, KCL at (o+, o-) is a 2 x 2 linear system
        [[G+ + b, -b], [-b, G- + b]] V = [A+ + b y, A- - b y], A = sum g_k V_far_k (normalised units)."""
        fixed = np.asarray(self._Q @ sources.T).T  # (B, n_nodes): fixed potentials, offsets in supernodes
        g = conductance[self.circuit.learning.trainable] / self.g0
        A = np.asarray(self._slots.T @ (fixed[:, self._far] * g).T).T  # (B, 2R)
        G = np.asarray(self._slots.T @ g).ravel()
        a_pos, a_neg, g_pos, g_neg = A[:, 0::2], A[:, 1::2], G[0::2], G[1::2]
        b, rhs_pos, rhs_neg = betas, a_pos + betas * target, a_neg - betas * target
        det = (g_pos + b) * (g_neg + b) - b * b
        v_pos = ((g_neg + b) * rhs_pos + b * rhs_neg) / det
        v_neg = (b * rhs_pos + (g_pos + b) * rhs_neg) / det
        free = np.zeros((len(sources), self._P.shape[1]))
        outs = self._outs
        free[:, self._free_of_node[outs[:, 0]]] = v_pos - fixed[:, outs[:, 0]]
        free[:, self._free_of_node[outs[:, 1]]] = v_neg - fixed[:, outs[:, 1]]
        potentials = fixed + np.asarray(self._P @ free.T).T
        energy = self._contents(potentials, conductance).sum(axis=1)
        return SimpleNamespace(potentials=potentials, energy=energy, free=free, success=True)

    def _contents(self, potentials: np.ndarray, conductance: np.ndarray) -> np.ndarray:
        """Co-content of every resistor, nudge resistors included (B, n_resistors), W."""
        pairs = self.circuit.resistors.nodes
        return RESISTOR.content(potentials[:, pairs[:, 0]] - potentials[:, pairs[:, 1]], conductance)

    def replica_energy(self, state) -> np.ndarray:
        """E + beta C per replica (R,), in normalised units (co-content / g0), batch mean."""
        content = self._contents(state.potentials, state.conductance).mean(axis=0) / self.g0
        return np.bincount(self._owner, weights=content, minlength=self.replicas)


# --- the runs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    method: str
    controller: str | None  # None for SGD
    epsilon: float
    beta: float
    seed: int
    samples: int

    @property
    def nudges(self) -> tuple[float, float]:
        low, high = AEQPROP_TABLE.get(self.method, (0.0, 0.0))
        return low * self.beta, high * self.beta


def plan(seeds: int, samples: int, controllers=CONTROLLERS, methods=METHODS, panels=PANELS) -> list[Run]:
    runs = []
    for method in methods:
        for controller in ((None,) if method == "sgd" else controllers):
            for epsilon, beta in panels:
                for seed in range(seeds):
                    runs.append(Run(method, controller, epsilon, beta, seed, samples))
    return runs


def _panels(runs) -> list[tuple[float, float]]:
    """The (epsilon, beta) panels of a list of runs, in PANELS order (others after)."""
    present = {(r.epsilon, r.beta) for r in runs}
    return [p for p in PANELS if p in present] + sorted(present - set(PANELS), key=lambda p: (-p[1], -p[0]))


@dataclass
class Traces:
    runs: list
    steps: np.ndarray  # (K,) steps at which the grid loss was measured (0 = before training)
    loss: np.ndarray  # (R, K) grid MSE
    lyapunov_before: np.ndarray  # (R, T) L_{b1;b2}(theta_{t-1}) on sample t (NaN for SGD)
    lyapunov_after: np.ndarray  # (R, T)
    diverged_at: np.ndarray  # (R,) step of divergence, -1 if none
    node_conductance: np.ndarray  # (R, K) (G+ + G-) / 2 in g0 at the recorded steps
    at_bounds: np.ndarray  # (R,) fraction of conductances at a bound at the end


def simulate(runs: list[Run], grid_points: int = 201, rounds: int = 50, relax_rounds: int = 50,
             record_every: int = 10, progress: bool = True) -> Traces:
    try:  # tiny matrices: a multithreaded BLAS only spins on them
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return _simulate(runs, grid_points, rounds, relax_rounds, record_every, progress)
    with threadpool_limits(1):
        return _simulate(runs, grid_points, rounds, relax_rounds, record_every, progress)


def _simulate(runs, grid_points, rounds, relax_rounds, record_every, progress) -> Traces:
    from tqdm import tqdm

    base = fourier_regression_circuit()
    T = max(run.samples for run in runs)
    seeds = sorted({run.seed for run in runs})
    tasks = {s: regression_task(s, n_train=T, n_test=grid_points) for s in seeds}
    kappa = {s: target_scale(s) for s in seeds}
    grid_phi = fourier_features(tasks[seeds[0]].x_test)  # (G, 21)
    R = len(runs)
    truth = np.stack([kappa[r.seed] * tasks[r.seed].y_test[:, 0] for r in runs])  # (R, G)
    phi = np.stack([fourier_features(tasks[r.seed].x_train[:T, 0]) for r in runs])  # (R, T, 21)
    y = np.stack([kappa[r.seed] * tasks[r.seed].y_train[:T, 0] for r in runs])  # (R, T)

    groups = []
    for key in ["sgd", *CONTROLLERS]:
        rows = np.array([i for i, r in enumerate(runs) if (r.method == "sgd") == (key == "sgd")
                         and (key == "sgd" or r.controller == key)])
        if not len(rows):
            continue
        nudges = np.array([runs[i].nudges for i in rows])
        system = ReplicaCircuitSystem(base, len(rows), nudges[:, 0], nudges[:, 1] - nudges[:, 0])
        P = system.parameters_per_replica
        epsilon = np.repeat([runs[i].epsilon for i in rows], P)
        lr = np.repeat([runs[i].epsilon * runs[i].beta for i in rows], P)
        # the paper's plain proportional gain and no hold check: the replicas share one system and fail
        # one by one (conductances at their bounds), which is what this study records
        algorithm = None if key == "sgd" else get_algorithm(
            "aeqprop-optimistic", beta=1.0, epsilon=epsilon, controller=key, rounds=rounds,
            relax_rounds=relax_rounds, adaptive_gain=False, hold_rtol=None, step_rtol=None)
        groups.append((key, rows, system, algorithm, lr, system.parameters))

    steps = np.unique(np.concatenate([np.arange(0, T + 1, record_every), [T]]))
    loss = np.full((R, len(steps)), np.nan)
    conductance = np.full((R, len(steps)), np.nan)
    before = np.full((R, T), np.nan)
    after = np.full((R, T), np.nan)
    diverged_at = np.full(R, -1)
    at_bounds = np.full(R, np.nan)

    def record(k):
        for _, rows, system, *_ in groups:
            inputs = np.tile(grid_phi, len(rows))  # (G, 21 R): every replica sees the grid
            out = system.predict(inputs)  # (G, R)
            loss[rows, k] = np.mean((out.T - truth[rows]) ** 2, axis=1)
            g_pos, g_neg = system.node_conductances()
            conductance[rows, k] = 0.5 * (g_pos + g_neg)
            loss[rows[system.broken], k] = np.nan

    def lyapunov(system, inputs, target, span):
        f_low = system.replica_energy(system.settle(Phase(inputs, 0.0, target)))
        f_high = system.replica_energy(system.settle(Phase(inputs, 1.0, target)))
        return (f_high - f_low) / np.where(span == 0, np.nan, span)

    record(0)
    with np.errstate(invalid="ignore", divide="ignore"), tqdm(total=T, desc="circuit regression", unit="sample",
                                                               file=sys.stderr, disable=not progress) as bar:
        for t in range(T):
            for key, rows, system, algorithm, lr, theta0 in groups:
                inputs = phi[rows, t].reshape(1, -1)
                target = y[rows, t][None, :]
                if key == "sgd":
                    free = system.settle(Phase(inputs))
                    low, high = system.parameter_bounds()
                    system.parameters = np.clip(system.parameters - lr * system.loss_gradient(free, target),
                                                low, high)
                else:
                    broken = system.broken.copy()
                    before[rows, t] = lyapunov(system, inputs, target, system.beta_span)
                    system.parameters = algorithm.estimate(system, inputs, target).new_parameters
                    after[rows, t] = lyapunov(system, inputs, target, system.beta_span)
                    newly = system.broken & ~broken
                    if np.any(newly):  # park: theta back to the start, nudge off for good
                        diverged_at[rows[newly]] = t + 1
                        theta = system.parameters.reshape(system.replicas, -1)
                        theta[newly] = theta0.reshape(system.replicas, -1)[newly]
                        system.parameters = theta.ravel()
                    before[rows[system.broken], t] = np.nan
                    after[rows[system.broken], t] = np.nan
            if t + 1 in steps:
                record(int(np.searchsorted(steps, t + 1)))
            bar.update(1)
    for _, rows, system, *_ in groups:
        low, high = system.parameter_bounds()
        theta = system.parameters
        at = (theta <= low * (1 + 1e-9)) | (theta >= high * (1 - 1e-9))
        at_bounds[rows] = at.reshape(system.replicas, -1).mean(axis=1)
    return Traces(runs, steps, loss, before, after, diverged_at, conductance, at_bounds)


def summary_records(traces: Traces) -> list[dict]:
    increases, largest = lyapunov_increases(traces)
    records = []
    for i, run in enumerate(traces.runs):
        diverged = bool(traces.diverged_at[i] >= 0)
        final = traces.loss[i, -1]
        sgd = run.method == "sgd"
        records.append({
            "figure": "circuit", "method": run.method, "controller": run.controller, "epsilon": run.epsilon,
            "beta": run.beta, "seed": run.seed, "samples": run.samples,
            "initial_loss": float(traces.loss[i, 0]),
            "final_loss": None if diverged or not np.isfinite(final) else float(final),
            "best_loss": None if diverged else float(np.nanmin(traces.loss[i])),
            "diverged": diverged,
            "diverged_at": int(traces.diverged_at[i]) if diverged else None,
            "lyapunov_increases": None if sgd else int(increases[i]),
            "largest_lyapunov_increase": None if sgd or not np.isfinite(largest[i]) else float(largest[i]),
            "final_node_conductance": float(traces.node_conductance[i, -1]),
            "at_bounds": float(traces.at_bounds[i]),
        })
    return records


def save_traces(traces: Traces, path: str) -> str:
    runs = traces.runs
    np.savez_compressed(path, method=np.array([r.method for r in runs]),
                        controller=np.array([r.controller or "" for r in runs]),
                        epsilon=np.array([r.epsilon for r in runs]), beta=np.array([r.beta for r in runs]),
                        seed=np.array([r.seed for r in runs]), steps=traces.steps, loss=traces.loss,
                        lyapunov_before=traces.lyapunov_before, lyapunov_after=traces.lyapunov_after,
                        diverged_at=traces.diverged_at, node_conductance=traces.node_conductance,
                        at_bounds=traces.at_bounds)
    return path


COLORS = {"sgd": "black", "aeqprop-optimistic": "tab:blue", "aeqprop-pessimistic": "tab:red",
          "aeqprop-centered": "tab:green"}
LABELS = {"sgd": "SGD (lr εβ, clipped)", "aeqprop-optimistic": "Aeqprop (optimistic)",
          "aeqprop-pessimistic": "Pessimistic", "aeqprop-centered": "Centered"}
STYLES = {None: "-", "proportional": "-", "oracle": ":"}
MARKERS = {"sgd": "o", "aeqprop-optimistic": "s", "aeqprop-pessimistic": "^", "aeqprop-centered": "D"}


def plot(traces: Traces, path: str) -> str:
    """Grid loss vs samples, one panel per (epsilon, beta) as the paper's Fig. 2; median over seeds with a
    min-max band (proportional controller), dotted: oracle controller (median only). Each method has its
    own colour and markers, set at an offset of its own, and every band lies under every median, so
    methods with coinciding curves stay visible."""
    from aeqprop_circuits.experiments.plots import _pyplot, median_band

    plt = _pyplot()
    runs = traces.runs
    panels = _panels(runs)
    cols = min(3, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.3 * cols, 3.3 * rows_n), squeeze=False, sharex=True)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    variants = [(method, controller) for method in METHODS for controller in (None, *CONTROLLERS)]
    for index, (epsilon, beta) in enumerate(panels):
        row, col = divmod(index, cols)
        ax = axes[row, col]
        for k, (method, controller) in enumerate(variants):
            rows = [i for i, r in enumerate(runs) if r.method == method and r.controller == controller
                    and r.epsilon == epsilon and r.beta == beta]
            if not rows:
                continue
            n_div = int(np.sum(traces.diverged_at[rows] >= 0))
            label = LABELS[method] + (f" ({controller})" if controller == "oracle" else "")
            label += f" ({n_div}/{len(rows)} diverged)" if n_div else ""
            median_band(ax, traces.steps, traces.loss[rows], color=COLORS[method], label=label, index=k,
                        of=len(variants), linestyle=STYLES[controller], marker=MARKERS[method],
                        band=controller != "oracle")
        ax.set_yscale("log")
        ax.set_title(f"ε = {epsilon}, β = {beta} (lr εβ = {epsilon * beta:g})", fontsize=10)
        if row == rows_n - 1:
            ax.set_xlabel("samples")
        if col == 0:
            ax.set_ylabel("MSE on grid (V²)")
        ax.legend(fontsize=6, loc="lower left", framealpha=0.85)
    seeds = len({r.seed for r in runs})
    fig.suptitle("Linear regression on a resistive circuit (21 Fourier input pairs, differential output, "
                 f"bounded conductances); median, min-max over {seeds} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


SHORT = {"sgd": "SGD", "aeqprop-optimistic": "opt", "aeqprop-pessimistic": "pess", "aeqprop-centered": "cent"}


def _cell(records) -> str:
    """median final loss over seeds, with the divergences and Lyapunov increases."""
    if not records:
        return ""
    finals = [r["final_loss"] for r in records if r["final_loss"] is not None]
    diverged = sum(r["diverged"] for r in records)
    text = f"{np.median(finals):.2g}" if finals else "—"
    if diverged:
        text += f" ({diverged}/{len(records)} div.)"
    rises = [r["lyapunov_increases"] for r in records if r["lyapunov_increases"] is not None]
    if any(rises):
        text += f" [L↑ {sum(rises)}]"
    return text


def table(records: list[dict]) -> str:
    """Markdown: one row per (epsilon, beta); median final grid MSE over seeds per method and controller."""
    columns = [("sgd", None)] + [(m, c) for c in CONTROLLERS for m in METHODS[1:]]
    columns = [(m, c) for m, c in columns if any(r["method"] == m and r["controller"] == c for r in records)]
    head = ["ε", "β", "εβ", "initial"] + [SHORT[m] + (f" ({c[:4]})" if c else "") for m, c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for epsilon, beta in _panels([Run(r["method"], r["controller"], r["epsilon"], r["beta"], r["seed"], 0)
                                  for r in records]):
        cell = [r for r in records if r["epsilon"] == epsilon and r["beta"] == beta]
        initial = np.median([r["initial_loss"] for r in cell])
        row = [f"{epsilon:g}", f"{beta:g}", f"{epsilon * beta:g}", f"{initial:.2g}"]
        row += [_cell([r for r in cell if r["method"] == m and r["controller"] == c]) for m, c in columns]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def reproduce(out: str, seeds: int = 3, samples: int = 1000, grid_points: int = 201, controllers=CONTROLLERS,
              progress: bool = True, record_every: int = 10) -> dict:
    """Run the study; write summary.json, table.md, circuit.png, traces.npz, config.json in `out`."""
    runs = plan(seeds, samples, controllers)
    traces = simulate(runs, grid_points=grid_points, progress=progress, record_every=record_every)
    records = summary_records(traces)
    files = []
    for name, content in (("summary.json", records), ("config.json", {
            "study": "aeqprop linear regression (Scellier et al. Sec. 5.2) on a resistive circuit",
            "seeds": seeds, "samples": samples, "grid_points": grid_points, "controllers": list(controllers),
            "rounds": 50, "relax_rounds": 50, "record_every": record_every, "g0": G0, "g_range": G_RANGE,
            "start": "every conductance g0/21 (output 0 V, node conductance 2 g0)",
            "targets": "kappa f, kappa = 1/|least-squares Fourier coefficients of f|_1"})):
        files.append(os.path.join(out, name))
        with open(files[-1], "w") as f:
            json.dump(content, f, indent=1)
    files.append(os.path.join(out, "table.md"))
    with open(files[-1], "w") as f:
        f.write(table(records))
    files.append(save_traces(traces, os.path.join(out, "traces.npz")))
    files.append(plot(traces, os.path.join(out, "circuit.png")))
    return {"records": records, "files": files}
