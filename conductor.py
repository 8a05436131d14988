# %% [markdown]
# # Conductor: demand scenarios
# Each row of the control table is one scenario. For every scenario the
# conductor runs `flow/make_data.py` into `runs/make_data/<scenario>/`, then
# `flow/analyse.py` on that data into `runs/analyse/<scenario>/`, and prints a
# table of the results. Each instance directory keeps its config, executed
# notebook, HTML report, log and run record.
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
rows = []
for scenario in scenarios.to_dict("records"):
    name = scenario.pop("instance_name")
    try:
        made = ductaflow.run_step_flow("flow/make_data.py", "make_data", name, {**base_config, **scenario})
        analysed = ductaflow.run_step_flow(
            "flow/analyse.py",
            "analyse",
            name,
            {"input_csv": str(made.run_dir / "demand.csv"), "window_days": 28},
        )
    except ductaflow.FlowExecutionError as error:
        print(error)
        rows.append({"scenario": name, "status": "failed"})
        continue
    summary = json.loads((analysed.run_dir / "summary.json").read_text())
    seconds = round(made.duration + analysed.duration, 1)
    rows.append(
        {"scenario": name, "status": "success", **summary, "seconds": seconds, "report": analysed.html}
    )

# %%
results = pd.DataFrame(rows)
with pd.option_context("display.width", 200, "display.max_colwidth", 60):
    print(results.to_string(index=False))
