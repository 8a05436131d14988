# %% [markdown]
# Copied by the tests as flow/types.py, flow/random.py...: a flow named like a standard-library module.
# It imports that module and a sibling helper, and writes down where each came from.

# %% tags=["parameters"]
config = {}

# %%
from ductaflow import is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config(None, "A flow named like a standard-library module")

# %%
import importlib
import json
import sys

import helpers

module = importlib.import_module(config["module"])
with open("seen.json", "w") as fh:
    json.dump({"module": module.__file__, "helper": helpers.__file__, "path": sys.path}, fh)
