"""Loading Wav2Lip / S3FD checkpoints safely, strictly, and saying what a wrong file appears to be.

Accepted: the official training dict ({"state_dict", "optimizer", ...}), a bare state dict, and a
TorchScript archive (its `.state_dict()`). Pickles load with weights_only=True; `module.` is stripped
like upstream (substring replace); missing BatchNorm `num_batches_tracked` counters are tolerated.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

import daemon.worker.engines.wav2lip.generator as generator
import daemon.worker.engines.wav2lip.s3fd as s3fd

OFFICIAL_MB = 416  # maintainer, issue #141: "The size should be 416 MB"


class CheckpointError(Exception):
    """The file is not a usable checkpoint; the text says what it appears to be instead."""


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size:,} bytes"


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors in `path` and a few words on the container; CheckpointError if unreadable."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or copy")
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - any failure means the archive is unusable
            raise CheckpointError(f"{path} looks like a TorchScript archive but cannot be read "
                                  f"({_short(exc)}): probably a truncated or corrupt download "
                                  f"({_size(path)})") from None
        return dict(module.state_dict()), "TorchScript archive"
    try:
        with warnings.catch_warnings():  # junk headers draw "unsupported protocol" warnings: noise
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except MemoryError:
        raise  # this machine is short of memory: not the file's fault
    except OSError as exc:
        if exc.errno is not None:
            raise  # the disk or share failed to deliver the bytes: not the file's fault
        raise CheckpointError(_unreadable(path, exc)) from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler fails on junk with any exception type
        # (IndexError "pop from empty list", struct.error, UnicodeDecodeError, ...): every failure to
        # parse the bytes means the file is not a usable checkpoint, never a crash of the worker.
        raise CheckpointError(_unreadable(path, exc)) from None
    return _tensors(path, obj)


def _tensors(path: Path, obj: object) -> tuple[dict[str, torch.Tensor], str]:
    container = "bare state dict"
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj, container = obj["state_dict"], "training checkpoint dict"
        if isinstance(obj, Mapping) and "model" in obj and not _all_tensors(obj):
            obj = obj["model"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj, container = obj["model"], "dict with a model entry"
    if not isinstance(obj, Mapping) or not _all_tensors(obj):
        kind = type(obj).__name__
        raise CheckpointError(f"{path} holds a {kind}, not a dict of tensors: not a model checkpoint")
    return {str(k).replace("module.", ""): v for k, v in obj.items()}, container


def _all_tensors(obj: Mapping[object, object]) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _is_torchscript(path: Path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except OSError as exc:
        if exc.errno is not None:
            raise  # the disk or share failed: not the file's fault
        return False
    except Exception:  # noqa: BLE001 - a damaged directory fails in many ways (UnicodeDecodeError...)
        return False  # torch.load below then names the damage
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__


def _unreadable(path: Path, exc: BaseException) -> str:
    """Name what an unloadable file appears to be from its first bytes and the loader's complaint."""
    with path.open("rb") as fh:
        head = fh.read(512)
    text = head.lstrip().lower()
    size = _size(path)
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"{\"error")):
        return (f"{path} is a web page ({size}), not a checkpoint: the download link returned an error or "
                "login page; download the file again")
    zipped = head.startswith(b"PK\x03\x04")
    pickled = head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    if not (zipped or pickled):
        return f"{path} is not a PyTorch checkpoint (unrecognised content, {size})"
    if "weights only load failed" in str(exc).lower():
        return (f"{path} contains pickled Python objects other than tensors; refusing to unpickle it "
                f"(weights_only): re-save it as a plain state dict ({_short(exc)})")
    truncated_hint = (f"a truncated or corrupt download ({size}; "
                      f"the official Wav2Lip file is {OFFICIAL_MB} MB)")
    if zipped:
        return f"{path} is a zip-format PyTorch file that cannot be read: {truncated_hint}"
    return f"{path} is a legacy-format PyTorch file that ends early or is damaged: {truncated_hint}"


def describe_foreign(state: Mapping[str, torch.Tensor]) -> str:
    """What a state dict that is not the 96x96 Wav2Lip generator appears to be."""
    keys = set(state)
    if {"conv1_1.weight", "fc6.weight", "conv3_3_norm.weight"} <= keys:
        return ("an S3FD face-detector checkpoint (s3fd.pth); it belongs in "
                "engines.wav2lip.face_detector_checkpoint, not engines.wav2lip.checkpoint")
    if any(k.startswith("face_encoder.") for k in keys) and any(k.startswith("audio_encoder.") for k in keys):
        return "a SyncNet lip-sync expert (lipsync_expert.pth), which is only used for training"
    if any(k.startswith("binary_pred") for k in keys):
        return "the visual-quality discriminator (visual_quality_disc.pth), which is only used for training"
    if any(k.startswith("face_decoder_blocks.") for k in keys):
        return _variant(state)
    sample = ", ".join(sorted(keys)[:3])
    return f"a checkpoint of another model ({len(keys)} tensors, e.g. {sample})"


def _variant(state: Mapping[str, torch.Tensor]) -> str:
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("face_encoder_blocks.")}
    first = state.get("face_encoder_blocks.0.0.conv_block.0.weight")
    params = sum(v.numel() for k, v in state.items() if not _is_buffer(k))
    if len(blocks) != 7:
        return (f"a Wav2Lip variant with {len(blocks)} face-encoder blocks instead of 7 "
                f"({params:,} parameters), e.g. an HD/288/384 retrain; only the official 96x96 Wav2Lip "
                "and Wav2Lip-GAN work here")
    shape = tuple(first.shape) if first is not None else None
    return (f"a modified Wav2Lip generator ({params:,} parameters instead of {generator.PARAMETERS:,}; "
            f"first layer {shape}); only the official 96x96 Wav2Lip and Wav2Lip-GAN work here")


def _is_buffer(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _fill_counters(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)


def load_into(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Strictly load `state`; None on success, else why not (missing/unexpected keys, bad shapes)."""
    _fill_counters(state, model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing keys (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} keys with other shapes (e.g. {wrong[0]})" if wrong else ""]
        return "; ".join(p for p in parts if p)
    model.load_state_dict(state, strict=True)
    return None


def load_generator(path: str | os.PathLike[str]) -> tuple[generator.Wav2Lip, str]:
    """The generator with the file's weights (eval mode, CPU) and a one-line description of the file."""
    path = Path(path)
    state, container = read_state(path)
    model = generator.Wav2Lip()
    problem = load_into(model, state)
    if problem is not None:
        raise CheckpointError(f"{path} is {describe_foreign(state)} ({problem})")
    described = f"Wav2Lip generator, {generator.PARAMETERS:,} parameters ({container}, {_size(path)})"
    return model.eval(), described


def load_detector(path: str | os.PathLike[str]) -> s3fd.S3FD:
    """The S3FD detector with the file's weights (eval mode, CPU)."""
    path = Path(path)
    state, _container = read_state(path)
    model = s3fd.S3FD()
    problem = load_into(model, state)
    if problem is not None:
        what = ("the Wav2Lip generator checkpoint; it belongs in engines.wav2lip.checkpoint"
                if "face_decoder_blocks.0.0.conv_block.0.weight" in state else "not an S3FD checkpoint")
        raise CheckpointError(f"{path} is {what} ({problem})")
    return model.eval()


def check_checkpoint(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """For `lipsyncd doctor`: (True, what was loaded) or (False, what the file appears to be)."""
    try:
        _model, description = load_generator(path)
    except CheckpointError as exc:
        return False, str(exc)
    return True, f"{path}: {description}"


def check_detector(path: str | os.PathLike[str]) -> tuple[bool, str]:
    try:
        load_detector(path)
    except CheckpointError as exc:
        return False, str(exc)
    return True, f"{path}: S3FD face detector, {s3fd.PARAMETERS:,} parameters"
