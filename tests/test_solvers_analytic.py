"""Solvers against closed forms: every operating point to 1e-9 relative.

Circuits are built from element tuples (tests/circuits.py), never parsed, so these tests
check the compiled circuit and the solvers alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from circuits import current, grid, make_circuit, voltage
from scipy.special import lambertw

from aeqprop_circuits.circuit.circuit import THERMAL_VOLTAGE
from aeqprop_circuits.errors import CircuitError
from aeqprop_circuits.solvers import solve


def dense_nodal_analysis(problem, x0=None, callback=None, scale=1.0):
    """A caller's own solver of the co-content (solve's `method` may be a callable): one dense
    solve of KCL, exact for linear circuits. `scale` only shows that options reach it."""
    H = problem.linear_hessian.toarray()
    z = np.linalg.solve(H, -problem.linear_gradient(np.zeros((problem.batch, problem.n_free))).T).T
    return scale * z, 1, True, "dense nodal analysis"


RTOL = 1e-9
LINEAR_METHODS = ["newton", "coordinate", "qp", dense_nodal_analysis]  # every solver handles a linear network
IDEAL_METHODS = ["layered", "coordinate", "qp"]


def assert_close(actual, expected, scale=None):
    """|actual - expected| <= 1e-9 max(|expected|, scale), elementwise (scale: for zeros)."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    bound = RTOL * np.maximum(np.abs(expected), 0.0 if scale is None else scale)
    assert np.all(np.abs(actual - expected) <= bound), (actual, expected, np.abs(actual - expected))


def solved(circuit, **kwargs):
    result = solve(circuit, **kwargs)
    assert result.success, result.message
    assert np.all(np.isfinite(result.potentials))
    method = kwargs.get("method", "auto")
    if method != "auto":  # a named method is the one that runs
        assert result.solver == getattr(method, "__name__", method)
    return result


# --- linear networks ------------------------------------------------------------------------

@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_voltage_divider_output_is_vs_r2_over_r1_plus_r2(method):
    c = make_circuit([("V", "V1", "in", "0", 10.0), ("R", "R1", "in", "out", 1e3),
                      ("R", "R2", "out", "0", 3.3e3)])
    r = solved(c, method=method)
    assert_close(voltage(r, c, "out"), 10.0 * 3.3e3 / 4.3e3)
    assert_close(current(r, c, "R1"), 10.0 / 4.3e3)
    assert_close(current(r, c, "R2"), 10.0 / 4.3e3)


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_series_and_parallel_resistances_combine(method):
    # 1k + (2k || 3k || 6k) + 500 = 1k + 1k + 500 = 2.5k, driven by 5 V.
    c = make_circuit([("V", "V1", "a", "0", 5.0), ("R", "R1", "a", "b", 1e3),
                      ("R", "R2", "b", "c", 2e3), ("R", "R3", "b", "c", 3e3), ("R", "R4", "b", "c", 6e3),
                      ("R", "R5", "c", "0", 500.0)])
    r = solved(c, method=method)
    total = 5.0 / 2.5e3
    assert_close(-current(r, c, "V1"), total)
    assert_close(voltage(r, c, "b"), 5.0 - 1e3 * total)
    assert_close(voltage(r, c, "c"), 500.0 * total)
    v_bc = 1e3 * total
    assert_close([current(r, c, name) for name in ("R2", "R3", "R4")], [v_bc / 2e3, v_bc / 3e3, v_bc / 6e3])


def bridge(r1, r2, r3, r4, rg, vs=12.0):
    """Wheatstone bridge: top -R1- left -R2- 0, top -R3- right -R4- 0, galvanometer Rg left-right."""
    return make_circuit([("V", "VS", "top", "0", vs), ("R", "R1", "top", "left", r1),
                         ("R", "R2", "left", "0", r2), ("R", "R3", "top", "right", r3),
                         ("R", "R4", "right", "0", r4), ("R", "RG", "left", "right", rg)])


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_balanced_wheatstone_bridge_carries_no_galvanometer_current(method):
    c = bridge(1e3, 2e3, 1.5e3, 3e3, 50.0)
    r = solved(c, method=method)
    assert_close(current(r, c, "RG"), 0.0, scale=12.0 / 1e3)
    assert_close(voltage(r, c, "left"), 12.0 * 2 / 3)
    assert_close(voltage(r, c, "right"), 12.0 * 2 / 3)


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_unbalanced_wheatstone_bridge_matches_thevenin_closed_form(method):
    r1, r2, r3, r4, rg, vs = 1e3, 2.2e3, 4.7e3, 3.3e3, 120.0, 12.0
    c = bridge(r1, r2, r3, r4, rg, vs)
    r = solved(c, method=method)
    v_th = vs * (r2 / (r1 + r2) - r4 / (r3 + r4))
    r_th = r1 * r2 / (r1 + r2) + r3 * r4 / (r3 + r4)
    assert_close(current(r, c, "RG"), v_th / (r_th + rg))


def r2r_ladder(bits: int, r: float = 1e3):
    """R-2R DAC: bit k drives ladder node n_k through 2R; n_0 is terminated by 2R to ground."""
    elements = [("R", "RT", "n0", "0", 2 * r)]
    for k in range(bits):
        elements.append(("V", f"VB{k}", f"b{k}", "0", 0.0))
        elements.append(("R", f"R2_{k}", f"b{k}", f"n{k}", 2 * r))
        if k + 1 < bits:
            elements.append(("R", f"R_{k}", f"n{k}", f"n{k + 1}", r))
    return make_circuit(elements)


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_r2r_ladder_output_is_binary_weighted_sum_of_bits(method):
    bits, vref = 6, 2.5
    c = r2r_ladder(bits)
    codes = np.arange(2 ** bits)
    levels = (codes[:, None] >> np.arange(bits)) & 1  # (B, bits), bit k of each code
    r = solved(c, sources=vref * levels, method=method)
    out = r.potentials[:, c.node_index[f"n{bits - 1}"]]
    assert_close(out, vref * codes / 2 ** bits, scale=vref)


def thevenin_network():
    """A fixed irregular linear network with one voltage and one current source; port A-B."""
    rng = np.random.default_rng(7)
    elements = [(("R", f"R{r}{c}h", f"{r}{c}", f"{r}{c + 1}", rng.uniform(100, 10e3))) for r in range(3)
                for c in range(2)]
    elements += [(("R", f"R{r}{c}v", f"{r}{c}", f"{r + 1}{c}", rng.uniform(100, 10e3))) for r in range(2)
                 for c in range(3)]
    elements += [("V", "V1", "00", "0", 3.0), ("R", "RG", "22", "0", 470.0), ("I", "I1", "0", "12", 2e-3)]
    return elements


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_network_seen_from_two_nodes_is_its_thevenin_equivalent(method):
    port_a, port_b = "11", "02"
    base = thevenin_network()
    open_circuit = solved(make_circuit(base), method=method)
    c_open = make_circuit(base)
    v_oc = voltage(open_circuit, c_open, port_a) - voltage(open_circuit, c_open, port_b)
    c_short = make_circuit(base + [("V", "VSHORT", port_a, port_b, 0.0)])
    i_sc = current(solved(c_short, method=method), c_short, "VSHORT")  # from A through the short to B
    r_th = v_oc / i_sc
    # The same resistance with every source killed and 1 A pushed into A out of B.
    dead = [("R", "RTERM", "00", "0", 1e-3) if e[1] == "V1" else e for e in base if e[1] != "I1"]
    dead = [e for e in dead if e[1] != "RTERM"] + [("V", "V1", "00", "0", 0.0),
                                                   ("I", "ITEST", port_b, port_a, 1.0)]
    c_dead = make_circuit(dead)
    r_dead = solved(c_dead, method=method)
    assert_close(voltage(r_dead, c_dead, port_a) - voltage(r_dead, c_dead, port_b), r_th)
    for r_load in (10.0, 1e3, 1e6):
        c_load = make_circuit(base + [("R", "RL", port_a, port_b, r_load)])
        r_l = solved(c_load, method=method)
        v_ab = voltage(r_l, c_load, port_a) - voltage(r_l, c_load, port_b)
        assert_close(v_ab, v_oc * r_load / (r_load + r_th))


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_superposition_response_to_two_sources_is_sum_of_responses(method):
    c = make_circuit(thevenin_network())
    v1, i1 = 3.0, 2e-3
    r = solved(c, sources=np.array([[v1, i1], [v1, 0.0], [0.0, i1]]), method=method)
    both, only_v, only_i = r.potentials
    assert_close(both, only_v + only_i, scale=np.abs(both).max())
    assert np.abs(only_v).max() > 0.1 and np.abs(only_i).max() > 0.1  # both sources matter


def grid_resistance_circuit(n: int, resistance: float = 1.0):
    """n x n grid, 1 A injected at a centre node, drawn out of its neighbour (the ground)."""
    m = n // 2
    a, b = f"{m}_{m - 1}", f"{m}_{m}"
    elements = [(k, name, "0" if x == b else x, "0" if y == b else y, v)
                for k, name, x, y, v in grid(n, resistance)]
    return make_circuit(elements + [("I", "IIN", "0", a, 1.0)]), a, b


def laplacian_resistance(n: int, a: str, b: str, resistance: float = 1.0) -> float:
    """Effective resistance (e_a - e_b)^T L^+ (e_a - e_b) from a dense Laplacian pseudo-inverse."""
    index = {f"{r}_{c}": r * n + c for r in range(n) for c in range(n)}
    L = np.zeros((n * n, n * n))
    for _, _, x, y, value in grid(n, resistance):
        i, j = index[x], index[y]
        L[[i, j], [i, j]] += 1.0 / value
        L[i, j] -= 1.0 / value
        L[j, i] -= 1.0 / value
    # Pseudo-inverse of a connected graph's Laplacian: (L + J/N)^-1 - J/N, J the all-ones matrix.
    J = np.full_like(L, 1.0 / len(L))
    Lp = np.linalg.inv(L + J) - J
    assert np.allclose(L @ Lp @ L, L, atol=1e-9)  # it is the pseudo-inverse
    i, j = index[a], index[b]
    return float(Lp[i, i] + Lp[j, j] - 2 * Lp[i, j])


@pytest.mark.parametrize("n", [3, 8, 15])
def test_grid_resistance_between_adjacent_nodes_matches_laplacian_pseudo_inverse(n):
    c, a, b = grid_resistance_circuit(n, resistance=220.0)
    r = solved(c)
    assert_close(voltage(r, c, a), laplacian_resistance(n, a, b, resistance=220.0))


def test_grid_resistance_between_adjacent_nodes_approaches_half_r_as_grid_grows():
    excess = []
    for n in (20, 40, 80):
        c, a, _ = grid_resistance_circuit(n)
        excess.append(voltage(solved(c), c, a) - 0.5)
    assert all(e > 0 for e in excess) and excess[0] > excess[1] > excess[2]
    assert excess[2] < 1e-4
    # Finite-size correction ~ 1/n^2: doubling n divides it by about 4.
    assert 3.8 < excess[0] / excess[1] < 4.2 and 3.8 < excess[1] / excess[2] < 4.2


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_current_source_into_resistor_gives_ohms_law_with_spice_sign(method):
    # I n+ n- I0 draws I0 out of n+ and injects it into n-.
    c = make_circuit([("I", "I1", "0", "a", 2e-3), ("R", "R1", "a", "0", 1.5e3),
                      ("I", "I2", "b", "0", 1e-3), ("R", "R2", "b", "0", 2e3)])
    r = solved(c, method=method)
    assert_close(voltage(r, c, "a"), 3.0)
    assert_close(voltage(r, c, "b"), -2.0)
    assert_close(current(r, c, "I1"), 2e-3)
    assert_close(current(r, c, "R1"), 2e-3)
    assert_close(current(r, c, "R2"), -1e-3)


def test_a_callable_method_gets_the_options_and_is_refused_a_non_convex_phase():
    c = make_circuit([("V", "V1", "in", "0", 10.0), ("R", "R1", "in", "out", 1e3), ("R", "R2", "out", "0", 3.3e3)])
    half = solve(c, method=dense_nodal_analysis, scale=0.5)
    assert half.message == "dense nodal analysis" and half.iterations == 1
    assert_close(voltage(half, c, "out"), 0.5 * 10.0 * 3.3e3 / 4.3e3)
    calls = []
    with pytest.raises(CircuitError, match="non-convex"):
        solve(c, method=lambda problem, **options: calls.append(problem), conductance=[1e-3, -1e-3])
    assert not calls  # solve checks convexity before the method runs


# --- diodes ---------------------------------------------------------------------------------

def diode_resistor_closed_form(vs, r, isat, nvt, gmin):
    """Junction voltage v of  vs -R- v -(diode || gmin)- 0  from Lambert W.

    KCL: (vs - v)/r = Is (e^{v/nVt} - 1) + gmin v, i.e. v = A - B e^{v/nVt} with
    A = (vs + r Is)/(1 + r gmin), B = r Is/(1 + r gmin), so v = A - nVt W(B/nVt e^{A/nVt}).
    """
    a = (vs + r * isat) / (1 + r * gmin)
    b = r * isat / (1 + r * gmin)
    w = lambertw(b / nvt * np.exp(a / nvt)).real
    return a - nvt * w


@pytest.mark.parametrize("gmin", [0.0, 1e-12])
@pytest.mark.parametrize("emission", [1.0, 1.8])
def test_diode_resistor_operating_point_matches_lambert_w(gmin, emission):
    isat, res = 1e-14, 1e3
    c = make_circuit([("V", "V1", "in", "0", 0.0), ("R", "R1", "in", "a", res),
                      ("D", "D1", "a", "0", (isat, emission))], gmin=gmin, inputs=["V1"])
    vs = np.array([-5.0, -0.3, 0.0, 0.2, 0.5, 0.65, 0.8, 1.0, 3.0, 5.0])
    r = solved(c, inputs=vs[:, None], method="newton")
    nvt = emission * THERMAL_VOLTAGE
    expected = diode_resistor_closed_form(vs, res, isat, nvt, gmin)
    assert_close(r.potentials[:, c.node_index["a"]], expected, scale=1e-3)
    # The junction's own law at the closed-form voltage; the resistor's current is only as
    # precise as vs - v, i.e. to 1e-9 of vs / R.
    assert_close(r.currents["diodes"][:, 0], isat * np.expm1(expected / nvt) + gmin * expected,
                 scale=1e-15)  # at vs = 0 the closed form rounds to ~1e-27 V, not 0
    assert_close(r.currents["resistors"][:, 0], (vs - expected) / res, scale=np.abs(vs).max() / res)


def test_diode_gmin_shifts_the_reverse_bias_point_by_the_divider_it_forms():
    # Reverse-biased through a huge resistor, gmin dominates: v = vs gmin^-1 / (R + gmin^-1) - Is terms.
    isat, res, vs = 1e-14, 1e12, -2.0
    with_gmin = make_circuit([("V", "V1", "in", "0", vs), ("R", "R1", "in", "a", res),
                              ("D", "D1", "a", "0", (isat, 1.0))], gmin=1e-12)
    r = solved(with_gmin)
    expected = diode_resistor_closed_form(vs, res, isat, THERMAL_VOLTAGE, 1e-12)
    assert abs(expected - vs / 2) < 0.02  # the parallel gmin halves the reverse voltage
    assert_close(voltage(r, with_gmin, "a"), expected)


# --- ideal diodes ---------------------------------------------------------------------------

def clipper():
    """Vin -R1- a -RL- 0; X1 a -> +0.5 V rail, X2 -0.3 V rail -> a: output clipped to [-0.3, 0.5].

    With `a` the output it is a layered network of one layer, so the layered path serves it too.
    """
    return make_circuit([("V", "VIN", "in", "0", 0.0), ("R", "R1", "in", "a", 1e3),
                         ("R", "RL", "a", "0", 3e3), ("X", "X1", "a", "hi", None),
                         ("V", "VHI", "hi", "0", 0.5), ("X", "X2", "lo", "a", None),
                         ("V", "VLO", "lo", "0", -0.3)], inputs=["VIN"], outputs=["a"])


@pytest.mark.parametrize("method", IDEAL_METHODS)
def test_ideal_diode_clipper_is_piecewise_linear_across_both_knees(method):
    c = clipper()
    gain = 3e3 / 4e3
    knees = np.array([0.5, -0.3]) / gain
    vin = np.concatenate([np.linspace(-2.0, 2.0, 41), knees, knees * (1 + 1e-6), knees * (1 - 1e-6)])
    r = solved(c, inputs=vin[:, None], method=method)
    out = r.potentials[:, c.node_index["a"]]
    assert_close(out, np.clip(gain * vin, -0.3, 0.5), scale=1.0)
    # Conducting diodes carry what the resistors do not: (vin - v)/R1 - v/RL.
    excess = (vin - out) / 1e3 - out / 3e3
    assert_close(r.currents["ideal_diodes"][:, 0], np.maximum(excess, 0.0), scale=1e-3)
    assert_close(r.currents["ideal_diodes"][:, 1], np.maximum(-excess, 0.0), scale=1e-3)
    assert r.residual <= 1e-12


@pytest.mark.parametrize("method", ["auto", "qp"])
def test_half_wave_rectifier_with_diode_between_free_nodes_passes_positive_half(method):
    c = make_circuit([("V", "VIN", "in", "0", 0.0), ("R", "R1", "in", "a", 1e3),
                      ("X", "X1", "a", "b", None), ("R", "RL", "b", "0", 4e3),
                      ("R", "RA", "a", "0", 1e6)], inputs=["VIN"])
    vin = np.linspace(-3.0, 3.0, 25)
    r = solved(c, inputs=vin[:, None], method=method)
    assert r.solver == "qp"
    # On: in -1k- (a=b) -(4k || 1M)- 0. Off: b = 0, a = vin 1M / (1M + 1k).
    r_on = 4e3 * 1e6 / (4e3 + 1e6)
    expected_b = np.where(vin > 0, vin * r_on / (r_on + 1e3), 0.0)
    assert_close(r.potentials[:, c.node_index["b"]], expected_b, scale=1.0)
    expected_a = np.where(vin > 0, expected_b, vin * 1e6 / (1e6 + 1e3))
    assert_close(r.potentials[:, c.node_index["a"]], expected_a, scale=1.0)


# --- sign conventions and energy ------------------------------------------------------------

@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_voltage_source_current_is_negative_when_it_delivers_power(method):
    # V1 (10 V) charges V2 (4 V) through 2k: V1 delivers, V2 absorbs.
    c = make_circuit([("V", "V1", "a", "0", 10.0), ("R", "R1", "a", "b", 2e3), ("V", "V2", "b", "0", 4.0),
                      ("R", "R2", "a", "0", 1e3)])
    r = solved(c, method=method)
    assert_close(current(r, c, "V1"), -(6.0 / 2e3 + 10.0 / 1e3))
    assert_close(current(r, c, "V2"), 6.0 / 2e3)
    # A floating source (n- not grounded) obeys the same sign.
    c = make_circuit([("V", "V1", "a", "0", 1.0), ("V", "V2", "b", "a", 2.0), ("R", "R1", "b", "0", 1e3)])
    r = solved(c, method=method)
    assert_close(voltage(r, c, "b"), 3.0)
    assert_close(current(r, c, "V2"), -3e-3)
    assert_close(current(r, c, "V1"), -3e-3)


def test_current_source_absorbing_power_keeps_its_value_as_current():
    # 1 mA from a to 0 through the source while a V source holds a: the source absorbs power.
    c = make_circuit([("V", "V1", "a", "0", 5.0), ("I", "I1", "a", "0", 1e-3), ("R", "R1", "a", "0", 1e3)])
    r = solved(c)
    assert_close(current(r, c, "I1"), 1e-3)
    assert_close(current(r, c, "V1"), -(5e-3 + 1e-3))


def test_diode_current_is_positive_from_anode_to_cathode():
    c = make_circuit([("V", "V1", "a", "0", 2.0), ("R", "R1", "a", "b", 1e3), ("D", "D1", "b", "0", (1e-14, 1)),
                      ("R", "R2", "a", "c", 1e3), ("D", "D2", "0", "c", (1e-14, 1))])
    r = solved(c)
    assert current(r, c, "D1") > 1e-3  # forward
    assert -3e-12 < current(r, c, "D2") < 0  # reverse: -Is - gmin v
    assert_close(current(r, c, "D2"), -1e-14 - 1e-12 * voltage(r, c, "c"), scale=0)


@pytest.mark.parametrize("method", LINEAR_METHODS)
def test_energy_is_the_total_co_content_at_the_operating_point(method):
    c = make_circuit([("V", "V1", "a", "0", 3.0), ("R", "R1", "a", "b", 1e3), ("R", "R2", "b", "0", 2e3),
                      ("I", "I1", "0", "b", 1e-3), ("R", "R3", "b", "c", 500.0), ("R", "R4", "c", "0", 1.5e3)])
    r = solved(c, method=method)
    v = r.potentials[0]
    g = c.resistors.conductance
    branch = v[c.resistors.nodes[:, 0]] - v[c.resistors.nodes[:, 1]]
    i_nodes = c.sources.nodes[~c.sources.is_voltage][0]
    expected = 0.5 * np.sum(g * branch ** 2) + 1e-3 * (v[i_nodes[0]] - v[i_nodes[1]])
    assert_close(r.energy, [expected])


def test_energy_is_the_total_co_content_with_diodes():
    isat, gmin = 2e-14, 1e-12
    c = make_circuit([("V", "V1", "a", "0", 1.5), ("R", "R1", "a", "b", 1e3), ("D", "D1", "b", "0", (isat, 1.3)),
                      ("D", "D2", "0", "b", (isat, 1.3))], gmin=gmin)
    r = solved(c)
    vb = voltage(r, c, "b")
    nvt = 1.3 * THERMAL_VOLTAGE

    def junction(v):
        return isat * (nvt * np.expm1(v / nvt) - v) + 0.5 * gmin * v * v

    expected = 0.5 * (1.5 - vb) ** 2 / 1e3 + junction(vb) + junction(-vb)
    assert_close(r.energy, [expected])


def test_operating_point_is_the_minimum_of_the_co_content():
    """Moving any free node away from the solution raises the energy (to second order)."""
    from aeqprop_circuits.circuit.energy import Problem

    c = make_circuit([("V", "V1", "a", "0", 1.0), ("R", "R1", "a", "b", 1e3), ("D", "D1", "b", "c", (1e-14, 1)),
                      ("R", "R2", "c", "0", 100.0), ("I", "I1", "0", "c", 1e-4)])
    r = solved(c)
    problem = Problem(c, c.source_values())
    for j in range(r.free.shape[1]):
        for h in (1e-4, -1e-4):
            z = r.free.copy()
            z[0, j] += h
            assert problem.energy(z)[0] > r.energy[0]
