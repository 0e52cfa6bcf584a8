"""dl_jax: a deep-learning course as JAX/Flax code that is fast, pure and tested."""

__version__ = "0.1.0"
