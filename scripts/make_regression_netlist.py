"""Regenerate netlists/regression_fourier.cir, the circuit of the Aeqprop regression study on a circuit.

    python scripts/make_regression_netlist.py

21 input pairs (+-phi_i(z) volts, the Fourier features of Sec. 5.2), a differential output pair, 84
trainable resistors at g0 / 21 (output 0 V, 2 g0 at each output node), no bias resistors (the constant
feature's pair is the bias). See aeqprop_circuits/reproduce/circuit_regression.py.
"""

from aeqprop_circuits.experiments.reproduce.circuit_regression import fourier_regression_circuit
from aeqprop_circuits.netlist import write_netlist

PATH = "netlists/regression_fourier.cir"

if __name__ == "__main__":
    circuit = fourier_regression_circuit()
    with open(PATH, "w") as f:
        f.write(write_netlist(circuit))
    print(PATH, circuit.summary())
