"""Gradients through a Hopfield network's relaxation, the EBL study's backprop baselines (Sec. 4.1).

Both return the gradient of the batch-mean free-phase cost L = mean_b C(s*_N, y) with respect
to theta, (the rules tbp and rbp in learning/backprop.py wrap them).

- rbp (recurrent backpropagation, Almeida 1987 / Pineda 1987): implicit differentiation at the
  free fixed point s* = clip(h(s*)). On the units strictly inside their box (the others are
  held at a bound and do not move to first order) dL/dtheta = -D_lambda[dE/dtheta](s*) with
  lambda solving H lambda = dL/ds, H the Hessian of E over the free units (I minus the layer
  couplings). lambda is found by block Gauss-Seidel in the relaxation's own order (a layer of
  lambda in closed form given its neighbours), which converges whenever H is positive
  definite, i.e. whenever the free equilibrium is a strict minimum. Max pooling is
  linearised with the routing of s*.
- tbp (truncated backpropagation, the EBL study; Ernoult et al. 2019): from the free state,
  run K more iterations of the same asynchronous block updates and backpropagate C(s_K)
  through those K iterations only (not through the relaxation that produced s*). Written as
  an explicit reverse sweep over a tape of the K iterations (no autodiff library).

When the relaxation has converged, tbp with K large tends to rbp (the reverse sweep is then a
Gauss-Seidel iteration on the same linear system).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hopfield.interactions import Conv

if TYPE_CHECKING:
    from aeqprop_circuits.systems.hopfield.network import HopfieldNetwork, HopfieldState

def _cost_gradient(net: HopfieldNetwork, state: HopfieldState, target) -> np.ndarray:
    """d/ds_N of the batch-mean cost, (B, n_out), in the compute dtype."""
    batch = len(state.layers[-1])
    diff = net.outputs(state) - np.asarray(target, dtype=np.float64)
    return (2.0 * net.cost_scale * diff / batch).astype(net.dtype)


def _forward(net, k, operand, routes):
    """F_k(operand) with the routing held fixed."""
    return net.interactions[k].forward(operand, net.weights[k], routing=routes[k])


def _backward(net, k, operand, routes):
    """F_k^T(operand) with the routing held fixed."""
    inter = net.interactions[k]
    if isinstance(inter, Conv):
        return inter.backward(operand, net.weights[k], routing=routes[k], flipped=net._flipped[k])
    return inter.backward(operand, net.weights[k])


def rbp_gradient(net: HopfieldNetwork, state: HopfieldState, target, max_iterations: int = 500,
                 tolerance: float = 1e-7) -> tuple[np.ndarray, dict]:
    """dL/dtheta by implicit differentiation at the free equilibrium `state`.

    Returns (gradient (P,), info) with info = {"iterations", "residual"} of the adjoint solve.
    """
    n = net.n_layers
    weights = net.weights
    _, x = net._input_drive(state.phase.inputs)
    pres = (x,) + tuple(state.layers[:-1])
    routes = [inter.routing(pres[k], weights[k]) if inter.has_routing else None
              for k, inter in enumerate(net.interactions)]
    drives = net.drives(state)
    masks = [((h > p) & (h < q)).astype(net.dtype) for h, (p, q) in zip(drives, net.bounds)]
    source = [np.zeros_like(s) for s in state.layers]
    source[-1] = _cost_gradient(net, state, target)
    lam = [np.zeros_like(s) for s in state.layers]
    order = net._order(state.phase)
    residual, it = float("inf"), 0
    for it in range(1, max_iterations + 1):  # noqa: B007 (it is reported)
        previous = list(lam)
        for k in order:
            h = source[k]
            if k > 0:
                h = h + _forward(net, k, lam[k - 1], routes)
            if k < n - 1:
                h = h + _backward(net, k + 1, lam[k + 1], routes)
            lam[k] = masks[k] * h
        change = sum(float(np.abs(a - b).sum()) for a, b in zip(lam, previous))
        scale = sum(float(np.abs(a).sum()) for a in lam)
        residual = change / max(scale, 1e-300)
        if not np.isfinite(residual):
            raise AeqpropError("rbp: the adjoint iteration diverged (the free state is not a strict minimum)")
        if residual < tolerance:
            break
    grad = np.empty(net.n_parameters)
    for k, inter in enumerate(net.interactions):
        gw = inter.weight_grad(pres[k], lam[k], routing=routes[k])
        if k > 0:
            gw = gw + inter.weight_grad(lam[k - 1], state.layers[k], routing=routes[k])
        grad[net.groups[2 * k][1]] = np.asarray(gw, np.float64).ravel()
        grad[net.groups[2 * k + 1][1]] = np.asarray(inter.bias_sum(lam[k]), np.float64)
    return grad, {"iterations": it, "residual": residual}


def tbp_gradient(net: HopfieldNetwork, state: HopfieldState, target, iterations: int = 15) -> np.ndarray:
    """dL/dtheta through `iterations` more free-phase iterations started at `state` (EBL study's TBP)."""
    n = net.n_layers
    weights, biases = net.weights, net.biases
    _, x = net._input_drive(state.phase.inputs)
    layers = list(state.layers)
    order = net._order(Phase(state.phase.inputs))
    first = net.interactions[0]
    route_input = first.routing(x, weights[0]) if first.has_routing else None
    tape = []
    for _ in range(iterations):
        for k in order:
            inter = net.interactions[k]
            pre = x if k == 0 else layers[k - 1]
            if k == 0:
                route_f = route_input
            else:
                route_f = inter.routing(pre, weights[k]) if inter.has_routing else None
            h = inter.forward(pre, weights[k], routing=route_f) + biases[k]
            above, route_b = None, None
            if k < n - 1:
                upper = net.interactions[k + 1]
                above = layers[k + 1]
                route_b = upper.routing(layers[k], weights[k + 1]) if upper.has_routing else None
                h = h + (upper.backward(above, weights[k + 1], routing=route_b, flipped=net._flipped[k + 1])
                         if isinstance(upper, Conv) else upper.backward(above, weights[k + 1]))
            p, q = net.bounds[k]
            tape.append((k, ((h > p) & (h < q)).astype(net.dtype), pre, above, route_f, route_b))
            layers[k] = net._round(np.clip(h, p, q))
    final = type(state)(tuple(layers), state.phase)
    delta = [np.zeros_like(s) for s in layers]
    delta[-1] = _cost_gradient(net, final, target)
    grad_w = [np.zeros(inter.weight_shape) for inter in net.interactions]
    grad_b = [np.zeros(shape) for shape in net._bias_shapes]
    for k, mask, pre, above, route_f, route_b in reversed(tape):
        z = mask * delta[k]
        delta[k] = np.zeros_like(z)
        inter = net.interactions[k]
        grad_w[k] += inter.weight_grad(pre, z, routing=route_f)
        grad_b[k] += inter.bias_sum(z)
        if k > 0:
            delta[k - 1] = delta[k - 1] + (
                inter.backward(z, weights[k], routing=route_f, flipped=net._flipped[k])
                if isinstance(inter, Conv) else inter.backward(z, weights[k]))
        if k < n - 1:
            upper = net.interactions[k + 1]
            delta[k + 1] = delta[k + 1] + upper.forward(z, weights[k + 1], routing=route_b)
            grad_w[k + 1] += upper.weight_grad(z, above, routing=route_b)
    grad = np.empty(net.n_parameters)
    for k in range(n):
        grad[net.groups[2 * k][1]] = grad_w[k].ravel()
        grad[net.groups[2 * k + 1][1]] = grad_b[k]
    return grad
