"""The system description (systems/<system>.json), read off this machine, overridable from configs."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from common.cpu import named_flags
from common.errors import HarnessError
from configs import CONFIG_DIR

SUBMISSION_CONFIG = CONFIG_DIR / "submission.json"
# Fields the official checker requires (bert-99, no power, no network division).
REQUIRED_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
    "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
    "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes", "host_network_card_count",
    "system_type_detail",
)
# Fields whose value the official checker rejects when falsy ("requires a meaningful response"): "", 0, null.
MEANINGFUL_FIELDS = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_memory_configuration",
    "host_storage_capacity", "host_storage_type", "host_networking", "host_network_card_count",
    "host_networking_topology", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "accelerator_host_interconnect", "accelerator_memory_configuration", "accelerator_interconnect", "cooling",
    "framework", "operating_system", "other_software_stack",
)
# Counts the official checker multiplies with int(): an integer, or a string of digits ("0" on a CPU-only system).
INTEGER_FIELDS = ("number_of_nodes", "accelerators_per_node", "host_processors_per_node", "host_processor_core_count")
AVAILABILITIES = ("available", "preview", "rdi")
SUBMISSION_KEYS = ("submitter", "division", "availability", "system_type", "system_type_detail", "system_name",
                   "system_id", "system")


def load_submission_config(path: Path | None = None) -> dict:
    """configs/submission.json; a misspelt key is refused rather than left to fall back to its default."""
    path = path or SUBMISSION_CONFIG
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"submission config {path} not found") from None
    except json.JSONDecodeError as error:
        raise HarnessError(f"submission config {path} is not valid JSON ({error})") from error
    if not isinstance(settings, dict):
        raise HarnessError(f"submission config {path} must be a JSON object")
    unknown = sorted(set(settings) - set(SUBMISSION_KEYS))
    if unknown:
        raise HarnessError(f"submission config {path}: unknown key {', '.join(unknown)}; the keys are "
                           f"{', '.join(SUBMISSION_KEYS)} (system description fields go inside \"system\")")
    if not isinstance(settings.get("system", {}), dict):
        raise HarnessError(f"submission config {path}: \"system\" must be an object of system description fields")
    return settings


def _lscpu() -> dict[str, str]:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in output.splitlines())}


def _gib(size_bytes: float) -> str:
    return f"{size_bytes / 2**30:.0f} GB"


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _operating_system() -> str:
    try:
        release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        name = release.get("PRETTY_NAME", "").strip('"')
    except OSError:
        name = ""
    return f"{name or platform.system()} (kernel {platform.release()})"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _gpus() -> tuple[int, str, str, str]:
    """(count, model, memory, driver) of the visible CUDA GPUs."""
    try:
        import torch

        if not torch.cuda.is_available():
            return 0, "N/A", "N/A", "N/A"
        properties = torch.cuda.get_device_properties(0)
        driver = "unknown"
        if shutil.which("nvidia-smi"):
            result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=20)
            driver = result.stdout.strip().splitlines()[0] if result.stdout.strip() else driver
        return torch.cuda.device_count(), properties.name, _gib(properties.total_memory), driver
    except Exception:  # noqa: BLE001 - a description falls back to N/A rather than failing the submission
        return 0, "N/A", "N/A", "N/A"


def framework(backend: str) -> str:
    """What ran the model: the backend's own runtime first, then what the model came from."""
    pytorch = f"PyTorch {_version('torch')}, transformers {_version('transformers')}"
    if backend == "onnxruntime":
        return f"ONNX Runtime {_version('onnxruntime')} (model exported with {pytorch})"
    if backend == "tensorrt":
        return f"TensorRT {_version('tensorrt')} (model exported with {pytorch})"
    return pytorch


def machine_description(division: str, submitter: str, system_name: str, settings: dict,
                        backend: str = "pytorch") -> dict:
    """Every required field, detected where the machine tells, then `settings["system"]` overrides."""
    cpu = _lscpu()
    gpu_count, gpu_model, gpu_memory, driver = _gpus()
    sockets = cpu.get("Socket(s)", "")
    cores = cpu.get("Core(s) per socket", "")
    cache_names = ("L1d cache", "L1i cache", "L2 cache", "L3 cache")
    caches = ", ".join(f"{name.split()[0]}: {cpu[name]}" for name in cache_names if name in cpu) or "N/A"
    frequency = re.search(r"@ ([\d.]+\s*GHz)", cpu.get("Model name", ""))
    cuda = "N/A"
    try:
        import torch

        cuda = torch.version.cuda or "N/A"
    except ImportError:
        pass
    description = {
        "division": division,
        "submitter": submitter,
        "status": settings.get("availability", "available"),
        "system_name": system_name,
        "system_type": settings.get("system_type", "edge"),
        "system_type_detail": settings.get("system_type_detail", "N/A"),
        "number_of_nodes": 1,
        "host_processor_model_name": cpu.get("Model name") or platform.processor() or platform.machine(),
        "host_processors_per_node": int(sockets) if sockets.isdigit() else 1,
        "host_processor_core_count": int(cores) if cores.isdigit() else os.cpu_count() or 1,
        "host_processor_frequency": frequency.group(1) if frequency else "N/A",
        "host_processor_caches": caches,
        "host_processor_interconnect": "N/A",
        "host_memory_capacity": _gib(_memory_bytes()),
        "host_memory_configuration": "N/A",
        "host_storage_capacity": _gib(shutil.disk_usage("/").total),
        "host_storage_type": "N/A",
        "host_networking": "N/A",
        "host_networking_topology": "N/A",
        "host_network_card_count": "N/A",
        "accelerators_per_node": str(gpu_count),  # as published CPU-only systems write it: the number 0 reads as empty
        "accelerator_model_name": gpu_model,
        "accelerator_memory_capacity": gpu_memory,
        "accelerator_memory_configuration": "N/A",
        "accelerator_frequency": "N/A",
        "accelerator_host_interconnect": "PCIe" if gpu_count else "N/A",
        "accelerator_interconnect": "N/A",
        "accelerator_interconnect_topology": "N/A",
        "accelerator_on-chip_memories": "N/A",
        "cooling": "N/A",
        "framework": framework(backend),
        "operating_system": _operating_system(),
        "other_software_stack": (f"Python {platform.python_version()}, mlcommons-loadgen "
                                 f"{_version('mlcommons-loadgen')}, numpy {_version('numpy')}, "
                                 f"onnxruntime {_version('onnxruntime')}, CUDA {cuda}, NVIDIA driver {driver}"),
        "hw_notes": f"CPU extensions: {named_flags()}",  # what decided the CPU precision (configs/systems/cpu.json)
        "sw_notes": "bert99-harness (MLPerf Inference bert-99 in Python)",
    }
    description.update(settings.get("system", {}))
    return description


def with_workers(description: dict, info: dict) -> dict:
    """A run over several ranks (WORKERS=N): nodes and accelerators as it ran, the ranks in the notes."""
    workers = info.get("workers", 1)
    if workers == 1:
        return description
    devices = info.get("devices", [])
    per_host: dict[str, int] = {}
    for entry in devices:  # host:device, as "node7:cuda:3" or "node7:cpu"
        host, _, device = entry.partition(":")
        if device.startswith("cuda"):
            per_host[host] = per_host.get(host, 0) + 1
    note = f"{workers} ranks over {info.get('nodes', 1)} node(s) under torch.distributed (WORKERS={workers})"
    return {**description, "number_of_nodes": info.get("nodes", 1),
            "accelerators_per_node": str(max(per_host.values()) if per_host else 0),
            "sw_notes": f"{description.get('sw_notes', '')}; {note}".lstrip("; ")}
