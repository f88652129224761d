"""Builder for deep resistive networks (DRNs): large layered circuits without a 10^6-line file.

Structure (Scellier 2024, "A fast algorithm to simulate nonlinear resistive networks"):
- each data input x_i is a pair of voltage sources at +x_i and -x_i (doubled inputs, so
  that positive conductances can realise weights of either sign);
- each hidden node has two diodes to bias sources, which hold its potential inside
  [v_low, v_high] (a hard non-linearity, ideal diodes by default);
- trainable resistors join every node of a layer to every node of the next, laid out
  row-major so that a layer's conductances reshape to a (fan_in, fan_out) matrix;
- optional trainable bias resistors from every hidden and output node to a +1 V and a
  -1 V source;
- each output is a differential pair of nodes, read as V(o+) - V(o-).
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.circuit.circuit import (
    Circuit,
    Diodes,
    IdealDiodes,
    Learning,
    Resistors,
    Sources,
)


def deep_resistive_network(sizes: list[int] | tuple[int, ...], *, seed: int = 0, g0: float = 1e-3,
                           v_low: float = 0.0, v_high: float = 1.0, bias: bool = True,
                           ideal: bool = True, saturation_current: float = 1e-14,
                           emission: float = 1.0, doubled_inputs: bool = True,
                           g_range: tuple[float, float] = (0.0, np.inf), init_scale: float = 1.0) -> Circuit:
    """A DRN with `sizes = [n_inputs, hidden..., n_outputs]` (inputs and outputs counted once).

    Conductances are drawn uniform in [0, 2 g0 / fan_in] (so a node's total input
    conductance is about g0), times `init_scale`. `doubled_inputs` makes `sizes[0]` data columns drive
    2 sizes[0] sources (pass e.g. 784 for MNIST to get the 1568 input sources of the paper).
    """
    rng = np.random.default_rng(seed)
    n_in, hidden, n_out = sizes[0], list(sizes[1:-1]), sizes[-1]
    names = ["0"]

    def add_nodes(prefix: str, count: int) -> np.ndarray:
        start = len(names)
        names.extend(f"{prefix}{i}" for i in range(count))
        return np.arange(start, start + count)

    # Fixed nodes: input pairs and bias rails.
    if doubled_inputs:
        x_pos, x_neg = add_nodes("xp", n_in), add_nodes("xn", n_in)
        input_layer = np.concatenate([x_pos, x_neg])
    else:
        x_pos = add_nodes("x", n_in)
        input_layer = x_pos
    rails = add_nodes("rail", 4)  # v_low, v_high, +1 V, -1 V
    layers = [add_nodes(f"h{k + 1}_", h) for k, h in enumerate(hidden)]
    out_pos, out_neg = add_nodes("op", n_out), add_nodes("on", n_out)
    output_layer = np.concatenate([out_pos, out_neg])

    # Resistors: dense between consecutive layers (row-major), then biases.
    r_names, r_nodes, r_g = [], [], []
    for k, (src, dst) in enumerate(zip([input_layer, *layers], [*layers, output_layer])):
        a, b = np.meshgrid(src, dst, indexing="ij")
        r_nodes.append(np.stack([a.ravel(), b.ravel()], axis=1))
        r_g.append(init_scale * rng.uniform(0.0, 2.0 * g0 / len(src), size=a.size))
        r_names.extend(f"rw{k + 1}_{i}_{j}" for i in range(len(src)) for j in range(len(dst)))
    if bias:
        biased = np.concatenate([*layers, output_layer]) if layers else output_layer
        for rail, tag in ((rails[2], "p"), (rails[3], "n")):
            r_nodes.append(np.stack([biased, np.full(len(biased), rail)], axis=1))
            r_g.append(init_scale * rng.uniform(0.0, g0 / 4.0, size=len(biased)))
            r_names.extend(f"rb{tag}_{names[i]}" for i in biased)
    conductance = np.clip(np.concatenate(r_g), g_range[0], g_range[1])
    resistors = Resistors(tuple(r_names), np.concatenate(r_nodes), conductance)

    # Diodes: node -> v_high rail (conducts when V > v_high), v_low rail -> node (when V < v_low).
    if layers:
        h = np.concatenate(layers)
        d_nodes = np.concatenate([np.stack([h, np.full(len(h), rails[1])], 1),
                                  np.stack([np.full(len(h), rails[0]), h], 1)])
        d_names = tuple([f"dh_{names[i]}" for i in h] + [f"dl_{names[i]}" for i in h])
    else:
        d_nodes, d_names = np.zeros((0, 2), dtype=np.int64), ()
    if ideal:
        ideal_diodes = IdealDiodes(d_names, d_nodes)
        diodes = Diodes((), np.zeros((0, 2)), [], [])
    else:
        ideal_diodes = IdealDiodes((), np.zeros((0, 2)))
        diodes = Diodes(d_names, d_nodes, np.full(len(d_names), saturation_current),
                        np.full(len(d_names), emission))

    # Sources: inputs first (data columns), then rails.
    s_names = [f"vxp{i}" for i in range(n_in)] + ([f"vxn{i}" for i in range(n_in)] if doubled_inputs else [])
    s_nodes = [(i, 0) for i in input_layer]
    s_values = [0.0] * len(input_layer)
    for rail, name, value in zip(rails, ("vlow", "vhigh", "vplus", "vminus"), (v_low, v_high, 1.0, -1.0)):
        s_names.append(name)
        s_nodes.append((rail, 0))
        s_values.append(value)
    sources = Sources(tuple(s_names), s_nodes, s_values, np.ones(len(s_names), dtype=bool))

    input_map = np.zeros((len(s_names), n_in))
    input_map[np.arange(n_in), np.arange(n_in)] = 1.0
    if doubled_inputs:
        input_map[n_in + np.arange(n_in), np.arange(n_in)] = -1.0
        input_sources = tuple(f"pair(vxp{i},vxn{i})" for i in range(n_in))
    else:
        input_sources = tuple(f"vxp{i}" for i in range(n_in))
    trainable = np.arange(len(conductance))
    learning = Learning(
        input_sources=input_sources, input_map=input_map,
        output_names=tuple(f"diff(op{j},on{j})" for j in range(n_out)),
        outputs=np.stack([out_pos, out_neg], axis=1), trainable=trainable,
        low=np.full(len(trainable), g_range[0]), high=np.full(len(trainable), g_range[1]), g0=g0)
    title = "deep resistive network " + "-".join(str(s) for s in sizes)
    return Circuit(title, tuple(names), resistors, diodes, ideal_diodes, sources, learning,
                   layers=tuple(layers) + (output_layer,))


def parse_drn_spec(spec: str) -> list[int]:
    """'drn:1568-100-10' -> [784, 100, 10]: the spec counts input nodes (doubled), as the paper does."""
    body = spec.split(":", 1)[1] if ":" in spec else spec
    try:
        sizes = [int(part) for part in body.split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1 or sizes[0] % 2:
        from aeqprop_circuits.errors import AeqpropError

        raise AeqpropError(f"model spec '{spec}': expected drn:N_IN-H1-...-N_OUT with positive integers, "
                           "N_IN even (the doubled input nodes)")
    return [sizes[0] // 2, *sizes[1:]]
