"""Configuration as data: per-system run settings (`systems/*.json`) and the BERT-Large config."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
SYSTEMS_DIR = CONFIG_DIR / "systems"
BERT_LARGE_CONFIG = CONFIG_DIR / "bert-large-config.json"
