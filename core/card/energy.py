"""The card's energy and emissions estimate (ML CO2 Impact method, Lacoste et al. 2019), from the run's own
recorded times and hardware, with every assumption stated: energy = power x time x PUE, emissions = energy x
grid carbon intensity. Power is the board/TDP figure of the device type (vendor spec sheets), an upper bound on
the average draw."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DEVICE_POWER_W = (  # (substring of the device description, lower-case) -> watts; first match wins
    ("h200", 700.0), ("h100", 700.0), ("a100", 400.0), ("a10g", 150.0), ("a10", 150.0), ("l40", 300.0),
    ("l4", 72.0), ("v100", 300.0), ("t4", 70.0), ("p100", 250.0), ("4090", 450.0), ("3090", 350.0),
    ("tpu", 250.0), ("m1", 20.0), ("m2", 22.0), ("m3", 22.0),
)
DEFAULT_GPU_W = 300.0   # an accelerator not in the table above
DEFAULT_CPU_W = 100.0   # a CPU-only run: one desktop/server CPU package
DEFAULT_CARBON_G_PER_KWH = 475.0   # world-average grid intensity, IEA (2019), the figure the ML CO2 calculator cites
DEFAULT_PUE = 1.0
METHOD = ("ML CO2 Impact (Lacoste et al. 2019): energy_kWh = power_W x hours x PUE / 1000; "
          "CO2eq_g = energy_kWh x grid_intensity_g_per_kWh")


@dataclass(frozen=True)
class Environment:
    """What the Environmental Impact section states; every number with its source."""
    method: str
    platform: str
    devices: list              # device descriptions as recorded
    devices_counted: list      # [{"device", "watts", "basis"}] the devices whose power is summed
    power_watts: float
    power_source: str
    seconds: float | None      # the time the estimate covers (training + generation + scoring when recorded)
    seconds_source: str
    training_seconds: float | None
    generation_seconds: float
    scoring_seconds: float | None
    included: list             # the stages whose time is in `seconds`
    pue: float
    carbon_intensity_g_per_kwh: float
    carbon_intensity_source: str
    cloud_provider: str
    region: str
    hours: float | None
    energy_kwh: float | None
    co2eq_g: float | None


def device_names(hardware: Mapping) -> list[str]:
    """run.json's hardware.devices as one description each (strings, or mappings from other recorders)."""
    devices = hardware.get("devices") or []
    if isinstance(devices, (str, Mapping)):
        devices = [devices]
    names = []
    for device in devices:
        if isinstance(device, Mapping):
            words = " ".join(str(device.get(key, "")) for key in ("device_type", "type", "name", "model")
                             if device.get(key))
            names.append(words.strip() or json.dumps(device, sort_keys=True))
        else:
            names.append(str(device))
    return names


def device_power(names: Sequence[str]) -> list[dict[str, Any]]:
    """The assumed power of each counted device: accelerators when there are any, else the CPU."""
    accelerators = [name for name in names if "cpu" not in name.lower()]  # TF "CPU:...", JAX "TFRT_CPU_0"
    counted = accelerators or list(names) or ["CPU (assumed: run.json lists no devices)"]
    out = []
    for name in counted:
        lower = name.lower()
        watts = next((watts for part, watts in DEVICE_POWER_W if part in lower), None)
        basis = "board power / TDP of this device type"
        if watts is None and "cpu" in lower:
            watts, basis = DEFAULT_CPU_W, "generic CPU package power (CPU-only run)"
        elif watts is None:
            watts, basis = DEFAULT_GPU_W, "generic accelerator (model not recorded in run.json)"
        out.append({"device": name, "watts": watts, "basis": basis})
    return out


def estimate(training_seconds: float | None, training_source: str, generation_seconds: float,
             scoring_seconds: float | None, hardware: Mapping, env_overrides: Mapping) -> Environment:
    """The estimate over every stage whose time the run recorded (the text lists exactly those stages)."""
    parts, included = [], []
    if training_seconds:
        parts.append(f"training {training_seconds:.0f} s ({training_source})")
        included.append("training")
    if generation_seconds > 0:
        parts.append(f"generation {generation_seconds:.0f} s (sum of images.csv `seconds`)")
        included.append("image generation")
    if scoring_seconds:
        parts.append(f"scoring {scoring_seconds:.0f} s (scores.json)")
        included.append("CLIP scoring")
    seconds = (training_seconds or 0.0) + generation_seconds + (scoring_seconds or 0.0)
    counted = device_power(device_names(hardware))
    power = sum(device["watts"] for device in counted)
    power_source = "per-device board power / TDP assumption (core/card/energy.py)"
    if "power_watts" in env_overrides:
        power, power_source = env_overrides["power_watts"], "overrides: environment.power_watts"
    intensity = env_overrides.get("carbon_intensity_g_per_kwh", DEFAULT_CARBON_G_PER_KWH)
    intensity_source = ("overrides: environment.carbon_intensity_g_per_kwh" if "carbon_intensity_g_per_kwh"
                        in env_overrides else
                        "world average, IEA 2019 (set environment.carbon_intensity_g_per_kwh for your grid)")
    pue = env_overrides.get("pue", DEFAULT_PUE)
    hours = seconds / 3600.0 if seconds > 0 else None
    energy = power * hours * pue / 1000.0 if hours else None
    return Environment(
        method=METHOD, platform=str(hardware.get("platform", "not recorded")), devices=device_names(hardware),
        devices_counted=counted, power_watts=power, power_source=power_source,
        seconds=seconds if seconds > 0 else None, seconds_source=" + ".join(parts) or "no time recorded",
        training_seconds=training_seconds, generation_seconds=generation_seconds, scoring_seconds=scoring_seconds,
        included=included, pue=pue, carbon_intensity_g_per_kwh=intensity, carbon_intensity_source=intensity_source,
        cloud_provider=env_overrides.get("cloud_provider", "not stated"),
        region=env_overrides.get("region", "not stated"),
        hours=hours, energy_kwh=energy, co2eq_g=energy * intensity if energy is not None else None)
