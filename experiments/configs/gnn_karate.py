"""Zachary's karate club (section 6.5): 34 members, one-hot identity features, one labelled
member per club (the two leaders), predict the club everyone joined. GCN, hidden 16, 10 seeds.

  python -m experiments.main --config=experiments/configs/gnn_karate.py --workdir=runs/gnn_karate

Expected: 96.4 % test accuracy (27 of the 28 test members) for all 10 seeds; the MLP baseline
(--config.model=mlp), which sees only the unseen one-hot identities, stays at chance
(51 +- 8 %).
"""

from experiments.configs import gnn_wordnet


def get_config():
  config = gnn_wordnet.node_config()
  config.experiment = "gnn_karate"
  config.dataset = "karate"
  config.model_kwargs.hidden = 16
  config.num_epochs = 100
  config.log_every_steps = 10
  return config
