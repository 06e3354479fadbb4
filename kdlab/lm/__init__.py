"""Lesson 9's toolkit: a language with known probabilities, tiny language models, and their distillation.

* :mod:`kdlab.lm.language`: balanced brackets of two kinds, with the exact probability of every string;
* :mod:`kdlab.lm.models`: tiny GRU language models, sampling, and exact string probabilities;
* :mod:`kdlab.lm.losses`: the reference ``forward_kl``, ``reverse_kl`` and ``generalized_jsd``;
* :mod:`kdlab.lm.train`: five ways to train a student on one budget (and ``seq-rkl``, the sequence-level reverse KL);
* :mod:`kdlab.lm.scoring`: exact KL both ways, validity and diversity;
* :mod:`kdlab.lm.mixture`: forward against reverse KL on a mixture of two Gaussians (and its widget);
* :mod:`kdlab.lm.policy`: the exact gradient of the sequence-level reverse KL and its estimators (MiniLLM, GKD);
* :mod:`kdlab.lm.onpolicy`: those estimators measured and compared, and GKD's lambda (``llm-on-policy``);
* :mod:`kdlab.lm.decode`: greedy decoding, sampling and beam search after a prompt;
* :mod:`kdlab.lm.seqkd`: sequence-level KD on the teacher's beam output, as Kim and Rush did it (``llm-seq-kd``).
"""
