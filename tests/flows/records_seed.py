# %% [markdown]
# A flow that records its seed (ductaflow.seed()) and a score that depends on it, as a notebook or a script.

# %% tags=["parameters"]
config = {}

# %%
import ductaflow
from ductaflow import is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config(None, "Record the seed")
seed = ductaflow.seed()
ductaflow.record(seed=seed, score=config.get("x", 0) + (seed % 1000) / 1000)
print("seed", seed)
