"""Run by REFERENCE_PYTHON, not by pytest: the MLPerf reference's own training-mode featurisation.

    python tests/reference_train_labels.py <mlcommons/inference checkout> <SQuAD json> <vocab.txt> <out.npz>

Calls create_squad_data.read_squad_examples and convert_examples_to_features with is_training=True (the
code that computes answer start and end positions) and saves input_ids, start_position and end_position.
"""

import sys
from pathlib import Path

import numpy as np

checkout, source, vocab, output = sys.argv[1:5]
bert = Path(checkout) / "language" / "bert"
sys.path[:0] = [str(bert / "DeepLearningExamples" / "PyTorch" / "LanguageModeling" / "BERT"), str(bert)]
from create_squad_data import convert_examples_to_features, read_squad_examples  # noqa: E402
from transformers import BertTokenizer  # noqa: E402

examples = read_squad_examples(input_file=source, is_training=True, version_2_with_negative=False)
features = []
convert_examples_to_features(examples=examples, tokenizer=BertTokenizer(vocab), max_seq_length=384, doc_stride=128,
                             max_query_length=64, is_training=True, output_fn=features.append, verbose_logging=False)
np.savez(output, input_ids=np.array([feature.input_ids for feature in features], np.int32),
         start_position=np.array([feature.start_position for feature in features], np.int64),
         end_position=np.array([feature.end_position for feature in features], np.int64))
