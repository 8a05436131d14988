# %% [markdown]
# A flow whose kernel never sends the end of one cell's output (its "idle" status message),
# as when that message is lost: the cell's reply comes, its last IOPub message does not.

# %% tags=["parameters"]
config = {}

# %%
kernel = get_ipython().kernel
publish_status = kernel._publish_status


def drop_the_next_idle(status, *args, **kwargs):
    if status == "idle":
        kernel._publish_status = publish_status  # only once
        return
    publish_status(status, *args, **kwargs)


kernel._publish_status = drop_the_next_idle
print("the idle message of this cell is dropped")

# %%
print("the next cell runs")
