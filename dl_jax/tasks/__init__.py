"""The tasks of the engine, one file each: its data, its step (or chunk of steps), its evaluation.

image_classification   MNIST / Fashion-MNIST classifiers (chapters 2 and 5)
node_classification    node classifiers on one graph, full batch or sampled (section 6.5)
graph_classification   graph classifiers, k-fold cross-validation (section 6.5)
word_embeddings        skip-gram, CBOW and the NPLM (chapter 3)
"""
