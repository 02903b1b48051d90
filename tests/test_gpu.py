"""Code paths only a CUDA device runs: bf16 autocast training, DataLoader workers, GPU scoring.

Skipped, with the reason, where there is no CUDA device (this project's CI machine); run on a
GPU machine with `pytest -m gpu`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fnd_core.model import ModelConfig
from fnd_core.model.features.encoding import encode_examples
from fnd_core.model.features.inference import predict_proba
from fnd_core.model.network import build_model
from fnd_core.model.runtime import loader_workers, resolve_device
from fnd_core.model.train.recipe import TrainOptions
from fnd_core.model.train.trainer import train
from tests.media import toy_posts

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]
TINY = ModelConfig.for_preset("tiny", image_size=32)


def test_auto_device_and_loader_workers_pick_the_gpu():
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert 1 <= loader_workers(-1, device) <= 4


def test_bf16_training_on_cuda_learns_and_scores_like_the_cpu(tmp_path):
    posts = toy_posts(tmp_path, 240)
    result = train(posts, TINY, epochs=30, seed=0, device="cuda", options=TrainOptions(lr=3e-3))
    assert result.device.startswith("cuda")
    assert result.metrics["val"]["accuracy"] >= 0.8  # the colour task is learnt under autocast
    on_gpu = predict_proba(result.model, posts[:64], num_workers=2)
    on_cpu = predict_proba(result.model.to("cpu"), posts[:64], num_workers=0)
    assert np.abs(on_gpu - on_cpu).max() < 0.05  # bf16 encoders vs fp32: same verdicts


def test_gpu_features_match_cpu_features(tmp_path):
    posts = toy_posts(tmp_path, 16)
    torch.manual_seed(0)
    model = build_model(TINY, pretrained=False).eval()
    cpu = encode_examples(model, posts, precision="fp32")
    gpu = encode_examples(model.to("cuda"), posts, precision="fp32", num_workers=2)
    assert torch.allclose(cpu.image, gpu.image.cpu(), atol=1e-3)
    assert torch.allclose(cpu.text, gpu.text.cpu(), atol=1e-3)
