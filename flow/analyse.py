# %% [markdown]
# # Analyse
# Reads the demand series written by `make_data`, fits a linear trend and a
# rolling mean, and writes `summary.json` and `trend.png`.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import display_config_summary, is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config("config/analyse.json", "Fit the trend of a demand series")
display_config_summary(config, "analyse")

# %%
import json
from pathlib import Path

import numpy as np
import pandas as pd

import ductaflow

data = pd.read_csv(ductaflow.project_path(config["input_csv"]), parse_dates=["date"])  # from the project root
t = np.arange(len(data))
slope, intercept = np.polyfit(t, data.demand, 1)
rolling = data.demand.rolling(config["window_days"], center=True).mean()
summary = {
    "days": len(data),
    "mean": round(float(data.demand.mean()), 3),
    "fitted_trend_per_day": round(float(slope), 4),
    "max_rolling_mean": round(float(rolling.max()), 3),
}
Path("summary.json").write_text(json.dumps(summary, indent=2))
ductaflow.record(**summary)  # metrics.json: collected by ductaflow.collect() and shown in runs/index.html
print(json.dumps(summary))

# %%
import matplotlib

if not is_notebook_execution():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(data.date, data.demand, lw=0.5, alpha=0.5, label="demand")
ax.plot(data.date, rolling, lw=1.5, label=f"{config['window_days']}-day mean")
ax.plot(data.date, intercept + slope * t, "--", label=f"trend {slope:.3f}/day")
ax.legend(loc="upper left")
fig.tight_layout()
fig.savefig("trend.png", dpi=100)
