"""1-D signal data: MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D",
2020/2024), generated procedurally by the `mnist1d` package and cached as npz (`mnist1d`).

    from dl_jax.data.signals import mnist1d
    data = mnist1d.load()                # float32 [4000, 40, 1] / [1000, 40, 1], int32 labels
    data = mnist1d.load(shuffled=True)   # the same signals, positions permuted (the control)
"""
