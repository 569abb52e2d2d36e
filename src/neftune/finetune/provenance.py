"""Where a result came from: versions of the libraries that shape the numbers, and the machine."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = (
    "neftune",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "numpy",
    "matplotlib",
    "scikit-learn",
)


def environment() -> dict[str, Any]:
    """Python, platform, package versions (None when not installed), device and CPU count."""
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            env[package] = None
    env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    env["cpu_count"] = os.cpu_count()
    return env
