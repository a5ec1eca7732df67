"""Membership-inference attacks for MIA-efficacy (torch-free; scikit-learn + numpy).

Both attacks learn "member vs non-member" from the unlearned model's outputs on the
retained training data (members, label 1) and on the test set (non-members, label 0),
balanced by subsampling the larger side (seeded), then judge each forget record.
MIA-efficacy is the share of forget records judged non-members: high means the model
treats the forget set like unseen data. For Retrain it is the attack's rate on truly
unseen data, so it is the reference, not 100%.

- ``confidence``: logistic regression (scikit-learn) on standardised
  [max prob, entropy, true-label prob] features (:func:`~s3t.evaluate.metrics.attack_features`);
- ``loss``: a threshold on the cross-entropy loss, the one that best separates
  members from non-members (balanced accuracy); loss above it ⇒ non-member.
"""

from __future__ import annotations

import numpy as np

from .metrics import attack_features, loss


def _balanced(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    return a[np.sort(rng.permutation(len(a))[:n])], b[np.sort(rng.permutation(len(b))[:n])]


def confidence_attack(members: np.ndarray, non_members: np.ndarray, seed: int = 0):
    """Fit the attack on feature rows; returns ``predict(features) -> bool member``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m, n = _balanced(members, non_members, seed)
    x = np.concatenate([m, n])
    y = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    if len(set(y)) < 2:
        raise ValueError("the attack needs both members and non-members")
    clf = make_pipeline(StandardScaler(), LogisticRegression(random_state=seed)).fit(x, y)
    return lambda feats: clf.predict(feats) == 1


def loss_threshold(member_loss: np.ndarray, non_member_loss: np.ndarray, seed: int = 0) -> float:
    """The loss threshold t maximising balanced accuracy of "loss <= t ⇒ member".

    >>> loss_threshold(np.array([0.1, 0.2]), np.array([1.0, 2.0]))
    0.2
    """
    m, n = _balanced(np.asarray(member_loss, float), np.asarray(non_member_loss, float), seed)
    candidates = np.unique(np.concatenate([m, n]))
    best, best_t = -1.0, float(candidates[0])
    for t in candidates:
        score = (m <= t).mean() + (n > t).mean()
        if score > best:
            best, best_t = score, float(t)
    return best_t


def mia_efficacy(forget: tuple[np.ndarray, np.ndarray], retain: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], seed: int = 0) -> dict[str, float]:
    """Share of forget records called non-members by each attack; each tuple is (probs, labels).

    ``non_member`` is the confidence attack's verdict per forget record (for the noise test).
    """
    if len(forget[1]) == 0:
        return {"confidence": float("nan"), "loss": float("nan"), "non_member": np.zeros(0, bool)}
    predict = confidence_attack(attack_features(*retain), attack_features(*test), seed)
    non_member = ~predict(attack_features(*forget))
    t = loss_threshold(loss(*retain), loss(*test), seed)
    return {"confidence": float(non_member.mean()), "loss": float((loss(*forget) > t).mean()), "non_member": non_member}
