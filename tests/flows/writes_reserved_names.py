# %% tags=["parameters"]
config = {}

# %%
# A flow that writes files whose names ductaflow also uses in the instance directory.
import json

json.dump({"resolved": True}, open("config.json", "w"))
json.dump({"metrics": {"auc": 0.9}}, open("run.json", "w"))
