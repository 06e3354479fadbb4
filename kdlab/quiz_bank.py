"""Lesson 10's self-check questions: answers and explanations in the open (see :mod:`kdlab.quiz`).

These are practice questions with instant feedback. The *graded* questions of
lesson 10 are different questions, and their answers are not in this package.
"""

from __future__ import annotations

from .quiz import Choice, MultipleChoice, Numeric

L1 = "Lesson 1 (notebooks/part1_foundations/01_softmax_temperature.ipynb)"
L2 = "Lesson 2 (notebooks/part1_foundations/02_dark_knowledge.ipynb)"
L3 = "Lesson 3 (notebooks/part1_foundations/03_kd_loss.ipynb)"
L5 = "Lesson 5 (notebooks/part2_mnist/05_distill.ipynb)"
L6 = "Lesson 6 (notebooks/part2_mnist/06_dark_knowledge_experiments.ipynb)"
L7 = "Lesson 7 (notebooks/part3_beyond/07_feature_distillation.ipynb)"
L8 = "Lesson 8 (notebooks/part3_beyond/08_compress_for_deployment.ipynb)"
L9 = "Lesson 9 (notebooks/part3_beyond/09_distilling_language_models.ipynb)"

SELF_CHECK = (
    MultipleChoice(
        "limit_t0", "As the temperature T goes to 0, softmax(z / T) tends to ...",
        (Choice("the uniform distribution over the classes",
                "That is the other limit, T \u2192 \u221e: every logit gap z_i - z_j is divided by T and vanishes."),
         Choice("the one-hot vector of the largest logit (the argmax)",
                "Dividing by a tiny T blows every gap up, so the largest logit takes all the mass "
                "(with a tie, the mass is shared by the tied maxima)."),
         Choice("softmax(z), unchanged: the temperature only rescales the loss",
                "The temperature changes the distribution itself; only the ranking is unchanged."),
         Choice("a distribution whose ranking of the classes is reversed",
                "No positive T changes the ranking: log p_i - log p_j = (z_i - z_j) / T keeps its sign. "
                "A negative T would reverse it, which is why T <= 0 must be rejected.")),
        "B", review=f"{L1}, \u00a7 1"),
    MultipleChoice(
        "what_t_changes", "Which of these does raising the temperature change?",
        (Choice("which class has the highest probability",
                "No: the ranking never changes for T > 0 (lesson 1 counted 0 changed rows out of 8,000)."),
         Choice("the order of the wrong classes among themselves",
                "No: that order is the dark knowledge, and the temperature only makes it visible."),
         Choice("the teacher's weights",
                "The temperature is applied to the logits after the network; the teacher is not retrained."),
         Choice("how much probability the wrong classes get, and so the entropy",
                "Yes: the gaps shrink, the small probabilities rise, and the entropy grows with T.")),
        "D", review=f"{L1}, \u00a7 2; {L2}, \u00a7 1"),
    MultipleChoice(
        "kl_div_args", "In PyTorch, F.kl_div(input, target) for the soft loss KL(teacher || student) needs ...",
        (Choice("input = the student's probabilities, target = the teacher's probabilities",
                "Probabilities as input compute sum p (log p - q): no error, a different function (bug 1)."),
         Choice("input = the teacher's log-probabilities, target = the student's probabilities",
                "That computes KL(student || teacher), the reversed direction (bug 5)."),
         Choice("input = the student's log-probabilities, target = the teacher's probabilities",
                "Right: kl_div computes target * (log target - input), so input must be log q (from log_softmax)."),
         Choice("either order: the KL divergence is symmetric",
                "KL is not symmetric; lesson 3 measures the asymmetry on random logits, lesson 9 shows what it does.")),
        "C", review=f"{L3}, \u00a7 2"),
    MultipleChoice(
        "teacher_grad_symptom",
        "A colleague's training loop computes the teacher's logits without no_grad or detach, and one "
        "optimizer holds the teacher's parameters together with the student's (bug 8). What gives it away?",
        (Choice("the loss value is NaN from the first step",
                "No: on the same weights the loss value is identical to the correct one; that is what makes the "
                "bug hard to see."),
         Choice("the loss value is T\u00b2 times too large",
                "That is not this bug; the value is the same."),
         Choice("nothing measurable: the loss value, the student's updates and the teacher are all as in a "
                "correct loop",
                "Not in this loop: the gradient reaches the teacher and the optimizer that holds its parameters "
                "moves them at every step, so the teacher itself changes. (Even without that optimizer, a "
                "gradient into the teacher costs memory and time.)"),
         Choice("the teacher's own test errors change during the student's training, and its logits receive a "
                "gradient",
                "Yes: the loss value is the same, but the gradient reaches the teacher's logits and, through the "
                "optimizer that holds its parameters, its weights. Lesson 3's pitfalls lab measures both: the "
                "gradient on the teacher's logits, and the teacher's test errors before and after the run.")),
        "D", review=f"{L3}, \u00a7 6"),
    MultipleChoice(
        "omitted_bias", "A student distilled without any image of a 3 still misses most test 3s. Hinton's fix?",
        (Choice("raise the output bias of class 3 by a constant",
                "Yes: the student's 3-logit does rise on 3s, but never had to win during training; one bias "
                "shift (Hinton: +3.5, tuned on the test set; lesson 6 picks it on unlabelled training images) "
                "recovers most of them."),
         Choice("retrain it with a few labelled 3s",
                "That works but defeats the point of the experiment: the student must never see a 3."),
         Choice("distill at a higher temperature",
                "The shape of a 3 already came through the soft targets; the problem is the calibration of "
                "one class's logit."),
         Choice("lower the learning rate",
                "The optimizer is not the problem: class 3 never appears as a target, so its logit stays low.")),
        "A", review=f"{L6}, \u00a7 2 and \u00a7 3"),
    MultipleChoice(
        "at_normalise", "Attention transfer divides each attention map by its L2 norm. Over what?",
        (Choice("over the whole batch, so that maps are comparable across images",
                "No: an image's map would then depend on the other images of its batch (a lesson 7 pitfall)."),
         Choice("over the channels, before summing |A_c|^p",
                "The channels are summed away first; the normalization is over the spatial positions."),
         Choice("per image, over its H\u00b7W positions",
                "Yes: each map becomes a direction, so a student with weaker activations can still match it."),
         Choice("it does not: attention maps are compared raw",
                "Raw maps would differ by the networks' activation scales; the normalization removes that.")),
        "C", review=f"{L7}, \u00a7 3"),
    MultipleChoice(
        "int8_dynamic", "In int8 *dynamic* quantization, what is quantized at run time, call by call?",
        (Choice("the weights", "The weights are quantized once, ahead of time, with one scale per tensor."),
         Choice("the activations (each Linear layer's input)",
                "Yes: each input gets its own scale from its current range; no calibration data are needed."),
         Choice("the biases", "The biases stay float32."),
         Choice("the gradients", "Dynamic quantization is for inference; there are no gradients.")),
        "B", review=f"{L8}, \u00a7 3"),
    MultipleChoice(
        "mode_seeking", "Which objective makes a student *mode seeking* (no mass where the teacher has almost none)?",
        (Choice("forward KL, KL(teacher || student)",
                "Forward KL is mode covering: it punishes missing mass, so the student spreads out."),
         Choice("reverse KL, KL(student || teacher)",
                "Yes: the student's own probabilities weight the log-ratio, so saying what the teacher would not "
                "say is expensive and ignoring a mode is cheap."),
         Choice("cross-entropy with the data's labels",
                "Maximum likelihood on data is a forward KL to the data distribution: covering, not seeking."),
         Choice("both directions behave the same when the student is large enough",
                "With enough capacity both reach the teacher, but the question is what a limited student does, "
                "which is where they differ (lesson 9's mixture).")),
        "B", review=f"{L9}, \u00a7 1"),
    MultipleChoice(
        "born_again", "In self-distillation (\u201cborn-again networks\u201d), who is the teacher?",
        (Choice("a larger network of a different family",
                "That is ordinary distillation; in self-distillation the architectures are the same."),
         Choice("a trained network of the same architecture as the student (often a previous generation of it)",
                "Yes: Furlanello et al. (2018) train a student identical to its teacher and report that it can "
                "beat it; the drill's lab measures it on MNIST."),
         Choice("the student itself, at the same step of training",
                "A network cannot be its own fixed target at the same step; variants use earlier checkpoints or "
                "deeper layers of the same network."),
         Choice("an ensemble of students trained with different seeds",
                "Ensembles are a classic teacher (Hinton et al. distil one), but that is not self-distillation.")),
        "B", review="this notebook, \u00a7 Lab"),
    Numeric(
        "softmax_two", "softmax([1, 0]) at T = 1: the probability of the first class?", 0.7310585786300049,
        "e\u00b9 / (e\u00b9 + e\u2070) = 2.718 / 3.718 = 0.731 (the sigmoid of the gap, 1).", rel_tol=0.005,
        traps=((0.5, "that would be T \u2192 \u221e (or equal logits)"),
               (1.0, "that would be T \u2192 0 (the argmax)"),
               (0.2689414213699951, "that is the second class's probability")),
        review=f"{L1}, \u00a7 1"),
    Numeric(
        "ratio_gap14_t20", "Two classes' logits differ by 14. At T = 20, how many times more likely is the first?",
        2.0137527074704766,
        "p_i / p_j = e^((z_i - z_j)/T) = e^(14/20) = e^0.7 = 2.01; at T = 1 it would be e^14, about 1.2 million.",
        rel_tol=0.01,
        traps=((1202604.2841647768, "that is the ratio at T = 1"),
               (0.7, "that is the exponent, 14/20; the ratio is e to that power")),
        review=f"{L2}, \u00a7 1"),
    Numeric(
        "cache_mnist_mb", "Caching a teacher's float32 logits for the 60,000 MNIST training images "
        "(10 classes): how many megabytes (10\u2076 bytes)?", 2.4,
        "60,000 \u00d7 10 logits \u00d7 4 bytes = 2,400,000 bytes = 2.4 MB, once, instead of a teacher forward "
        "pass per image per epoch.", rel_tol=0.01,
        traps=((0.6, "that counts one byte per logit; float32 takes 4"),
               (0.24, "that is one logit per image; there are 10")),
        review=f"{L5}, \u00a7 4"),
)
