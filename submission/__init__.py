"""The MLPerf submission tree, its validation, and the SCC short artifacts, built from finished runs."""
