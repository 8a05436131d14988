# %% [markdown]
# For conductor tests: notes each execution in a shared tally file, can sleep, fail or die.

# %% tags=["parameters"]
config = {}

# %%
import os
import time

with open(config["tally"], "a") as tally:
    tally.write(f"{os.path.basename(os.getcwd())}\n")
time.sleep(config.get("sleep", 0))
while config.get("hold") and os.path.exists(config["hold"]):  # held until the test removes that file
    time.sleep(0.05)

# %%
if config.get("fail"):
    raise RuntimeError(f"asked to fail: {config['fail']}")
if config.get("die"):
    os._exit(1)

# %%
with open("done.txt", "w") as done:
    done.write("finished")
