# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` module of `hf_atom.metrics.stacked_mnist_mode_metrics`: modes and KL to uniform of stacked-MNIST
samples from a classifier's digit per channel. Load it with
`evaluate.load(hf_atom.metrics.evaluate_module("stacked_mnist_modes"))`."""

import datasets
import evaluate
import torch

from hf_atom.metrics.modes import stacked_mnist_mode_metrics

_DESCRIPTION = """Mode coverage on stacked MNIST (VEEGAN / PacGAN protocol): every sample is the tuple of the digits
a classifier reads in its channels; modes = distinct tuples (of num_classes ** channels), KL = KL(tuple histogram
|| uniform)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list[int]`): the classifier's digit for each channel of each sample (same length).
    num_classes (`int`, defaults to 10): digits per channel.

Returns:
    `modes` (int), `kl` (nats), `num_samples` and `num_possible_modes`.
"""

_CITATION = """@inproceedings{srivastava2017veegan, title={VEEGAN: Reducing mode collapse in GANs using implicit
variational learning}, author={Srivastava, Akash and Valkov, Lazar and Russell, Chris and Gutmann, Michael U. and
Sutton, Charles}, booktitle={NeurIPS}, year={2017}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class StackedMnistModes(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
            reference_urls=["https://arxiv.org/abs/1705.07761"],
        )

    def _compute(self, predictions, num_classes=10):
        return stacked_mnist_mode_metrics(torch.tensor(predictions, dtype=torch.long), num_classes=num_classes)
