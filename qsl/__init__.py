"""SQuAD v1.1 query sample library: the dev set, its reference-exact features and the LoadGen QSL."""
