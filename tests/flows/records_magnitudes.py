# %% [markdown]
# For the report's chart: records metrics of awkward magnitudes (tiny, huge, negative, constant) from `size`.

# %% tags=["parameters"]
config = {}

# %%
import ductaflow

size = config.get("size", 1)
ductaflow.record(constant=0.092741)  # recorded first: a poor default for the chart's y axis
ductaflow.record(tiny=0.000123 * size, huge=123456789 * size, negative=-1000.5 * size)
ductaflow.record(signed=(size - 3) * 0.00025, offset=1_000_000 + size / 1000, verdict="ok")
