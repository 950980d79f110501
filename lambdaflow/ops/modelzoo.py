"""Export a Gluon model-zoo architecture with random weights, so inference runs offline.

Flow: ``export_model(arch, classes, out_prefix)`` builds ``arch`` from
``mxnet.gluon.model_zoo.vision`` with ``pretrained=False`` (nothing is downloaded),
initialises it from ``seed`` (Xavier/He: gaussian, fan-in, magnitude 2), scales the
output layer so the logits have a standard deviation of about ``LOGIT_STD`` on a fixed
synthetic batch shaped like the intended preprocessing (so softmax probabilities are
neither one-hot nor uniform: top-k lists are meaningful), then hybridizes, runs once and
writes ``OUT_PREFIX-symbol.json`` + ``OUT_PREFIX-0000.params`` (+ ``OUT_PREFIX-synset.txt``
when ``synset`` is given; ``synset=True`` writes ``class_0 .. class_{N-1}``). The same
seed gives byte-identical parameters. No state is kept.

A real, pretrained model instead: on a machine with internet access run::

    net = mxnet.gluon.model_zoo.vision.get_model("mobilenet0.25", pretrained=True)
    net.hybridize(); net(mxnet.nd.zeros((1, 3, 224, 224))); net.export("mobilenet0.25")

and copy ``mobilenet0.25-symbol.json`` / ``-0000.params`` (and a synset file with the
1000 ImageNet class names, one a line) next to the job, or to ``s3://bucket/models/``.
Any Gluon ``HybridBlock.export`` or ``Module.save_checkpoint`` output with an input
named ``data`` works the same way. Pretrained ImageNet models expect
``--preprocess imagenet``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lambdaflow.ops.inference import import_mxnet

log = logging.getLogger(__name__)

#: Target standard deviation of the logits on the calibration batch.
LOGIT_STD = 2.0
CALIBRATION_BATCH = 4


def export_model(
    arch: str = "mobilenet0.25",
    classes: int = 10,
    out_prefix: str | os.PathLike = "model",
    *,
    seed: int = 0,
    input_size: int = 224,
    synset: bool | Sequence[str] | None = None,
    preprocess: str = "this",
) -> str:
    """Build ``arch`` with random, seeded weights and export it; return ``out_prefix``.

    ``preprocess`` ("this" raw 0-255 or "imagenet" normalised) only sets the input scale
    the output layer is calibrated for. ``synset``: ``True`` for ``class_0..``, or a list
    of ``classes`` names.
    """
    mx = import_mxnet()
    from mxnet.gluon.model_zoo import vision

    if classes <= 0:
        raise ValueError(f"classes must be positive, got {classes}")
    if input_size <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    if preprocess not in ("this", "imagenet"):
        raise ValueError(f"unknown preprocess {preprocess!r}: choose one of this, imagenet")
    names = _synset_names(synset, classes)
    try:
        # Fresh name counters: the same parameter names on every call.
        with mx.name.NameManager():
            net = vision.get_model(arch, classes=classes, pretrained=False)
    except ValueError as exc:
        known = ", ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
        raise ValueError(
            f"unknown architecture {arch!r}: choose one of "
            f"{known or 'mxnet.gluon.model_zoo.vision'}"
        ) from None
    mx.random.seed(seed)
    np_random = np.random.RandomState(seed)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net.hybridize()
    shape = (CALIBRATION_BATCH, 3, input_size, input_size)
    sample = np_random.uniform(0, 255, size=shape).astype(np.float32)
    if preprocess == "imagenet":
        sample = (sample - 127.5) / 58.0
    data = mx.nd.array(sample)
    logits = net(data).asnumpy()
    _calibrate(net, arch, float(logits.std()))
    net(data).wait_to_read()
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    net.export(str(out), epoch=0)
    if names is not None:
        Path(f"{out}-synset.txt").write_text("".join(f"{n}\n" for n in names))
    log.info("exported %s (%d classes, seed %d) to %s", arch, classes, seed, out)
    return str(out)


def _calibrate(net, arch: str, std: float) -> None:
    """Scale the output layer's weight and bias (exact for ReLU nets) to reach LOGIT_STD."""
    output = getattr(net, "output", None)
    if output is None or not np.isfinite(std) or std <= 0:
        log.warning("%s: output layer not calibrated (logit std %s)", arch, std)
        return
    factor = LOGIT_STD / std
    for name, param in output.collect_params().items():
        if name.endswith(("weight", "bias")):
            param.set_data(param.data() * factor)


def _synset_names(synset: bool | Sequence[str] | None, classes: int) -> list[str] | None:
    if synset is None or synset is False:
        return None
    if synset is True:
        return [f"class_{i}" for i in range(classes)]
    names = [str(n) for n in synset]
    if len(names) != classes or any(not n.strip() or "\n" in n for n in names):
        raise ValueError(f"synset must hold {classes} non-empty one-line names, got {len(names)}")
    return names
