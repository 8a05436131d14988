# %% tags=["parameters"]
config = {}

# %%
print("about to die", flush=True)

# %%
import os

os._exit(1)

# %%
print("never runs")
