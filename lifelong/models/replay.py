"""The replayed-samples record shared by the generative-replay families (LGM, lifelong InfoGAN).

At the start of each task after the first, a family that replays keeps a small grid of what it
replays, as uint8 buffers in its state dict (so snapshots carry them, at a byte a pixel): the
Forgetting page shows them through `replayed_samples()`.
"""

from __future__ import annotations

import torch

from lifelong import events


class ReplayRecord:
    """Mixin for a GenerativeModel with `config.n_tasks`, `config.replay_grid`, `config.image_shape`
    and a `replay(n, generator)` method returning [n, C, H, W] images in [0, 1]."""

    def init_replay_record(self) -> None:
        cfg = self.config
        c, h, w = cfg.image_shape
        self.register_buffer(
            "replay_images", torch.zeros(cfg.n_tasks, cfg.replay_grid, c, h, w, dtype=torch.uint8)
        )
        self.register_buffer("replay_recorded", torch.zeros(cfg.n_tasks, dtype=torch.bool))

    def record_replay(self, task: int) -> list[events.Event]:
        """Keep `config.replay_grid` replayed images for `task`; returns its timeline event."""
        n = self.config.replay_grid
        if not n or task >= self.config.n_tasks:
            return []
        g = torch.Generator().manual_seed(4000 + task)  # the same grid on a resumed run
        self.replay_images[task] = (self.replay(n, g) * 255).round().to(torch.uint8)
        self.replay_recorded[task] = True
        return [events.ReplayRecorded(task, samples=n)]

    def replayed_samples(self) -> dict[int, torch.Tensor]:
        """task -> the replayed images [G, C, H, W] in [0, 1] recorded when it started (the
        Forgetting page shows them); task 0 and runs without replay have none."""
        return {
            t: self.replay_images[t].float() / 255.0
            for t in self.replay_recorded.nonzero().flatten().tolist()
        }
