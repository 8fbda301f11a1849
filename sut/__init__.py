"""The system under test: one LoadGen SUT, and backends that turn feature batches into logits."""
