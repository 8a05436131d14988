# %% [markdown]
# # Conductor
# Each row of `scenarios.csv` is one scenario of `flow/simulate.py`, run with
# `config/simulate.json` underneath into `runs/simulate/<scenario>/`. Run it
# again and only what changed runs: edit a row, the flow, the config file or
# the shocks file the config names (`inputs=["shocks_csv"]`).
# `ductaflow status` then says which scenarios are outdated, and why.
#
# Run it with `python conductor.py` from this folder, or open it as a notebook.
# The same from a terminal:
# `ductaflow sweep flow/simulate.py --config config/simulate.json --table scenarios.csv --input shocks_csv`

# %%
import pandas as pd

import ductaflow

results = ductaflow.sweep(
    "flow/simulate.py", "scenarios.csv", config_file="config/simulate.json", inputs=["shocks_csv"], jobs=2
)
if (results.status == "interrupted").any():  # Ctrl-C: stop here
    raise SystemExit(130)
if (results.status == "failed").any():
    raise SystemExit(1)

# %%
finals = {}
for instance, run_dir in results[["instance", "run_dir"]].itertuples(index=False):
    finals[instance] = pd.read_csv(f"{run_dir}/walk.csv").value.iloc[-1]
print(pd.Series(finals, name="final value").to_string())
