"""Circuits without a well-defined operating point are refused clearly, never solved silently.

Floating nodes, loops of voltage sources, conflicting ideal-diode constraints and
co-contents made unbounded by a negative nudge or conductance raise CircuitError with a
message naming the cause; a solve that fails for other reasons says so in `success` and
`message`, and nothing non-finite is ever returned with success=True.
"""

from __future__ import annotations

import numpy as np
import pytest
from circuits import make_circuit, voltage

from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.errors import AeqpropError, CircuitError, SolverError
from aeqprop_circuits.solvers import solve

ALL_METHODS = ["newton", "coordinate", "qp"]


def assert_finite(result):
    assert np.all(np.isfinite(result.potentials)) and np.all(np.isfinite(result.energy))
    assert all(np.all(np.isfinite(v)) for v in result.currents.values())
    assert np.isfinite(result.residual)


# --- floating nodes -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ALL_METHODS)
def test_floating_node_is_refused_and_named(method):
    c = make_circuit([("V", "V1", "a", "0", 1.0), ("R", "R1", "a", "0", 1e3),
                      ("R", "R2", "island", "shore", 1e3)])
    with pytest.raises(CircuitError, match=r"floating nodes 'island', 'shore'.*no DC path"):
        solve(c, method=method)


def test_node_reached_only_through_a_current_source_is_floating():
    c = make_circuit([("R", "R1", "a", "0", 1e3), ("I", "I1", "a", "b", 1e-3)])
    with pytest.raises(CircuitError, match=r"floating node 'b'"):
        solve(c)


def test_node_behind_a_capacitor_like_gap_is_floating_even_with_a_voltage_source_on_it():
    # b and c are tied by a voltage source (one supernode) but nothing connects them to ground.
    c = make_circuit([("V", "V1", "a", "0", 1.0), ("R", "R1", "a", "0", 1e3), ("V", "V2", "b", "c", 2.0),
                      ("R", "R2", "b", "c", 1e3)])
    with pytest.raises(CircuitError, match=r"floating nodes 'b', 'c'"):
        solve(c)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_node_whose_resistors_are_set_to_zero_conductance_is_floating(method):
    c = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("R", "R2", "a", "b", 1e3),
                      ("R", "R3", "b", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"floating node 'b'.*nonzero conductance"):
        solve(c, conductance=np.array([1e-3, 0.0, 0.0]), method=method)
    r = solve(c, conductance=np.array([1e-3, 0.0, 1e-3]), method=method)  # b held by R3: fine
    assert r.success and voltage(r, c, "a") == pytest.approx(1.0, abs=1e-12)


def test_node_held_only_by_ideal_diodes_is_floating():
    # Ideal diodes carry no current in reverse: the node's potential is undetermined.
    c = make_circuit([("V", "V1", "p", "0", 1.0), ("X", "X1", "a", "p", None), ("R", "R1", "p", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"floating node 'a'"):
        solve(c)


# --- loops of voltage sources ---------------------------------------------------------------

def test_parallel_voltage_sources_are_a_loop():
    c = make_circuit([("V", "V1", "a", "0", 1.0), ("V", "V2", "a", "0", 1.0), ("R", "R1", "a", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"loop of voltage sources through V2"):
        solve(c)


def test_triangle_of_voltage_sources_is_a_loop_even_when_consistent():
    c = make_circuit([("V", "V1", "a", "0", 1.0), ("V", "V2", "b", "a", 2.0), ("V", "V3", "b", "0", 3.0),
                      ("R", "R1", "b", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"loop of voltage sources"):
        solve(c)


def test_voltage_source_shorted_on_itself_is_refused():
    c = make_circuit([("V", "V1", "a", "a", 1.0), ("R", "R1", "a", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"V1 has both terminals on node 'a'"):
        solve(c)


# --- conflicting ideal-diode constraints ----------------------------------------------------

def squeezed_node(high=-1.0, low=1.0):
    """Node a forced below `high` and above `low` by two ideal diodes: conflicting if low > high."""
    return make_circuit([("V", "VH", "h", "0", high), ("V", "VL", "l", "0", low), ("X", "X1", "a", "h", None),
                         ("X", "X2", "l", "a", None), ("R", "R1", "a", "0", 1e3)])


@pytest.mark.parametrize("method", ["auto", "coordinate", "qp"])
def test_ideal_diodes_holding_a_node_above_and_below_conflict(method):
    with pytest.raises(CircuitError, match=r"conflicting constraints"):
        solve(squeezed_node(), method=method)
    r = solve(squeezed_node(high=1.0, low=-1.0), method=method)  # a window: a sits at 0
    assert r.success and abs(r.potentials).max() == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["coordinate", "qp"])
def test_ideal_diode_forward_biased_by_sources_alone_conflicts(method):
    c = make_circuit([("V", "V1", "a", "0", 1.0), ("X", "X1", "a", "0", None), ("R", "R1", "a", "b", 1e3),
                      ("R", "R2", "b", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"conflicting constraints"):
        solve(c, method=method)


def test_chain_of_ideal_diodes_between_free_nodes_conflicting_is_refused_by_qp():
    # 1 V -> a -> b -> 0 through ideal diodes pointing back up: a <= 1 is fine, but X3 b -> p
    # with b >= ... : the chain p > a > b > p cannot hold with p fixed at 1 V and 0 at 0 V.
    c = make_circuit([("V", "V1", "p", "0", 1.0), ("X", "X1", "p", "a", None), ("X", "X2", "a", "b", None),
                      ("X", "X3", "b", "0", None), ("R", "R1", "a", "0", 1e3), ("R", "R2", "b", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"conflicting constraints"):
        solve(c, method="qp")


# --- unbounded co-content: negative nudges and conductances ---------------------------------

def nudged_divider(diode=False, gmin=1e-12):
    """1 V -1k- o -(1k or diode)- 0, output o; its network conductance seen from o is 2 mS (1k/1k)."""
    load = ("D", "D1", "o", "0", (1e-14, 1.0)) if diode else ("R", "R2", "o", "0", 1e3)
    return make_circuit([("V", "V1", "a", "0", 1.0), ("R", "R1", "a", "o", 1e3), load], outputs=["o"], gmin=gmin)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_negative_nudge_stronger_than_the_network_is_refused(method):
    c = nudged_divider()
    for beta in (-2e-3, -2.5e-3, -1.0):
        with pytest.raises(CircuitError, match=r"non-convex phase.*-0?\.?\d.*unbounded below.*smaller \|beta\|"):
            solve(c, nudge=Nudge(beta, np.array([[0.3]])), method=method)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_negative_nudge_weaker_than_the_network_stays_solvable(method):
    c = nudged_divider()
    target = 0.3
    for beta in (-1e-4, -1e-3, -1.99e-3):
        r = solve(c, nudge=Nudge(beta, np.array([[target]])), method=method)
        assert r.success, r.message
        # KCL at o: (o - 1)/1k + o/1k + beta (o - target) = 0
        expected = (1e-3 + beta * target) / (2e-3 + beta)
        assert voltage(r, c, "o") == pytest.approx(expected, rel=1e-9)
        assert_finite(r)


def test_negative_nudge_on_a_diode_network_is_checked_against_its_resistive_part():
    c = nudged_divider(diode=True)
    r = solve(c, nudge=Nudge(-0.9e-3, np.array([[0.0]])))
    assert r.success and 0.6 < voltage(r, c, "o") < 0.7
    with pytest.raises(CircuitError, match=r"non-convex phase"):
        solve(c, nudge=Nudge(-1.1e-3, np.array([[0.0]])))


def test_negative_nudge_on_a_node_held_only_by_ideal_gmin_free_junctions_is_refused():
    # With gmin = 0 the junctions' co-content grows only linearly in reverse: any negative
    # nudge on a node between diodes alone is unbounded below.
    c = make_circuit([("V", "V1", "a", "0", 1.0), ("D", "D1", "a", "o", (1e-14, 1.0)),
                      ("D", "D2", "o", "0", (1e-14, 1.0))], outputs=["o"], gmin=0.0)
    with pytest.raises(CircuitError, match=r"non-convex phase"):
        solve(c, nudge=Nudge(-1e-9, np.array([[0.5]])))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_negative_conductance_making_the_co_content_unbounded_is_refused(method):
    c = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("R", "R2", "a", "0", 1e3)])
    with pytest.raises(CircuitError, match=r"non-convex phase: negative conductance -0.0015 S of R2"):
        solve(c, conductance=np.array([1e-3, -1.5e-3]), method=method)
    r = solve(c, conductance=np.array([1e-3, -0.5e-3]), method=method)  # net 0.5 mS: still convex
    assert r.success and voltage(r, c, "a") == pytest.approx(2.0, rel=1e-12)


def test_refusals_are_package_errors_so_the_cli_prints_one_line():
    assert issubclass(CircuitError, AeqpropError) and issubclass(SolverError, AeqpropError)


# --- solvers that cannot be used, and failed solves -----------------------------------------

def test_unknown_solver_name_is_refused_with_the_choices():
    c = nudged_divider()
    with pytest.raises(SolverError, match=r"unknown solver 'gauss'.*newton, coordinate, qp"):
        solve(c, method="gauss")


@pytest.mark.parametrize("method", ["coordinate", "qp"])
def test_exponential_diodes_are_refused_by_ideal_diode_solvers(method):
    with pytest.raises(SolverError, match=r"exponential diodes"):
        solve(nudged_divider(diode=True), method=method)


def test_coordinate_solver_refuses_an_ideal_diode_between_free_nodes():
    c = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("X", "X1", "a", "b", None),
                      ("R", "R2", "b", "0", 1e3)])
    with pytest.raises(SolverError, match=r"X1 joins two free nodes.*qp"):
        solve(c, method="coordinate")


def test_mixing_ideal_and_exponential_diodes_is_refused_by_auto():
    c = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("X", "X1", "a", "0", None),
                      ("D", "D1", "a", "0", (1e-14, 1.0))])
    with pytest.raises(SolverError, match=r"mixing ideal and exponential diodes"):
        solve(c)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("what", ["sources", "conductance", "target", "x0"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_give_success_false_never_a_number(method, what, bad):
    c = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("R", "R2", "a", "0", 1e3),
                      ("X", "X1", "a", "h", None), ("V", "VH", "h", "0", 0.4)], outputs=["a"])
    method_c = c if method != "newton" else make_circuit(
        [("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("R", "R2", "a", "0", 1e3),
         ("D", "D1", "a", "h", (1e-14, 1.0)), ("V", "VH", "h", "0", 0.4)], outputs=["a"])
    kwargs = {"sources": method_c.sources.value[None].copy(), "conductance": method_c.resistors.conductance.copy(),
              "nudge": Nudge(1e-4, np.array([[0.2]])), "x0": np.zeros((1, 1))}
    if what == "target":
        kwargs["nudge"] = Nudge(1e-4, np.array([[bad]]))
    elif what == "x0":
        kwargs["x0"] = np.array([[bad]])
    else:
        kwargs[what][..., 0] = bad
    r = solve(method_c, method=method, **kwargs)
    assert not r.success
    assert "non-finite" in r.message


def test_newton_out_of_iterations_reports_failure():
    c = nudged_divider(diode=True)
    r = solve(c, method="newton", maxiter=1, x0=np.array([[5.0]]))  # junction far above: slow
    assert not r.success and "no convergence in 1 Newton iterations" in r.message


@pytest.mark.parametrize("method", ["newton", "coordinate"])
def test_callback_raising_stop_iteration_ends_the_solve_cleanly(method):
    if method == "newton":
        c = nudged_divider(diode=True)
    else:
        c = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("R", "R2", "a", "b", 1e3),
                          ("R", "R3", "b", "0", 1e3), ("X", "X1", "b", "h", None), ("V", "VH", "h", "0", 0.1)])
    seen = []

    def stop(energy):
        seen.append(energy)
        raise StopIteration

    r = solve(c, method=method, callback=stop, polish_result=False) if method == "coordinate" else \
        solve(c, method=method, callback=stop)
    assert len(seen) == 1 and not r.success and "stopped by callback" in r.message
    assert_finite(r)
