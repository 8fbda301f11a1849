"""Configuration as data: per-system run settings (`systems/*.json`), the BERT-Large config, compliance audits."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
SYSTEMS_DIR = CONFIG_DIR / "systems"
BERT_LARGE_CONFIG = CONFIG_DIR / "bert-large-config.json"
TEST01_AUDIT_CONFIG = CONFIG_DIR / "compliance" / "TEST01" / "audit.config"
