"""Chapter 2 mechanisms written out by hand: the neuron, backpropagation, softmax cross-entropy.

Each function follows the notes' equations step by step; the tests check them against `jax.grad`,
`jax.jacobian` and the optax losses. The models and training loops elsewhere use the library.
"""
