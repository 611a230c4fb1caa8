"""Inputs of the engine bench's `score_layers` workload: the end-to-end
score benchmark's pooled activations (5 layers, float64) and recording, so
the metric work of a re-score can be timed alone, on one thread:

  python bench/score_pipeline.py ...   # via scripts/bench_score.sh, first
  python bench/score_layers.py target/bench/score target/bench/layers
  cargo bench -p neuralign-engine --bench engine -- score_layers $PWD/target/bench/layers
"""
import sys

import numpy as np
import torch

src, out = sys.argv[1], sys.argv[2]
model = torch.jit.load(f"{src}/cnn5.pt").eval()
stimuli = torch.from_numpy(np.load(f"{src}/stimuli.npy"))
acts = {}
with torch.no_grad():
    for i in range(0, stimuli.shape[0], 250):
        for name, v in model(stimuli[i:i + 250]).items():
            acts.setdefault(name, []).append(v.mean(dim=(2, 3)).double().numpy())
for name, parts in acts.items():
    np.save(f"{out}/{name}.npy", np.concatenate(parts))
np.save(f"{out}/rec.npy", np.load(f"{src}/recording.npy"))
