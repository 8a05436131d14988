# %% [markdown]
# For the charts: records a loss per epoch (a series) and a final score, from `lr`, `method` and the seed.

# %% tags=["parameters"]
config = {}

# %%
import random

import ductaflow

rng = random.Random(ductaflow.seed())
lr, epochs = config.get("lr", 0.1), config.get("epochs", 5)
scale = {"adam": 1.0, "sgd": 1.5}.get(config.get("method", "adam"), 2.0)
loss = [round(scale / (1 + lr * epoch) + rng.random() * 0.01, 6) for epoch in range(epochs)]
ductaflow.record(loss=loss, score=loss[-1], epochs=epochs)
if config.get("fail"):
    raise ValueError("diverged")
