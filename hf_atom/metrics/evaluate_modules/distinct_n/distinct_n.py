# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` module of `hf_atom.metrics.distinct_n`: pooled distinct-n of a set of generated texts. Load it with
`evaluate.load(hf_atom.metrics.evaluate_module("distinct_n"))`."""

import datasets
import evaluate

from hf_atom.metrics.text import distinct_n

_DESCRIPTION = """Distinct-n (Li et al., 2016), pooled over the set: distinct n-grams of all texts divided by the
total number of tokens of all texts (nltk's word tokenizer without the Punkt download). Higher is more diverse."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the generated texts of one set.
    n (`int`, defaults to 1): the n-gram order.

Returns:
    `distinct_<n>` (float in [0, 1]; 0 for a set without tokens).
"""

_CITATION = """@inproceedings{li2016diversity, title={A Diversity-Promoting Objective Function for Neural
Conversation Models}, author={Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill},
booktitle={NAACL}, year={2016}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DistinctN(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/1510.03055"],
        )

    def _compute(self, predictions, n=1):
        return {f"distinct_{n}": distinct_n(predictions, n)}
