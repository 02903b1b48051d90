"""Image decoding and the torch Dataset that feeds encoders: read bytes, decode, resize, tokenise.

Decoding and resizing happen in DataLoader workers (``__getitem__``); texts are tokenised per
batch in the collate function (one fast-tokenizer call per batch, not per text). Images leave
the workers as uint8 CHW tensors — four times smaller than float — and each encoder applies
its own normalisation on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fnd_core.model.config import DEFAULT_MAX_PIXELS
from fnd_core.model.errors import ImageDecodeError

__all__ = ["DEFAULT_MAX_PIXELS", "PostDataset", "open_rgb", "make_loader", "read_bytes"]
Tokenize = Callable[[list[str]], dict[str, torch.Tensor]]
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def read_bytes(uri: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """Whole file at a local path or URI (``gs://bucket/key``), through fnd's storage layer.

    ``storage_options`` may carry ``endpoint_url`` (a GCS emulator), as for fsspec.
    """
    from fnd_core.io import storage

    endpoint = dict(storage_options or {}).get("endpoint_url")
    return storage.read_bytes(uri, gcs_endpoint=endpoint)


def open_rgb(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an upright 8-bit RGB image — the same decoder ingest checked it with.

    Raises:
        ImageDecodeError: unreadable data, or more pixels than ``max_pixels``.
    """
    from fnd_core.io import imaging

    try:
        return imaging.open_rgb(data, max_pixels=max_pixels, draft_size=draft_size)
    except imaging.ImageRejected as exc:
        raise ImageDecodeError(f"{exc.rule}: {exc.reason}") from exc


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to ``size`` and keep the centred square (ImageNet eval style)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)


def to_uint8_chw(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``uint8`` tensor of shape (3, H, W)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def load_pixels(
    uri: str,
    *,
    image_size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    storage_options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Read, decode and resize one image into a (3, size, size) uint8 tensor."""
    data = read_bytes(uri, storage_options)
    try:
        image = open_rgb(data, max_pixels=max_pixels, draft_size=image_size)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{uri}: {exc}") from exc
    return to_uint8_chw(resize_center_crop(image, image_size))


class PostDataset(Dataset):
    """Items of an image, a text and a label, any of which may be left out.

    Feature extraction builds one over unique images only (texts ``None``) and tokenises
    texts without a loader; fine-tuning builds one over whole posts.
    """

    def __init__(
        self,
        *,
        image_uris: Sequence[str] | None = None,
        texts: Sequence[str] | None = None,
        labels: Sequence[int] | None = None,
        image_size: int = 224,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        lengths = {len(s) for s in (image_uris, texts, labels) if s is not None}
        if not lengths:
            raise ValueError("PostDataset needs at least one of image_uris, texts, labels")
        if len(lengths) > 1:
            raise ValueError(f"image_uris, texts and labels differ in length: {sorted(lengths)}")
        self.image_uris = list(image_uris) if image_uris is not None else None
        self.texts = list(texts) if texts is not None else None
        self.labels = list(labels) if labels is not None else None
        self.image_size = image_size
        self.max_pixels = max_pixels
        self.storage_options = dict(storage_options or {})
        self._length = lengths.pop()

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index}
        if self.image_uris is not None:
            item["pixels"] = load_pixels(
                self.image_uris[index],
                image_size=self.image_size,
                max_pixels=self.max_pixels,
                storage_options=self.storage_options,
            )
        if self.texts is not None:
            item["text"] = self.texts[index]
        if self.labels is not None:
            item["label"] = float(self.labels[index])
        return item


class Collate:
    """Stack pixels and labels; tokenise the batch's texts in one call."""

    def __init__(self, tokenize: Tokenize | None = None) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long)
        }
        if "pixels" in items[0]:
            batch["pixels"] = torch.stack([it["pixels"] for it in items])
        if "text" in items[0]:
            if self.tokenize is None:
                raise ValueError("items carry text but the Collate was built without a tokenizer")
            batch.update(self.tokenize([it["text"] for it in items]))
        if "label" in items[0]:
            batch["label"] = torch.tensor([it["label"] for it in items], dtype=torch.float32)
        return batch


def make_loader(
    dataset: PostDataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    tokenize: Tokenize | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader with our collate; shuffling is seeded so runs repeat."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=Collate(tokenize),
        generator=generator,
        pin_memory=torch.cuda.is_available(),
    )
