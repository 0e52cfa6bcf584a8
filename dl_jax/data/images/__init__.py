"""Image data: MNIST and Fashion-MNIST fetched and cached (`mnist`), the
classification input pipeline whose batch order is a pure function of
(seed, epoch) (`pipeline`), and jitted augmentation of NHWC batches
(`augment`)."""
