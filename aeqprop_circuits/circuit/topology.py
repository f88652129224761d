"""Eliminating voltage sources: node potentials as an affine map of free variables.

Voltage sources tie node potentials together. Each connected component of the
voltage-source graph is one *supernode*: if it holds ground, all its potentials are fixed
by the sources; otherwise it has one free potential z (that of its root) and every other
node sits at z plus a signed sum of source values along its path to the root. So

    V = z @ P.T + s @ Q.T          (B, n_nodes)

with P (n_nodes, n_free) a 0/1 selection and Q (n_nodes, n_sources) signed path sums. The
co-content is then an unconstrained function of z (and box-constrained with ideal diodes).
Everything here is computed once per circuit topology.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.errors import CircuitError


@dataclass(frozen=True, eq=False)
class Topology:
    P: sp.csr_matrix  # (n_nodes, n_free)
    Q: sp.csr_matrix  # (n_nodes, n_sources)
    free_of_node: np.ndarray  # (n_nodes,) index of a node's free variable, -1 when fixed
    source_current: sp.csr_matrix  # (n_vsources, n_nodes): current of each V source from KCL residuals
    voltage_sources: np.ndarray  # indices into circuit.sources of the voltage sources

    @property
    def n_free(self) -> int:
        return self.P.shape[1]


def build_topology(circuit: Circuit) -> Topology:
    """Reduce the voltage-source constraints; raise CircuitError on loops and floating nodes."""
    n = circuit.n_nodes
    src = circuit.sources
    vsrc = np.flatnonzero(src.is_voltage)
    adjacency: list[list[tuple[int, int, float]]] = [[] for _ in range(n)]
    for k in vsrc:
        a, b = src.nodes[k]
        if a == b:
            raise CircuitError(f"{circuit.where('sources', k)}voltage source {src.names[k]} has both terminals "
                               f"on node '{circuit.node_names[a]}'")
        adjacency[a].append((b, k, -1.0))  # V[b] = V[a] - value
        adjacency[b].append((a, k, +1.0))  # V[a] = V[b] + value

    free_of_node = np.full(n, -1, dtype=np.int64)
    q_rows, q_cols, q_vals = [], [], []
    parent_edge = np.full(n, -1, dtype=np.int64)  # voltage source linking a node to its BFS parent
    order: list[int] = []
    path: dict[int, dict[int, float]] = {}
    seen = np.zeros(n, dtype=bool)
    used_edge = np.zeros(len(src.names), dtype=bool)
    n_free = 0
    # Ground first, so that its component is the fixed one.
    for root in range(n):
        if seen[root]:
            continue
        if root != 0:
            free_of_node[root] = n_free
        component_free = -1 if root == 0 else n_free
        seen[root] = True
        path[root] = {}
        queue = deque([root])
        while queue:
            u = queue.popleft()
            order.append(u)
            for v, k, sign in adjacency[u]:
                if used_edge[k]:
                    continue
                used_edge[k] = True
                if seen[v]:
                    raise CircuitError(
                        f"{circuit.where('sources', k)}loop of voltage sources through {src.names[k]}: node "
                        f"'{circuit.node_names[v]}' is fixed twice (SPICE refuses this too)")
                seen[v] = True
                free_of_node[v] = component_free
                parent_edge[v] = k
                path[v] = dict(path[u])
                path[v][k] = path[v].get(k, 0.0) + sign
                queue.append(v)
        if component_free >= 0:
            n_free += 1
    for node, terms in path.items():
        for k, sign in terms.items():
            q_rows.append(node)
            q_cols.append(k)
            q_vals.append(sign)
    rows = np.flatnonzero(free_of_node >= 0)
    P = sp.csr_matrix((np.ones(len(rows)), (rows, free_of_node[rows])), shape=(n, n_free))
    Q = sp.csr_matrix((q_vals, (q_rows, q_cols)), shape=(n, len(src.names)))

    # Source currents from KCL: the current a V source carries equals the net current that
    # leaves (through other elements) the subtree of nodes hanging below it in the BFS forest.
    position = {k: i for i, k in enumerate(vsrc)}
    subtree: dict[int, list[int]] = {u: [u] for u in range(n)}
    c_rows, c_cols, c_vals = [], [], []
    for u in reversed(order):
        k = parent_edge[u]
        if k < 0:
            continue
        a, b = src.nodes[k]
        parent = b if u == a else a
        sign = -1.0 if u == a else 1.0  # u is n+: current into n+ = -(current leaving subtree)
        for w in subtree[u]:
            c_rows.append(position[k])
            c_cols.append(w)
            c_vals.append(sign)
        subtree[parent].extend(subtree[u])
    current = sp.csr_matrix((c_vals, (c_rows, c_cols)), shape=(len(vsrc), n))

    topology = Topology(P, Q, free_of_node, current, vsrc)
    check_floating(circuit, topology)
    return topology


def check_floating(circuit: Circuit, topology: Topology, conducting: np.ndarray | None = None) -> None:
    """Every free supernode needs a DC path (resistor or diode) to a fixed potential.

    `conducting` (n_resistors,) bool keeps only those resistors as paths: a resistor whose
    conductance is set to 0 S (a trainable one at its lower bound) is no path at all.
    """
    if topology.n_free == 0:
        return
    resistors = circuit.resistors.nodes if conducting is None else circuit.resistors.nodes[conducting]
    pairs = np.vstack([resistors, circuit.diodes.nodes])
    # Map nodes to supernodes: fixed nodes all collapse into one vertex, the last.
    fixed = topology.n_free
    vertex = np.where(topology.free_of_node >= 0, topology.free_of_node, fixed)
    u, v = vertex[pairs[:, 0]], vertex[pairs[:, 1]]
    graph = sp.coo_matrix((np.ones(len(u)), (u, v)), shape=(fixed + 1, fixed + 1))
    _, label = connected_components(graph, directed=False)
    floating = np.flatnonzero(label[:fixed] != label[fixed])
    if len(floating):
        indices = [i for i in np.flatnonzero(np.isin(topology.free_of_node, floating)) if not circuit.internal[i]]
        nodes = [circuit.node_names[i] for i in indices]
        shown = ", ".join(f"'{name}'" for name in nodes[:8]) + (" ..." if len(nodes) > 8 else "")
        zero = "" if conducting is None else " of nonzero conductance"
        where = circuit.where("nodes", indices[0]) if indices else ""
        raise CircuitError(f"{where}floating node{'s' if len(nodes) > 1 else ''} {shown}: no DC path "
                           f"(resistor{zero} or diode) to ground or to a voltage source")


def check_outputs(circuit: Circuit, topology: Topology) -> None:
    """Every output must move with the circuit's free potentials.

    An output whose nodes are both held by voltage sources (or tied to each other by them)
    reads a fixed voltage: nudging it does nothing and training runs at a constant loss.
    """
    free = topology.free_of_node
    for o, (p, n) in enumerate(circuit.learning.outputs):
        if free[p] == free[n]:
            name = circuit.learning.output_names[o]
            held = "held by voltage sources" if free[p] < 0 else "tied to each other by voltage sources"
            raise CircuitError(f"{circuit.where('outputs', o)}output {name} is pinned: its nodes are {held}, "
                               "so it reads a fixed voltage whatever the conductances (training would run "
                               "at a constant loss)")
