"""Graphs and sets (chapter 6) on `jraph.GraphsTuple`: builders and padding (`graphs`),
message passing and read-outs (`message_passing`, eq. 6.3), layers (`layers`: GCN, GraphSAGE,
Gated GNN, GAT, GIN, DeepSets, MLP), models by name (`models.build`), and replacements for the
jraph functions that fail on current JAX (`compat`)."""
