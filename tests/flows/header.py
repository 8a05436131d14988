# %% [markdown]
# The dual-mode header from the README, then a cell that shows what the flow received.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import display_config_summary, is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config("config/header.json", "Header test flow")
display_config_summary(config, "header")

# %%
import json
import os
import sys
import time

print("running with", json.dumps(config, sort_keys=True), flush=True)
with open("out.json", "w") as fh:
    json.dump({"config": config, "cwd": os.getcwd()}, fh)
action = config.get("action")
if action == "raise":
    raise ValueError("bad value in flow")
if action == "exit0":
    sys.exit(0)
if action == "hard_exit":
    os._exit(3)
if action == "sleep":
    time.sleep(60)
