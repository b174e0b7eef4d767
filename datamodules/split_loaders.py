"""The train/val/test DataLoaders of a datamodule that keeps its datasets in `self.datasets[split]`."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader


class SplitLoadersDataModule(L.LightningDataModule):
    """Shuffled, last-partial-batch-dropped training; in-order val and test; `batch_size`/`num_workers` hparams."""

    datasets: dict

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=split == "train",
                          drop_last=split == "train" and len(dataset) > self.hparams.batch_size,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
