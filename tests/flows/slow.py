# %% tags=["parameters"]
config = {}

# %%
import time

print("first cell done", flush=True)

# %%
time.sleep(config.get("sleep", 30))
open("slept.txt", "w").write("done")
