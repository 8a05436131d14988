# %% [markdown]
# # Conductor
# Each row of the table is one scenario of `flow/simulate.py`, run into
# `runs/simulate/<scenario>/`. Run it again and only what changed runs.
#
# Run it with `python conductor.py` from this folder, or open it as a notebook.

# %%
import pandas as pd

import ductaflow

scenarios = pd.DataFrame(
    [
        {"instance_name": "calm", "drift": 0.1, "volatility": 0.5},
        {"instance_name": "wild", "drift": 0.1, "volatility": 3.0},
        {"instance_name": "falling", "drift": -0.2, "volatility": 1.0},
    ]
)
base_config = ductaflow.load_config("config/simulate.json")

# %%
results = ductaflow.run_instances("flow/simulate.py", scenarios, base_config=base_config, jobs=2)
if (results.status == "interrupted").any():  # Ctrl-C: stop here
    raise SystemExit(130)
if (results.status == "failed").any():
    raise SystemExit(1)

# %%
finals = {}
for instance, run_dir in results[["instance", "run_dir"]].itertuples(index=False):
    finals[instance] = pd.read_csv(f"{run_dir}/walk.csv").value.iloc[-1]
print(pd.Series(finals, name="final value").to_string())
