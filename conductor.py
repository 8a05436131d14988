# %% [markdown]
# # Conductor: demand scenarios
# Each row of the control table is one scenario. `run_instances` runs
# `flow/make_data.py` for every scenario into `runs/make_data/<scenario>/`, then
# `flow/analyse.py` on each scenario's data into `runs/analyse/<scenario>/`, two
# at a time. Run it again and only what changed runs: edit a row, the flows or
# `config/make_data.json`, and just the affected instances execute (an analysis
# also re-runs when the scenario it reads was made again: `upstream`).
#
# Run it with `python conductor.py` from the project root, or open it as a
# notebook and run the cells.

# %%
import json
from pathlib import Path

import pandas as pd

import ductaflow

base_config = json.loads(Path("config/make_data.json").read_text())
scenarios = pd.DataFrame(
    [
        {"instance_name": "baseline", "trend_per_day": 0.05, "noise": 5.0, "season_amplitude": 20.0},
        {"instance_name": "high_growth", "trend_per_day": 0.15, "noise": 5.0, "season_amplitude": 20.0},
        {"instance_name": "volatile", "trend_per_day": 0.05, "noise": 15.0, "season_amplitude": 35.0},
    ]
)
scenarios

# %%
made = ductaflow.run_instances("flow/make_data.py", scenarios, base_config=base_config, jobs=2)
if (made.status == "interrupted").any():  # Ctrl-C: run_instances returned, the study stops here
    raise SystemExit(130)

# %%
ready = made[made.status.isin(["success", "skipped"])]
analyses = pd.DataFrame(
    {
        "instance_name": ready.instance,
        "input_csv": [f"runs/make_data/{name}/demand.csv" for name in ready.instance],
        "window_days": 28,
    }
)
# each analysis reads the data made for its scenario: make_data's instance of the same name
analysed = ductaflow.run_instances("flow/analyse.py", analyses, upstream="make_data", jobs=2, report=True)
if (analysed.status == "interrupted").any():
    raise SystemExit(130)

# %%
rows = []
for instance, status, run_dir in analysed[["instance", "status", "run_dir"]].itertuples(index=False):
    summary_file = Path(run_dir) / "summary.json"
    summary = json.loads(summary_file.read_text()) if status in ("success", "skipped") else {}
    rows.append({"scenario": instance, "status": status, **summary})
results = pd.DataFrame(rows)
with pd.option_context("display.width", 200):
    print(results.to_string(index=False))
print("report of every run: runs/index.html")
