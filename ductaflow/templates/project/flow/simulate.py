# %% [markdown]
# # Simulate
# A random walk with drift for one scenario, with the shocks listed in
# `data/shocks.csv` added on their steps. Writes `walk.csv` into the working
# directory (the instance directory when ductaflow runs it) and prints a summary.
#
# Files the flow reads are named relative to the project root and opened with
# `ductaflow.project_path(...)`: that is the same file in every way the flow runs,
# whatever the working directory is.
#
# Run it three ways:
# - as a notebook: open this file in VS Code or Jupyter and run the cells;
# - as a script: `python flow/simulate.py --config config/simulate.json --output-dir runs/simulate/try`;
# - with ductaflow: `ductaflow run flow/simulate.py --config config/simulate.json`.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import display_config_summary, is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config("config/simulate.json", "Simulate a random walk with drift")
display_config_summary(config, "simulate")

# %%
import numpy as np
import pandas as pd

from ductaflow import project_path

shocks = pd.read_csv(project_path(config["shocks_csv"]))
rng = np.random.default_rng(config["seed"])
steps = config["drift"] + rng.normal(0, config["volatility"], config["n_steps"])
for step, size in shocks[shocks.step < config["n_steps"]].itertuples(index=False):
    steps[step] += size
walk = pd.DataFrame({"step": range(config["n_steps"]), "value": steps.cumsum().round(4)})
walk.to_csv("walk.csv", index=False)
print(f"final value {walk.value.iloc[-1]:.2f}, lowest {walk.value.min():.2f}")
walk.describe()
