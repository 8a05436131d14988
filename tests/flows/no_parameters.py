# %%
config = {}

# %%
print("no cell is tagged parameters")
