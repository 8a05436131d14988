# %% [markdown]
# A flow that displays an ipywidgets Output and prints into it, one message per line.
# nbclient answers each such output with a message to the kernel on the socket it awaits the
# cell's reply on; the reply must still be read at once.

# %% tags=["parameters"]
config = {}

# %%
import sys

from IPython.display import display
from ipywidgets import Output

out = Output()
display(out)
with out:
    for line in range(config.get("lines", 40)):
        print("inside the output widget", line)
        sys.stdout.flush()

# %%
print("after the widget")
