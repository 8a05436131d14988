# %% [markdown]
# A flow whose one cell shows text and a plot that follow config["scale"]; every other output is the same
# in every run: a line of text, an HTML table, a fixed plot beside the scaled one. config["fail"] makes the
# last cell raise.

# %% tags=["parameters"]
config = {}

# %%
from IPython.display import HTML, display

print("the same in every run")
display(HTML("<table><tr><td>fixed</td></tr></table>"))

# %%
import matplotlib.pyplot as plt

import ductaflow

scale = config.get("scale", 1)
print(f"scaled total: {6 * scale}")
scaled, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2, 3], [0, scale, 2 * scale, 3 * scale])  # follows the config
fixed, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2, 3], [3, 1, 2, 0])  # the same in every run
plt.show()
ductaflow.record(total=6 * scale, constant=1)

# %%
print("the end")
if config.get("fail"):
    raise ValueError("asked to fail")
