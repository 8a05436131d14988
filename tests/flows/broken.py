# %% tags=["parameters"]
config = {}

# %%
print("before the failure")
value = 1

# %%
missing = config["no_such_key"]

# %%
print("never runs")
