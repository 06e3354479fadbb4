"""kdlab.costs: multiply-accumulates against counts done by hand, latency on a copy of the model."""

import time

import pytest
import torch
from torch import nn

from kdlab import costs, models


def test_macs_of_a_tiny_mlp_by_hand():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3))
    assert costs.macs(mlp, (3, 4)) == 12 * 5 + 5 * 3


def test_macs_of_a_tiny_cnn_by_hand():
    cnn = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),          # 2 x 4 x 4 outputs, 1 * 3 * 3 each
        nn.ReLU(), nn.MaxPool2d(2),             # 2 x 2 x 2: not counted
        nn.Conv2d(2, 3, 2),                     # 3 x 1 x 1 outputs, 2 * 2 * 2 each
        nn.Flatten(), nn.Linear(3, 2))          # 3 * 2
    assert costs.macs(cnn, (1, 4, 4)) == 2 * 16 * 9 + 3 * 8 + 3 * 2


def test_macs_of_strided_and_grouped_convolutions_by_hand():
    grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2)      # 6 x 5 x 5 outputs, each sees 4/2 channels * 3 * 3
    assert costs.macs(grouped, (4, 5, 5)) == 6 * 25 * 2 * 9
    strided = nn.Conv2d(1, 1, 3, stride=2)                  # 5 x 5 input -> 2 x 2 outputs
    assert costs.macs(strided, (1, 5, 5)) == 4 * 9


def test_macs_of_a_linear_layer_count_every_row_it_sees():
    assert costs.macs(nn.Linear(4, 3), (7, 4)) == 7 * 4 * 3


def test_macs_of_the_course_models_by_hand():
    assert costs.macs(models.build("mlp-800x2")) == 784 * 800 + 800 * 800 + 800 * 10
    assert costs.macs(models.build("mlp-1200x2")) == 784 * 1200 + 1200 * 1200 + 1200 * 10
    conv1 = 32 * 28 * 28 * 1 * 9          # 3x3 conv, padding 1, on the 28 x 28 image
    conv2 = 64 * 14 * 14 * 32 * 9         # after the first 2x2 max-pool
    head = 64 * 7 * 7 * 128 + 128 * 10
    assert costs.macs(models.build("cnn-small")) == conv1 + conv2 + head == 4_241_152


def test_macs_keep_the_models_mode():
    model = models.build("mlp-800x2-dropout").train()
    costs.macs(model)
    assert model.training
    model.eval()
    costs.macs(model)
    assert not model.training


def test_model_costs_time_a_copy_and_take_under_a_second():
    model = models.build("cnn-small").train()
    start = time.perf_counter()
    c = costs.model_costs(model)
    assert time.perf_counter() - start < 3.0   # well under 1 s on an idle machine; room for a loaded one
    assert c["params"] == models.count_params(model) and c["macs"] == 4_241_152
    assert 0 < c["latency_ms"] < 1000
    assert model.training and next(model.parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_latency_is_measured_on_the_cpu_and_leaves_the_model_where_it_was():
    model = models.build("mlp-800x2").cuda()
    assert costs.latency_ms(model) > 0
    assert next(model.parameters()).is_cuda
