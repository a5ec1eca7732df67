"""Every approximate method on the tiny random model: never mutates its input, and moves the
model in the direction it should (GA/NPO raise the forget loss, RL lowers forget accuracy,
FT keeps retain accuracy, SalUn only changes masked weights, l1 shrinks the l1 norm)."""

from __future__ import annotations

import pytest
import torch

from s3t.errors import ConfigError
from s3t.evaluate.methods import METHODS, get_method, register_method
from s3t.train.stage import Examples, logits
from tests.conftest import tiny_config, toy_rows


@pytest.fixture(scope="module")
def setup(tiny_model):
    from s3t.baselines import FullRetrain

    rows = toy_rows(120, seed=3)
    full = FullRetrain(tiny_config(tiny_model, epochs=4)).fit(rows)
    runner = full.runner_

    def ex(ids):
        return Examples([runner.labels[i] for i in ids], tokens=[runner.tokens[i] for i in ids], pad_id=runner.pad_id)

    ids = [r["id"] for r in rows]
    return full.model_, ex(ids[:16]), ex(ids[16:])


def forget_loss(model, ex):
    return float(torch.nn.functional.cross_entropy(logits(model, 0, ex), torch.tensor(ex.labels)))


def acc(model, ex):
    return float((logits(model, 0, ex).argmax(-1) == torch.tensor(ex.labels)).float().mean())


def snapshot(model):
    return {k: v.clone() for k, v in model.state().items()}


def test_registry_refuses_duplicates_and_unknown_names():
    assert set(METHODS) == {"ft", "ga", "rl", "l1_sparse", "salun", "npo"}
    with pytest.raises(ConfigError, match="already registered"):
        register_method("ga", METHODS["ga"].unlearn, METHODS["ga"].config_cls)
    with pytest.raises(ConfigError, match="unknown"):
        get_method("magic")


@pytest.mark.parametrize("name", sorted(["ft", "ga", "rl", "l1_sparse", "salun", "npo"]))
def test_contract_copy_changed_input_untouched_deterministic(setup, name):
    model, forget, retain = setup
    before = snapshot(model)
    method = get_method(name)
    out = method.unlearn(model, forget, retain, method.configure(seed=1))
    again = method.unlearn(model, forget, retain, method.configure(seed=1))
    assert out is not model
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "the input model was modified"
    new = snapshot(out)
    assert any(not torch.equal(before[k], new[k]) for k in before), "the method changed nothing"
    assert all(torch.equal(new[k], v) for k, v in snapshot(again).items()), "not deterministic"
    with pytest.raises(ConfigError):
        method.configure(lr=0)


def test_ga_and_npo_raise_the_forget_loss(setup):
    model, forget, retain = setup
    base = forget_loss(model, forget)
    for name in ("ga", "npo"):
        m = get_method(name)
        out = m.unlearn(model, forget, retain, m.configure(lr=5e-3, epochs=5, batch_size=4))
        assert forget_loss(out, forget) > base + 0.05, name


def test_rl_lowers_forget_accuracy(setup):
    model, forget, retain = setup
    m = get_method("rl")
    out = m.unlearn(model, forget, retain, m.configure(epochs=4, lr=5e-3))
    assert acc(model, forget) >= 0.75
    assert acc(out, forget) < acc(model, forget)


def test_ft_keeps_retain_accuracy(setup):
    model, forget, retain = setup
    out = get_method("ft").unlearn(model, forget, retain)
    assert acc(out, retain) >= acc(model, retain) - 0.05


def test_salun_only_changes_masked_weights(setup):
    from s3t.evaluate.methods.common import named_trainable
    from s3t.evaluate.methods.salun import saliency_masks

    model, forget, retain = setup
    cfg = get_method("salun").configure(mask_ratio=0.3)
    masks = saliency_masks(model, forget, cfg.mask_ratio, cfg.batch_size)
    share = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert 0.29 <= share <= 0.31
    out = get_method("salun").unlearn(model, forget, retain, cfg)
    old, new = dict(named_trainable(model)), dict(named_trainable(out))
    changed = 0
    for n, mask in masks.items():
        assert torch.equal(new[n][~mask], old[n][~mask]), f"{n}: an unmasked weight changed"
        changed += int((new[n][mask] != old[n][mask]).sum())
    assert changed > 0


def test_l1_sparse_shrinks_the_l1_norm_relative_to_ft(setup):
    from s3t.evaluate.methods.l1_sparse import l1_norm

    model, forget, retain = setup
    ft = get_method("ft").unlearn(model, forget, retain)
    l1 = get_method("l1_sparse")
    sparse = l1.unlearn(model, forget, retain, l1.configure(gamma=1e-3))
    assert float(l1_norm(sparse).detach()) < float(l1_norm(ft).detach())
