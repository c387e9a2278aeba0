# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` module of `hf_atom.metrics.mixture_mode_metrics`: modes, high-quality share and reverse KL of generated
2D points on the ring or grid mixture (the PacGAN protocol). Load it with
`evaluate.load(hf_atom.metrics.evaluate_module("mixture_modes"), "grid")`."""

import datasets
import evaluate
import torch

from hf_atom.metrics.modes import MIXTURES, mixture_mode_metrics, mixture_spec

_DESCRIPTION = """Mode coverage of a generator on a 2D Gaussian mixture (VEEGAN / PacGAN protocol). Each point is
assigned to its nearest centre and is high quality within `quality_threshold` standard deviations of it; modes =
centres with a high-quality point; reverse KL = KL(high-quality histogram || uniform over the centres)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `[x, y]` pairs): the generated points.
    mixture (`str`, *optional*): `"ring"` (8 modes) or `"grid"` (25 modes); defaults to the configuration name
        given to `evaluate.load`.
    quality_threshold (`float`, defaults to 3.0): the high-quality radius in standard deviations.

Returns:
    `modes` (int), `high_quality` (share in [0, 1]), `reverse_kl` (nats; NaN without a high-quality point),
    `num_samples` and `mode_counts` (high-quality points per centre).
"""

_CITATION = """@inproceedings{lin2018pacgan, title={PacGAN: The power of two samples in generative adversarial
networks}, author={Lin, Zinan and Khetan, Ashish and Fanti, Giulia and Oh, Sewoong}, booktitle={NeurIPS}, year={2018}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MixtureModes(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64"), length=2)}),
            reference_urls=["https://arxiv.org/abs/1712.04086"],
        )

    def _compute(self, predictions, mixture=None, quality_threshold=3.0):
        mixture = mixture or self.config_name
        if mixture not in MIXTURES:
            raise ValueError(
                f"Name the mixture: evaluate.load(path, 'grid') or compute(..., mixture=...), one of {MIXTURES}; "
                f"got {mixture!r}."
            )
        samples = torch.tensor(predictions, dtype=torch.float64)
        return mixture_mode_metrics(samples, mixture_spec(mixture), quality_threshold=quality_threshold)
