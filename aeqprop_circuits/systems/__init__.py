"""Physical systems: what an experimenter can touch (PhysicalSystem), for circuits, deep resistive networks,
Hopfield networks and systems given by energy functions; their optional capabilities are Protocols (base.py)."""
