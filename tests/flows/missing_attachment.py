# %% [markdown]
# A markdown cell copied from a notebook with a pasted image, without the image:
# ![figure](attachment:figure.png)

# %% tags=["parameters"]
config = {}

# %%
open("result.txt", "w").write("the flow's own result")
