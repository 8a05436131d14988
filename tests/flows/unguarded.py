# %% tags=["parameters"]
config = {}

# %%
# load_cli_config called without the is_notebook_execution() guard
import json

from ductaflow import load_cli_config

config = load_cli_config("config/does-not-exist.json")
json.dump(config, open("seen.json", "w"))
