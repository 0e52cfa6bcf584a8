"""Simulated physical systems, where no real dataset can be fetched: the charged N-body system
of Kipf et al. (2018) in 3-D (`nbody`), the benchmark of the E(n)-equivariant graph network.

    from dl_jax.data.physics import nbody
    data = nbody.load()   # train 3000 / val 2000 / test 2000 systems of 5 charged particles
"""
