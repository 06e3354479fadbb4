"""Lesson 9's toolkit: a language with known probabilities, tiny language models, and their distillation.

* :mod:`kdlab.lm.language`: balanced brackets of two kinds, with the exact probability of every string;
* :mod:`kdlab.lm.models`: tiny GRU language models, sampling, and exact string probabilities;
* :mod:`kdlab.lm.losses`: the reference ``forward_kl``, ``reverse_kl`` and ``generalized_jsd``;
* :mod:`kdlab.lm.train`: five ways to train a student on one budget;
* :mod:`kdlab.lm.scoring`: exact KL both ways, validity and diversity;
* :mod:`kdlab.lm.mixture`: forward against reverse KL on a mixture of two Gaussians (and its widget).
"""
