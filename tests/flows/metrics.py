# %% [markdown]
# A flow that records metrics, many times in a loop, and can fail afterwards.

# %% tags=["parameters"]
config = {}

# %%
import time

import ductaflow
from ductaflow import is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config(None, "Record metrics")
ductaflow.record("score", config.get("x", 0) * 2)
ductaflow.record(n=config.get("n", 3), label=config.get("label", "a"), nested={"depth": 2})
start = time.perf_counter()
for i in range(config.get("loops", 5000)):
    ductaflow.record("loop", i)
loop_seconds = time.perf_counter() - start
print(f"loop of record calls: {loop_seconds:.4f} s")

# %%
if config.get("fail"):
    raise ValueError("failed after recording")
