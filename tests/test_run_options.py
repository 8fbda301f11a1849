"""RunOptions, built once from a command's flags (from_args) or from a finished run (from_run_info). TEST01 reruns a
performance run "exactly as it ran": the options rebuilt from its run_info.json must give the run's own settings,
or the audit measures another configuration (and lands in another log folder)."""

from dataclasses import asdict

import pytest

from harness.resolved_run import ResolvedRun
from harness.run_config import RunConfig, RunOptions
from harness.run_folders import configuration_name


def run_info(**changes) -> dict:
    """run_info.json as a finished run writes it: a quick Offline run at SEQ_LEN=128 with a token budget."""
    fields = dict(scenario="Offline", mode="PerformanceOnly", backend="pytorch", device="cpu", precision="fp32",
                  system="cpu", count=64, batch_size=4, max_tokens=1024, model_name="minilm-squad-devhalf",
                  model_source="models/minilm", model_is_random=False, backend_options={"onednn": "0"},
                  configuration="", input_data_type="fp32", data="squad", seq_len=128, doc_stride=42,
                  samples=None, lengths=None, seed=None, shape=None, compliant_settings=False, compliance_test="",
                  command="python -m harness perf", working_directory="/work")
    fields.update(changes)
    info = asdict(ResolvedRun(**fields))
    return info


@pytest.mark.parametrize("changes", [{}, {"seq_len": 384, "doc_stride": 128}, {"max_tokens": None},
                                     {"doc_stride": 64}, {"count": None}])
def test_the_rerun_resolves_to_the_runs_own_settings(changes, tmp_path):
    (tmp_path / "models" / "minilm").mkdir(parents=True)  # the run's model, where it was made
    info = run_info(working_directory=str(tmp_path), **changes)
    config = RunConfig.from_options(RunOptions.from_run_info(info, tmp_path), accuracy=False)
    featurisation = config.source.featurisation
    assert (config.scenario, config.backend, config.device, config.precision, config.system.name) == \
        (info["scenario"], info["backend"], info["device"], info["precision"], info["system"])
    assert (config.count, config.batch_size, config.max_tokens) == (info["count"], info["batch_size"],
                                                                     info["max_tokens"])
    assert (config.source.data, featurisation.seq_length, featurisation.doc_stride) == \
        (info["data"], info["seq_len"], info["doc_stride"])
    assert config.options.backend_options == info["backend_options"]
    data_label = config.source.label
    expected_label = "" if (info["seq_len"], info["doc_stride"]) == (384, 128) else \
        f"-squad-seq{info['seq_len']}-stride{info['doc_stride']}"
    assert configuration_name(config.precision, config.device, config.options.backend_options, data_label) == \
        configuration_name(info["precision"], info["device"], info["backend_options"], expected_label)


def perf_args(*words: str):
    from tests.test_variables import command_parser

    return command_parser("perf").parse_args(list(words))


def test_flags_left_out_give_the_options_defaults():
    """Without a flag a run has RunOptions' own defaults: rank 0 computes, nothing replaced, no backend option."""
    assert RunOptions.from_args(perf_args()) == RunOptions()


def test_flags_become_typed_options():
    options = RunOptions.from_args(perf_args("--rank0-computes", "0", "--replace", "1", "--backend-option", "onednn=0",
                                             "--seq-len", "128", "--max-tokens", "none"), count="8")
    assert (options.rank0_computes, options.replace, options.backend_options) == (False, True, {"onednn": "0"})
    assert (options.seq_len, options.max_tokens, options.count) == ("128", "none", "8")
