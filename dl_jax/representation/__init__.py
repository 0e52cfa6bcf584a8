"""Representation learning of images (section 5.5): metric-learning losses and triplet mining
(`mining`, eq. 5.32-5.40), evaluation of an embedding by retrieval, few-shot classification and
verification (`retrieval`, eq. 5.30-5.31), and the linear baselines PCA and the linear probe
(`linear`)."""
