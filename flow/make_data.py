# %% [markdown]
# # Make data
# Simulates daily demand for one scenario: a yearly season, a trend and noise.
# Writes `demand.csv` and `demand.png` into the working directory (the instance
# directory when ductaflow runs it).

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import display_config_summary, is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config("config/make_data.json", "Simulate daily demand for one scenario")
display_config_summary(config, "make_data")

# %%
import numpy as np
import pandas as pd

rng = np.random.default_rng(config["seed"])
days = pd.date_range(config["start"], periods=config["n_days"], freq="D")
t = np.arange(config["n_days"])
season = config["season_amplitude"] * np.sin(2 * np.pi * t / 365.25)
demand = config["base_level"] + config["trend_per_day"] * t + season + rng.normal(0, config["noise"], t.size)
data = pd.DataFrame({"date": days, "demand": demand.round(2)})
data.to_csv("demand.csv", index=False)
print(f"wrote demand.csv: {len(data)} days, mean demand {data.demand.mean():.1f}")
data.describe()

# %%
import matplotlib

if not is_notebook_execution():
    matplotlib.use("Agg")  # no window when run as a script
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(data.date, data.demand, lw=0.8)
ax.set_title(f"Simulated demand (trend {config['trend_per_day']}/day, noise {config['noise']})")
ax.set_ylabel("units")
fig.tight_layout()
fig.savefig("demand.png", dpi=100)
