"""What a run is made of, loaded once from its checked RunConfig: the samples, the model, then the backend.

harness.run, make sweep's direct points, make bench and make profile all build from here, so each applies
the same checks (a token budget below the longest sample, SEQ_LEN beyond the model's positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import HarnessError
from harness.run_config import RunConfig, check_backend_settings
from harness.settings import SystemConfig
from qsl.features import ModelInputs
from sut.backend import Backend, backend_class
from sut.models import LoadedModel


@dataclass
class BuiltRun:
    config: RunConfig
    features: ModelInputs
    model: LoadedModel

    def backend(self, log=print) -> Backend:
        """The config's backend over this model; an out-of-memory warm-up names the settings that size batches."""
        config = self.config
        try:
            return create_backend(config.backend, self.model, config.device, config.precision, self.features,
                                  config.options.build_dir, config.options.backend_options, log)
        except RuntimeError as error:  # torch.OutOfMemoryError among them: warm-up runs the largest batches
            hint = memory_hint(error, config.system, config.batch_size)
            if not hint:
                raise
            raise HarnessError(f"the {config.backend} backend failed while warming up: {error!r}{hint}") from error


def build_run(config: RunConfig, log=print) -> BuiltRun:
    """The samples LoadGen will use and the model, each checked against the other; no backend yet."""
    from qsl.samples import load_samples
    from sut.models import load_model

    options, max_tokens = config.options, config.max_tokens
    features = load_samples(config.source, options.build_dir, log)
    longest = int(features.lengths[:config.count or len(features)].max())  # LoadGen's samples: the first COUNT
    if max_tokens is not None and max_tokens < longest:
        given = f"MAX_TOKENS={max_tokens}" if options.max_tokens else f"max_tokens {max_tokens} in {config.system.path}"
        raise HarnessError(f"{given} is below the longest sample ({longest} tokens): a batch holds at least one "
                           f"sample, so every batch would be over the budget; give MAX_TOKENS of at least {longest}, "
                           "or MAX_TOKENS=none")
    chosen = backend_class(config.backend)
    if chosen.simulated:  # RunConfig refused MODEL= and SHAPE= with it
        return BuiltRun(config, features, LoadedModel(None, "no-model", "none: BACKEND=simulated", True))
    model = load_model(options.model, options.build_dir, allow_random=not config.accuracy,
                       trust_checkpoint=options.trust_checkpoint, log=log, accept_onnx=chosen.takes_onnx,
                       shape=config.shape)
    positions = getattr(getattr(model.module, "config", None), "max_position_embeddings", features.seq_length)
    if features.seq_length > positions:
        raise HarnessError(f"SEQ_LEN={features.seq_length} is longer than {model.name} takes ({positions} positions)")
    return BuiltRun(config, features, model)


def create_backend(name: str, model, device: str, precision: str, features, build_dir: Path = Path("build"),
                   options: dict[str, str] | None = None, log=print) -> Backend:
    """Every backend takes the same arguments; `features` serve those that calibrate or warm up."""
    check_backend_settings(name, precision, options or {})
    return backend_class(name)(model, device, precision, calibration=features, cache_dir=build_dir / "cache",
                               options=options, log=log)


def memory_hint(error: BaseException, system: SystemConfig, batch_size: int) -> str:
    """For an out-of-memory error, the settings that size the batches; else nothing."""
    if "out of memory" not in str(error).lower():
        return ""
    path = system.path.resolve()
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path  # as the user would type it
    return (f"; the batches did not fit: lower max_tokens ({system.max_tokens or 'none set'}) or batch_size "
            f"({batch_size}) in {shown}, or give BATCH_SIZE=")
