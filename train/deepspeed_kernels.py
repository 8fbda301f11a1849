"""`python -m train.deepspeed_kernels`: build DeepSpeed's CPU communication kernel into torch's extension cache.

DeepSpeed compiles it the first time a process starts its communication backend, which takes about a minute;
`make setup` runs this once so that the first PARALLEL=deepspeed-pipeline run (or test) does not wait.
"""

from __future__ import annotations

import importlib.util


def main() -> None:
    if importlib.util.find_spec("deepspeed") is None:
        print("DeepSpeed is not installed: nothing to build (PARALLEL=deepspeed-pipeline needs pip install "
              "'.[deepspeed]')")
        return
    from deepspeed.comm.torch import build_shm_op

    print("DeepSpeed's CPU communication kernel:", "built" if build_shm_op() is not None else "not used here")


if __name__ == "__main__":
    main()
