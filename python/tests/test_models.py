"""The acceptance test of the frontend: the paper's five models, translated, run unfused,
layer-wise (partial) and fully fused, equal PyTorch's forward pass; their programs equal the
committed fixtures that the Rust tests run without torch."""

from __future__ import annotations

import os

import pytest
from conftest import check_against_torch

import fuseflow
from fuseflow import models

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "cli", "tests", "fixtures", "torch")

@pytest.mark.parametrize("fusion", ["unfused", "partial", "full"])
@pytest.mark.parametrize("name", models.NAMES)
def test_model_matches_torch(name, fusion):
    model, args, formats = models.example(name)
    check_against_torch(model, args, fusion=fusion, formats=formats)


@pytest.mark.parametrize("name", models.NAMES)
def test_model_program_equals_fixture(name):
    model, args, formats = models.example(name)
    text = fuseflow.from_torch(model, args, formats=formats, name=name).text
    path = os.path.join(FIXTURES, f"{name}.ff")
    if os.environ.get("FUSEFLOW_UPDATE_FIXTURES"):
        os.makedirs(FIXTURES, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"translation of {name} changed: rerun with FUSEFLOW_UPDATE_FIXTURES=1 and review"
