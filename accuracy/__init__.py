"""bert-99 accuracy: LoadGen accuracy log -> reference post-processing -> official SQuAD v1.1 F1/EM."""
