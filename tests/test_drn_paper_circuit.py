"""The paper-circuit oracle (tests/paper_circuits.py) is exact: its block sweeps reach the bounded minimiser
and its centered step is the direct formula, so the package can be held against it."""

import numpy as np
from paper_circuits import PaperDRN
from scipy.optimize import minimize


def _tiny(seed=1):
    net = PaperDRN(3, 4, 2, gain=2.0, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    net.g1 += rng.uniform(0.1, 0.5, net.g1.shape)  # every node connected: a strictly convex energy
    net.g2 += rng.uniform(0.1, 0.5, net.g2.shape)
    net.b1, net.b2 = rng.normal(0, 0.5, 4), rng.normal(0, 0.5, 2)
    x = rng.uniform(0, 1, (2, 3))
    y = np.eye(2)[[0, 1]]
    return net, net.sources(x), y


def _energy(net, v, h, o, beta, y):
    return (0.5 * (net.g1 * (v[:, None] - h[None, :]) ** 2).sum()
            + 0.5 * (net.g2 * (h[:, None] - o[None, :]) ** 2).sum()
            - net.b1 @ h - net.b2 @ o + 0.5 * beta * ((o - y) ** 2).sum())


def test_block_descent_reaches_the_bounded_minimiser():
    net, v, y = _tiny()
    for beta in (0.0, 0.3, -0.2):
        h, o = net.relax(net.clamp(v), np.zeros((2, 4)), np.zeros((2, 2)), 400, beta, y)
        for b in range(2):
            bounds = [(0, None)] * 2 + [(None, 0)] * 2 + [(None, None)] * 2
            best = minimize(lambda s, b=b, beta=beta: _energy(net, v[b], s[:4], s[4:], beta, y[b]), np.zeros(6),
                            method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-12})
            found = _energy(net, v[b], h[b], o[b], beta, y[b])
            assert found <= best.fun + 1e-9
            np.testing.assert_allclose(np.concatenate([h[b], o[b]]), best.x, atol=1e-5)


def test_centered_step_equals_the_direct_formula():
    net, v, y = _tiny()
    h, o = net.relax(net.clamp(v), np.zeros((2, 4)), np.zeros((2, 2)), 50)
    hp, op = net.relax(net.clamp(v), h, o, 50, 0.3, y)
    hm, om = net.relax(net.clamp(v), h, o, 50, -0.3, y)

    def grads(hh, oo):  # dE/dtheta, batch mean, broadcast form
        return (0.5 * ((v[:, :, None] - hh[:, None, :]) ** 2).mean(0),
                0.5 * ((hh[:, :, None] - oo[:, None, :]) ** 2).mean(0), -hh.mean(0), -oo.mean(0))

    lr = 0.05
    expected = [theta - lr * (gp - gm) / 0.6 for theta, gp, gm in zip((net.g1, net.g2, net.b1, net.b2), grads(hp, op),
                                                                       grads(hm, om))]
    expected[0], expected[1] = np.maximum(expected[0], 0), np.maximum(expected[1], 0)
    net.step(v, hp, op, hm, om, 0.3, lr)
    for got, want in zip((net.g1, net.g2, net.b1, net.b2), expected):
        np.testing.assert_allclose(got, want, atol=1e-12)
