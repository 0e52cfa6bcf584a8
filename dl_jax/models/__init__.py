"""Models of every family (images, sets, graphs, text): each module exports its `SPECS`, and
`dl_jax.models.registry` is the one table of them (`get`, `build`, `names`)."""
