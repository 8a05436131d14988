# %% [markdown]
# A flow that succeeds: prints to stdout and stderr, writes files, records what it saw.

# %% tags=["parameters"]
config = {}

# %%
import json
import os
import subprocess
import sys

from ductaflow import is_notebook_execution

print("stdout line", config.get("label", ""))
print("stderr line", file=sys.stderr)
subprocess.run([sys.executable, "-c", "print('from a subprocess')"], check=True)
seen = {
    "config": config,
    "cwd": os.getcwd(),
    "executable": sys.executable,
    "is_notebook_execution": is_notebook_execution(),
}
with open("seen.json", "w") as fh:
    json.dump(seen, fh)
if config.get("extra_file"):
    open("extra.txt", "w").write("only in some attempts")

# %%
result = config.get("n", 0) * 2
result
