# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` module of `hf_atom.metrics.self_bleu`: Texygen's self-BLEU of a set of generated texts. Load it with
`evaluate.load(hf_atom.metrics.evaluate_module("self_bleu"))`."""

import datasets
import evaluate

from hf_atom.metrics.text import self_bleu

_DESCRIPTION = """Self-BLEU (Zhu et al., 2018, Texygen): the BLEU of each text against all the other texts of the set
as references, averaged (nltk's sentence_bleu, uniform weights over 1..max_n-grams, smoothing method1). Lower is more
diverse."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): at least two generated texts.
    max_n (`int`, defaults to 3): the highest n-gram order (Texygen's default).
    max_hypotheses (`int`, *optional*): score only this many texts, drawn with `seed`, each against all the others.
    seed (`int`, defaults to 0): the draw of `max_hypotheses`.

Returns:
    `self_bleu` (float in [0, 1]).
"""

_CITATION = """@inproceedings{zhu2018texygen, title={Texygen: A Benchmarking Platform for Text Generation Models},
author={Zhu, Yaoming and Lu, Sidi and Zheng, Lei and Guo, Jiaxian and Zhang, Weinan and Wang, Jun and Yu, Yong},
booktitle={SIGIR}, year={2018}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SelfBleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/1802.01886"],
        )

    def _compute(self, predictions, max_n=3, max_hypotheses=None, seed=0):
        return {"self_bleu": self_bleu(predictions, max_n, max_hypotheses=max_hypotheses, seed=seed)}
