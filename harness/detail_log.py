"""Reading LoadGen's mlperf_log_detail.txt: one `:::MLLOG {json}` record per line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = ":::MLLOG "
RESULT_KEYS = {  # detail-log key, unit, nanoseconds-to-milliseconds?
    "Offline": ("result_samples_per_second", "Samples/s", False),
    "Server": ("result_completed_samples_per_sec", "Queries/s", False),
    "SingleStream": ("early_stopping_latency_ss", "Latency (ms)", True),
    "MultiStream": ("early_stopping_latency_ms", "Latency (ms)", True),
}


@dataclass
class DetailLog:
    values: dict[str, object] = field(default_factory=dict)  # the last value of each key
    errors: list[str] = field(default_factory=list)  # records LoadGen logged as errors
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default=None):
        return self.values.get(key, default)


def read_detail_log(path: Path) -> DetailLog:
    log = DetailLog()
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            record = json.loads(line[len(PREFIX):])
        except json.JSONDecodeError:
            log.errors.append(f"unreadable detail log line: {line[:80]}")
            continue
        key, value = record.get("key"), record.get("value")
        if key == "error" or record.get("metadata", {}).get("is_error"):
            log.errors.append(str(value))
        elif key == "warning" or record.get("metadata", {}).get("is_warning"):
            log.warnings.append(str(value))
        log.values[key] = value
    return log
