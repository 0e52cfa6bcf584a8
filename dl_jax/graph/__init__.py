"""Graphs and sets (chapter 6) on `jraph.GraphsTuple`: builders and padding (`graphs`),
message passing and read-outs (`message_passing`, eq. 6.3), layers (`layers`: GCN, GraphSAGE,
Gated GNN, GAT, GIN, DeepSets, MLP), neighbour sampling (`sampling`), and replacements for the
jraph functions that fail on current JAX (`compat`). The models built from them are
`dl_jax.models.gnn`."""
