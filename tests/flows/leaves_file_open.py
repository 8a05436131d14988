# %% tags=["parameters"]
config = {}

# %%
# A global file that the flow never closes: its buffered content must still
# reach the disk when the kernel exits, as it would at the end of a script.
handle = open("unclosed.txt", "w")
handle.write("buffered result")
