"""Reproductions of the source papers' experiments, each one command (`aeqprop reproduce ...`)."""
