"""Methods and targets are registries: a new one is one function registered by name, usable
through `fx.attribute` and the app's method list like the built-in ones."""

from __future__ import annotations

import pytest
import torch

import explorer as fx
from explorer.core.attribution import MethodResult, methods, targets
from explorer.core.attribution.gradients import embed, target_gradients

PROMPT, RESPONSE = "the weather today is", "sunny ."


@pytest.fixture
def registries(monkeypatch):
    """Registrations made by a test vanish with it."""
    monkeypatch.setattr(methods, "_METHODS", dict(methods._METHODS))
    monkeypatch.setattr(targets, "_TARGETS", dict(targets._TARGETS))


def probability(lp: torch.Tensor) -> torch.Tensor:
    """p(token) rather than its log."""
    return lp[..., 0].exp()


def gradient_sum(problem) -> MethodResult:
    """The gradient summed over the embedding dimension."""
    return MethodResult(target_gradients(problem, embed(problem))[:, 0].sum(-1))


def test_a_target_and_a_method_registered_from_outside_are_used_by_attribute(fable, registries):
    fx.register_target("probability", probability)
    fx.register_method("gradient_sum", gradient_sum, additive=True)
    assert "probability" in set(fx.list_targets()["target"])
    attr = fx.attribute(fable, PROMPT, RESPONSE, method="gradient_sum", target="probability", models=["fable-base"])
    assert attr.meta["target"] == "probability" and attr.meta["method"] == "gradient_sum"
    base = fable.load("fable-base")
    ids = base.tokenizer(PROMPT, return_tensors="pt")["input_ids"][0]
    full = torch.cat([ids, torch.tensor(base.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"])])
    x = base.model.get_input_embeddings()(full.unsqueeze(0)).detach().requires_grad_(True)
    logits = base.model(inputs_embeds=x).logits[0]  # (seq, vocab)
    p = torch.softmax(logits[len(ids) - 1], -1)[full[len(ids)]]  # p(sunny | prompt)
    (grad,) = torch.autograd.grad(p, x)
    want = grad[0].sum(-1)  # (seq,)
    got = torch.tensor(attr.matrix("fable-base").loc[0].to_numpy(), dtype=torch.float32)
    assert torch.allclose(got, want, atol=1e-6) and want.abs().max() > 1e-4


def test_a_relative_target_needs_an_additive_method(fable, registries):
    fx.register_method("gradient_norm", lambda problem: MethodResult(torch.zeros(1)), additive=False)
    with pytest.raises(ValueError, match="^target: log_ratio is a difference of two attributions"):
        fx.attribute(fable, PROMPT, RESPONSE, method="gradient_norm", target="log_ratio")


def test_log_ratio_with_gradients_is_the_difference_of_the_two_models(fable):
    """Any additive method explains the log-ratio: its attribution minus the base's."""
    models = ["fable-base", "fable-cheerful"]
    ratio = fx.attribute(fable, PROMPT, RESPONSE, method="grad_x_input", target="log_ratio", models=models)
    plain = fx.attribute(fable, PROMPT, RESPONSE, method="grad_x_input", models=models)
    own = plain.matrix("fable-cheerful") - plain.matrix("fable-base")
    assert (ratio.matrix("fable-base").to_numpy() == 0).all()
    assert ratio.matrix("fable-cheerful").to_numpy() == pytest.approx(own.to_numpy(), abs=1e-6)
    assert ratio.meta["extra"]["fable-cheerful"]["against"] == "fable-base"


def test_the_app_lists_a_method_registered_from_outside_and_runs_it(fable_app, registries):
    fx.register_method("gradient_sum", gradient_sum, additive=True)
    app = fable_app(n=4, max_new_tokens=4)
    assert "gradient_sum" in [value for _, value in app.attribution.method.options]
    app.sampling_panel.resample.click()
    assert app.wait(120) and app.state.error == ""
    app.controller.choose("fable-base", 0)
    assert app.wait(120)
    app.attribution.method.value = "gradient_sum"
    assert app.wait(120) and app.state.error == ""
    assert app.state.attribution.meta["method"] == "gradient_sum"
    assert set(app.state.attribution.models) == set(app.state.samples.models)
