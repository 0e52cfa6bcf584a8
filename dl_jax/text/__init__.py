"""Word embeddings (chapter 3): vocabulary, training examples and evaluation."""
