# %% tags=["parameters"]
config = {}

# %%
import sys

open("before_exit.txt", "w").write("ran")
sys.exit(0)

# %%
open("after_exit.txt", "w").write("must not run")
