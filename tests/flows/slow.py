# %% tags=["parameters"]
config = {}

# %%
import os
import time

print("first cell done", flush=True)

# %%
time.sleep(config.get("sleep", 30))
while config.get("hold") and os.path.exists(config["hold"]):  # held until the test removes that file
    time.sleep(0.05)
open("slept.txt", "w").write("done")
