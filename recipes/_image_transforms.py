"""The image recipe's input pipeline: augmentation with per-worker, per-rank randomness, and pixel preparation by the
model's image processor or by an equivalent faster path (a PIL resize and the normalisation in torch).

No torchvision: it is not installable next to every torch build, and nothing here needs it.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch

FLIP = 0  # PIL.Image.Transpose.FLIP_LEFT_RIGHT (PIL is imported lazily, with the data)
AUGMENTATIONS = ("crop_flip", "crop", "none")


def random_resized_crop(image, scale: tuple[float, float], rng: random.Random):
    """torchvision's RandomResizedCrop area/aspect sampling, on a PIL image (the resize is the processor's)."""
    width, height = image.size
    for _ in range(10):
        area = width * height * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.crop((left, top, left + w, top + h))
    return image


class AugmentationRandom:
    """The augmentation's random stream, reproducible from the run's seed yet independent per DataLoader worker and
    per data-parallel rank.

    A `random.Random(seed)` captured in a transform is copied into every DataLoader worker and every rank in the same
    state, so all of them would draw the same crops and flips. Here the stream is keyed on `torch.initial_seed()` of
    the process that runs the transform (in a worker: the DataLoader's base seed + the worker id, drawn from the
    seeded torch generator, new every epoch), the worker id, the rank, and the run's seed; it is re-created whenever
    that key changes and otherwise continues (in the main process with `--dataloader_num_workers 0`, across epochs).
    """

    def __init__(self, seed: int, rank: int = 0):
        self.seed, self.rank = int(seed), int(rank)
        self._key: tuple[int, int] | None = None
        self._rng = random.Random()

    def get(self) -> random.Random:
        worker = torch.utils.data.get_worker_info()
        key = (torch.initial_seed(), worker.id if worker is not None else -1)
        if key != self._key:
            self._key = key
            # A string seed is hashed with SHA-512 by `random`: deterministic across runs (no PYTHONHASHSEED).
            self._rng = random.Random(f"{self.seed}/{self.rank}/{key[0]}/{key[1]}")
        return self._rng

    def __getstate__(self) -> dict[str, Any]:  # a copy (worker, pickling) starts from its own key, never a copy
        return {"seed": self.seed, "rank": self.rank, "_key": None, "_rng": random.Random()}


class FastPixels:
    """What a fixed-size image processor (resize to height x width, rescale, normalise: ViT, DeiT, BEiT, ...) does,
    with the same PIL resize and the rescale and normalisation as one multiply-add per value in torch, skipping the
    processor's numpy round trips and float64 pass.

    Equal to the processor's `pixel_values` to float32 rounding (a few ulp; tested), not bit for bit: the processor
    rescales in float64 and then normalises in float32, two roundings this path folds into one. Built with
    `from_processor`, which returns `None` for processors it does not reproduce (shortest-edge resize, centre crop,
    padding, ...).
    """

    def __init__(self, height: int, width: int, resample: int, scale: float, mean: list[float], std: list[float]):
        self.size = (int(width), int(height))  # PIL order
        self.resample = int(resample)
        mean64 = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        std64 = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        # (x * scale - mean) / std = x * multiplier + offset, the constants folded in float64
        self.multiplier = (scale / std64).float()
        self.offset = (-mean64 / std64).float()

    @classmethod
    def from_processor(cls, processor) -> FastPixels | None:
        size = getattr(processor, "size", None) or {}
        size = dict(size) if not isinstance(size, dict) else size
        height, width = size.get("height"), size.get("width")
        if (
            not getattr(processor, "do_resize", False)
            or not height
            or not width
            or getattr(processor, "do_center_crop", False)
            or getattr(processor, "do_pad", False)
        ):
            return None
        scale = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else 1.0
        mean, std = [0.0] * 3, [1.0] * 3
        if getattr(processor, "do_normalize", False):
            mean, std = processor.image_mean, processor.image_std
            mean = [float(mean)] * 3 if np.isscalar(mean) else [float(v) for v in mean]
            std = [float(std)] * 3 if np.isscalar(std) else [float(v) for v in std]
        resample = getattr(processor, "resample", None)
        resample = 2 if resample is None else int(resample)  # PIL BILINEAR, the backends' default
        return cls(height, width, resample, scale, mean, std)

    def __call__(self, images: list) -> torch.Tensor:
        """(B, 3, H, W) float32 from RGB PIL images."""
        arrays = np.stack([np.asarray(image.resize(self.size, resample=self.resample)) for image in images])
        pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous().float()  # the copy is in uint8
        return pixels.mul_(self.multiplier).add_(self.offset)


class ImageTransform:
    """`datasets` transform (`set_transform`, or `IterableDataset.map(batched=True)`): RGB conversion, optional
    augmentation (random resized crop, horizontal flip), pixel preparation; labels pass through when present.

    Args:
        processor: the model's image processor.
        image_column, label_column: the raw columns; a batch without `label_column` (an unlabelled split) yields
            pixels only.
        augment: one of `AUGMENTATIONS`; `None`/"none" for evaluation.
        seed, rank: the run's seed and the data-parallel rank, keying `AugmentationRandom`.
        fast: a `FastPixels` to make the pixels instead of the processor (built once per run, shared by the
            training and evaluation transforms; `FastPixels.from_processor(processor)`), or None.
    """

    def __init__(
        self,
        processor,
        image_column: str,
        label_column: str,
        augment: str | None = None,
        seed: int = 0,
        rank: int = 0,
        fast: FastPixels | None = None,
    ):
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}.")
        self.processor, self.image_column, self.label_column = processor, image_column, label_column
        self.augment = None if augment == "none" else augment
        self.crop_scale = (0.85, 1.0) if augment == "crop" else (0.5, 1.0)
        self.random = AugmentationRandom(seed, rank)
        if fast is not None and not isinstance(fast, FastPixels):
            raise TypeError(f"fast must be a FastPixels (FastPixels.from_processor(processor)) or None, got {fast!r}.")
        self.fast = fast

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        images = [image.convert("RGB") for image in batch[self.image_column]]
        if self.augment is not None:
            rng = self.random.get()
            images = [random_resized_crop(image, self.crop_scale, rng) for image in images]
            if self.augment == "crop_flip":
                images = [image.transpose(FLIP) if rng.random() < 0.5 else image for image in images]
        if self.fast is not None:
            pixel_values = self.fast(images)
        else:
            pixel_values = self.processor(images, return_tensors="pt")["pixel_values"]
        out: dict[str, Any] = {"pixel_values": pixel_values}
        if self.label_column in batch:
            out["labels"] = torch.as_tensor(batch[self.label_column])
        return out


def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stacks pixels (and labels, when the split has them)."""
    batch = {"pixel_values": torch.stack([torch.as_tensor(row["pixel_values"]) for row in rows])}
    if "labels" in rows[0]:
        batch["labels"] = torch.stack([torch.as_tensor(row["labels"]) for row in rows])
    return batch
