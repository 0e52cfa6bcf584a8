"""Node classification on the WordNet "cora" subgraph (section 6.5, the Cora setting): 3,006
noun synsets around "physics", 15 supersense classes, 1,433-word bag-of-words features, the
Planetoid split (20 labelled nodes per class, 500 validation, 1,000 test). Kipf & Welling's
recipe: 2 layers, hidden 64, dropout 0.5, Adam lr 0.01, weight decay 5e-4, 200 epochs, model
selection by validation accuracy; 10 seeds trained at once (vmap).

  python -m experiments.main --config=experiments/configs/gnn_wordnet.py --workdir=runs/gnn_wordnet
  ... --config.model=gat   (or sage_mean, sage_maxpool, sage_lstm, ggnn, gin, mlp)

Expected (test accuracy at the best-validation epoch, mean +- std over 5 seeds
(--config.seeds=5), 200 epochs, measured on a shared 2-core CPU): GCN 85.4 +- 0.5 %, GAT
85.7 +- 0.3 %, GraphSAGE-maxpool 83.2 +- 0.7 %, GraphSAGE-mean 81.6 +- 0.7 %, GGNN 81.5 +- 1.5 %,
the MLP baseline 55.3 +- 0.9 %: the graph adds about 30 points. GraphSAGE-LSTM: 81.0 +- 1.5 %
(17 minutes for 5 seeds on an idle machine). GCN with 5 seeds trains in
about 2 minutes there.

--config.unsupervised_weight=1.0 adds GraphSAGE's unsupervised loss (Hamilton et al. 2017, eq. 1;
section 6.5.1): adjacent nodes get similar L2-normalised hidden embeddings, `unsupervised_edges`
edges and `unsupervised_negatives` degree^0.75 negatives per edge per step (full batch only).
"""

import ml_collections


def node_config() -> ml_collections.ConfigDict:
  """Defaults shared by the node-classification experiments."""
  config = ml_collections.ConfigDict()
  config.task = "node_classification"
  config.experiment = ""
  config.dataset = "wordnet_cora"  # wordnet_cora, wordnet_full, karate, csbm
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.split_seed = 0  # the split does not move with `seed`
  config.model = "gcn"
  config.model_kwargs = ml_collections.ConfigDict(
      {"hidden": 64, "num_layers": 2, "dropout": 0.5, "heads": 8})
  config.seed = 0
  config.rng_impl = "rbg"  # PRNG of dropout (threefry2x32, rbg, unsafe_rbg)
  config.seeds = 10  # models trained at once (vmap); seed s: fold_in(PRNGKey(seed), s)
  config.num_epochs = 200
  config.max_steps = 0  # 0: num_epochs decides
  config.optimizer = "adam"
  config.learning_rate = 0.01
  config.weight_decay = 5e-4  # L2 added to the gradient of every parameter
  config.sampling = ml_collections.ConfigDict(
      {"enabled": False, "fanouts": (25, 10), "batch_size": 512, "eval_batch_size": 1024,
       "eval": "sampled", "eval_subset": 0})  # eval_subset n > 0: n val and n test nodes
  config.unsupervised_weight = 0.0  # > 0: + weight * GraphSAGE unsupervised loss (full batch)
  config.unsupervised_negatives = 5  # Q, negatives per positive edge
  config.unsupervised_edges = 512  # positive edges (u, v) sampled per step
  config.log_every_steps = 20
  config.checkpoint_every_steps = 100
  config.keep_checkpoints = 3
  return config


def get_config():
  config = node_config()
  config.experiment = "gnn_wordnet"
  return config
